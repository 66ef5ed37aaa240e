"""The live board of handhelds stays small and quick under a flood of device ids.

A device nothing has come from for ``devices.evict_after`` is forgotten (on the injected
clock), with its officer's assignment; a shift start finds the officer's previous device
by an index, not by a pass over every device on the board.
"""

from __future__ import annotations

from typing import Any

from citywatch.api.live import DeviceBoard
from citywatch.clock import ManualClock
from citywatch.models import DeviceStatus, Fix, Heartbeat, ShiftEvent
from citywatch.rules.patrols.config import PatrolsConfig

CITY = "321200"
T0 = 1_795_313_730.0
GRID = ("321202001002005",)
DAY = 86400.0


def fix(device: str, at: float) -> Fix:
    return Fix(CITY, device, at, 32.45, 119.92, at, acc=5.0)


def start(officer: str, device: str, at: float) -> ShiftEvent:
    return ShiftEvent(CITY, officer, at, "start", at, device, GRID, "lead-1", "inspector")


def end(officer: str, at: float) -> ShiftEvent:
    return ShiftEvent(CITY, officer, at, "end", at)


async def test_devices_not_heard_of_for_evict_after_are_forgotten() -> None:
    clock = ManualClock(T0)
    board = DeviceBoard(PatrolsConfig(), clock=clock, evict_after=DAY)
    await board.write([fix(f"flood-{i}", T0) for i in range(10_000)])
    await board.write([start("off-1", "cgt-1", T0), fix("cgt-2", T0)])
    assert len(board.devices) == 10_002 and len(board.sorted()) == 10_002
    clock.advance(DAY / 2)
    # Any kind of record keeps a device: a heartbeat, a retained offline status.
    await board.write(
        [
            Heartbeat(CITY, "cgt-2", clock.now(), clock.now()),
            DeviceStatus(CITY, "cgt-1", False, clock.now(), clock.now()),
        ]
    )
    clock.advance(DAY / 2)
    await board.write([fix("cgt-3", clock.now())])
    assert set(board.devices) == {(CITY, "cgt-1"), (CITY, "cgt-2"), (CITY, "cgt-3")}
    assert [d.device for d in board.sorted()] == ["cgt-1", "cgt-2", "cgt-3"]
    assert board.devices[(CITY, "cgt-1")].officer == "off-1"
    clock.advance(DAY)
    await board.write([])
    assert board.devices == {} and board.sorted() == [] and board._carried == {}
    # The officer's next shift starts from nothing.
    await board.write([start("off-1", "cgt-9", clock.now()), end("off-1", clock.now())])
    assert board.devices[(CITY, "cgt-9")].officer is None


class _NoScan(dict[tuple[str, str], Any]):
    """The board's devices, refusing a pass over all of them."""

    def _scan(self, *args: object) -> Any:
        raise AssertionError("a shift event walked every device on the board")

    __iter__ = items = values = keys = _scan  # type: ignore[assignment]


async def test_shift_events_never_walk_the_whole_board() -> None:
    # A pass over every device per shift start made 2,000 starts take minutes after a flood
    # of made-up ids; shift events go by the officer -> device index instead.
    clock = ManualClock(T0)
    board = DeviceBoard(PatrolsConfig(), clock=clock)
    await board.write([fix(f"flood-{i:06d}", T0) for i in range(5_000)])
    board.devices = _NoScan(board.devices)
    await board.write([start(f"off-{i}", f"cgt-{i}", T0 + 1) for i in range(200)])
    await board.write([start(f"off-{i}", f"cgt-{i + 1}", T0 + 2) for i in range(200)])
    await board.write([end(f"off-{i}", T0 + 3) for i in range(200)])
    assert all(
        dict.__getitem__(board.devices, (CITY, f"cgt-{i}")).officer is None for i in range(201)
    )


async def test_a_handheld_handed_over_belongs_to_the_new_officer_only() -> None:
    board = DeviceBoard(PatrolsConfig(), clock=ManualClock(T0))
    await board.write([start("off-1", "cgt-1", T0), start("off-2", "cgt-1", T0 + 1)])
    assert board.devices[(CITY, "cgt-1")].officer == "off-2"
    await board.write([end("off-1", T0 + 2)])  # off-1's end leaves off-2's handheld alone
    assert board.devices[(CITY, "cgt-1")].officer == "off-2"
    await board.write([start("off-2", "cgt-2", T0 + 3)])
    assert board.devices[(CITY, "cgt-1")].officer is None
    assert board.devices[(CITY, "cgt-2")].officer == "off-2"
    assert board.devices[(CITY, "cgt-2")].grids == GRID
    await board.write([end("off-2", T0 + 4)])
    assert board.devices[(CITY, "cgt-2")].officer is None
    assert board.devices[(CITY, "cgt-2")].grids == ()
