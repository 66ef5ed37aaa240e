"""A local HTTP server that checks requests the way each vendor's server does.

One aiohttp app serves a WeCom robot, a DingTalk robot, a Feishu bot, an Alertmanager
webhook receiver and Grafana's annotation API. It verifies tokens and signatures
exactly as documented (recomputing the signature from the secret, refusing a timestamp
more than an hour off), checks the payload shape, records what it accepted, and answers
as the test sets ``mode``: normally, with a vendor error code, with an HTTP status, or
not at all until the test ends.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from time import time as wall_clock  # bound now: tests shift the senders' time.time
from typing import Any

from aiohttp import web

WECOM_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
DINGTALK_TOKEN = "c0ffee1234567890abcdef1234567890abcdef1234567890abcdef1234567890"
DINGTALK_SECRET = "SEC2b7e151628aed2a6abf7158809cf4f3c762e7160f38b4da56a784d9045190cfe"
FEISHU_TOKEN = "d7b3c2a1-5e6f-4a8b-9c0d-1e2f3a4b5c6d"
FEISHU_SECRET = "qL8vXv3nB1kZ9yT4wR7uPz"
GRAFANA_TOKEN = "glsa_4f1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d_0a1b2c3d"
AM_BEARER = "am-bearer-9f8e7d6c5b4a"
SECRETS = (
    WECOM_KEY,
    DINGTALK_TOKEN,
    DINGTALK_SECRET,
    FEISHU_TOKEN,
    FEISHU_SECRET,
    GRAFANA_TOKEN,
    AM_BEARER,
)
HOUR_MS = 3600 * 1000


class Refused(Exception):
    """The fake vendor refuses the request with this answer."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.text)
        self.response = response


@dataclass
class FakeVendors:
    """State of the fake server: what it accepted, and how it answers next."""

    base: str = ""
    mode: str = "ok"  # ok | errcode:<n> | status:<n> | slow | echo-url | legacy
    accepted: dict[str, list[Any]] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    next_id: int = 0
    # What the robots were set up with: signing on, and the receiver's bearer token.
    dingtalk_signed: bool = False
    feishu_signed: bool = False
    am_bearer: str | None = None

    def url(self, vendor: str) -> str:
        """The robot or API URL of ``vendor``, token included as the vendor puts it."""
        return {
            "wecom": f"{self.base}/cgi-bin/webhook/send?key={WECOM_KEY}",
            "dingtalk": f"{self.base}/robot/send?access_token={DINGTALK_TOKEN}",
            "feishu": f"{self.base}/open-apis/bot/v2/hook/{FEISHU_TOKEN}",
            "alertmanager": f"{self.base}/alertmanager/webhook",
            "grafana": self.base,
        }[vendor]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/cgi-bin/webhook/send", self._handler("wecom", _check_wecom))
        app.router.add_post("/robot/send", self._handler("dingtalk", _check_dingtalk))
        feishu = self._handler("feishu", _check_feishu)
        app.router.add_post("/open-apis/bot/v2/hook/{token}", feishu)
        app.router.add_post("/alertmanager/webhook", self._handler("alertmanager", _check_am))
        app.router.add_post("/api/annotations", self._handler("grafana", _check_grafana))
        app.router.add_post("/portal", _portal)
        return app

    def _handler(self, vendor: str, check: Callable[[FakeVendors, web.Request, Any], None]) -> Any:
        async def handle(request: web.Request) -> web.StreamResponse:
            self.arrived.set()
            if self.mode == "slow":
                await self.release.wait()
                return web.json_response({})
            if self.mode.startswith("status:"):
                return web.json_response({"error": "boom"}, status=int(self.mode[7:]))
            if self.mode.startswith("errcode:"):
                return _vendor_error(vendor, int(self.mode[8:]), "test error")
            if self.mode == "echo-url":
                return _vendor_error(vendor, 93000, f"invalid webhook url {request.url}")
            body = await request.json()
            try:
                check(self, request, body)
            except Refused as exc:
                return exc.response
            self.accepted.setdefault(vendor, []).append(body)
            return self._ok(vendor)

        return handle

    def _ok(self, vendor: str) -> web.Response:
        if vendor in ("wecom", "dingtalk"):
            return web.json_response({"errcode": 0, "errmsg": "ok"})
        if vendor == "feishu":
            if self.mode == "legacy":
                return web.json_response(
                    {"Extra": None, "StatusCode": 0, "StatusMessage": "success"}
                )
            return web.json_response({"code": 0, "data": {}, "msg": "success"})
        if vendor == "grafana":
            self.next_id += 1
            return web.json_response({"message": "Annotation added", "id": self.next_id})
        return web.Response(text="")


async def _portal(request: web.Request) -> web.Response:
    """Something that is not a robot but answers 200, such as a captive portal."""
    return web.Response(text="<html>请先登录</html>", content_type="text/html")


def _vendor_error(vendor: str, code: int, msg: str) -> web.Response:
    if vendor in ("wecom", "dingtalk"):
        return web.json_response({"errcode": code, "errmsg": msg})
    if vendor == "feishu":
        return web.json_response({"code": code, "data": {}, "msg": msg})
    return web.json_response({"message": msg}, status=400)


def _refuse(vendor: str, code: int, msg: str) -> Refused:
    return Refused(_vendor_error(vendor, code, msg))


