"""The HTTP side: health, readiness, metrics, the ``/api/v1`` REST API and stream, the console."""
