"""The simulator's unit of output: one MQTT publication."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publication: topic, payload bytes, retain flag and QoS."""

    topic: str
    payload: bytes
    retain: bool
    qos: int = 1


def message_kind(topic: str) -> str:
    """``gps``, ``heartbeat``, ``status``, ``shift`` or ``case`` for a simulator topic."""
    leaf = topic.rsplit("/", 1)[-1]
    return "case" if leaf == "events" else leaf
