"""Collectors: receive from the broker, decode, validate and normalise into records.

The flow is broker -> :mod:`collectors.mqtt` (at-least-once consumer) ->
:mod:`collectors.registry` (one decoder per topic kind) -> a
:class:`citywatch.sink.Sink`. Rejected messages go to the dead-letter topic.
"""
