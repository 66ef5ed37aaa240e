"""``/api/v1/alerts`` and ``/api/v1/silences``: list, acknowledge, silence."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from alerting.lifecycle import LifecycleError
from alerting.model import STATES, Alert
from alerting.service import Alerting
from alerting.silences import Matcher, Silence, SilenceError
from alerting.summary import what
from api import params
from api.auth import Principal, principal
from api.errors import ApiError
from api.state import ALERTING, CONFIG

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


async def list_alerts(request: web.Request) -> web.Response:
    """Alerts, newest first; open ones by default."""
    p = principal(request)
    alerting = _alerting(request)
    statuses = params.choices(request, "status", STATES) or frozenset({"firing", "acknowledged"})
    severity = params.choices(request, "severity", SEVERITIES)
    city = params.text(request, "city", params.CITY, "a 6-digit city code")
    grid = params.text(request, "grid", params.GRID_PREFIX, "a prefix of grid codes")
    rule = params.text(request, "rule", params.ID, "a rule name")
    subject = params.choice(request, "subject", SUBJECTS)
    officer = params.text(request, "officer", params.ID, "an officer id")
    silenced = params.choice(request, "silenced", ("true", "false"))
    limit, offset = params.page(request, request.app[CONFIG].page_max)
    found: dict[int, Alert] = {a.id: a for a in alerting.by_id.values()}
    if "resolved" in statuses:
        for a in await alerting.recent_resolved(MAX_RESOLVED):
            found.setdefault(a.id, a)
    out = []
    for a in sorted(found.values(), key=lambda a: a.id, reverse=True):
        if a.status not in statuses or not _visible(p, a):
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
        if silenced is not None and (alerting.silenced_by(a) is not None) != (silenced == "true"):
            continue
        out.append(a)
    page = params.paginate(out, limit, offset, lambda a: alert_json(a, alerting.silenced_by(a)))
    return params.respond(page)


def _alert_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isdigit() or len(raw) > 12:
        raise ApiError(400, f"alert id must be a positive integer, got {raw[:20]!r}")
    return int(raw)


async def get_alert(request: web.Request) -> web.Response:
    p = principal(request)
    alerting = _alerting(request)
    a = await alerting.get(_alert_id(request))
    if a is None or not _visible(p, a):
        raise ApiError(404, f"no alert {request.match_info['id']}")
    doc = alert_json(a, alerting.silenced_by(a))
    doc["history"] = await alerting.history(a.id)
    return params.respond(doc)


async def ack_alert(request: web.Request) -> web.Response:
    """Acknowledge: ``{"by": "...", "note": "..."}``; ``by`` defaults to the token's name.

    The JSON body is required (``{}`` at least): a form or text a page of another site
    can post without asking the browser first is never taken for one.
    """
    p = principal(request)
    p.require("supervisor")
    alerting = _alerting(request)
    alert_id = _alert_id(request)
    body = await params.json_body(request)
    by = params.field(body, "by", str)
    by = p.name if by is None else by
    note = params.field(body, "note", str)
    if not 0 < len(by) <= 64 or not params.showable(by):
        raise ApiError(400, "field 'by' must be 1-64 characters, no control characters")
    if note is not None and (len(note) > 500 or not params.showable(note)):
        raise ApiError(400, "field 'note' must be at most 500 characters, no control characters")
    a = await alerting.get(alert_id)
    if a is None or not _visible(p, a):
        raise ApiError(404, f"no alert {alert_id}")
    try:
        new = await alerting.acknowledge(alert_id, by, note)
    except LifecycleError as exc:
        raise ApiError(409, str(exc)) from None
    except KeyError:
        raise ApiError(404, f"no alert {alert_id}") from None
    return params.respond(alert_json(new, alerting.silenced_by(new)))


def silence_json(s: Silence, now: float) -> dict[str, Any]:
    doc = s.to_json()
    doc["status"] = "active" if s.active(now) else ("pending" if now < s.starts_at else "expired")
    return doc


async def list_silences(request: web.Request) -> web.Response:
    p = principal(request)
    alerting = _alerting(request)
    limit, offset = params.page(request, request.app[CONFIG].page_max)
    now = alerting.clock.now()
    items = [
        silence_json(s, now)
        for s in sorted(alerting.silences.values(), key=lambda s: s.created_at, reverse=True)
        if _silence_visible(p, s)
    ]
    return params.respond(params.paginate(items, limit, offset))


def _pinned(matchers: tuple[Matcher, ...] | list[Matcher]) -> tuple[str | None, str | None]:
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
    city, grid = _pinned(s.matchers)
    return p.sees(city, grid)


async def create_silence(request: web.Request) -> web.Response:
    """Body: ``matchers``, ``ends_at``, ``comment``; optional ``starts_at``, ``created_by``."""
    p = principal(request)
    p.require("supervisor")
    alerting = _alerting(request)
    body = await params.json_body(request)
    raw = params.field(body, "matchers", list, required=True) or []
    matchers = []
    try:
        for i, m in enumerate(raw):
            if not isinstance(m, dict) or set(m) - {"name", "value", "op"}:
                raise ApiError(400, f"matchers[{i}] must be an object with name, value, op")
            name, value, op = m.get("name"), m.get("value"), m.get("op", "=")
            if not (isinstance(name, str) and isinstance(value, str) and isinstance(op, str)):
                raise ApiError(400, f"matchers[{i}]: name, value and op must be strings")
            matchers.append(Matcher(name, value, op))
        if p.cities or p.grids:
            _check_scope(p, matchers)
        now = alerting.clock.now()
        starts = body.get("starts_at")
        starts_at = None if starts is None else params.parse_instant(starts, "field 'starts_at'")
        if "ends_at" not in body:
            raise ApiError(400, "field 'ends_at' is required")
        ends_at = params.parse_instant(body["ends_at"], "field 'ends_at'")
        if ends_at <= now:
            raise ApiError(400, "field 'ends_at' must be in the future")
        comment = params.field(body, "comment", str, required=True) or ""
        if not 0 < len(comment) <= 500 or not params.showable(comment):
            raise ApiError(400, "field 'comment' must be 1-500 characters, no control characters")
        by = params.field(body, "created_by", str)
        by = p.name if by is None else by
        if not 0 < len(by) <= 64 or not params.showable(by):
            raise ApiError(400, "field 'created_by' must be 1-64 characters, no control characters")
        s = await alerting.add_silence(matchers, starts_at, ends_at, by, comment)
    except SilenceError as exc:
        raise ApiError(400, str(exc)) from None
    return params.respond(silence_json(s, alerting.clock.now()), status=201)


def _check_scope(p: Principal, matchers: list[Matcher]) -> None:
    """A scoped token may only silence within its scope: it must pin city and grid."""
    city, grid = _pinned(matchers)
    if p.cities and city not in p.cities:
        raise ApiError(403, f"token {p.name!r} must pin city to one of {', '.join(p.cities)}")
    if p.grids and (grid is None or not any(grid.startswith(g) for g in p.grids)):
        raise ApiError(
            403,
            f"token {p.name!r} must pin grid (grid = code, or grid =~ <digits>.*) "
            f"within {', '.join(p.grids)}",
        )


async def delete_silence(request: web.Request) -> web.Response:
    p = principal(request)
    p.require("supervisor")
    alerting = _alerting(request)
    sid = request.match_info["id"]
    s = alerting.silences.get(sid)
    if s is None or not _silence_visible(p, s):
        raise ApiError(404, f"no silence {sid[:40]}")
    s = await alerting.expire_silence(sid)
    return params.respond(silence_json(s, alerting.clock.now()))
