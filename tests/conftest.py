"""Shared pytest fixtures: real mosquitto and influxd servers on free ports."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.services import Influx, MissingBinaryError, Mosquitto, find_binary


def _require(binary: str) -> None:
    # A missing server must fail loudly: skipping would turn CI green without testing.
    try:
        find_binary(binary)
        return
    except MissingBinaryError as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """A broker shared by the whole session. Do not stop or restart it."""
    _require("mosquitto")
    with Mosquitto(tmp_path_factory.mktemp("mosquitto")) as broker:
        yield broker


@pytest.fixture(scope="session")
def influx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influx]:
    """An InfluxDB shared by the whole session. Do not stop or restart it."""
    _require("influxd")
    with Influx(tmp_path_factory.mktemp("influx")) as server:
        yield server


@pytest.fixture
def influx_db(influx: Influx) -> Iterator[str]:
    """A fresh database on the shared InfluxDB, dropped after the test."""
    with influx.fresh_db() as name:
        yield name


@pytest.fixture
def make_mosquitto(tmp_path: Path) -> Iterator[Callable[[], Mosquitto]]:
    """Factory for private, started brokers that a test may stop, kill or restart."""
    _require("mosquitto")
    with contextlib.ExitStack() as stack:
        counter = itertools.count()
        yield lambda: stack.enter_context(Mosquitto(tmp_path / f"mosquitto-{next(counter)}"))


@pytest.fixture
def make_influx(tmp_path: Path) -> Iterator[Callable[..., Influx]]:
    """Factory for private, started InfluxDB servers that a test may stop, kill or restart.

    Keyword arguments go to :class:`tests.services.Influx`, e.g.
    ``make_influx(settings={"http": ["max-body-size = 20000"]})``.
    """
    _require("influxd")
    with contextlib.ExitStack() as stack:
        counter = itertools.count()
        yield lambda **kw: stack.enter_context(Influx(tmp_path / f"influx-{next(counter)}", **kw))
