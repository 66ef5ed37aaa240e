"""``/api/v1/alerts`` and ``/api/v1/silences``: list, acknowledge, silence."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web

from citywatch.alerting.lifecycle import LifecycleError
from citywatch.alerting.model import Alert
from citywatch.alerting.service import Alerting
from citywatch.alerting.silences import Matcher, Silence, SilenceError
from citywatch.alerting.summary import what
from citywatch.api import params
from citywatch.api.auth import Principal
from citywatch.api.errors import ApiError
from citywatch.api.state import ALERTING
from citywatch.api.stream import Hub

SEVERITIES = ("yellow", "red")
SUBJECTS = ("case", "officer")
MAX_RESOLVED = 5000


def alert_json(a: Alert, silenced_by: str | None) -> dict[str, Any]:
    """An alert as the API shows it."""
    labels = a.labels
    return {
        "id": a.id,
        "fingerprint": a.fingerprint,
        "rule": a.rule,
        "severity": a.severity,
        "status": a.status,
        "silenced": silenced_by is not None,
        "silenced_by": silenced_by,
        "city": a.city,
        "subject": {"kind": a.subject_kind, "id": a.subject},
        "grid": labels.get("grid"),
        "unit": labels.get("unit"),
        "officer": labels.get("officer") or (a.subject if a.subject_kind == "officer" else None),
        "device": labels.get("device"),
        "lead": labels.get("lead"),
        "step": labels.get("step"),
        "starts_at": a.starts_at,
        "opened_at": a.opened_at,
        "ends_at": a.ends_at,
        "summary": a.summary or what(a),
        "escalation": max(a.step, 0),
        "told": list(a.told),
        "occurrence": a.occurrence,
        "ack": None if a.ack_by is None else {"by": a.ack_by, "at": a.ack_at, "note": a.ack_note},
        "labels": dict(labels),
        "values": dict(a.values),
    }


def _alerting(request: web.Request) -> Alerting:
    alerting = request.app[ALERTING]
    if alerting is None:
        raise ApiError(503, "alerting does not run in this process (--only)")
    return alerting


def _visible(p: Principal, a: Alert) -> bool:
    return p.sees(a.city, a.labels.get("grid"))


async def list_alerts(
    request: web.Request,
    who: Principal,
    *,
    status: frozenset[str],
    severity: frozenset[str] | None,
    city: str | None,
    grid: str | None,
    rule: str | None,
    subject: str | None,
    officer: str | None,
    silenced: bool | None,
    limit: int,
    offset: int,
) -> web.Response:
    """Alerts, newest first; open ones by default."""
    alerting = _alerting(request)
    found: dict[int, Alert] = {a.id: a for a in alerting.by_id.values()}
    if "resolved" in status:
        for a in await alerting.recent_resolved(MAX_RESOLVED):
            found.setdefault(a.id, a)
    out = []
    for a in sorted(found.values(), key=lambda a: a.id, reverse=True):
        if a.status not in status or not _visible(who, a):
            continue
        if severity and a.severity not in severity:
            continue
        if city and a.city != city:
            continue
        if grid and not (a.labels.get("grid") or "").startswith(grid):
            continue
        if rule and a.rule != rule:
            continue
        if subject and a.subject_kind != subject:
            continue
        if officer and a.labels.get("officer") != officer:
            continue
        if silenced is not None and (alerting.silenced_by(a) is not None) != silenced:
            continue
        out.append(a)
    page = params.paginate(out, limit, offset, lambda a: alert_json(a, alerting.silenced_by(a)))
    return params.respond(page)


async def get_alert(request: web.Request, who: Principal, *, alert_id: int) -> web.Response:
    alerting = _alerting(request)
    a = await alerting.get(alert_id)
    if a is None or not _visible(who, a):
        raise ApiError(404, f"no alert {alert_id}")
    doc = alert_json(a, alerting.silenced_by(a))
    doc["history"] = await alerting.history(a.id)
    return params.respond(doc)


async def ack_alert(
    request: web.Request, who: Principal, *, alert_id: int, by: str | None, note: str | None
) -> web.Response:
    """Acknowledge: ``{"by": "...", "note": "..."}``; ``by`` defaults to the token's name.

    The JSON body is required (``{}`` at least): a form or text a page of another site
    can post without asking the browser first is never taken for one.
    """
    alerting = _alerting(request)
    a = await alerting.get(alert_id)
    if a is None or not _visible(who, a):
        raise ApiError(404, f"no alert {alert_id}")
    try:
        new = await alerting.acknowledge(alert_id, who.name if by is None else by, note)
    except LifecycleError as exc:
        raise ApiError(409, str(exc)) from None
    except KeyError:
        raise ApiError(404, f"no alert {alert_id}") from None
    return params.respond(alert_json(new, alerting.silenced_by(new)))


def silence_json(s: Silence, now: float) -> dict[str, Any]:
    doc = s.to_json()
    doc["status"] = "active" if s.active(now) else ("pending" if now < s.starts_at else "expired")
    return doc


async def list_silences(
    request: web.Request, who: Principal, *, limit: int, offset: int
) -> web.Response:
    alerting = _alerting(request)
    now = alerting.clock.now()
    items = [
        silence_json(s, now)
        for s in sorted(alerting.silences.values(), key=lambda s: s.created_at, reverse=True)
        if _silence_visible(who, s)
    ]
    return params.respond(params.paginate(items, limit, offset))


def pinned(matchers: Sequence[Matcher]) -> tuple[str | None, str | None]:
    """The city and grid (or grid prefix, from ``grid =~ <digits>.*``) a silence pins."""
    fixed = {m.name: m.value for m in matchers if m.op == "="}
    grid = fixed.get("grid")
    if grid is None:
        prefix = next((m.value for m in matchers if m.name == "grid" and m.op == "=~"), None)
        if prefix is not None and prefix.endswith(".*") and prefix[:-2].isdigit():
            grid = prefix[:-2]
    return fixed.get("city"), grid


def _silence_visible(p: Principal, s: Silence) -> bool:
    if not p.cities and not p.grids:
        return True
    city, grid = pinned(s.matchers)
    return p.sees(city, grid)


async def create_silence(
    request: web.Request,
    who: Principal,
    *,
    matchers: tuple[Matcher, ...],
    starts_at: float | None,
    ends_at: float,
    comment: str,
    created_by: str | None,
) -> web.Response:
    """Silence what every matcher matches, from ``starts_at`` (default now) to ``ends_at``.

    A scoped token's silence pins city and grid within its scope (the route's scope
    rule, :data:`api.routes.SILENCE_PINS`, checked by the guard).
    """
    alerting = _alerting(request)
    if ends_at <= alerting.clock.now():
        raise ApiError(400, "field 'ends_at' must be in the future")
    by = who.name if created_by is None else created_by
    try:
        s = await alerting.add_silence(matchers, starts_at, ends_at, by, comment)
    except SilenceError as exc:
        raise ApiError(400, str(exc)) from None
    return params.respond(silence_json(s, alerting.clock.now()), status=201)


async def delete_silence(request: web.Request, who: Principal, *, silence: str) -> web.Response:
    alerting = _alerting(request)
    s = alerting.silences.get(silence)
    if s is None or not _silence_visible(who, s):
        raise ApiError(404, f"no silence {silence[:40]}")
    s = await alerting.expire_silence(silence)
    return params.respond(silence_json(s, alerting.clock.now()))


def alert_streamer(hub: Hub, alerting: Alerting) -> Callable[[list[Alert]], None]:
    """A listener of alerting's changes that publishes each alert's document to the stream."""

    def publish(alerts: list[Alert]) -> None:
        latest: dict[int, Alert] = {a.id: a for a in alerts}
        for a in latest.values():
            grid = a.labels.get("grid")
            doc = {"alert": alert_json(a, alerting.silenced_by(a))}
            hub.publish("alert", a.city, (grid,) if grid else (), doc)

    return publish
