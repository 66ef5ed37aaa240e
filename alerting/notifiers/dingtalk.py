"""钉钉 (DingTalk) custom robot: one markdown message per batch, signed when a secret is set.

The robot's URL carries its ``access_token``. With signing on, each request adds
``&timestamp=<ms>&sign=<sign>`` where ``sign`` is the URL-encoded base64 of
HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}"); DingTalk refuses a timestamp
more than an hour off. The robot answers ``{"errcode": 0, "errmsg": "ok"}``; 130101
(sending too fast, over 20 a minute) is retryable, any other errcode is a refusal.
An open alert of a severity in ``mention_all_on`` sets ``at.isAtAll``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus

import aiohttp

from citywatch.alerting.notifiers._http import (
    ChatRobot,
    chat_block,
    fit,
    mention_all,
    severity_mark,
    title,
)
from citywatch.alerting.notifiers.base import Notification
from citywatch.alerting.notifiers.config import WebhookConfig

# DingTalk does not publish a markdown limit; 20000 bytes stays under what it accepts.
MAX_BYTES = 20000
RATE_LIMITED = frozenset({130101})


@dataclass(frozen=True)
class DingTalkConfig(WebhookConfig):
    """A DingTalk custom robot.

    ``url`` carries its ``access_token``; ``secret`` is its signing secret (加签) when
    signing is on; ``mention_all_on`` sets ``at.isAtAll``.
    """


def sign(secret: str, timestamp_ms: int) -> str:
    """The ``sign`` query value for ``timestamp_ms``, already URL-encoded."""
    to_sign = f"{timestamp_ms}\n{secret}".encode()
    digest = hmac.new(secret.encode(), to_sign, hashlib.sha256).digest()
    return quote_plus(base64.b64encode(digest))


def signed_url(url: str, secret: str, timestamp_ms: int) -> str:
    """``url`` with ``timestamp`` and ``sign`` appended to its query."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}timestamp={timestamp_ms}&sign={sign(secret, timestamp_ms)}"


def block(n: Notification, external_url: str | None = None) -> str:
    """One alert as DingTalk markdown; lines end in two spaces, as its renderer needs."""
    head = f"**{severity_mark(n)}** {n.summary}"
    return chat_block(n, external_url, head, "- {k}：{v}", "  \n", "- [查看详情]({url})")


def payload(
    alerts: Sequence[Notification],
    external_url: str | None = None,
    mention_all_on: Sequence[str] = (),
) -> dict[str, Any]:
    """The robot message for a batch, its text cut to :data:`MAX_BYTES`."""
    head = title(alerts)
    text = fit(f"#### {head}", [block(n, external_url) for n in alerts], "", MAX_BYTES)
    return {
        "msgtype": "markdown",
        "markdown": {"title": head, "text": text},
        "at": {"isAtAll": mention_all(alerts, mention_all_on), "atMobiles": [], "atUserIds": []},
    }


class DingTalkNotifier(ChatRobot[DingTalkConfig]):
    """Posts a batch to a DingTalk custom robot as one markdown message."""

    label = "dingtalk"
    codes = ("errcode",)
    messages = ("errmsg",)
    rate_limited = RATE_LIMITED

    def __init__(self, cfg: DingTalkConfig, session: aiohttp.ClientSession) -> None:
        super().__init__(cfg, session)

    def message(self, alerts: Sequence[Notification]) -> tuple[Any, str | None]:
        """The markdown message; with a secret, the URL signed now."""
        body = payload(alerts, self.cfg.external_url, self.cfg.mention_all_on)
        if not self.cfg.secret:
            return body, None
        return body, signed_url(self.cfg.url, self.cfg.secret, int(time.time() * 1000))
