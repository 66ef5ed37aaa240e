"""A stand-in for the parts of Grafana's HTTP API that ``citywatch grafana sync`` uses.

No Grafana server can run here, so this implements the documented semantics of
``/api/folders``, ``/api/folders/:uid``, ``/api/dashboards/db``,
``/api/dashboards/uid/:uid`` and ``/api/search``: Bearer token auth (401), dashboards
upserted by uid with ``version`` incremented on each save, 412 ``version-mismatch``
when a save without ``overwrite`` carries a stale version, 400 for an unknown folder.
"""

from __future__ import annotations

import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlparse

JSON = dict[str, Any]


class GrafanaStandIn:
    """Run with ``with GrafanaStandIn(token) as g:``; ``g.url`` is its base URL."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.folders: dict[str, JSON] = {}
        self.dashboards: dict[str, JSON] = {}  # uid -> {"dashboard", "folderUid"}
        self.writes: list[str] = []
        self._ids = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> GrafanaStandIn:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    # The API, as (status, body).

    def get_folder(self, uid: str) -> tuple[int, Any]:
        if uid not in self.folders:
            return 404, {"message": "folder not found", "status": "not-found"}
        return 200, self.folders[uid]

    def create_folder(self, body: JSON) -> tuple[int, Any]:
        uid = body.get("uid") or f"f{self._ids + 1}"
        if uid in self.folders:
            return 409, {"message": "a folder with the same uid already exists"}
        self.writes.append(f"folder {uid}")
        self.folders[uid] = {
            "id": self._next_id(),
            "uid": uid,
            "title": body["title"],
            "version": 1,
        }
        return 200, self.folders[uid]

    def get_dashboard(self, uid: str) -> tuple[int, Any]:
        if uid not in self.dashboards:
            return 404, {"message": "Dashboard not found"}
        entry = self.dashboards[uid]
        board = entry["dashboard"]
        meta = {"folderUid": entry["folderUid"], "version": board["version"], "slug": uid}
        return 200, {"dashboard": copy.deepcopy(board), "meta": meta}

    def save_dashboard(self, body: JSON) -> tuple[int, Any]:
        board = copy.deepcopy(body["dashboard"])
        folder = body.get("folderUid") or ""
        if folder and folder not in self.folders:
            return 400, {"message": "folder not found"}
        uid = board.get("uid")
        if not uid:
            return 400, {"message": "uid required in this stand-in"}
        old = self.dashboards.get(uid)
        if old is not None:
            current = old["dashboard"]["version"]
            if not body.get("overwrite") and board.get("version") != current:
                return 412, {
                    "message": "The dashboard has been changed by someone else",
                    "status": "version-mismatch",
                }
            board["id"], board["version"] = old["dashboard"]["id"], current + 1
        else:
            board["id"], board["version"] = self._next_id(), 1
        self.dashboards[uid] = {"dashboard": board, "folderUid": folder}
        self.writes.append(f"dashboard {uid}")
        return 200, {
            "id": board["id"],
            "uid": uid,
            "status": "success",
            "version": board["version"],
            "url": f"/d/{uid}/{uid}",
        }

    def search(self, query: dict[str, list[str]]) -> tuple[int, Any]:
        folders = set(query.get("folderUIDs", []))
        hits = [
            {
                "uid": uid,
                "title": e["dashboard"].get("title"),
                "type": "dash-db",
                "folderUid": e["folderUid"],
            }
            for uid, e in sorted(self.dashboards.items())
            if not folders or e["folderUid"] in folders
        ]
        return 200, hits

    def _route(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any]:
        parts = path.strip("/").split("/")
        if parts[:1] != ["api"]:
            return 404, {"message": "not found"}
        rest = parts[1:]
        with self._lock:
            if method == "GET" and len(rest) == 2 and rest[0] == "folders":
                return self.get_folder(rest[1])
            if method == "POST" and rest == ["folders"]:
                return self.create_folder(body)
            if method == "GET" and len(rest) == 3 and rest[:2] == ["dashboards", "uid"]:
                return self.get_dashboard(rest[2])
            if method == "POST" and rest == ["dashboards", "db"]:
                return self.save_dashboard(body)
            if method == "GET" and rest == ["search"]:
                return self.search(query)
        return 404, {"message": "not found"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self, method: str) -> None:
                if self.headers.get("Authorization") != f"Bearer {standin.token}":
                    status, body = 401, {"message": "invalid API key"}
                else:
                    length = int(self.headers.get("Content-Length") or 0)
                    raw = self.rfile.read(length) if length else b""
                    url = urlparse(self.path)
                    payload = json.loads(raw) if raw else None
                    status, body = standin._route(method, url.path, parse_qs(url.query), payload)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

        return Handler
