"""Notifiers: one small module per channel behind one contract (:mod:`.base`)."""
