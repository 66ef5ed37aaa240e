"""What the HTTP notifiers share: one POST, failure classification, redaction, message text.

Secrets never reach an exception message: URLs are shown through :func:`redact_url`,
and any text from elsewhere (a vendor's ``errmsg``, an aiohttp error) goes through
:meth:`Redactor.scrub`, which blanks every secret the notifier knows.
"""

from __future__ import annotations

import datetime
import re
import time
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

import aiohttp
import orjson

from citywatch.alerting.notifiers.base import Notification, NotifyError
from citywatch.alerting.notifiers.config import LINK_FIELDS, WebhookConfig
from citywatch.durations import duration_zh

MASK = "***"
# A path segment is a token if it looks like one, or follows one of these (Feishu, Slack)...
_HOOK_SEGMENTS = frozenset({"hook", "hooks", "webhook", "webhooks", "services"})
_TOKENISH = re.compile(r"(?=.*\d)[A-Za-z0-9_\-]{16,}|[A-Za-z0-9_\-]{20,}")
# ... and is at least this long (so that ``webhook/send`` stays readable).
_MIN_HOOK_TOKEN = 8
# Shorter strings are not scrubbed from text: blanking "1" everywhere would garble it.
_MIN_SECRET = 6


def _token_segment(prev: str, segment: str) -> bool:
    after_hook = prev.lower() in _HOOK_SEGMENTS and len(segment) >= _MIN_HOOK_TOKEN
    return after_hook or bool(_TOKENISH.fullmatch(segment))


def redact_url(url: str) -> str:
    """``url`` with user info, query values and token-like path segments replaced by ``***``.

    Scheme, host, port and the ordinary path segments stay, so the message still says
    which robot or server failed.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return f"{MASK}invalid URL{MASK}"
    if ":" in host:
        host = f"[{host}]"
    netloc = (f"{MASK}@" if parts.username or parts.password else "") + host
    if port is not None:
        netloc += f":{port}"
    segments = parts.path.split("/")
    path = "/".join(
        MASK if seg and _token_segment(segments[i - 1] if i else "", seg) else seg
        for i, seg in enumerate(segments)
    )
    query = "&".join(f"{name}={MASK}" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def url_secrets(url: str) -> list[str]:
    """The secret parts of ``url``: user info, query values and token-like path segments."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = [v for _, v in parse_qsl(parts.query, keep_blank_values=True)]
    found += [p for p in (parts.username, parts.password) if p]
    segments = parts.path.split("/")
    found += [
        unquote(seg)
        for i, seg in enumerate(segments)
        if seg and _token_segment(segments[i - 1] if i else "", seg)
    ]
    if parts.fragment:
        found.append(parts.fragment)
    return found


class Redactor:
    """Blanks a fixed set of secrets out of any text."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        found = {s for s in secrets if s and len(s) >= _MIN_SECRET}
        # Longest first, so that a secret containing another is blanked whole.
        self._secrets = sorted(found, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        """``text`` with every known secret replaced by ``***``."""
        for s in self._secrets:
            text = text.replace(s, MASK)
        return text


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: status, the parsed JSON body (None if not JSON) and the raw text."""

    status: int
    body: Any
    text: str


