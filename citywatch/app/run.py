"""Running the service until it is told to stop, with live reload, or until a part dies."""

from __future__ import annotations

import asyncio

from citywatch.app.reload import Reloader
from citywatch.app.service import Service


class ComponentFailed(RuntimeError):
    """A background task of a component ended; the process should exit and be restarted."""


async def run_until_stopped(
    service: Service, stop: asyncio.Event, config_path: str | None = None
) -> None:
    """Run ``service`` until ``stop`` is set; raise :class:`ComponentFailed` if a part dies.

    The configuration is reloaded on SIGHUP and when its file changes.
    """
    async with service, Reloader(service, config_path):
        stopper = asyncio.create_task(stop.wait())
        watched = [stopper, *service.tasks()]
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        for task in done:
            if task is not stopper:
                exc = None if task.cancelled() else task.exception()
                raise ComponentFailed(f"{task.get_name()} ended: {exc!r}")
