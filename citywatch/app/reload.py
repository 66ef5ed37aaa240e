"""Configuration changes without a restart: on SIGHUP, and when the file changes.

A new configuration is read and validated in full first; if anything is wrong
the error is logged, naming the key, and the configuration in force stays.
Every rule that is :class:`~rules.contract.Reconfigurable` takes the new
settings (today the patrol rule: its thresholds and the grid cells), and so do
alerting and the ``devices:`` section with its roster; other sections need a
restart, and the log says so.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from types import TracebackType

from citywatch.aio import cancel_and_wait
from citywatch.app.service import Service, load_grids
from citywatch.app.settings import Settings, load_settings
from citywatch.config import ConfigError
from citywatch.roster import load_roster
from citywatch.rules.contract import Reconfigurable

log = logging.getLogger(__name__)


def _mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


class Reloader:
    """Watches the config file (and the grids and roster files) and applies changes to a
    running service."""

    def __init__(self, service: Service, config_path: str | None, interval: float = 2.0) -> None:
        self.service = service
        self.path = config_path or os.environ.get("CITYWATCH_CONFIG") or None
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._stamps = self._files()
        self.reloads = 0

    def _files(self) -> dict[str, float | None]:
        settings = self.service.settings
        names = [self.path, settings.grids_file, settings.devices.roster_file]
        return {n: _mtime(n) for n in names if n}

    async def __aenter__(self) -> Reloader:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        self._task = asyncio.create_task(self._watch(), name="config-watch")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
        await cancel_and_wait([self._task])

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            stamps = self._files()
            if stamps != self._stamps:
                self._stamps = stamps
                await self.reload()

    async def reload(self) -> bool:
        """Read, validate and apply the configuration; False (old one kept) if it is bad."""
        try:
            new: Settings = await asyncio.to_thread(load_settings, self.path)
            grids = await asyncio.to_thread(load_grids, new.grids_file)
            roster = await asyncio.to_thread(load_roster, new.devices.roster_file)
        except ConfigError as exc:
            log.error("new configuration refused, the old one stays in force: %s", exc)
            return False
        old = self.service.settings
        live = [r for r in self.service.rules.values() if isinstance(r, Reconfigurable)]
        if live:
            ctx = self.service.rule_context(new, grids)
            for rule in live:
                rule.reload(ctx)
            self.service.grids = grids
        if self.service.alerting is not None:
            self.service.alerting.reconfigure(new.alerting)
        if self.service.admission is not None:
            self.service.admission.reconfigure(new.devices, roster)
            self.service.roster = roster
        if self.service.board is not None:
            self.service.board.evict_after = new.devices.evict_after
        rest = [
            name
            for name in ("mqtt", "ingest", "influx", "spool", "api", "cases", "calendar")
            if getattr(old, name) != getattr(new, name)
        ]
        if rest:
            log.warning("changed sections %s take effect at the next restart", ", ".join(rest))
        self.service.settings = new
        self._stamps = self._files()
        self.reloads += 1
        log.info(
            "configuration reloaded (patrol thresholds, grid cells, alerting, devices and "
            "roster applied)"
        )
        return True
