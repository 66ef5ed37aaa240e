"""The OpenAPI 3.1 document, generated from the route table (:mod:`api.routes`).

Each operation's parameters and request body are stated by the same kinds the guard
(:mod:`api.guard`) checks them with, and its role and scope rule are those the guard
enforces: the document cannot say other than what is done.
"""

from __future__ import annotations

from typing import Any

from citywatch.api.auth import UNSAFE_METHODS
from citywatch.api.config import ApiConfig
from citywatch.api.params import MATCHER_SCHEMA, Param
from citywatch.api.routes import ROUTES, TOKEN, Route
from citywatch.rules.patrols.specs import STATE_NAMES

NUM = {"type": "number"}
NUM_OR_NULL = {"type": ["number", "null"]}
STR = {"type": "string"}
STR_OR_NULL = {"type": ["string", "null"]}
INT = {"type": "integer"}


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
    MATCHER_SCHEMA: _obj(
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 64},
            "value": {"type": "string", "maxLength": 256},
            "op": {"type": "string", "enum": ["=", "!=", "=~", "!~"]},
        },
        ("name", "value"),
    )
    | {"additionalProperties": False},
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


def _parameter(p: Param[Any]) -> dict[str, Any]:
    return {
        "name": p.name,
        "in": p.where,
        "required": p.required,
        "schema": p.kind.schema(),
        "description": p.description,
    }


def _body(r: Route) -> dict[str, Any]:
    """The schema of a route's JSON body, from its fields."""
    fields = r.body_params
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {p.name: p.kind.schema() | {"description": p.description} for p in fields},
    }
    required = [p.name for p in fields if p.required]
    if required:
        schema["required"] = required
    return schema


def _operation(r: Route) -> dict[str, Any]:
    name = r.path.strip("/").replace("/", "_").replace("{", "").replace("}", "")
    params = [p for p in r.params if p.where != "body"]
    if r.websocket:
        params.append(TOKEN)
    op: dict[str, Any] = {
        "summary": r.summary,
        "operationId": f"{r.method.lower()}_{name}",
        "description": f"Needs the role `{r.role}`. {r.scope.doc}",
        "parameters": [_parameter(p) for p in params],
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
    if r.method in UNSAFE_METHODS or r.websocket:
        op["description"] += " " + _BROWSERS
    return op


_BROWSERS = (
    "From a browser, only the console's own origin and `api.allowed_origins` may call it: "
    "an `Origin` header naming another site, `Origin: null`, or `Sec-Fetch-Site: cross-site` "
    "without an `Origin` gets 403."
)


def document(
    version: str, cfg: ApiConfig | None = None, routes: tuple[Route, ...] = ROUTES
) -> dict[str, Any]:
    """The OpenAPI document of ``routes`` (the table), with the bounds ``cfg`` sets."""
    cfg = cfg or ApiConfig()
    paths: dict[str, Any] = {}
    schemas = dict(SCHEMAS)
    for r in routes:
        r = r.configured(cfg)
        paths.setdefault(r.path, {})[r.method.lower()] = _operation(r)
        if r.body is not None:
            schemas[r.body] = _body(r)
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
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
