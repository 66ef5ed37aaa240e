"""The fault matrix: is anything lost when a part of the system fails under load?

Each row starts its own Mosquitto (deploy/mosquitto.conf, persistence on) and InfluxDB 1.x
on free ports in a temporary folder, and the service as a subprocess
(``python -m citywatch run -c FILE`` with ``CITYWATCH_*`` variables, every component),
publishes GPS fixes at ``--rate`` fixes/s from ``--devices`` handhelds at QoS 1 (each fix
has its own ``seq`` and ``ts``, so its InfluxDB point is unique), injects one fault, and
then counts. A script "supervisor" restarts the service 1 s after it exits by itself, as
systemd or docker would. The rows:

``influx-kill``
    InfluxDB SIGKILLed under load, restarted ``--outage`` seconds later (the service spools
    meanwhile and replays).
``broker-term`` / ``broker-kill``
    Mosquitto stopped with SIGTERM / SIGKILL under load, restarted ``--broker-down`` seconds
    later on the same port and persistence file. A SIGKILLed broker keeps only what it last
    saved (``autosave_interval 30``), so before the kill it is made to save once (SIGUSR1)
    after the service subscribed, as a broker that has run for 30 s has: killed before
    any save (``--no-save``), it forgets the service's session and drops what arrives until
    the service subscribes again, whatever the service does.
``service-kill``
    The service SIGKILLed three times under load, each time restarted 1 s later.
``spool-full``
    The spool folder on a 320 KiB tmpfs (``mount -t tmpfs -o size=320k``; without the
    right to mount, ``spool.max_bytes: 320KiB`` instead, said in the notes) while InfluxDB
    is down for ``--outage`` seconds: the broker must hold what the spool cannot.
``spool-unwritable``
    InfluxDB down and the spool's tmpfs remounted read-only for ``--outage`` seconds (as
    root ``chmod`` does not stop writes), then both back.
``state-corrupt`` / ``state-empty``
    The service stopped under load, the header of ``cases.sqlite`` and ``alerts.sqlite``
    overwritten / both truncated to 0 bytes, then started: the expected outcome is a refusal
    to start with a clear message and a distinct exit code (neither 0, 1 nor 2), then a
    start with ``--reset-state``. Where that option does not exist, the script moves the
    damaged files aside itself (as an operator would) so the data can still be counted.
``device-flood``
    InfluxDB with ``max-values-per-tag = --max-tag-values``. The legitimate handhelds start
    shifts and publish; then ``--flood-devices`` made-up device ids publish one fix each;
    then ``--new-devices`` new legitimate handhelds start shifts and publish. Every
    legitimate fix must be stored; a flood fix must be stored, dead-lettered, or refused and
    counted (``citywatch_ingest_deadletters_suppressed_total``), not dropped silently.
    ``devices.max_unknown: --max-unknown`` is set where the code has that key.
``backlog-gzip`` / ``backlog-plain``
    InfluxDB with ``max-body-size = --max-body``; the service stopped while
    ``--backlog-uploads`` uploads of 300 fixes (JSON arrays) queue in the broker for its
    persistent session; then it is started, with ``influx.gzip`` on / off: all must be stored.
``sigterm``
    SIGTERM under load: how long the exit takes, whether every message it acknowledged is
    in InfluxDB at exit, and whether the broker redelivers exactly the messages it had
    received and not acknowledged; then it is restarted.

Columns (fixes, not messages, except Redelivered):

* Sent: fixes the broker acknowledged (PUBACK) to the publishers. A publisher whose broker
  went away publishes the unacknowledged ones again, as a QoS 1 client does.
* Stored: distinct sent fixes found in InfluxDB (``SELECT seq FROM gps``).
* Dead-lettered: sent fixes not stored that a dead letter on ``citywatch/+/deadletter``
  names (by its payload's ``seq`` and ``index``/``elements``), with the number of distinct
  letters by reason; plus fixes refused and only counted
  (``citywatch_ingest_deadletters_suppressed_total``), and fixes of letters that name none.
* Lost: sent − stored − dead-lettered (− refused and counted).
* Redelivered: MQTT messages the broker delivered to the service more than once, seen by a
  pass-through proxy on the service's broker connection (``bench/mqtt_tap.py``), including
  copies a publisher sent again after a broker failure.
* Alive: the service process is running at the end and ``/healthz`` answers; exits it made
  by itself (restarted by the supervisor) are listed.
* Recovery: from the end of the fault (InfluxDB or broker answering again, the service
  restarted) until ``/readyz`` is 200, the spool is empty, and every fix sent before the
  fault ended is stored or dead-lettered. For the backlog rows: from the service's start
  until the whole backlog is stored. "—": never within ``--recovery-timeout``, or stuck
  for 10 s with fixes missing.

The service runs with ``mqtt.reconnect_max`` and ``influx.retry_max`` at ``--retry-max``
(2 s) rather than the 30 s defaults, so recovery times measure the service, not its backoff.

    python bench/faults.py [--rate 2000] [--devices 500] [--seconds 25] [--only ROW,...]
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import parser  # noqa: E402
from bench.ingest import publish_backlog, publish_packet, register_session  # noqa: E402
from bench.mqtt_tap import PUBACK, MqttTap, PacketReader, first_seq  # noqa: E402
from tests.helpers import service_env  # noqa: E402
from tests.services import Influx, Mosquitto, free_port  # noqa: E402

CITY = "321200"
GRID = "321202001001001"
STALL_S = 10.0
# Requests go to 127.0.0.1 only; an http_proxy from the environment must not intercept them.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# -- messages and what became of them -------------------------------------------------------


@dataclass(frozen=True)
class Msg:
    """One MQTT message of ``n`` fixes with ids ``seq`` .. ``seq + n - 1``."""

    seq: int
    n: int
    topic: str
    payload: bytes
    flood: bool = False


class Ledger:
    """Every message made in a row, by first fix id, and which ones the broker acknowledged."""

    def __init__(self) -> None:
        # Fix times lie in the past hour: within ingest.max_age, never in the future.
        self.t0 = time.time() - 3600
        self._lock = threading.Lock()
        self.next_seq = 0
        self._firsts: list[int] = []
        self.msgs: dict[int, Msg] = {}
        self.acked: set[int] = set()

    def fix(self, seq: int, device: int) -> dict[str, Any]:
        """A realistic fix; ``seq`` comes first so the proxy finds it at once."""
        return {
            "seq": seq,
            "ts": round(self.t0 + seq * 0.001, 3),
            "lat": 32.45 + (device % 100) * 1e-4 + (seq % 1000) * 1e-7,
            "lon": 119.92 + (device // 100 % 100) * 1e-4,
            "acc": 5.0,
            "speed": 1.2,
            "heading": float(seq % 360),
            "battery": 80.0,
        }

    def make(self, device: str, index: int, n: int = 1, flood: bool = False) -> Msg:
        """A new message of ``n`` fixes from ``device`` (one object, or an array if n > 1)."""
        with self._lock:
            seq = self.next_seq
            self.next_seq += n
            fixes = [self.fix(s, index) for s in range(seq, seq + n)]
            body = orjson.dumps(fixes[0] if n == 1 else fixes)
            msg = Msg(seq, n, f"citywatch/{CITY}/devices/{device}/gps", body, flood)
            self.msgs[seq] = msg
            self._firsts.append(seq)
            return msg

    def ack(self, msg: Msg) -> None:
        with self._lock:
            self.acked.add(msg.seq)

    def message_of(self, seq: int) -> Msg | None:
        """The message holding fix ``seq``."""
        with self._lock:
            i = bisect.bisect_right(self._firsts, seq) - 1
            return self.msgs[self._firsts[i]] if i >= 0 else None

    def sent(
        self, flood: bool | None = None, below: int | None = None, made: bool = False
    ) -> set[int]:
        """Ids of the fixes the broker acknowledged (of one class, below an id); with
        ``made``, of every fix made so far, acknowledged or still to be published."""
        with self._lock:
            msgs = list(self.msgs.values()) if made else [self.msgs[s] for s in self.acked]
        out: set[int] = set()
        for m in msgs:
            if (flood is None or m.flood == flood) and (below is None or m.seq < below):
                out.update(range(m.seq, m.seq + m.n))
        return out


class PacedPublisher(threading.Thread):
    """Publishes messages at ``rate`` a second at QoS 1 over a raw MQTT connection.

    Messages are made on schedule whether or not the broker is up (a handheld buffers its
    fixes); unacknowledged ones are published again after a reconnect. Runs until
    :meth:`finish`, then until everything made is acknowledged.
    """

    def __init__(
        self, port: int, rate: float, make: Callable[[], Msg], ledger: Ledger, name: str
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.port = port
        self.rate = rate
        self.make = make
        self.ledger = ledger
        self.client_id = f"{name}-{os.getpid()}".encode()
        self._finish = threading.Event()
        self._abort = threading.Event()
        self.produced = 0
        self.resent = 0
        self.reconnects = 0

    def finish(self) -> None:
        """Stop making messages; the thread ends once all are acknowledged."""
        self._finish.set()

    def abort(self) -> None:
        self._abort.set()

    def _connect(self) -> socket.socket:
        cid = self.client_id
        var = b"\x00\x04MQTT\x04\x02\x00\x00" + len(cid).to_bytes(2, "big") + cid
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        try:
            sock.sendall(bytes([0x10, len(var)]) + var)
            if sock.recv(4)[:1] != b"\x20":
                raise ConnectionError("no CONNACK")
        except BaseException:
            sock.close()
            raise
        return sock

    def run(self) -> None:
        sock: socket.socket | None = None
        reader = PacketReader()
        inflight: dict[int, Msg] = {}
        pending: deque[Msg] = deque()
        pid = 0
        start = time.monotonic()
        while not self._abort.is_set():
            if not self._finish.is_set():
                due = int((time.monotonic() - start) * self.rate)
                while self.produced < due:
                    pending.append(self.make())
                    self.produced += 1
            elif not pending and not inflight:
                break
            if sock is None:
                try:
                    sock = self._connect()
                except OSError:
                    time.sleep(0.2)
                    continue
                if inflight:
                    self.resent += len(inflight)
                    pending.extendleft(reversed(list(inflight.values())))
                    inflight.clear()
            try:
                out: list[bytes] = []
                while pending and len(inflight) < 5000 and len(out) < 500:
                    msg = pending.popleft()
                    pid = pid % 65535 + 1
                    inflight[pid] = msg
                    out.append(publish_packet(msg.topic, msg.payload, pid))
                if out:
                    sock.sendall(b"".join(out))
                ready, _, _ = select.select([sock], [], [], 0.005)
                if ready:
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError("broker closed the connection")
                    for first, body in reader.feed(data):
                        if first >> 4 == PUBACK:
                            acked = inflight.pop(int.from_bytes(body[:2], "big"), None)
                            if acked is not None:
                                self.ledger.ack(acked)
            except OSError:
                with contextlib.suppress(OSError):
                    sock.close()
                sock = None
                reader = PacketReader()
                self.reconnects += 1
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.sendall(b"\xe0\x00")
                sock.close()


class DeadLetters:
    """Collects the dead letters on ``citywatch/+/deadletter`` (persistent session, QoS 1)."""

    def __init__(self, port: int, client_id: str, ledger: Ledger) -> None:
        self.ledger = ledger
        self._lock = threading.Lock()
        self.letters = 0
        self.by_reason: Counter[str] = Counter()
        self.fixes: set[int] = set()
        self.unidentified = 0
        self._seen: set[tuple[int, int]] = set()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
        )
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self._subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("dead-letter subscription timed out")

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe("citywatch/+/deadletter", qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            letter = orjson.loads(msg.payload)
        except orjson.JSONDecodeError:
            return
        seq = first_seq(str(letter.get("payload", "")).encode())
        origin = self.ledger.message_of(seq) if seq is not None else None
        with self._lock:
            self.letters += 1
            if origin is None:
                # No fix id in the letter (e.g. a payload left out): counted, not matched.
                self.by_reason[str(letter.get("reason"))] += 1
                self.unidentified += int(letter.get("rejected", 1))
                return
            index = letter.get("index")
            key = (origin.seq, -1 if index is None else int(index))
            if key in self._seen:
                return
            self._seen.add(key)
            self.by_reason[str(letter.get("reason"))] += 1
            if index is None:
                self.fixes.update(range(origin.seq, origin.seq + origin.n))
                return
            named = {int(e["index"]) for e in letter.get("elements", [])} or {int(index)}
            self.fixes.update(origin.seq + i for i in named)
            self.unidentified += max(0, int(letter.get("rejected", 1)) - len(named))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- the servers, the service and its supervisor ----------------------------------------------


class TunedInflux(Influx):
    """InfluxDB with extra keys in its ``[data]`` and ``[http]`` sections."""

    def __init__(self, workdir: Path, data: dict[str, str], http: dict[str, str]) -> None:
        super().__init__(workdir)
        self.data_keys = data
        self.http_keys = http

    def _write_config(self) -> list[str]:
        argv = super()._write_config()
        text = self.conf_path.read_text()
        for section, keys in (("[data]\n", self.data_keys), ("[http]\n", self.http_keys)):
            lines = "".join(f"  {k} = {v}\n" for k, v in keys.items())
            text = text.replace(section, section + lines)
        self.conf_path.write_text(text)
        return argv


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """Status and body; 0 when nothing answers."""
    try:
        with _HTTP.open(url, timeout=timeout) as resp:
            return int(resp.status), bytes(resp.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except OSError:
        return 0, b""


def scrape(port: int) -> dict[str, float]:
    """``/metrics`` as series -> value; empty when the service does not answer."""
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    if status != 200:
        return {}
    out: dict[str, float] = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def msum(metrics: dict[str, float], name: str, label: str = "") -> float:
    """Sum of the series of ``name`` whose labels contain ``label``."""
    return sum(
        v for k, v in metrics.items() if (k == name or k.startswith(name + "{")) and label in k
    )


class ServiceProc:
    """``citywatch run`` as a subprocess, restarted 1 s after it exits by itself."""

    def __init__(self, workdir: Path, env: dict[str, str], config: Path) -> None:
        self.workdir = workdir
        self.env = env
        self.config = config
        self.api_port = int(env["CITYWATCH_API_ADDR"].rsplit(":", 1)[1])
        self.log_path = workdir / "service.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.exits: list[int] = []
        self.supervise = True
        self._lock = threading.RLock()
        self._closed = False
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._thread.start()

    def start(self, extra: Sequence[str] = ()) -> None:
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                raise RuntimeError("service already running")
            cmd = [sys.executable, "-m", "citywatch", "run", "-c", str(self.config), *extra]
            with self.log_path.open("ab") as log:
                log.write(f"---- {time.strftime('%H:%M:%S')} {' '.join(cmd[1:])}\n".encode())
                log.flush()
                self.proc = subprocess.Popen(cmd, env=self.env, cwd=ROOT, stdout=log, stderr=log)

    def _watch(self) -> None:
        while not self._closed:
            time.sleep(0.1)
            with self._lock:
                proc = self.proc
                if proc is None or proc.poll() is None or not self.supervise:
                    continue
                self.exits.append(int(proc.returncode))
                self.proc = None
            time.sleep(1.0)
            with self._lock:
                if self.proc is None and self.supervise and not self._closed:
                    self.start()

    @property
    def running(self) -> bool:
        with self._lock:
            return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: signal.Signals) -> float:
        """Send ``sig`` and wait for the exit (killing after 60 s); returns seconds taken."""
        with self._lock:
            proc = self.proc
            self.proc = None
        if proc is None or proc.poll() is not None:
            return 0.0
        t0 = time.monotonic()
        proc.send_signal(sig)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return time.monotonic() - t0

    def wait_healthy(self, timeout: float = 30.0) -> bool:
        """Until ``/readyz`` answers (200 or 503: the process serves); False if it exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, _ = http_get(f"http://127.0.0.1:{self.api_port}/healthz", 1)
            if status == 200:
                return True
            time.sleep(0.1)
        return False

    def wait_connected(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if msum(scrape(self.api_port), "citywatch_mqtt_connected") >= 1:
                return True
            time.sleep(0.1)
        return False

    def run_once(self, extra: Sequence[str], timeout: float) -> int | None:
        """Start unsupervised; the exit code if it exits within ``timeout``, else None (up)."""
        with self._lock:
            self.supervise = False
        self.start(extra)
        deadline = time.monotonic() + timeout
        proc = self.proc
        assert proc is not None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                with self._lock:
                    self.proc = None
                return int(proc.returncode)
            if http_get(f"http://127.0.0.1:{self.api_port}/healthz", 1)[0] == 200:
                break
            time.sleep(0.1)
        with self._lock:
            self.supervise = True
        return None

    def log_lines(self, since: int = 0) -> list[str]:
        try:
            return self.log_path.read_text(errors="replace").splitlines()[since:]
        except FileNotFoundError:
            return []

    def close(self) -> None:
        self._closed = True
        self.signal(signal.SIGTERM)


# -- one row ------------------------------------------------------------------------------


@dataclass
class RowResult:
    """What a row measured."""

    name: str
    fault: str
    sent: int = 0
    stored: int = 0
    deadlettered: dict[str, int] = field(default_factory=dict)
    dead_fixes: int = 0
    refused_counted: int = 0
    lost: int = 0
    redelivered: int = 0
    dup_flagged: int = 0
    alive: str = ""
    recovery_s: float | None = None
    seconds: float = 0.0
    checks: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def passed(self) -> bool:
        return (
            self.error is None
            and self.lost == 0
            and self.alive.startswith("yes")
            and self.recovery_s is not None
            and all(self.checks.values())
        )


class Rig:
    """Broker, InfluxDB, proxy, dead-letter watch and the service for one row."""

    def __init__(
        self,
        args: argparse.Namespace,
        name: str,
        work: Path,
        influx_data: dict[str, str] | None = None,
        influx_http: dict[str, str] | None = None,
        service_cfg: dict[str, Any] | None = None,
    ) -> None:
        self.args = args
        self.name = name
        self.dir = work / name
        self.dir.mkdir(parents=True)
        self.data_dir = self.dir / "var"
        self.spool_dir = self.data_dir / "spool"
        self.db = "faults"
        self.client_id = f"cw-faults-{name}"
        self.ledger = Ledger()
        self.mounted = False
        self._stack = contextlib.ExitStack()
        self.mq = Mosquitto(self.dir / "mq")
        self.influx = TunedInflux(self.dir / "influx", influx_data or {}, influx_http or {})
        cfg: dict[str, Any] = {
            "mqtt": {"client_id": self.client_id, "reconnect_max": args.retry_max},
            "influx": {"retry_max": args.retry_max},
        }
        for section, values in (service_cfg or {}).items():
            cfg.setdefault(section, {}).update(values)
        self.config = self.dir / "citywatch.yaml"
        self.config.write_text(json.dumps(cfg, indent=2))  # JSON is YAML
        self.publishers: list[PacedPublisher] = []
        self.tap: MqttTap
        self.dead: DeadLetters
        self.svc: ServiceProc

    def __enter__(self) -> Rig:
        self._stack.__enter__()
        self.mq.start()
        self._stack.callback(self.mq.stop)
        self.influx.start()
        self._stack.callback(self.influx.stop)
        self.influx.create_db(self.db)
        self.tap = self._stack.enter_context(MqttTap(self.mq.port))
        self.dead = DeadLetters(self.mq.port, f"faults-dl-{self.name}", self.ledger)
        self._stack.callback(self.dead.close)
        env = service_env(self.tap.url, self.influx.url, self.db, free_port(), self.data_dir)
        env["PYTHONPATH"] = str(ROOT)
        self.svc = ServiceProc(self.dir, env, self.config)
        self._stack.callback(self.svc.close)
        self._stack.callback(self._stop_publishers)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.__exit__(None, None, None)
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.spool_dir)], check=False)

    # -- helpers used by the rows --

    def mount_spool(self, size: str) -> bool:
        """Put the spool folder on a tmpfs of ``size``; False if mounting is not allowed."""
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(self.spool_dir)],
            capture_output=True,
            check=False,
        )
        self.mounted = done.returncode == 0
        return self.mounted

    def remount(self, mode: str) -> bool:
        done = subprocess.run(
            ["mount", "-o", f"remount,{mode}", str(self.spool_dir)],
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def start_service(self, extra: Sequence[str] = ()) -> None:
        self.svc.start(extra)
        if not (self.svc.wait_healthy(30) and self.svc.wait_connected(30)):
            raise RuntimeError("service did not come up:\n" + "\n".join(self.svc.log_lines()[-20:]))

    def load(
        self,
        rate: float | None = None,
        devices: Sequence[str] | None = None,
        flood: bool = False,
        name: str = "pub",
    ) -> PacedPublisher:
        """Start publishing one fix per message at ``rate``, cycling through ``devices``."""
        names = list(devices or [f"dev-{d:05d}" for d in range(self.args.devices)])
        counter = iter(range(10**12))

        def make() -> Msg:
            i = next(counter)
            return self.ledger.make(names[i % len(names)], i % len(names), flood=flood)

        pub = PacedPublisher(self.mq.port, rate or self.args.rate, make, self.ledger, name)
        pub.start()
        self.publishers.append(pub)
        return pub

    def finish_load(self, timeout: float = 120.0) -> None:
        for pub in self.publishers:
            pub.finish()
        deadline = time.monotonic() + timeout
        for pub in self.publishers:
            pub.join(max(0.0, deadline - time.monotonic()))
            if pub.is_alive():
                pub.abort()
                raise RuntimeError(f"{pub.name}: broker did not acknowledge every message")

    def _stop_publishers(self) -> None:
        for pub in self.publishers:
            pub.abort()

    def count_stored(self, below: int, where: str = "") -> int:
        q = f"SELECT count(seq) FROM gps WHERE seq < {below}" + (f" AND {where}" if where else "")
        try:
            data = self.influx.query(q, self.db)
        except Exception:
            return -1
        rows = [
            r for res in data.get("results", []) for s in res.get("series", []) for r in s["values"]
        ]
        return int(rows[0][1]) if rows else 0

    def stored_seqs(self) -> set[int]:
        """Every ``seq`` in the ``gps`` measurement (a chunked query, in pages)."""
        params = {
            "q": "SELECT seq FROM gps",
            "db": self.db,
            "chunked": "true",
            "chunk_size": "50000",
        }
        url = f"{self.influx.url}/query?{urllib.parse.urlencode(params)}"
        out: set[int] = set()
        with _HTTP.open(url, timeout=300) as resp:
            for line in resp:
                if not line.strip():
                    continue
                for res in orjson.loads(line).get("results", []):
                    if res.get("error"):
                        raise RuntimeError(res["error"])
                    for series in res.get("series", []):
                        out.update(int(v[1]) for v in series["values"] if v[1] is not None)
        return out

    def caught_up(
        self, since: float, below: int, where: str = "", flood: bool | None = None
    ) -> float | None:
        """Seconds from ``since`` until ready, spool empty and every sent fix below ``below``
        stored or dead-lettered; None after the recovery timeout or a 10 s stall."""
        deadline = since + self.args.recovery_timeout
        last = (-2, time.monotonic())
        while time.monotonic() < deadline:
            port = self.svc.api_port
            ready = http_get(f"http://127.0.0.1:{port}/readyz")[0] == 200
            spool = msum(scrape(port), "citywatch_spool_segments") if ready else -1
            stored = self.count_stored(below, where)
            target = len(self.ledger.sent(flood, below, made=True) - self.dead.fixes)
            now = time.monotonic()
            if self.args.verbose:
                print(
                    f"  {now - since:6.1f}s ready={ready} spool={spool} {stored}/{target}",
                    file=sys.stderr,
                )
            if ready and spool == 0 and stored >= target:
                return now - since
            if stored != last[0]:
                last = (stored, now)
            elif ready and spool == 0 and now - last[1] > STALL_S:
                return None
            time.sleep(0.25)
        return None

    def recovery(
        self, since: float, below: int, where: str = "", flood: bool | None = None
    ) -> Callable[[], float | None]:
        """Watch :meth:`caught_up` in a thread while the load goes on; call the result to
        wait for it."""
        out: list[float | None] = [None]

        def watch() -> None:
            out[0] = self.caught_up(since, below, where, flood)

        thread = threading.Thread(target=watch, name="recovery", daemon=True)
        thread.start()

        def result() -> float | None:
            thread.join()
            return out[0]

        return result

    def account(self, res: RowResult) -> set[int]:
        """Fill the counts of ``res``; returns the ids of every fix in InfluxDB."""
        self.caught_up(time.monotonic(), self.ledger.next_seq)
        metrics = scrape(self.svc.api_port)
        sent = self.ledger.sent()
        stored_all = self.stored_seqs()
        stored = sent & stored_all
        missing = sent - stored
        dead = missing & self.dead.fixes
        res.sent = len(sent)
        res.stored = len(stored)
        res.dead_fixes = len(dead)
        res.deadlettered = dict(self.dead.by_reason)
        res.refused_counted = int(msum(metrics, "citywatch_ingest_deadletters_suppressed_total"))
        res.lost = max(0, len(missing - dead) - self.dead.unidentified - res.refused_counted)
        res.redelivered = self.tap.redelivered
        if stored_all - sent:
            res.notes.append(f"{len(stored_all - sent)} stored fixes were never acknowledged")
        dropped = msum(metrics, "citywatch_write_points_total", 'outcome="dropped"')
        if dropped:
            res.notes.append(f"service counted {dropped:.0f} points dropped (refused by InfluxDB)")
        full = msum(metrics, "citywatch_spool_full_total")
        if full:
            res.notes.append(f"spool refused {full:.0f} batches (full or unwritable)")
        res.dup_flagged = self.tap.dup_flagged
        resent = sum(p.resent for p in self.publishers)
        if resent:
            res.notes.append(f"publishers sent {resent} messages again after a broker failure")
        if res.lost:
            sample = sorted(missing - dead)[:5]
            res.notes.append(f"missing fix ids (first): {sample}")
        healthy = http_get(f"http://127.0.0.1:{self.svc.api_port}/healthz")[0] == 200
        res.alive = "yes" if self.svc.running and healthy else "no"
        if self.svc.exits:
            res.alive += f" (exited by itself: {', '.join(map(str, self.svc.exits))}; restarted)"
        return stored_all


class Timeline:
    """Sleeps until a number of seconds after the start of the row's load."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def at(self, t: float) -> None:
        time.sleep(max(0.0, self.start + t - time.monotonic()))


# -- the rows ---------------------------------------------------------------------------------


def _recover_until(rig: Rig, res: RowResult, tl: Timeline, end: float) -> None:
    """From now on time the recovery; load on to ``end`` s; then account for the row."""
    recovered = rig.recovery(time.monotonic(), rig.ledger.next_seq)
    tl.at(end)
    rig.finish_load()
    res.recovery_s = recovered()
    rig.account(res)


def _outage_row(rig: Rig, res: RowResult, down: Callable[[], None], up: Callable[[], None]) -> None:
    """Load; at 4 s ``down()``; ``--outage`` s later ``up()``; load on to the end."""
    args = rig.args
    rig.start_service()
    rig.load()
    tl = Timeline()
    tl.at(4)
    down()
    tl.at(4 + args.outage)
    up()
    _recover_until(rig, res, tl, max(args.seconds, 4 + args.outage + 5))


def row_influx_kill(rig: Rig, res: RowResult) -> None:
    _outage_row(rig, res, rig.influx.kill, rig.influx.start)


def _broker_row(rig: Rig, res: RowResult, stop: Callable[[], None], saved: bool) -> None:
    args = rig.args
    rig.start_service()
    if saved and rig.mq.pid is not None:
        # A broker that has run a while has saved the service's session (autosave, 30 s);
        # one killed before its first save forgets the session and what it queued.
        os.kill(rig.mq.pid, signal.SIGUSR1)
        time.sleep(0.5)
        res.notes.append("broker database saved (SIGUSR1) after the service subscribed")
    rig.load()
    tl = Timeline()
    tl.at(6)
    stop()
    time.sleep(args.broker_down)
    rig.mq.start()
    _recover_until(rig, res, tl, max(args.seconds, 6 + args.broker_down + 5))


def row_broker_term(rig: Rig, res: RowResult) -> None:
    _broker_row(rig, res, rig.mq.stop, saved=False)


def row_broker_kill(rig: Rig, res: RowResult) -> None:
    _broker_row(rig, res, rig.mq.kill, saved=not rig.args.no_save)


def row_service_kill(rig: Rig, res: RowResult) -> None:
    args = rig.args
    rig.start_service()
    rig.load()
    tl = Timeline()
    span = max(args.seconds, 20) - 5
    for k in range(3):
        tl.at(4 + k * span / 3)
        rig.svc.signal(signal.SIGKILL)
        time.sleep(1.0)
        rig.start_service()
    _recover_until(rig, res, tl, max(args.seconds, 20))


def row_spool_full(rig: Rig, res: RowResult) -> None:
    if not rig.mount_spool("320k"):
        res.notes.append("could not mount a tmpfs: spool.max_bytes 320KiB instead")
        cfg = json.loads(rig.config.read_text())
        cfg["spool"] = {"max_bytes": "320KiB"}
        rig.config.write_text(json.dumps(cfg))
    _outage_row(rig, res, rig.influx.kill, rig.influx.start)


def row_spool_unwritable(rig: Rig, res: RowResult) -> None:
    if not rig.mount_spool("64m"):
        raise RuntimeError("cannot mount a tmpfs (needs root): a read-only spool cannot be made")

    def down() -> None:
        rig.influx.kill()
        if not rig.remount("ro"):
            raise RuntimeError("remount read-only failed")

    def up() -> None:
        rig.remount("rw")
        rig.influx.start()

    _outage_row(rig, res, down, up)


def _state_row(rig: Rig, res: RowResult, damage: Callable[[Path], None]) -> None:
    args = rig.args
    rig.start_service()
    rig.load()
    tl = Timeline()
    tl.at(6)
    rig.svc.signal(signal.SIGTERM)
    stores = [rig.data_dir / "cases.sqlite", rig.data_dir / "alerts.sqlite"]
    for path in stores:
        if not path.exists():
            res.notes.append(f"{path.name} did not exist")
            continue
        damage(path)
        for extra in ("-wal", "-shm"):
            Path(f"{path}{extra}").unlink(missing_ok=True)
    tl.at(8)
    mark = len(rig.svc.log_lines())
    code = rig.svc.run_once([], 30)
    said = [
        line
        for line in rig.svc.log_lines(mark)
        if any(p.name in line for p in stores) and not line.startswith("----")
    ]
    if code is None:
        res.checks["did not start over the damaged stores"] = False
        res.notes.append("started over the damaged stores without refusing")
    else:
        distinct = code not in (0, 1, 2)
        res.checks["did not start over the damaged stores"] = True
        res.checks["distinct exit code"] = distinct
        res.checks["message names the store"] = bool(said)
        said = said or [ln for ln in rig.svc.log_lines(mark) if ln.strip()][-1:]
        msg = f"refused: exit {code}"
        if said:
            msg += f', "{said[-1].strip()[:160]}"'
        res.notes.append(msg)
        mark = len(rig.svc.log_lines())
        code2 = rig.svc.run_once(["--reset-state"], 30)
        if code2 is None:
            res.checks["started with --reset-state"] = True
            res.notes.append("started with --reset-state")
        else:
            res.checks["started with --reset-state"] = False
            tail = [ln for ln in rig.svc.log_lines(mark) if ln.strip()][-1:]
            res.notes.append(
                f"--reset-state: exit {code2} ({tail[0].strip()[:120] if tail else ''}); "
                "damaged stores moved aside by hand"
            )
            for path in stores:
                if path.exists():
                    path.rename(path.with_suffix(".damaged"))
            if rig.svc.run_once([], 30) is not None:
                raise RuntimeError("service does not start even with the stores moved aside")
    rig.svc.supervise = True
    if not rig.svc.wait_connected(30):
        raise RuntimeError("service did not connect after the restart")
    _recover_until(rig, res, tl, max(args.seconds, 20))


def _corrupt(path: Path) -> None:
    with path.open("r+b") as fh:
        fh.write(b"\xde\xad\xbe\xef" * 32)


def _truncate(path: Path) -> None:
    path.write_bytes(b"")


def row_state_corrupt(rig: Rig, res: RowResult) -> None:
    _state_row(rig, res, _corrupt)


def row_state_empty(rig: Rig, res: RowResult) -> None:
    _state_row(rig, res, _truncate)


def _shift_starts(devices: Sequence[str], t0: float) -> list[tuple[str, bytes]]:
    return [
        (
            f"citywatch/{CITY}/officers/off-{d}/shift",
            orjson.dumps(
                {
                    "ts": round(t0 - 60, 3),
                    "action": "start",
                    "device": d,
                    "grids": [GRID],
                    "lead": "lead-01",
                    "role": "inspector",
                }
            ),
        )
        for d in devices
    ]


def _has_key(rig: Rig, section: str, values: dict[str, Any]) -> bool:
    """Whether the code under test accepts ``section`` (config keys added by a fix)."""
    probe = rig.dir / "probe.yaml"
    probe.write_text(json.dumps({section: values}))
    done = subprocess.run(
        [sys.executable, "-m", "citywatch", "check-config", "-c", str(probe)],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


def row_device_flood(rig: Rig, res: RowResult) -> None:
    args = rig.args
    if _has_key(rig, "devices", {"max_unknown": args.max_unknown}):
        cfg = json.loads(rig.config.read_text())
        cfg["devices"] = {"max_unknown": args.max_unknown}
        rig.config.write_text(json.dumps(cfg))
        res.notes.append(f"devices.max_unknown: {args.max_unknown}")
    else:
        res.notes.append("no devices.max_unknown key in this code")
    legit = [f"dev-{d:05d}" for d in range(args.devices)]
    fresh = [f"dev-new-{d:04d}" for d in range(args.new_devices)]
    rig.start_service()
    publish_backlog(rig.mq.port, _shift_starts(legit, rig.ledger.t0))
    rig.load(devices=legit, name="legit")
    tl = Timeline()
    tl.at(3)
    flood_ids = [f"fl-{d:06d}" for d in range(args.flood_devices)]
    flood = rig.load(
        rate=args.flood_devices / args.flood_seconds, devices=flood_ids, flood=True, name="flood"
    )
    tl.at(3 + args.flood_seconds)
    flood.finish()
    publish_backlog(rig.mq.port, _shift_starts(fresh, rig.ledger.t0))
    rig.load(rate=max(1.0, len(fresh) * 2.0), devices=fresh, name="fresh")
    recovered = rig.recovery(
        time.monotonic(), rig.ledger.next_seq, where="device !~ /^fl-/", flood=False
    )
    tl.at(max(args.seconds, 3 + args.flood_seconds + 10))
    rig.finish_load()
    res.recovery_s = recovered()
    stored = rig.account(res)
    legit_sent = rig.ledger.sent(flood=False)
    flood_sent = rig.ledger.sent(flood=True)
    legit_missing = legit_sent - stored - rig.dead.fixes
    fresh_sent = {
        s for s in legit_sent if (m := rig.ledger.message_of(s)) and "/dev-new-" in m.topic
    }
    res.checks["every legitimate fix stored"] = not (legit_sent - stored)
    res.notes.append(
        f"legitimate: {len(legit_sent & stored)} of {len(legit_sent)} stored "
        f"(new handhelds after the flood: {len(fresh_sent & stored)} of {len(fresh_sent)}), "
        f"{len(legit_missing)} neither stored nor dead-lettered"
    )
    fl_stored = len(flood_sent & stored)
    fl_dead = len((flood_sent - stored) & rig.dead.fixes)
    res.notes.append(
        f"flood: {len(flood_sent)} fixes from {args.flood_devices} ids: {fl_stored} stored, "
        f"{fl_dead} dead-lettered, {res.refused_counted} refused and counted only"
    )


def _backlog_row(rig: Rig, res: RowResult) -> None:
    args = rig.args
    register_session(rig.mq.port, rig.client_id)
    msgs = [
        rig.ledger.make(f"dev-{u % args.devices:05d}", u % args.devices, n=300)
        for u in range(args.backlog_uploads)
    ]
    t0 = time.monotonic()
    publish_backlog(rig.mq.port, [(m.topic, m.payload) for m in msgs])
    for m in msgs:
        rig.ledger.ack(m)
    size = sum(len(m.payload) for m in msgs)
    res.notes.append(
        f"backlog of {len(msgs)} uploads ({size / 2**20:.0f} MiB) queued in "
        f"{time.monotonic() - t0:.1f} s; InfluxDB max-body-size {args.max_body}"
    )
    start = time.monotonic()
    rig.start_service()
    res.recovery_s = rig.caught_up(start, rig.ledger.next_seq)
    rig.account(res)


row_backlog_gzip = _backlog_row
row_backlog_plain = _backlog_row


def row_sigterm(rig: Rig, res: RowResult) -> None:
    args = rig.args
    rig.start_service()
    rig.load()
    tl = Timeline()
    tl.at(8)
    took = rig.svc.signal(signal.SIGTERM)
    before = list(rig.tap.connections)
    unacked = {m for c in before for m in c.unacked_at_close}
    delivered_before = rig.tap.delivered_before(before)
    acked = set(rig.tap.acked)
    stored_at_exit = rig.stored_seqs()
    acked_fixes: set[int] = set()
    for seq in acked:
        m = rig.ledger.msgs.get(seq)
        if m is not None:
            acked_fixes.update(range(m.seq, m.seq + m.n))
    not_stored = acked_fixes - stored_at_exit
    time.sleep(1.0)
    rig.start_service()
    _recover_until(rig, res, tl, max(args.seconds, 20))
    after = [c for c in rig.tap.connections if c not in before]
    again = rig.tap.delivered_before(after) & delivered_before
    res.checks["exit under 5 s"] = took < 5.0
    res.checks["every acknowledged message stored at exit"] = not not_stored
    res.checks["redelivered exactly the unacknowledged"] = again == unacked
    res.notes.append(
        f"exit took {took:.2f} s; {len(acked)} messages acknowledged before it, "
        f"{len(not_stored)} of them not in InfluxDB at exit; {len(unacked)} received and "
        f"not acknowledged; redelivered after the restart: {len(again)} "
        f"({len(again & unacked)} of the unacknowledged, {len(again - unacked)} others)"
    )


@dataclass(frozen=True)
class Row:
    name: str
    fault: str
    run: Callable[[Rig, RowResult], None]
    influx_data: dict[str, str] = field(default_factory=dict)
    influx_http: dict[str, str] = field(default_factory=dict)
    service_cfg: dict[str, Any] = field(default_factory=dict)


def rows(args: argparse.Namespace) -> list[Row]:
    body = {"max-body-size": str(args.max_body)}
    return [
        Row("influx-kill", f"InfluxDB SIGKILL, down {args.outage:g} s", row_influx_kill),
        Row("broker-term", f"Mosquitto SIGTERM, down {args.broker_down:g} s", row_broker_term),
        Row("broker-kill", f"Mosquitto SIGKILL, down {args.broker_down:g} s", row_broker_kill),
        Row("service-kill", "service SIGKILL ×3, restarted after 1 s", row_service_kill),
        Row(
            "spool-full",
            f"spool on a 320 KiB disk, InfluxDB down {args.outage:g} s",
            row_spool_full,
        ),
        Row(
            "spool-unwritable",
            f"spool read-only and InfluxDB down {args.outage:g} s",
            row_spool_unwritable,
        ),
        Row("state-corrupt", "cases/alerts.sqlite header overwritten", row_state_corrupt),
        Row("state-empty", "cases/alerts.sqlite truncated to 0 bytes", row_state_empty),
        Row(
            "device-flood",
            f"{args.flood_devices:,} made-up device ids, max-values-per-tag "
            f"{args.max_tag_values:,}",
            row_device_flood,
            influx_data={"max-values-per-tag": str(args.max_tag_values)},
        ),
        Row(
            "backlog-gzip",
            f"backlog {args.backlog_uploads:,} × 300 fixes, gzip on",
            row_backlog_gzip,
            influx_http=body,
            service_cfg={"influx": {"gzip": True}},
        ),
        Row(
            "backlog-plain",
            f"backlog {args.backlog_uploads:,} × 300 fixes, gzip off",
            row_backlog_plain,
            influx_http=body,
            service_cfg={"influx": {"gzip": False}},
        ),
        Row("sigterm", "service SIGTERM under load, restarted", row_sigterm),
    ]


def run_row(args: argparse.Namespace, row: Row, work: Path) -> RowResult:
    res = RowResult(row.name, row.fault)
    t0 = time.monotonic()
    try:
        with Rig(args, row.name, work, row.influx_data, row.influx_http, row.service_cfg) as rig:
            try:
                row.run(rig, res)
            except Exception as exc:
                res.error = f"{type(exc).__name__}: {exc}"
                traceback.print_exc(file=sys.stderr)
                with contextlib.suppress(Exception):
                    rig.finish_load(10)
                with contextlib.suppress(Exception):
                    rig.account(res)
    except Exception as exc:
        res.error = res.error or f"{type(exc).__name__}: {exc}"
        traceback.print_exc(file=sys.stderr)
    res.seconds = time.monotonic() - t0
    return res


# -- output -----------------------------------------------------------------------------------


def _n(v: int) -> str:
    return f"{v:,}"


def table(results: Sequence[RowResult]) -> str:
    head = (
        "| Row | Fault | Sent | Stored | Dead-lettered | Lost | Redelivered | Alive "
        "| Recovery | Took | Result |\n"
        "|---|---|---:|---:|---|---:|---:|---|---:|---:|---|"
    )
    lines = [head]
    for r in results:
        dead = _n(r.dead_fixes)
        if r.deadlettered:
            dead += " (" + ", ".join(f"{k} {_n(v)}" for k, v in sorted(r.deadlettered.items()))
            dead += " letters)"
        if r.refused_counted:
            dead += f" + {_n(r.refused_counted)} refused, counted"
        rec = "—" if r.recovery_s is None else f"{r.recovery_s:.1f} s"
        result = "PASS" if r.passed else "**FAIL**"
        lines.append(
            f"| `{r.name}` | {r.fault} | {_n(r.sent)} | {_n(r.stored)} | {dead} | "
            f"{_n(r.lost)} | {_n(r.redelivered)} | {r.alive or '—'} | {rec} | "
            f"{r.seconds:.0f} s | {result} |"
        )
    notes = []
    for r in results:
        items = list(r.notes)
        failed = [k for k, ok in r.checks.items() if not ok]
        if failed:
            items.insert(0, "failed checks: " + "; ".join(failed))
        if r.error:
            items.insert(0, f"error: {r.error}")
        if items:
            notes.append(f"- `{r.name}`: " + "; ".join(items) + ".")
    return "\n".join(lines) + ("\n\n" + "\n".join(notes) if notes else "")


def main(argv: Sequence[str] | None = None) -> int:
    ap = parser(__doc__)
    ap.add_argument("--rate", type=float, default=2000, help="fixes a second (default 2000)")
    ap.add_argument("--devices", type=int, default=500, help="handhelds (default 500)")
    ap.add_argument("--seconds", type=float, default=25, help="load per row (default 25)")
    ap.add_argument("--outage", type=float, default=15, help="InfluxDB down, s (default 15)")
    ap.add_argument("--broker-down", type=float, default=3, help="broker down, s (default 3)")
    ap.add_argument("--retry-max", default="2s", help="mqtt.reconnect_max, influx.retry_max")
    ap.add_argument("--flood-devices", type=int, default=5000)
    ap.add_argument("--flood-seconds", type=float, default=10)
    ap.add_argument("--new-devices", type=int, default=100)
    ap.add_argument("--max-tag-values", type=int, default=2000)
    ap.add_argument("--max-unknown", type=int, default=1000)
    ap.add_argument("--backlog-uploads", type=int, default=1000)
    ap.add_argument("--max-body", type=int, default=1048576, help="InfluxDB max-body-size")
    ap.add_argument("--recovery-timeout", type=float, default=90)
    ap.add_argument(
        "--no-save", action="store_true", help="broker-kill: no save of the broker's database"
    )
    ap.add_argument("--only", help="comma-separated row names")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    ap.add_argument("--verbose", action="store_true", help="print the recovery polls")
    args = ap.parse_args(argv)

    selected = rows(args)
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = set(wanted) - {r.name for r in selected}
        if unknown:
            ap.error(f"unknown rows {sorted(unknown)}; known: {[r.name for r in selected]}")
        selected = [r for r in selected if r.name in wanted]

    work = Path(tempfile.mkdtemp(prefix="cw-faults-"))
    results: list[RowResult] = []
    try:
        for row in selected:
            print(f"{time.strftime('%H:%M:%S')} {row.name}: {row.fault}", file=sys.stderr)
            res = run_row(args, row, work)
            results.append(res)
            print(
                f"  {'PASS' if res.passed else 'FAIL'} in {res.seconds:.0f} s: sent {res.sent}, "
                f"stored {res.stored}, lost {res.lost}, {res.error or ''}",
                file=sys.stderr,
                flush=True,
            )
    finally:
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(table(results))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {k: str(v) for k, v in vars(args).items()},
                    "rows": [{**r.__dict__, "passed": r.passed} for r in results],
                },
                indent=2,
            )
        )
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
