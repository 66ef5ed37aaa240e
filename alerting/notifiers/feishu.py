"""飞书 (Feishu / Lark) custom bot: one interactive card per batch, signed when a secret is set.

The bot's URL carries its token as the last path segment (``.../bot/v2/hook/<token>``).
With signing on, the body adds ``timestamp`` (seconds, as a string) and ``sign``, the
base64 of HMAC-SHA256 keyed by f"{timestamp}\\n{secret}" over an empty message; Feishu
refuses a timestamp more than an hour off. The bot answers ``{"code": 0, "msg": "success"}``
(older bots ``{"StatusCode": 0, "StatusMessage": "success"}``); 11232 (rate limited,
100 a minute and 5 a second per bot) is retryable whatever the HTTP status, any other
nonzero code is a refusal. The card header is coloured by the worst open severity, and
an open alert of a severity in ``mention_all_on`` adds ``<at id=all></at>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from citywatch.alerting.notifiers._http import (
    SEVERITY_RANK,
    ChatRobot,
    chat_block,
    fit,
    mention_all,
    severity_mark,
    title,
)
from citywatch.alerting.notifiers.base import Notification
from citywatch.alerting.notifiers.config import WebhookConfig

# A request body is at most 20 KB; leave room for the card around the text.
MAX_BYTES = 18000
RATE_LIMITED = frozenset({11232})
_TEMPLATE = {"yellow": "yellow", "red": "red", "critical": "carmine"}


@dataclass(frozen=True)
class FeishuConfig(WebhookConfig):
    """A Feishu custom bot.

    ``url`` ends in its token; ``secret`` is its signing secret (签名校验) when signing is
    on; ``mention_all_on`` adds ``<at id=all></at>``.
    """


def sign(secret: str, timestamp_s: int) -> str:
    """The ``sign`` field for ``timestamp_s``: the key is the string to sign, the message empty."""
    key = f"{timestamp_s}\n{secret}".encode()
    return base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()


def block(n: Notification, external_url: str | None = None) -> str:
    """One alert as card markdown."""
    return chat_block(n, external_url, f"**{severity_mark(n)}** {n.summary}", "{k}：{v}", "\n")


def _template(alerts: Sequence[Notification]) -> str:
    open_ = [a for a in alerts if a.status != "resolved"]
    if not open_:
        return "green"
    worst = max(open_, key=lambda a: SEVERITY_RANK.get(a.severity, 0))
    return _TEMPLATE.get(worst.severity, "orange")


def payload(
    alerts: Sequence[Notification],
    external_url: str | None = None,
    mention_all_on: Sequence[str] = (),
) -> dict[str, Any]:
    """The card message for a batch, its markdown cut to :data:`MAX_BYTES`."""
    tail = "<at id=all></at>" if mention_all(alerts, mention_all_on) else ""
    text = fit("", [block(n, external_url) for n in alerts], tail, MAX_BYTES)
    return {
        "msg_type": "interactive",
        "card": {
            "config": {"wide_screen_mode": True},
            "header": {
                "template": _template(alerts),
                "title": {"tag": "plain_text", "content": title(alerts)},
            },
            "elements": [{"tag": "markdown", "content": text}],
        },
    }


class FeishuNotifier(ChatRobot[FeishuConfig]):
    """Posts a batch to a Feishu custom bot as one interactive card."""

    label = "feishu"
    codes = ("code", "StatusCode")
    messages = ("msg", "StatusMessage")
    rate_limited = RATE_LIMITED

    def __init__(self, cfg: FeishuConfig, session: aiohttp.ClientSession) -> None:
        super().__init__(cfg, session)

    def message(self, alerts: Sequence[Notification]) -> tuple[Any, str | None]:
        """The card; with a secret, signed now in the body."""
        body = payload(alerts, self.cfg.external_url, self.cfg.mention_all_on)
        if self.cfg.secret:
            ts = int(time.time())
            body = {"timestamp": str(ts), "sign": sign(self.cfg.secret, ts), **body}
        return body, None
