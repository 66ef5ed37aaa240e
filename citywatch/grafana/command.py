"""指挥中心 Command center: who is where, which cases are late, what is alerting."""

from __future__ import annotations

from citywatch.grafana.model import (
    CITY,
    CITY_VAR,
    DISTRICT_VAR,
    GRID,
    GRID_VAR,
    JSON,
    LAT_LON,
    UNIT,
    UNIT_VAR,
    alert_annotations,
    dashboard,
    field_unit,
    geomap_options,
    influx,
    keep_if,
    last_by,
    map_layer,
    panel,
    prom,
    value_colors,
)
from citywatch.rules.patrols.specs import PATROL_RULES

UID = "citywatch-command"

PATROL_STATES = {spec.name: spec.grafana for spec in PATROL_RULES}
"""Colour and legend of each patrol rule's markers on the map."""
LIGHTS = {"case_warning": ("yellow", "黄灯"), "case_overdue": ("red", "红灯")}

_ALERT_FIELDS = ["alert_id", "status", "subject", "officer", "grid", "unit", "receivers"]


def _colours() -> str:
    return ", ".join(f"{spec.state.en} {spec.grafana[0]}" for spec in PATROL_RULES)


def _map() -> JSON:
    positions = influx(
        "A",
        'SELECT last("lat") AS "lat", last("lon") AS "lon", last("speed") AS "speed" '
        f'FROM "gps" WHERE {CITY} AND time > now() - 15m GROUP BY "device"',
        fmt="table",
    )
    alerts = influx(
        "B",
        'SELECT "lat", "lon", "officer", "device", "status", "held" FROM "alert_event" '
        f'WHERE {CITY} AND "subject_kind" = \'officer\' AND time > now() - 12h GROUP BY "rule"',
        fmt="table",
    )
    fields = ["lat", "lon", "device", "status", "held"]
    return panel(
        1,
        "geomap",
        "在岗人员位置与巡查状态",
        "Green: the last fix of every handheld that sent one in the last 15 min (a handheld "
        "fixing is taken as on duty). Coloured: the patrol state, which is not stored as such; "
        "it is the (officer, rule) pairs whose latest alert_event of the last 12 h is firing "
        f"({_colours()}), drawn at the "
        "position the rule last saw. An officer with none is patrolling normally.",
        (0, 0, 14, 15),
        [positions, alerts],
        options=geomap_options(
            [
                map_layer("A", "定位 (15 分钟内)", LAT_LON, {"fixed": "green"}, 5, legend=False),
                map_layer("B", "巡查告警中", LAT_LON, {"field": "rule", "fixed": "red"}, 9),
            ],
            14,
            attribution=True,
            tooltip="details",
        ),
        overrides=[value_colors("rule", PATROL_STATES)],
        transformations=[
            *last_by(["officer", "rule"], fields, "B"),
            keep_if("status", "^firing$", "B"),
        ],
    )


def _cases() -> list[JSON]:
    lit = influx(
        "A",
        'SELECT "step", "status", "fingerprint" FROM "alert_event" '
        f"WHERE {CITY} AND {UNIT} AND {GRID} AND \"subject_kind\" = 'case' "
        'AND time > now() - 30d GROUP BY "rule"',
        fmt="table",
    )
    red = influx(
        "A",
        'SELECT "subject", "step", "unit", "category", "grid", "deadline" * 1000 AS '
        '"overdue_since", "overdue_by", "status", "fingerprint" FROM "alert_event" '
        f"WHERE \"rule\" = 'case_overdue' AND {CITY} AND {UNIT} AND {GRID} "
        "AND time > now() - 30d",
        fmt="table",
    )
    red_fields = ["subject", "step", "unit", "category", "grid", "overdue_since", "status"]
    return [
        panel(
            2,
            "stat",
            "在办案件与亮灯环节",
            "Open cases and lit steps (yellow, red) from the case rule's own gauges "
            "(Prometheus, exact and live, all cities and units).",
            (14, 0, 10, 4),
            [
                prom("A", "sum(citywatch_cases_open)", "在办 open", instant=True),
                prom("B", "sum by (light) (citywatch_case_steps_lit)", "{{light}}", instant=True),
            ],
            options={"colorMode": "background", "graphMode": "none", "textMode": "value_and_name"},
        ),
        panel(
            3,
            "barchart",
            "亮灯环节 (按环节、灯色)",
            "Lit steps by step and light, from alert_event: per alert fingerprint (case + step + "
            "rule) the latest event of the last 30 days, kept if firing. A red step is also "
            "counted yellow (both rules fire). Green steps are not stored per step; the open "
            "total is in the panel beside. Filtered by unit and grid (fields of alert_event).",
            (14, 4, 10, 11),
            [lit],
            options={"orientation": "horizontal", "showValue": "auto", "stacking": "normal"},
            transformations=[
                *last_by(["fingerprint"], ["step", "status", "rule"], "A"),
                keep_if("status", "^firing$", "A"),
                {
                    "id": "groupBy",
                    "options": {
                        "fields": {
                            "fingerprint": {"aggregations": ["count"], "operation": "aggregate"},
                            "rule": {"aggregations": [], "operation": "groupby"},
                            "step": {"aggregations": [], "operation": "groupby"},
                        }
                    },
                },
                {
                    "id": "groupingToMatrix",
                    "options": {
                        "columnField": "rule",
                        "rowField": "step",
                        "valueField": "fingerprint (count)",
                    },
                },
            ],
            overrides=[value_colors("rule", LIGHTS)],
        ),
        panel(
            4,
            "table",
            "红灯案件 (超期时长)",
            "Steps past their deadline and not yet done: the latest case_overdue event per "
            "fingerprint in the last 30 days, kept if firing. 'overdue_since' is the deadline, "
            "shown as time since (wall clock); overdue_by is the counted (calendar) seconds "
            "past the limit when it fired.",
            (0, 15, 14, 9),
            [red],
            options={
                "showHeader": True,
                "sortBy": [{"desc": False, "displayName": "overdue_since"}],
            },
            overrides=[field_unit("overdue_since", "dateTimeFromNow", "超期 overdue since")],
            transformations=[
                *last_by(["fingerprint"], red_fields, "A"),
                keep_if("status", "^firing$", "A"),
                {
                    "id": "organize",
                    "options": {"excludeByName": {"fingerprint": True, "status": True}},
                },
            ],
        ),
    ]


