"""``citywatch grafana sync``: push the dashboards into a folder of a running Grafana.

Idempotent: each dashboard is fetched by uid and compared first (Grafana's ``id`` and
``version`` aside); only a missing or different one is written, with ``overwrite`` so
that a copy edited in the UI is replaced by the one from the repository. The token
comes from ``GRAFANA_TOKEN`` (a service account token) and is never printed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException, GrafanaUnauthorizedError

from citywatch.grafana.model import JSON

DEFAULT_FOLDER_UID = "citywatch"
DEFAULT_FOLDER_TITLE = "citywatch"
_VOLATILE = ("id", "version")


class SyncError(RuntimeError):
    """Grafana refused or could not be reached; the message is safe to print."""


@dataclass
class SyncReport:
    """What a sync did: folder created or not, and each dashboard's uid by outcome."""

    folder_created: bool = False
    outcomes: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        """Whether anything was written."""
        return self.folder_created or any(o != "unchanged" for o in self.outcomes.values())


def _status(exc: GrafanaException) -> int:
    code: int = getattr(exc, "status_code", 0) or 0
    return code


def _get_or_none(fetch: Any, uid: str) -> Any:
    try:
        return fetch(uid)
    except GrafanaClientError as exc:
        if _status(exc) == 404:
            return None
        raise


def _same(remote: JSON, local: JSON) -> bool:
    mine = {k: v for k, v in remote.items() if k not in _VOLATILE}
    return mine == {k: v for k, v in local.items() if k not in _VOLATILE}


def sync(
    api: GrafanaApi,
    boards: Mapping[str, JSON],
    folder_uid: str = DEFAULT_FOLDER_UID,
    folder_title: str = DEFAULT_FOLDER_TITLE,
) -> SyncReport:
    """Create the folder if missing, then write every board that is missing or differs."""
    report = SyncReport()
    # grafana-client is untyped.
    folders: Any = api.folder
    dashboards: Any = api.dashboard
    try:
        if _get_or_none(folders.get_folder, folder_uid) is None:
            folders.create_folder(folder_title, uid=folder_uid)
            report.folder_created = True
        for board in boards.values():
            uid = board["uid"]
            remote = _get_or_none(dashboards.get_dashboard, uid)
            if remote is not None:
                in_folder = remote.get("meta", {}).get("folderUid") == folder_uid
                if in_folder and _same(remote.get("dashboard", {}), board):
                    report.outcomes[uid] = "unchanged"
                    continue
            body = {
                "dashboard": {**board, "id": None},
                "folderUid": folder_uid,
                "message": "citywatch grafana sync",
                "overwrite": True,
            }
            dashboards.update_dashboard(body)
            report.outcomes[uid] = "created" if remote is None else "updated"
    except GrafanaUnauthorizedError:
        raise SyncError("Grafana refused the token (401): check GRAFANA_TOKEN") from None
    except GrafanaException as exc:
        status = _status(exc)
        if status == 403:
            raise SyncError(
                "Grafana refused the request (403): the token needs the Editor role "
                "(folders and dashboards write)"
            ) from None
        raise SyncError(f"Grafana answered HTTP {status or '?'}") from None
    except OSError as exc:
        raise SyncError(f"cannot reach Grafana: {type(exc).__name__}") from None
    return report


def load_dir(folder: Path) -> dict[str, JSON]:
    """The dashboards of ``folder/*.json`` by file name."""
    out: dict[str, JSON] = {}
    for path in sorted(folder.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(board, dict) or not board.get("uid"):
            raise SyncError(f"{path}: not a dashboard with a uid")
        out[path.name] = board
    if not out:
        raise SyncError(f"{folder}: no dashboards (*.json)")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``citywatch grafana sync`` options to ``parser``."""
    add = parser.add_argument
    add("--url", default=None, help="Grafana base URL (default $GRAFANA_URL)")
    add("--folder-uid", default=DEFAULT_FOLDER_UID, help="folder uid (default %(default)s)")
    add("--folder-title", default=DEFAULT_FOLDER_TITLE, help="folder title (default %(default)s)")
    add(
        "--dir",
        type=Path,
        default=None,
        help="push the *.json dashboards of this folder instead of the built-in ones",
    )
    add("--timeout", type=float, default=10.0, help="seconds per request (default %(default)s)")


def main(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    """Run the sync; prints one line per dashboard; returns the exit status."""
    env = os.environ if env is None else env
    url = args.url or env.get("GRAFANA_URL", "")
    token = env.get("GRAFANA_TOKEN", "")
    if not url:
        print("citywatch grafana sync: no Grafana URL (--url or GRAFANA_URL)", file=sys.stderr)
        return 2
    if not token:
        print("citywatch grafana sync: GRAFANA_TOKEN is not set", file=sys.stderr)
        return 2
    try:
        if args.dir is not None:
            boards = load_dir(args.dir)
        else:
            from citywatch.grafana.build import dashboards

            boards = dashboards()
        api = GrafanaApi.from_url(url, credential=token, timeout=args.timeout)
        report = sync(api, boards, args.folder_uid, args.folder_title)
    except SyncError as exc:
        print(f"citywatch grafana sync: {url}: {exc}", file=sys.stderr)
        return 1
    if report.folder_created:
        print(f"folder {args.folder_uid}: created")
    for uid, outcome in report.outcomes.items():
        print(f"dashboard {uid}: {outcome}")
    return 0
