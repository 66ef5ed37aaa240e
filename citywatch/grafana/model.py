"""Small builders for Grafana dashboard JSON: targets, panels, variables, annotations.

Datasources are referred to by the uids that ``grafana/provisioning/`` gives them.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]

INFLUX: JSON = {"type": "influxdb", "uid": "citywatch-influx"}
PROMETHEUS: JSON = {"type": "prometheus", "uid": "citywatch-prometheus"}
GRAFANA: JSON = {"type": "grafana", "uid": "-- Grafana --"}
TAG = "citywatch"
"""Tag of every dashboard, and of the annotations alerting posts to Grafana."""

CITY = '"city" =~ /^$city$/'
UNIT = '"unit" =~ /^$unit$/'
GRID = '"grid" =~ /^$district/ AND "grid" =~ /^$grid$/'


def influx(ref: str, query: str, *, fmt: str = "time_series", alias: str = "") -> JSON:
    """A raw InfluxQL target."""
    target: JSON = {
        "datasource": INFLUX,
        "query": query,
        "rawQuery": True,
        "refId": ref,
        "resultFormat": fmt,
    }
    if alias:
        target["alias"] = alias
    return target


def prom(ref: str, expr: str, legend: str = "", *, instant: bool = False) -> JSON:
    """A PromQL target."""
    return {
        "datasource": PROMETHEUS,
        "expr": expr,
        "instant": instant,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "refId": ref,
    }


def panel(
    pid: int,
    kind: str,
    title: str,
    description: str,
    pos: tuple[int, int, int, int],
    targets: list[JSON],
    *,
    unit: str = "",
    options: JSON | None = None,
    defaults: JSON | None = None,
    overrides: list[JSON] | None = None,
    transformations: list[JSON] | None = None,
) -> JSON:
    """A panel at ``pos`` = (x, y, w, h); its datasource is that of its first target."""
    x, y, w, h = pos
    field_defaults: JSON = dict(defaults or {})
    if unit:
        field_defaults["unit"] = unit
    out: JSON = {
        "datasource": targets[0]["datasource"],
        "description": description,
        "fieldConfig": {"defaults": field_defaults, "overrides": overrides or []},
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "id": pid,
        "options": options or {},
        "targets": targets,
        "title": title,
        "type": kind,
    }
    if transformations:
        out["transformations"] = transformations
    return out


def query_var(
    name: str,
    label: str,
    query: str,
    *,
    datasource: JSON = INFLUX,
    multi: bool = True,
    include_all: bool = True,
    all_value: str | None = ".*",
    regex: str = "",
    hide: int = 0,
    description: str = "",
) -> JSON:
    """A query variable, refreshed when the time range changes."""
    return {
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]} if include_all else {},
        "datasource": datasource,
        "definition": query,
        "description": description,
        "hide": hide,
        "includeAll": include_all,
        "allValue": all_value if include_all else None,
        "label": label,
        "multi": multi,
        "name": name,
        "options": [],
        "query": query,
        "refresh": 2,
        "regex": regex,
        "skipUrlSync": False,
        "sort": 1,
        "type": "query",
    }


CITY_VAR = query_var(
    "city",
    "城市 city",
    'SHOW TAG VALUES FROM "gps" WITH KEY = "city"',
    all_value=None,
    description="6-digit division code: the city tag of every measurement.",
)
DISTRICT_VAR = query_var(
    "district",
    "区县 district",
    'SELECT distinct("grid") FROM "case_event" WHERE ' + CITY + " AND $timeFilter",
    regex="/^(\\d{6})/",
    description="The first 6 digits of the grid codes of the cases in the time range: "
    "no measurement stores the district as such.",
)
GRID_VAR = query_var(
    "grid",
    "网格 grid",
    'SELECT distinct("grid") FROM "case_event" WHERE '
    + CITY
    + ' AND "grid" =~ /^$district/ AND $timeFilter',
    description="15-digit unit-grid cells with cases in the time range (grid is a field).",
)
UNIT_VAR = query_var(
    "unit",
    "责任单位 unit",
    'SHOW TAG VALUES FROM "case_event" WITH KEY = "unit" WHERE ' + CITY,
    description="Responsible unit (a tag of case_event and case_kpi).",
)


def alert_annotations(influx_query: str, text: str, tags: str, name: str) -> JSON:
    """Grafana's own annotations tagged ``citywatch`` (posted by alerting) and an InfluxQL one."""
    return {
        "list": [
            {
                "builtIn": 1,
                "datasource": GRAFANA,
                "enable": True,
                "hide": True,
                "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts",
                "type": "dashboard",
            },
            {
                "datasource": GRAFANA,
                "enable": True,
                "iconColor": "red",
                "name": "告警通知 (citywatch)",
                "target": {"limit": 200, "matchAny": True, "tags": [TAG], "type": "tags"},
            },
            {
                "datasource": INFLUX,
                "enable": True,
                "iconColor": "orange",
                "name": name,
                "query": influx_query,
                "tagsColumn": tags,
                "textColumn": text,
                "titleColumn": "",
            },
        ]
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[JSON],
    variables: list[JSON],
    annotation_list: JSON,
    *,
    time_from: str = "now-12h",
    refresh: str = "30s",
) -> JSON:
    """A dashboard without ``id``/``version`` (Grafana assigns those)."""
    ids = [p["id"] for p in panels]
    if len(ids) != len(set(ids)):
        raise ValueError(f"{uid}: duplicate panel ids {ids}")
    return {
        "annotations": annotation_list,
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "links": [],
        "panels": panels,
        "refresh": refresh,
        "schemaVersion": 39,
        "tags": [TAG],
        "templating": {"list": variables},
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": title,
        "uid": uid,
        "weekStart": "",
    }


