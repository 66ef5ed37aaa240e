"""Small asyncio helpers shared by the components."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol


class Closable(Protocol):
    """A store that is closed on its own thread."""

    def close(self) -> None: ...


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any] | None]) -> None:
    """Cancel the background tasks a component owns and wait until they have ended."""
    pending = [t for t in tasks if t is not None]
    for t in pending:
        t.cancel()
    for t in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await t


async def close_store(io: ThreadPoolExecutor, store: Closable | None, *, wait: bool) -> None:
    """Close ``store`` (if open) on its thread ``io``, then shut that thread down.

    ``wait=False`` is for a component that failed to enter: it is never exited, so its
    store is closed here (it may be moved aside next) without waiting for the thread.
    """
    if store is not None:
        await asyncio.get_running_loop().run_in_executor(io, store.close)
    io.shutdown(wait=wait)
