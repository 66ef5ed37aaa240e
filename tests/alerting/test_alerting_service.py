"""The whole service: a rule's condition over MQTT becomes a push to the right receiver.

Also the crash test: the service is killed (SIGKILL) after an alert fired but
before its notification was delivered; after the restart it is delivered once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from citywatch.sqlite import read_manifest
from tests.helpers import (
    FAST_OFFLINE,
    Listener,
    Publisher,
    ServiceProcess,
    await_until,
    connected,
    settings_for,
    shift_start,
    wait_until,
)
from tests.services import Influx, Mosquitto, free_port

CITY = "321200"


async def test_offline_handheld_is_pushed_to_the_patrol_lead_and_resolved(
    mosquitto: Mosquitto, influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    settings = settings_for(
        mosquitto.url, influx.url, influx_db, tmp_path / "var", patrols=FAST_OFFLINE
    )
    with Listener(mosquitto.port, f"citywatch/{CITY}/alerts/#") as listener:
        async with connected(settings, ["collector", "rules"], push=True) as svc:
            with Publisher(mosquitto.port) as pub:
                pub.send_all(
                    [(f"citywatch/{CITY}/officers/off-3/shift", shift_start("dev-3", "lead-9"))]
                )
                # Nothing from the handheld: offline after 1 s, pushed to lead-9.
                await await_until(lambda: len(listener.messages) >= 1, what="push")
                topic, raw = listener.messages[0]
                doc = orjson.loads(raw)
                assert topic == f"citywatch/{CITY}/alerts/lead-9"
                assert doc["rule"] == "device_offline" and doc["status"] == "firing"
                assert doc["severity"] == "red" and doc["officer"] == "off-3"
                assert doc["device"] == "dev-3" and "终端离线" in doc["summary"]
                pub.send_all([(f"citywatch/{CITY}/devices/dev-3/heartbeat", {"ts": time.time()})])
                await await_until(lambda: len(listener.messages) >= 2, what="resolved push")
                doc = orjson.loads(listener.messages[1][1])
                assert doc["status"] == "resolved" and doc["alert_id"] == 1
            assert svc.alerting is not None
            await await_until(
                lambda: influx.count("alert", influx_db) >= 3, what="alert history in InfluxDB"
            )


class Hook:
    """A webhook receiver that is down (503) until told otherwise; counts what it got."""

    def __init__(self) -> None:
        self.up = False
        self.got: list[dict[str, Any]] = []
        self.attempts = 0
        self.app = web.Application()
        self.app.router.add_post("/hook", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        self.attempts += 1
        if not self.up:
            return web.Response(status=503, text="down for maintenance")
        self.got.append(await request.json())
        return web.json_response({"ok": True})

    def ids(self) -> list[str]:
        return [a["annotations"]["id"] for doc in self.got for a in doc["alerts"]]


def test_sigkill_between_firing_and_delivery_delivers_once(
    mosquitto: Mosquitto, influx: Influx, influx_db: str, tmp_path: Path
) -> None:
    hook = Hook()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(hook.app)
    loop.run_until_complete(runner.setup())
    hook_port = free_port()
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", hook_port).start())
    server = threading.Thread(target=loop.run_forever, daemon=True)
    server.start()

    config = tmp_path / "cw.yaml"
    config.write_text(
        orjson.dumps(
            {
                "mqtt": {"client_id": f"kill-{influx_db}"},
                "patrols": FAST_OFFLINE,
                "alerting": {
                    "delivery": {"backoff_initial": "200ms", "backoff_max": "500ms"},
                    "receivers": {
                        "lead-5": {
                            "mqtt": False,
                            "webhooks": [
                                {
                                    "kind": "alertmanager",
                                    "url": f"http://127.0.0.1:{hook_port}/hook",
                                }
                            ],
                        }
                    },
                },
            }
        ).decode()
    )
    svc = ServiceProcess(mosquitto, influx, influx_db, tmp_path, ["--config", str(config)])
    svc.start()
    try:
        wait_until(lambda: svc.metric("citywatch_mqtt_connected") == 1, what="service up")
        with Publisher(mosquitto.port) as pub:
            pub.send_all(
                [(f"citywatch/{CITY}/officers/off-5/shift", shift_start("dev-5", "lead-5"))]
            )
        # Fired, and the receiver refused it twice: it waits in the outbox.
        wait_until(lambda: hook.attempts >= 2, what="delivery attempts")
        svc.kill()
        assert hook.got == []
        hook.up = True
        svc.start()
        wait_until(lambda: len(hook.got) >= 1, what="delivery after the restart")
        # The handheld comes back: the resolution follows the firing, in order, once each.
        with Publisher(mosquitto.port) as pub:
            pub.send_all([(f"citywatch/{CITY}/devices/dev-5/heartbeat", {"ts": time.time()})])
        wait_until(lambda: any(i.endswith("resolve0-lead-5") for i in hook.ids()), what="resolved")
        ids = hook.ids()
        epoch = read_manifest(tmp_path / "var")["alerts.sqlite"]["epoch"]
        assert ids == [f"{epoch}-1-1-fire0-lead-5", f"{epoch}-1-1-resolve0-lead-5"], ids
    finally:
        svc.stop()
        loop.call_soon_threadsafe(loop.stop)
        server.join(5)