def last_by(keys: list[str], fields: list[str], ref: str) -> list[JSON]:
    """Transformations: the latest row per ``keys`` of query ``ref`` (tags made fields first)."""
    only = {"id": "byRefId", "options": ref}
    calcs: JSON = {k: {"aggregations": [], "operation": "groupby"} for k in keys}
    calcs.update({f: {"aggregations": ["last"], "operation": "aggregate"} for f in fields})
    rename = {f"{f} (last)": f for f in fields}
    return [
        {"filter": only, "id": "labelsToFields", "options": {"mode": "columns"}},
        {"filter": only, "id": "merge", "options": {}},
        {"filter": only, "id": "sortBy", "options": {"sort": [{"field": "Time"}]}},
        {"filter": only, "id": "groupBy", "options": {"fields": calcs}},
        {"filter": only, "id": "organize", "options": {"renameByName": rename}},
    ]


def keep_if(field: str, pattern: str, ref: str) -> JSON:
    """A transformation keeping the rows of ``ref`` whose ``field`` matches ``pattern``."""
    return {
        "filter": {"id": "byRefId", "options": ref},
        "id": "filterByValue",
        "options": {
            "filters": [
                {"config": {"id": "regex", "options": {"value": pattern}}, "fieldName": field}
            ],
            "match": "any",
            "type": "include",
        },
    }


def field_unit(field: str, unit: str, display: str = "") -> JSON:
    """An override showing ``field`` in ``unit``, titled ``display`` if given."""
    properties: list[JSON] = [{"id": "unit", "value": unit}]
    if display:
        properties.append({"id": "displayName", "value": display})
    return {"matcher": {"id": "byName", "options": field}, "properties": properties}


def map_layer(
    ref: str,
    name: str,
    location: JSON,
    color: JSON,
    size: int,
    *,
    route: bool = False,
    legend: bool = True,
) -> JSON:
    """A geomap layer of query ``ref``'s rows at ``location``: markers with a tooltip, or
    with ``route`` a line with arrows; ``color`` is Grafana's color setting, ``size`` fixed."""
    layer: JSON = {
        "filterData": {"id": "byRefId", "options": ref},
        "location": location,
        "name": name,
        "type": "route" if route else "markers",
    }
    style = {"color": color, "size": {"fixed": size}}
    if route:
        return {**layer, "config": {"arrow": 1, "style": style}}
    return {**layer, "config": {"showLegend": legend, "style": style}, "tooltip": True}


LAT_LON: JSON = {"mode": "coords", "latitude": "lat", "longitude": "lon"}
"""A geomap layer's ``location``: the row's ``lat`` and ``lon`` columns."""


def geomap_options(
    layers: list[JSON], zoom: int, *, attribution: bool = False, tooltip: str | None = None
) -> JSON:
    """A geomap's options: the default basemap, zoom controls, ``layers``, and the view
    fitted to the data (over the city at ``zoom`` when there is none); ``attribution``
    shows the basemap's credit, ``tooltip`` sets the tooltip mode."""
    controls: JSON = {"mouseWheelZoom": True, "showZoom": True}
    if attribution:
        controls["showAttribution"] = True
    options: JSON = {
        "basemap": {"config": {}, "name": "底图", "type": "default"},
        "controls": controls,
        "layers": layers,
        "view": {"id": "fit", "lat": 32.45, "lon": 119.92, "zoom": zoom},
    }
    if tooltip is not None:
        options["tooltip"] = {"mode": tooltip}
    return options


def value_colors(field: str, colors: dict[str, tuple[str, str]]) -> JSON:
    """An override giving each value of ``field`` a colour and a display text."""
    mappings = {
        v: {"color": c, "index": i, "text": t} for i, (v, (c, t)) in enumerate(colors.items())
    }
    return {
        "matcher": {"id": "byName", "options": field},
        "properties": [{"id": "mappings", "value": [{"options": mappings, "type": "value"}]}],
    }
