"""The OpenAPI 3.1 document, generated from the route table (:mod:`api.routes`)."""

from __future__ import annotations

from typing import Any

from api.auth import UNSAFE_METHODS
from api.params import TEXT_PATTERN, UNSHOWABLE
from api.routes import INSTANT, ROUTES, Route
from rules.patrols.specs import STATE_NAMES

NUM = {"type": "number"}
NUM_OR_NULL = {"type": ["number", "null"]}
STR = {"type": "string"}
STR_OR_NULL = {"type": ["string", "null"]}
INT = {"type": "integer"}
# Text with no control characters (params.showable) and, for who and why, not only spaces.
TEXT = {"type": "string", "pattern": TEXT_PATTERN}
SAID = {"type": "string", "pattern": f"^[^{UNSHOWABLE}]*[^{UNSHOWABLE}\\s][^{UNSHOWABLE}]*$"}


def _obj(props: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required or props)}


def _list_of(ref: str) -> dict[str, Any]:
    return _obj(
        {
            "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{ref}"}},
            "total": INT,
            "limit": INT,
            "offset": INT,
            "next": {"type": ["integer", "null"]},
        }
    )


FIX = {
    "type": ["object", "null"],
    "properties": {
        "ts": NUM,
        "lat": NUM,
        "lon": NUM,
        "acc": NUM_OR_NULL,
        "speed": NUM_OR_NULL,
        "heading": NUM_OR_NULL,
        "received_at": NUM,
    },
}

SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": _obj({"status": INT, "message": STR})}),
    "Device": _obj(
        {
            "city": STR,
            "device": STR,
            "status": {"type": "string", "enum": ["online", "gps_lost", "offline"]},
            "officer": STR_OR_NULL,
            "grids": {"type": "array", "items": STR},
            "battery": NUM_OR_NULL,
            "last_seen": NUM_OR_NULL,
            "last_fix": FIX,
            "last_heartbeat": {"type": ["object", "null"]},
        }
    ),
    "Officer": _obj(
        {
            "city": STR,
            "officer": STR,
            "device": STR_OR_NULL,
            "grids": {"type": "array", "items": STR},
            "lead": STR_OR_NULL,
            "role": STR_OR_NULL,
            "state": {
                "type": "string",
                "enum": list(STATE_NAMES),
            },
            "since": NUM_OR_NULL,
            "position": {"type": ["object", "null"]},
            "coverage": {"type": ["object", "null"]},
        },
        ("city", "officer", "state"),
    ),
    "Track": _obj(
        {
            "type": {"const": "Feature"},
            "geometry": _obj({"type": {"const": "LineString"}, "coordinates": {"type": "array"}}),
            "properties": {"type": "object"},
        }
    ),
    "Case": _obj(
        {
            "city": STR,
            "case": STR,
            "status": STR_OR_NULL,
            "step": STR_OR_NULL,
            "light": {"type": ["string", "null"], "enum": ["yellow", "red", None]},
            "deadline": NUM_OR_NULL,
            "remaining": NUM_OR_NULL,
            "suspended": {"type": "boolean"},
            "grid": STR_OR_NULL,
            "unit": STR_OR_NULL,
            "steps": {"type": "array"},
        },
        ("city", "case", "light", "steps"),
    ),
    "Alert": _obj(
        {
            "id": INT,
            "fingerprint": STR,
            "rule": STR,
            "severity": {"type": "string", "enum": ["yellow", "red"]},
            "status": {"type": "string", "enum": ["firing", "acknowledged", "resolved"]},
            "silenced": {"type": "boolean"},
            "silenced_by": STR_OR_NULL,
            "city": STR,
            "subject": _obj({"kind": STR, "id": STR}),
            "grid": STR_OR_NULL,
            "unit": STR_OR_NULL,
            "officer": STR_OR_NULL,
            "device": STR_OR_NULL,
            "lead": STR_OR_NULL,
            "step": STR_OR_NULL,
            "starts_at": NUM,
            "opened_at": NUM,
            "ends_at": NUM_OR_NULL,
            "summary": STR,
            "escalation": INT,
            "told": {"type": "array", "items": STR},
            "occurrence": INT,
            "ack": {"type": ["object", "null"]},
            "labels": {"type": "object"},
            "values": {"type": "object"},
        },
        ("id", "fingerprint", "rule", "severity", "status", "silenced", "city", "subject"),
    ),
    "AlertDetail": {
        "allOf": [
            {"$ref": "#/components/schemas/Alert"},
            _obj({"history": {"type": "array"}}),
        ]
    },
    "Ack": {
        "type": "object",
        "properties": {
            "by": {**TEXT, "minLength": 1, "maxLength": 64},
            "note": {**TEXT, "maxLength": 500},
        },
        "additionalProperties": True,
    },
    "Matcher": _obj(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 64},
            "value": {"type": "string", "maxLength": 256},
            "op": {"type": "string", "enum": ["=", "!=", "=~", "!~"]},
        },
        ("name", "value"),
    )
    | {"additionalProperties": False},
    "NewSilence": _obj(
        {
            "matchers": {
                "type": "array",
                "minItems": 1,
                "maxItems": 16,
                "items": {"$ref": "#/components/schemas/Matcher"},
            },
            "starts_at": INSTANT,
            "ends_at": INSTANT,
            "comment": {**SAID, "minLength": 1, "maxLength": 500},
            "created_by": {**SAID, "minLength": 1, "maxLength": 64},
        },
        ("matchers", "ends_at", "comment"),
    ),
    "Silence": _obj(
        {
            "id": STR,
            "matchers": {"type": "array", "items": {"$ref": "#/components/schemas/Matcher"}},
            "starts_at": NUM,
            "ends_at": NUM,
            "created_by": STR,
            "comment": STR,
            "created_at": NUM,
            "status": {"type": "string", "enum": ["active", "pending", "expired"]},
        }
    ),
    "Kpi": _obj(
        {
            "city": STR,
            "unit": STR,
            "period": STR,
            "start": NUM,
            "as_of": NUM,
            "values": {"type": "object"},
        }
    ),
    "KpiList": _list_of("Kpi"),
    "FeatureCollection": _obj(
        {"type": {"const": "FeatureCollection"}, "features": {"type": "array"}}
    ),
    "StreamInfo": {"type": "object", "description": "WebSocket upgrade; see the description"},
    "DeviceList": _list_of("Device"),
    "OfficerList": _list_of("Officer"),
    "CaseList": _list_of("Case"),
    "AlertList": _list_of("Alert"),
    "SilenceList": _list_of("Silence"),
}