def _alerts_and_devices() -> list[JSON]:
    alerts = influx(
        "A",
        'SELECT "alert_id", "status", "subject", "officer", "grid", "unit", "receivers" '
        f'FROM "alert" WHERE {CITY} AND time > now() - 7d GROUP BY "rule", "severity"',
        fmt="table",
    )
    online = influx(
        "A",
        'SELECT count("recv_lag") AS "online" FROM (SELECT last("recv_lag") AS "recv_lag" '
        f'FROM "heartbeat" WHERE {CITY} AND time > now() - 5m GROUP BY "device")',
    )
    gps_lost = influx(
        "B",
        'SELECT count("gps") AS "gps_lost" FROM (SELECT last("gps") AS "gps" FROM "heartbeat" '
        f'WHERE {CITY} AND time > now() - 10m GROUP BY "device") WHERE "gps" = false',
    )
    offline = influx(
        "C",
        'SELECT count("status") AS "offline" FROM (SELECT last("status") AS "status" '
        f'FROM "device_status" WHERE {CITY} AND time > now() - 7d GROUP BY "device") '
        "WHERE \"status\" = 'offline'",
    )
    return [
        panel(
            5,
            "table",
            "未关闭告警",
            "Alerts still open (firing or acknowledged): from the alert history (measurement "
            "alert), the latest change of each alert id in the last 7 days. Alerting's own "
            "count is in the stat beside.",
            (14, 15, 10, 9),
            [alerts],
            transformations=[
                *last_by(["alert_id"], [f for f in _ALERT_FIELDS if f != "alert_id"], "A"),
                keep_if("status", "^(firing|acknowledged)$", "A"),
            ],
        ),
        panel(
            6,
            "stat",
            "告警 (按级别、状态)",
            "Open alerts by severity and state, from alerting's gauge (Prometheus).",
            (0, 24, 6, 5),
            [
                prom(
                    "A",
                    "sum by (severity, state) (citywatch_alerts)",
                    "{{severity}} {{state}}",
                    instant=True,
                )
            ],
            options={"colorMode": "value", "graphMode": "none", "textMode": "value_and_name"},
        ),
        panel(
            7,
            "stat",
            "设备: 在线 / GPS 丢失 / 离线",
            "Handhelds with a heartbeat in the last 5 min; those whose latest heartbeat in the "
            "last 10 min says gps=false; those whose latest status in 7 days is offline.",
            (6, 24, 8, 5),
            [online, gps_lost, offline],
            defaults={"noValue": "0"},
            options={"colorMode": "value", "graphMode": "none", "textMode": "value_and_name"},
        ),
        panel(
            8,
            "stat",
            "巡查人员状态",
            "Officers on shift by patrol state, from the patrol rule's gauge (Prometheus): the "
            "live state the dashboard's map approximates from stored events.",
            (14, 24, 10, 5),
            [prom("A", "sum by (state) (citywatch_patrol_officers)", "{{state}}", instant=True)],
            options={"colorMode": "value", "graphMode": "none", "textMode": "value_and_name"},
        ),
    ]


def _rates() -> list[JSON]:
    return [
        panel(
            9,
            "timeseries",
            "每秒消息数",
            "MQTT messages received per second by kind (Prometheus, by arrival time).",
            (0, 29, 12, 8),
            [
                prom(
                    "A",
                    "sum by (kind) (rate(citywatch_ingest_received_total[$__rate_interval]))",
                    "{{kind}}",
                )
            ],
            unit="reqps",
        ),
        panel(
            10,
            "timeseries",
            "每秒定位点 (按定位时间)",
            "GPS fixes stored per second, counted by the handheld's fix time (a buffered "
            "upload lands in the minutes the fixes were taken).",
            (12, 29, 12, 8),
            [
                influx(
                    "A",
                    'SELECT count("lat") / 60 AS "fixes_per_s" FROM "gps" '
                    f"WHERE {CITY} AND $timeFilter GROUP BY time(1m) fill(0)",
                    alias="定位点/秒",
                )
            ],
            unit="reqps",
        ),
    ]


def build() -> JSON:
    """The command-center dashboard."""
    return dashboard(
        UID,
        "指挥中心 Command center",
        "On-duty officers on the map, late cases, open alerts, devices and traffic.",
        [_map(), *_cases(), *_alerts_and_devices(), *_rates()],
        [CITY_VAR, DISTRICT_VAR, GRID_VAR, UNIT_VAR],
        alert_annotations(
            'SELECT "subject", "rule", "severity", "fingerprint" FROM "alert" '
            f"WHERE {CITY} AND \"change\" = 'opened' AND \"severity\" = 'red' AND $timeFilter",
            "subject",
            "rule,severity",
            "红色告警 (alert opened)",
        ),
    )
