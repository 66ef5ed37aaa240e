"""A silence's regular expression cannot stall the service.

The service runs as its own process, so that a stuck event loop shows as an
API that stops answering instead of a test that never returns.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from tests.helpers import FAST_OFFLINE, Publisher, ServiceProcess, shift_start, wait_until
from tests.services import Influx, Mosquitto

CITY = "321200"
TOKEN = "duty-secret-1"
OFFICER = "x" * 30
# Twelve ``x*`` then ``y``: a backtracking engine tries every way to split 30 x
# among twelve stars before it gives up (hours); RE2 answers in one pass.
PATTERN = "x*" * 12 + "y"
# A liveness bound, not a benchmark: the stuck service stayed silent for minutes.
ANSWER_WITHIN = 5.0


def call(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One API request; a request not answered within ANSWER_WITHIN fails the test."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=None if body is None else orjson.dumps(body),
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=ANSWER_WITHIN) as r:
            return r.status, orjson.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())
    except TimeoutError:
        raise AssertionError(
            f"{method} {path} got no answer within {ANSWER_WITHIN} s: the service is stuck"
        ) from None


def up(port: int) -> bool:
    try:
        return call(port, "GET", "/healthz")[0] == 200
    except (OSError, AssertionError):
        return False


def test_a_pathological_silence_pattern_does_not_stall_the_service(
    mosquitto: Mosquitto, influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    config = tmp_path / "cw.yaml"
    config.write_bytes(
        orjson.dumps(
            {
                "mqtt": {"client_id": f"silence-{influx_db}"},
                "patrols": FAST_OFFLINE,
                "api": {"tokens": [{"name": "duty-desk", "token": TOKEN, "role": "supervisor"}]},
            }
        )
    )
    svc = ServiceProcess(mosquitto, influx, influx_db, tmp_path, ["--config", str(config)])
    port = svc.port
    # Stopping kills the process if SIGTERM is not handled: a loop stuck in a match never does.
    with svc:
        wait_until(lambda: up(port), what="the service")
        status, doc = call(
            port,
            "POST",
            "/api/v1/silences",
            {
                "matchers": [{"name": "subject_id", "op": "=~", "value": PATTERN}],
                "ends_at": time.time() + 86400,
                "comment": "planned works",
            },
        )
        assert status == 201, doc
        # An officer whose handheld never reports: offline after 1 s, an alert whose
        # subject is 30 x, matched against the silence as it opens and as it is listed.
        with Publisher(mosquitto.port) as pub:
            pub.send_all(
                [
                    (
                        f"citywatch/{CITY}/officers/{OFFICER}/shift",
                        shift_start("dev-x", "lead-7"),
                    )
                ]
            )

        def the_alert() -> dict[str, Any] | None:
            items = call(port, "GET", "/api/v1/alerts")[1]["items"]
            return next((a for a in items if a["subject"]["id"] == OFFICER), None)

        wait_until(lambda: the_alert() is not None, what="the alert")
        alert = the_alert()
        assert alert is not None and alert["status"] == "firing"
        # Whole-value match, and 30 x has no y: the alert is not silenced.
        assert alert["silenced"] is False
        for _ in range(3):
            assert call(port, "GET", "/healthz") == (200, {"status": "ok"})
            time.sleep(0.2)