class Endpoint:
    """One URL to POST JSON to, with its redacted name and the secrets to keep out of errors."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        timeout: float,
        label: str,
        secrets: Iterable[str | None] = (),
    ) -> None:
        self.session = session
        self.url = url
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self.redactor = Redactor([*url_secrets(url), *secrets])
        self.name = f"{label} {redact_url(url)}"

    def error(self, problem: str, *, retryable: bool) -> NotifyError:
        """A :class:`NotifyError` naming this endpoint, with secrets blanked out of ``problem``."""
        return NotifyError(f"{self.name}: {self.redactor.scrub(problem)}", retryable=retryable)

    async def post(
        self,
        body: Any,
        *,
        url: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        """POST ``body`` as UTF-8 JSON once; network errors and timeouts raise retryable."""
        all_headers = {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
        try:
            async with self.session.post(
                url or self.url,
                data=orjson.dumps(body),
                headers=all_headers,
                timeout=self.timeout,
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except TimeoutError:
            raise self.error(f"no answer within {self.timeout.total:g}s", retryable=True) from None
        except aiohttp.ClientError as exc:
            # The aiohttp message may carry the full URL: scrubbed, and the chain is cut.
            detail = f"{type(exc).__name__}: {exc}"
            raise self.error(detail, retryable=True) from None
        text = raw.decode("utf-8", "replace")
        try:
            parsed = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            parsed = None
        return Reply(status, parsed, text)

    def check_status(self, reply: Reply) -> None:
        """Raise for a non-2xx answer: 5xx and 429 are retryable, anything else is not."""
        if 200 <= reply.status < 300:
            return
        retryable = reply.status >= 500 or reply.status == 429
        raise self.error(f"HTTP {reply.status}: {excerpt(reply.text)}", retryable=retryable)

    def check_vendor(
        self, reply: Reply, codes: Sequence[str], messages: Sequence[str], rate_limited: Set[int]
    ) -> None:
        """Raise unless a 2xx answer carries vendor code 0 in the first of ``codes`` present.

        A code in ``rate_limited`` is retryable whatever the HTTP status; any other
        nonzero code, or an answer without one, is a refusal.
        """
        code = vendor_code(reply.body, *codes)
        if code is not None and code in rate_limited:
            raise self.error(f"{codes[0]} {code}: rate limited", retryable=True)
        self.check_status(reply)
        if code is None:
            raise self.error(f"not a robot answer: {excerpt(reply.text)}", retryable=False)
        if code != 0:
            body = reply.body
            msg = next((str(body[m]) for m in messages if body.get(m)), "")
            raise self.error(f"{codes[0]} {code}: {excerpt(msg)}", retryable=False)


C = TypeVar("C", bound=WebhookConfig)


class ChatRobot(Generic[C]):
    """A chat group's robot (WeCom, DingTalk, Feishu): a batch goes as one message, and the
    answer carries the vendor's code.

    A vendor's class names itself (``label``), says where its answer keeps the code and
    the message (``codes``, ``messages``) and which codes mean "too fast"
    (``rate_limited``), and builds its message in :meth:`message`. Its ``__init__`` names
    its own settings class, as the notifier table's contract asks.
    """

    label: ClassVar[str]
    codes: ClassVar[tuple[str, ...]]
    messages: ClassVar[tuple[str, ...]]
    rate_limited: ClassVar[frozenset[int]]

    def __init__(self, cfg: C, session: aiohttp.ClientSession) -> None:
        self.cfg = cfg
        self._endpoint = Endpoint(
            session, cfg.url, timeout=cfg.timeout, label=self.label, secrets=[cfg.secret]
        )

    def message(self, alerts: Sequence[Notification]) -> tuple[Any, str | None]:
        """The body for ``alerts``, and the URL to post it to if not the configured one."""
        raise NotImplementedError

    async def notify(self, alerts: Sequence[Notification]) -> None:
        """Deliver ``alerts`` in one message or raise :class:`NotifyError`."""
        if not alerts:
            return
        body, url = self.message(alerts)
        reply = await self._endpoint.post(body, url=url)
        self._endpoint.check_vendor(reply, self.codes, self.messages, self.rate_limited)


def excerpt(text: str, limit: int = 200) -> str:
    """The first ``limit`` characters of ``text`` on one line, for an error message."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def vendor_code(body: Any, *names: str) -> int | None:
    """The first integer field of ``names`` in a JSON object ``body``, or None."""
    if not isinstance(body, dict):
        return None
    for name in names:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


# -- message text shared by the chat robots ----------------------------------------------

CHINA = zoneinfo.ZoneInfo("Asia/Shanghai")
SEVERITY_MARK = {"yellow": "🟡 黄灯", "red": "🔴 红灯", "critical": "🚨 紧急"}
STATUS_WORD = {"firing": "告警", "acknowledged": "已确认", "resolved": "已恢复"}
SEVERITY_RANK = {"yellow": 1, "red": 2, "critical": 3}
ALERTMANAGER_ZERO_TIME = "0001-01-01T00:00:00Z"


def severity_mark(n: Notification) -> str:
    """``🔴 红灯`` and the like; an unknown severity is shown as it is."""
    return SEVERITY_MARK.get(n.severity, n.severity)


def status_word(n: Notification) -> str:
    """告警, 已确认 or 已恢复; an unknown status is shown as it is."""
    return STATUS_WORD.get(n.status, n.status)


def china_time(ts: float) -> str:
    """``05-09 15:35`` in Beijing time."""
    return datetime.datetime.fromtimestamp(ts, CHINA).strftime("%m-%d %H:%M")


