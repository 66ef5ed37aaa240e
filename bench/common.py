"""What the benches share: the alert events they feed, and what they do with their results."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from citywatch.models import AlertEvent


def parser(doc: str | None) -> argparse.ArgumentParser:
    """A bench's command line, its module docstring ``doc`` as the help, laid out as written."""
    return argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def report(summary: dict[str, Any], path: Path | None) -> None:
    """Print ``summary`` but its per-round details; write all of it to ``path`` if given."""
    print(json.dumps({k: v for k, v in summary.items() if k != "rounds"}, indent=2))
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=2))


def idle_event(
    officer: str,
    device: str,
    lead: str,
    grid: str,
    now: float,
    severity: str = "yellow",
    **values: float,
) -> AlertEvent:
    """``officer`` idle for ten minutes, firing; ``values`` are added to the event's own."""
    return AlertEvent(
        rule="patrol_idle",
        status="firing",
        severity=severity,
        city="321200",
        subject_kind="officer",
        subject=officer,
        at=now - 600,
        labels={"officer": officer, "device": device, "lead": lead, "grid": grid},
        values={"since": now - 600, "held": 600.0, **values},
        summary=f"{officer} 原地停留 10 分钟",
    )
