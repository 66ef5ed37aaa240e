"""citywatch: real-time telemetry and alerting for digital city management.

This package holds what every stage shares: the message models, configuration
loading, the clock, geodesy and the sink contract, plus the command line.
The stages themselves live in the top-level packages ``collectors``,
``rules``, ``alerting`` and ``api``.
"""

__version__ = "0.1.0"
