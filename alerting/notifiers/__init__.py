"""Notifiers: one small module per channel behind the :class:`~alerting.notifiers.base.Notifier` contract."""
