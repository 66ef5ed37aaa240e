"""Alerting: alert lifecycle, routing, escalation and the notification outbox."""
