"""Notifiers: one module per kind behind one contract (:mod:`.base`), listed in :mod:`.registry`."""
