"""Real mosquitto and influxd instances for tests, on free ports in a private folder.

Only the standard library is used here, so tests can check the broker and the database
independently of citywatch's own code.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Self

REPO_ROOT = Path(__file__).resolve().parent.parent
MOSQUITTO_CONF = REPO_ROOT / "deploy" / "mosquitto.conf"
INSTALL_HINT = "run .ci/run, or `apt-get install mosquitto influxdb`"

# Debian installs mosquitto in /usr/sbin, which is not on a normal user's PATH.
_SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"

# Every service process still running, so an interpreter exit never leaves one behind.
_LIVE: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        proc.kill()
        proc.wait()
    _LIVE.clear()


class MissingBinaryError(RuntimeError):
    """A service executable is not installed."""


def find_binary(name: str) -> str:
    """Return the path of executable `name`, searching PATH and then the sbin folders."""
    path = shutil.which(name) or shutil.which(name, path=_SBIN_PATH)
    if path is None:
        raise MissingBinaryError(f"`{name}` not found on PATH; {INSTALL_HINT}")
    return path


def listens_on(pid: int, port: int) -> bool:
    """Return whether process `pid` has a TCP socket listening on IPv4 `port`.

    Where this cannot be checked (no /proc, or another user's process) it returns True.
    """
    if not Path("/proc/self/fd").is_dir():
        return True
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except PermissionError:
        return True
    except FileNotFoundError:
        return False
    inodes = set()
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port and inode in inodes:
            return True
    return False


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _Service:
    """A server process started from a config file written into `workdir`."""

    name = "service"
    binary = ""
    start_timeout = 10.0
    stop_timeout = 30.0

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.log_path = self.workdir / f"{self.name}.log"
        self._exe = find_binary(self.binary)
        self._proc: subprocess.Popen[bytes] | None = None
        self._port = free_port()

    # Subclass hooks.

    def _write_config(self) -> list[str]:
        """Write the config file and return the command line to run."""
        raise NotImplementedError

    def _ready(self) -> bool:
        """Return whether the started process is serving requests."""
        raise NotImplementedError

    @property
    def port(self) -> int:
        """The port clients connect to; the same across restarts."""
        return self._port

    # Lifecycle.

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """PID of the running process, if any."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def start(self) -> None:
        """Start the process and wait until it serves requests; raise with the log tail if not."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.workdir.mkdir(parents=True, exist_ok=True)
        argv = self._write_config()
        with self.log_path.open("ab") as log:
            log.write(f"---- starting: {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        self._proc = proc
        _LIVE.add(proc)

        deadline = time.monotonic() + self.start_timeout
        while True:
            if proc.poll() is not None:
                self._reap()
                raise RuntimeError(
                    f"{self.name} exited with code {proc.returncode} during startup\n"
                    + self.log_tail()
                )
            # Another process may have taken the port meanwhile; then the probe succeeds
            # against that process while ours fails to bind, hence the ownership check.
            if self._ready() and listens_on(proc.pid, self._port):
                return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"{self.name} not ready after {self.start_timeout:.0f} s\n" + self.log_tail()
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop gracefully with SIGTERM (so state is saved), killing it if it hangs."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._reap()

    def kill(self) -> None:
        """Kill with SIGKILL: a crash, nothing is saved on the way out."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        self._reap()

    def restart(self) -> None:
        """Stop gracefully, then start again on the same port and with the same data."""
        self.stop()
        self.start()

    def _reap(self) -> None:
        if self._proc is not None:
            _LIVE.discard(self._proc)
        self._proc = None

    def log_tail(self, lines: int = 40) -> str:
        """Return the last `lines` lines of the process log."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"(no log at {self.log_path})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"---- last {lines} lines of {self.log_path}:\n{tail}"

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class Mosquitto(_Service):
    """A mosquitto broker with the settings of deploy/mosquitto.conf on a private port.

    The port and the persistence folder are kept across restarts, so durable sessions
    and queued messages survive `stop()` + `start()`.
    """

    name = "mosquitto"
    binary = "mosquitto"
    start_timeout = 10.0
    stop_timeout = 15.0

    def __init__(self, workdir: Path, extra: list[str] | None = None) -> None:
        super().__init__(workdir)
        self.conf_path = self.workdir / "mosquitto.conf"
        self.extra = list(extra or [])
        """Configuration lines after the test instance's own (e.g. authentication)."""

    @property
    def url(self) -> str:
        """The broker URL, `mqtt://127.0.0.1:PORT`."""
        return f"mqtt://127.0.0.1:{self._port}"

    def _write_config(self) -> list[str]:
        user = pwd.getpwuid(os.geteuid()).pw_name
        local = [
            "",
            "# Test instance settings.",
            f"listener {self._port} 127.0.0.1",
            f"persistence_location {self.workdir}",
            "persistence_file mosquitto.db",
            "log_dest stderr",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            # Started as root, mosquitto switches to user "mosquitto", which cannot write
            # into a root-owned temp folder. Ignored when not started as root.
            f"user {user}",
            *self.extra,
            "",
        ]
        self.conf_path.write_text(MOSQUITTO_CONF.read_text() + "\n".join(local))
        return [self._exe, "-c", str(self.conf_path)]

    def _ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self._port), timeout=0.2):
                return True
        except OSError:
            return False


class InfluxError(RuntimeError):
    """InfluxDB answered a request with an error."""


