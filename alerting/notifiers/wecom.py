"""企业微信 (WeCom) group robot: one markdown message per batch.

The robot's URL carries its key (``.../cgi-bin/webhook/send?key=...``); it answers
``{"errcode": 0, "errmsg": "ok"}``. A robot takes 20 messages a minute and answers
45009 beyond that (retryable); any other errcode is a refusal. Markdown content is
at most 4096 UTF-8 bytes, so a long batch lists what fits and says how many are left.
WeCom markdown cannot @ everyone, so ``mention_all_on`` has no effect here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp

from citywatch.alerting.notifiers._http import (
    ChatRobot,
    chat_block,
    fit,
    severity_mark,
    title,
)
from citywatch.alerting.notifiers.base import Notification
from citywatch.alerting.notifiers.config import WebhookConfig

MAX_BYTES = 4096
RATE_LIMITED = frozenset({45009})


@dataclass(frozen=True)
class WeComConfig(WebhookConfig):
    """A WeCom group robot: ``url`` carries its key; no ``secret``, no @ everyone."""

    secret_refused: ClassVar[str | None] = "WeCom robots are not signed; the key is in url"


def block(n: Notification, external_url: str | None = None) -> str:
    """One alert as WeCom markdown: a coloured headline and quoted field lines."""
    color = "info" if n.status == "resolved" else "warning"
    head = f'**<font color="{color}">{severity_mark(n)}</font> {n.summary}**'
    return chat_block(n, external_url, head, '> {k}：<font color="comment">{v}</font>', "\n")


def payload(alerts: Sequence[Notification], external_url: str | None = None) -> dict[str, Any]:
    """The robot message for a batch, its content cut to :data:`MAX_BYTES`."""
    blocks = [block(n, external_url) for n in alerts]
    content = fit(f"### {title(alerts)}", blocks, "", MAX_BYTES)
    return {"msgtype": "markdown", "markdown": {"content": content}}


class WeComNotifier(ChatRobot[WeComConfig]):
    """Posts a batch to a WeCom group robot as one markdown message."""

    label = "wecom"
    codes = ("errcode",)
    messages = ("errmsg",)
    rate_limited = RATE_LIMITED

    def __init__(self, cfg: WeComConfig, session: aiohttp.ClientSession) -> None:
        super().__init__(cfg, session)

    def message(self, alerts: Sequence[Notification]) -> tuple[Any, str | None]:
        """The markdown message, to the configured URL."""
        return payload(alerts, self.cfg.external_url), None