def _check_wecom(fv: FakeVendors, request: web.Request, body: Any) -> None:
    if request.query.get("key") != WECOM_KEY:
        raise _refuse("wecom", 93000, "invalid webhook url")
    if body.get("msgtype") != "markdown" or not isinstance(body.get("markdown"), dict):
        raise _refuse("wecom", 40008, "invalid message type")
    content = body["markdown"].get("content")
    if not isinstance(content, str) or not content:
        raise _refuse("wecom", 44004, "empty content")
    if len(content.encode("utf-8")) > 4096:
        raise _refuse("wecom", 40058, "markdown.content exceed max length 4096")


def dingtalk_sign(secret: str, timestamp: str) -> str:
    """The signature as DingTalk computes it (before URL encoding)."""
    string_to_sign = f"{timestamp}\n{secret}"
    mac = hmac.new(secret.encode(), string_to_sign.encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def _check_dingtalk(fv: FakeVendors, request: web.Request, body: Any) -> None:
    if request.query.get("access_token") != DINGTALK_TOKEN:
        raise _refuse("dingtalk", 300001, "token is not exist")
    if "timestamp" in request.query or fv.dingtalk_signed:
        ts = request.query.get("timestamp", "")
        sign = request.query.get("sign", "")  # aiohttp has already URL-decoded it
        if not ts.isdigit() or abs(int(ts) - wall_clock() * 1000) > HOUR_MS:
            raise _refuse("dingtalk", 310000, "timestamp invalid")
        if not hmac.compare_digest(sign, dingtalk_sign(DINGTALK_SECRET, ts)):
            raise _refuse("dingtalk", 310000, "sign not match")
    md = body.get("markdown")
    if body.get("msgtype") != "markdown" or not isinstance(md, dict):
        raise _refuse("dingtalk", 40035, "msgtype invalid")
    if not (isinstance(md.get("title"), str) and isinstance(md.get("text"), str)):
        raise _refuse("dingtalk", 40035, "markdown title and text required")
    if not isinstance(body.get("at", {}).get("isAtAll", False), bool):
        raise _refuse("dingtalk", 40035, "isAtAll must be a boolean")


def feishu_sign(secret: str, timestamp: str) -> str:
    """The signature as Feishu computes it: the string to sign is the HMAC key."""
    key = f"{timestamp}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def _check_feishu(fv: FakeVendors, request: web.Request, body: Any) -> None:
    if request.match_info["token"] != FEISHU_TOKEN:
        raise _refuse("feishu", 19001, "param invalid: incoming webhook access token invalid")
    if "sign" in body or fv.feishu_signed:
        ts = body.get("timestamp")
        if not isinstance(ts, str) or not ts.isdigit() or abs(int(ts) - wall_clock()) > 3600:
            raise _refuse("feishu", 19021, "sign match fail or timestamp is not within one hour")
        if not hmac.compare_digest(str(body.get("sign")), feishu_sign(FEISHU_SECRET, ts)):
            raise _refuse("feishu", 19021, "sign match fail or timestamp is not within one hour")
    if body.get("msg_type") != "interactive":
        raise _refuse("feishu", 19002, "params error, msg_type need")
    card = body.get("card")
    if not isinstance(card, dict) or not isinstance(card.get("elements"), list):
        raise _refuse("feishu", 9499, "Bad Request")
    if (request.content_length or 0) > 20 * 1024:
        raise _refuse("feishu", 9499, "request body too large")


def _parse_rfc3339(value: Any) -> datetime.datetime:
    assert isinstance(value, str) and value.endswith("Z"), value
    return datetime.datetime.fromisoformat(value[:-1] + "+00:00")


def _check_am(fv: FakeVendors, request: web.Request, body: Any) -> None:
    expected = fv.am_bearer
    if expected and request.headers.get("Authorization") != f"Bearer {expected}":
        raise Refused(web.json_response({"message": "unauthorized"}, status=401))
    keys = {
        "version",
        "groupKey",
        "truncatedAlerts",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    }
    if set(body) != keys or body["version"] != "4" or body["status"] not in ("firing", "resolved"):
        raise Refused(web.json_response({"message": "bad payload"}, status=400))
    for a in body["alerts"]:
        alert_keys = {"status", "labels", "annotations", "startsAt", "endsAt"}
        alert_keys |= {"generatorURL", "fingerprint"}
        if set(a) != alert_keys or a["status"] not in ("firing", "resolved"):
            raise Refused(web.json_response({"message": "bad alert"}, status=400))
        _parse_rfc3339(a["startsAt"])
        _parse_rfc3339(a["endsAt"])
        for section in ("labels", "annotations"):
            if not all(isinstance(v, str) for v in a[section].values()):
                raise Refused(web.json_response({"message": "labels are strings"}, status=400))


def _check_grafana(fv: FakeVendors, request: web.Request, body: Any) -> None:
    if request.headers.get("Authorization") != f"Bearer {GRAFANA_TOKEN}":
        raise Refused(web.json_response({"message": "Unauthorized"}, status=401))
    t, t_end = body.get("time"), body.get("timeEnd", body.get("time"))
    if not isinstance(t, int) or not isinstance(t_end, int) or t_end < t:
        raise Refused(web.json_response({"message": "bad time"}, status=400))
    if not isinstance(body.get("text"), str) or not body["text"]:
        raise Refused(web.json_response({"message": "text is required"}, status=400))
    if not all(isinstance(tag, str) for tag in body.get("tags", [])):
        raise Refused(web.json_response({"message": "bad tags"}, status=400))