def _quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Tests talk to 127.0.0.1 only; an http_proxy from the environment must not intercept that.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Influx(_Service):
    """An InfluxDB 1.x server with its data in `workdir` and a private HTTP port.

    The HTTP and RPC ports and the data are kept across restarts.
    """

    name = "influxd"
    binary = "influxd"
    start_timeout = 20.0
    stop_timeout = 30.0

    def __init__(self, workdir: Path, settings: dict[str, list[str]] | None = None) -> None:
        super().__init__(workdir)
        self.conf_path = self.workdir / "influxdb.conf"
        self._rpc_port = free_port()
        self.settings = {k: list(v) for k, v in (settings or {}).items()}
        """Extra lines per section (``data``, ``http``), e.g. ``max-body-size = 20000``."""

    @property
    def url(self) -> str:
        """The HTTP API base URL, `http://127.0.0.1:PORT`."""
        return f"http://127.0.0.1:{self._port}"

    def _write_config(self) -> list[str]:
        root = self.workdir
        extra = {k: "".join(f"  {line}\n" for line in v) for k, v in self.settings.items()}
        unknown = set(extra) - {"data", "http"}
        if unknown:
            raise ValueError(f"no extra settings for section(s) {sorted(unknown)}")
        self.conf_path.write_text(
            f"""\
# Debian's influxd 1.6 reads `reporting-enabled`; upstream builds read
# `reporting-disabled`. Unknown keys are ignored, so both are set.
reporting-enabled = false
reporting-disabled = true
# RPC (backup/restore) port; the default 8088 may be taken by a system influxd.
bind-address = "127.0.0.1:{self._rpc_port}"

[meta]
  dir = "{root / "meta"}"

[data]
  dir = "{root / "data"}"
  wal-dir = "{root / "wal"}"
  query-log-enabled = false
{extra.get("data", "")}
[http]
  bind-address = "127.0.0.1:{self._port}"
  log-enabled = false
{extra.get("http", "")}
# The _internal statistics database would show up in SHOW DATABASES and cost writes.
[monitor]
  store-enabled = false

[logging]
  level = "warn"
"""
        )
        return [self._exe, "-config", str(self.conf_path)]

    def _ready(self) -> bool:
        try:
            with _OPENER.open(f"{self.url}/ping", timeout=1) as resp:
                return bool(resp.status == 204)
        except (OSError, urllib.error.URLError):
            return False

    # Database access, independent of citywatch.

    def _request(
        self, method: str, path: str, params: dict[str, str], payload: bytes | None = None
    ) -> dict[str, Any]:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        req = urllib.request.Request(url, data=payload, method=method)
        try:
            with _OPENER.open(req, timeout=30) as resp:
                body: bytes = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            raise InfluxError(f"{method} {path} {params}: HTTP {exc.code}: {detail}") from exc
        data: dict[str, Any] = json.loads(body) if body else {}
        found = [data.get("error")] + [r.get("error") for r in data.get("results", [])]
        errors = [str(e) for e in found if e]
        if errors:
            raise InfluxError(f"{method} {path} {params}: {'; '.join(errors)}")
        return data

    def query(self, q: str, db: str) -> dict[str, Any]:
        """Run a read-only InfluxQL query; return the parsed JSON, times in epoch ns."""
        return self._request("GET", "/query", {"q": q, "db": db, "epoch": "ns"})

    def create_db(self, name: str) -> None:
        """Create database `name` (no-op if it exists)."""
        self._request("POST", "/query", {"q": f"CREATE DATABASE {_quote_ident(name)}"})

    def write(self, db: str, lines: str) -> None:
        """Write line protocol `lines` (times in ns) into `db` as they are; raise if refused."""
        self._request("POST", "/write", {"db": db, "precision": "ns"}, lines.encode())

    @contextlib.contextmanager
    def fresh_db(self) -> Iterator[str]:
        """A new database of a name no test has used, dropped on leaving."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.create_db(name)
        try:
            yield name
        finally:
            self.drop_db(name)

    def drop_db(self, name: str) -> None:
        """Drop database `name` and all its data (no-op if it does not exist)."""
        self._request("POST", "/query", {"q": f"DROP DATABASE {_quote_ident(name)}"})

    def count(self, measurement: str, db: str, where: str = "") -> int:
        """Return the number of points in `measurement`, optionally filtered by `where`.

        count(*) gives one column per field and ignores points lacking a field, so the
        largest column is the number of points. A measurement with no points gives 0.
        """
        q = f"SELECT count(*) FROM {_quote_ident(measurement)}"
        if where:
            q += f" WHERE {where}"
        rows = [
            row for series in self._series(self.query(q, db)) for row in series.get("values", [])
        ]
        return max((int(v) for row in rows for v in row[1:] if v is not None), default=0)

    def points(self, measurement: str, db: str) -> list[dict[str, Any]]:
        """Return every point of `measurement` as a dict column -> value, tags included.

        `time` is in epoch nanoseconds; points are in time order.
        """
        data = self.query(f"SELECT * FROM {_quote_ident(measurement)}", db)
        return [
            dict(zip(series["columns"], row, strict=True))
            for series in self._series(data)
            for row in series.get("values", [])
        ]

    @staticmethod
    def _series(data: dict[str, Any]) -> list[dict[str, Any]]:
        return [s for result in data.get("results", []) for s in result.get("series", [])]
