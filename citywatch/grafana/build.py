"""Render the dashboards; ``python -m citywatch.grafana.build`` writes ``grafana/dashboards``.

The files are JSON with sorted keys and an indent of 2, so a change reads well in a diff.
``--check`` exits 1 when a file differs from what the generator gives.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from citywatch.grafana import cases, command, patrols, service
from citywatch.grafana.model import JSON

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "grafana" / "dashboards"


def dashboards() -> dict[str, JSON]:
    """File name to dashboard, for every dashboard."""
    built = [command.build(), patrols.build(), cases.build(), service.build()]
    return {f"{d['uid'].removeprefix('citywatch-')}.json": d for d in built}


def render(dashboard: JSON) -> str:
    """The file text of ``dashboard``."""
    return json.dumps(dashboard, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with ``--check`` compare) the dashboard files; returns the exit status."""
    p = argparse.ArgumentParser(prog="python -m citywatch.grafana.build", description=__doc__)
    p.add_argument("--out", type=Path, default=DEFAULT_DIR, help="folder (default %(default)s)")
    p.add_argument("--check", action="store_true", help="compare instead of writing")
    args = p.parse_args(argv)
    stale = []
    for name, board in dashboards().items():
        path: Path = args.out / name
        text = render(board)
        if args.check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)} (run python -m citywatch.grafana.build)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