def _operation(r: Route) -> dict[str, Any]:
    name = r.path.strip("/").replace("/", "_").replace("{", "").replace("}", "")
    op: dict[str, Any] = {
        "summary": r.summary,
        "operationId": f"{r.method.lower()}_{name}",
        "description": f"Needs the role `{r.role}`.",
        "parameters": [
            {
                "name": p.name,
                "in": p.where,
                "required": p.required or p.where == "path",
                "schema": p.schema,
                "description": p.description,
            }
            for p in r.params
        ],
        "responses": {
            str(r.status): {
                "description": "OK",
                "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{r.response}"}}
                },
            },
            **{
                str(code): {
                    "description": "Error",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
                    },
                }
                for code in r.errors
            },
        },
        "security": [{"bearer": []}],
    }
    if r.body is not None:
        # Required, as JSON: a browser sends JSON to another site only after asking it
        # (a CORS preflight this server never grants), unlike a form or text.
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{r.body}"}}},
        }
    if r.method in UNSAFE_METHODS or r.path == "/api/v1/stream":
        op["description"] += " " + _BROWSERS
    return op


_BROWSERS = (
    "From a browser, only the console's own origin and `api.allowed_origins` may call it: "
    "an `Origin` header naming another site, `Origin: null`, or `Sec-Fetch-Site: cross-site` "
    "without an `Origin` gets 403."
)


def document(version: str) -> dict[str, Any]:
    """The OpenAPI document of every route in :data:`api.routes.ROUTES`."""
    paths: dict[str, Any] = {}
    for r in ROUTES:
        paths.setdefault(r.path, {})[r.method.lower()] = _operation(r)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "citywatch API",
            "version": version,
            "description": "Live state of handhelds, officers, cases and alerts; acknowledgements "
            "and silences; a resumable stream. Without api.tokens, only requests from this "
            "machine are served, and none through a proxy. Errors are JSON: "
            '{"error": {"status": 400, "message": "..."}}.',
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
