"""The HTTP side: health, readiness and metrics today; the REST API and console next."""