def rfc3339(ts: float) -> str:
    """UTC RFC 3339 with milliseconds, as Alertmanager writes times."""
    dt = datetime.datetime.fromtimestamp(ts, datetime.UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def link(template: str | None, n: Notification) -> str | None:
    """``template`` with the alert's :data:`LINK_FIELDS` filled in."""
    if template is None:
        return None
    return template.format(**{f: getattr(n, f) for f in LINK_FIELDS})


def chat_block(
    n: Notification,
    external_url: str | None,
    head: str,
    field: str,
    sep: str,
    more: str = "[查看详情]({url})",
) -> str:
    """One alert in a chat message, its lines joined by ``sep``: ``head``, then each row of
    :func:`fields` through the template ``field`` (``{k}``, ``{v}``), then ``more``
    (``{url}``) when ``external_url`` gives the alert a page."""
    lines = [head, *(field.format(k=k, v=v) for k, v in fields(n))]
    url = link(external_url, n)
    if url:
        lines.append(more.format(url=url))
    return sep.join(lines)


def fields(n: Notification, now: float | None = None) -> list[tuple[str, str]]:
    """The labelled lines of one alert in a chat message, most useful first."""
    now = (n.sent_at or time.time()) if now is None else now
    rows = [("状态", status_word(n)), ("城市", n.city)]
    rows += [(k, v) for k, v in (("网格", n.grid), ("单位", n.unit)) if v]
    rows += [(k, v) for k, v in (("队员", n.officer), ("设备", n.device)) if v]
    if n.subject_kind == "case":
        rows.append(("案件", n.subject_id))
    if n.status == "resolved":
        end = n.ends_at if n.ends_at is not None else now
        rows.append(("时间", f"{china_time(n.starts_at)} 至 {china_time(end)}"))
        rows.append(("历时", duration_zh(end - n.starts_at)))
    else:
        rows.append(("开始", f"{china_time(n.starts_at)}，已持续 {duration_zh(now - n.starts_at)}"))
    rows.append(("升级", f"第 {n.escalation} 级" if n.escalation else "首次通知"))
    rows.append(("编号", n.id))
    return rows


def title(alerts: Sequence[Notification]) -> str:
    """A one-line title of a batch: the worst open severity and the count."""
    open_ = [a for a in alerts if a.status != "resolved"]
    if not open_:
        if len(alerts) == 1:
            return f"✅ 已恢复：{alerts[0].summary}"
        return f"✅ 已恢复 {len(alerts)} 条"
    worst = max(open_, key=lambda a: SEVERITY_RANK.get(a.severity, 0))
    head = severity_mark(worst)
    if len(alerts) == 1:
        return f"{head} {status_word(worst)}：{worst.summary}"
    return f"{head} 城管告警 {len(alerts)} 条"


def mention_all(alerts: Sequence[Notification], severities: Sequence[str]) -> bool:
    """Whether an open alert of one of ``severities`` is in the batch."""
    return any(a.status != "resolved" and a.severity in severities for a in alerts)


def truncate_utf8(text: str, limit: int, suffix: str = "…") -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes between characters, ending in ``suffix``."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    room = limit - len(suffix.encode("utf-8"))
    if room <= 0:
        return suffix.encode("utf-8")[: max(limit, 0)].decode("utf-8", "ignore")
    # Dropping a partial trailing sequence keeps whole characters only.
    return raw[:room].decode("utf-8", "ignore") + suffix


def fit(head: str, blocks: Sequence[str], tail: str, limit: int, sep: str = "\n\n") -> str:
    """``head``, as many whole ``blocks`` as fit in ``limit`` bytes, a note of the rest, ``tail``.

    At least the first block is shown, cut on a character boundary if it alone is too
    long; the result is never over ``limit`` UTF-8 bytes.
    """

    def join(shown: Sequence[str]) -> str:
        hidden = len(blocks) - len(shown)
        note = f"……另有 {hidden} 条未列出" if hidden else ""
        return sep.join(p for p in (head, *shown, note, tail) if p)

    for count in range(len(blocks), 0, -1):
        text = join(blocks[:count])
        if len(text.encode("utf-8")) <= limit:
            return text
    if not blocks:
        return truncate_utf8(join(()), limit)
    room = limit - len(join([""]).encode("utf-8"))
    return truncate_utf8(join([truncate_utf8(blocks[0], max(room, 0))]), limit)
