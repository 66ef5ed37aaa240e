"""巡查 Patrols: one officer's shift: track, distance, coverage, idle and out-of-grid, handheld."""

from __future__ import annotations

from citywatch.grafana.model import (
    CITY,
    CITY_VAR,
    JSON,
    LAT_LON,
    alert_annotations,
    dashboard,
    field_unit,
    geomap_options,
    influx,
    map_layer,
    panel,
    query_var,
)

UID = "citywatch-patrols"
OFFICER = '"officer" =~ /^$officer$/'
DEVICE = '"device" =~ /^$device$/'

OFFICER_VAR = query_var(
    "officer",
    "巡查员 officer",
    f'SHOW TAG VALUES FROM "shift" WITH KEY = "officer" WHERE {CITY}',
    multi=False,
    include_all=False,
    description="Officers with shift events (officer is a tag of shift and patrol_coverage).",
)
DEVICE_VAR = query_var(
    "device",
    "终端 device",
    f'SELECT distinct("device") FROM "shift" WHERE {OFFICER} AND "action" = \'start\' '
    "AND $timeFilter",
    all_value=None,
    hide=2,
    description="The handhelds the officer started shifts with in the time range (the device "
    "is a field of the shift start), so the device-tagged measurements follow the officer.",
)


def _track() -> JSON:
    track = influx(
        "A",
        f'SELECT "lat", "lon", "speed", "acc" FROM "gps" WHERE {DEVICE} AND $timeFilter',
        fmt="table",
    )
    events = influx(
        "B",
        'SELECT "lat", "lon", "status", "held" FROM "alert_event" '
        f'WHERE {OFFICER} AND "subject_kind" = \'officer\' AND $timeFilter GROUP BY "rule"',
        fmt="table",
    )
    return panel(
        1,
        "geomap",
        "班次轨迹",
        "The officer's track: every fix of their handheld(s) in the time range, and where "
        "each patrol alert fired or resolved (alert_event, by rule). Pick one shift's span "
        "in the time picker.",
        (0, 0, 14, 16),
        [track, events],
        options=geomap_options(
            [
                map_layer("A", "轨迹", LAT_LON, {"fixed": "blue"}, 3, route=True),
                map_layer("B", "巡查告警", LAT_LON, {"fixed": "orange"}, 8),
            ],
            15,
        ),
    )


def _coverage() -> list[JSON]:
    where = f'FROM "patrol_coverage" WHERE {OFFICER} AND $timeFilter'
    return [
        panel(
            2,
            "stat",
            "巡查里程 (最近班次)",
            "Distance walked in the latest shift starting in the time range (patrol_coverage, "
            "updated every minute; jumps faster than 5 m/s are skipped as GPS outliers).",
            (14, 0, 5, 5),
            [influx("A", f'SELECT last("distance_m") / 1000 AS "km" {where}')],
            unit="lengthkm",
            options={"graphMode": "none", "reduceOptions": {"calcs": ["lastNotNull"]}},
        ),
        panel(
            3,
            "gauge",
            "网格覆盖率 (最近班次)",
            "Share of the assigned cells with at least one accurate fix inside, latest shift "
            "starting in the time range.",
            (19, 0, 5, 5),
            [influx("A", f'SELECT last("share") AS "share" {where}')],
            unit="percentunit",
            defaults={"max": 1, "min": 0},
        ),
        panel(
            4,
            "table",
            "各班次覆盖与里程",
            "One row per shift starting in the time range (the point is at the shift's start "
            "and overwritten as it goes): cells assigned and visited, share, distance.",
            (14, 5, 10, 6),
            [
                influx(
                    "A",
                    f'SELECT "assigned", "visited", "share", "distance_m", "as_of" {where}',
                    fmt="table",
                )
            ],
            overrides=[
                field_unit("share", "percentunit"),
                field_unit("distance_m", "lengthm"),
                field_unit("as_of", "dateTimeAsIso"),
            ],
        ),
        panel(
            5,
            "table",
            "滞留与越界时段",
            "Idle and out-of-grid periods: each alert_event of patrol_idle / patrol_out_of_grid "
            "for the officer. 'since' is when the condition started (fix time); on a resolved "
            "event 'held' is how long it lasted.",
            (14, 11, 10, 5),
            [
                influx(
                    "A",
                    'SELECT "since" * 1000 AS "since", "held", "status", "lat", "lon" '
                    f'FROM "alert_event" WHERE {OFFICER} AND '
                    '"rule" =~ /^patrol_(idle|out_of_grid)$/ AND $timeFilter GROUP BY "rule"',
                    fmt="table",
                )
            ],
            overrides=[
                field_unit("since", "dateTimeAsIso"),
                field_unit("held", "s"),
            ],
        ),
    ]


def _handheld() -> list[JSON]:
    return [
        panel(
            6,
            "timeseries",
            "心跳与定位间隔",
            "Seconds since the previous heartbeat and the previous fix of the officer's "
            "handheld (by the handheld's timestamps): spikes are gaps.",
            (0, 16, 12, 8),
            [
                influx(
                    "A",
                    'SELECT elapsed("recv_lag", 1s) AS "heartbeat_gap" FROM "heartbeat" '
                    f'WHERE {DEVICE} AND $timeFilter GROUP BY "device"',
                    alias="心跳间隔 $tag_device",
                ),
                influx(
                    "B",
                    'SELECT elapsed("lat", 1s) AS "fix_gap" FROM "gps" '
                    f'WHERE {DEVICE} AND $timeFilter GROUP BY "device"',
                    alias="定位间隔 $tag_device",
                ),
            ],
            unit="s",
        ),
        panel(
            7,
            "timeseries",
            "电量",
            "Battery of the officer's handheld from its heartbeats.",
            (12, 16, 12, 8),
            [
                influx(
                    "A",
                    'SELECT mean("battery") AS "battery" FROM "heartbeat" '
                    f'WHERE {DEVICE} AND $timeFilter GROUP BY time($__interval), "device" '
                    "fill(none)",
                    alias="$tag_device",
                )
            ],
            unit="percent",
            defaults={"max": 100, "min": 0},
        ),
        panel(
            8,
            "table",
            "班次记录",
            "Shift starts and ends, breaks: with the handheld, the assigned cells, role and lead.",
            (0, 24, 24, 6),
            [
                influx(
                    "A",
                    'SELECT "on_duty", "device", "grids", "role", "lead" FROM "shift" '
                    f'WHERE {OFFICER} AND $timeFilter GROUP BY "action"',
                    fmt="table",
                )
            ],
        ),
    ]


def build() -> JSON:
    """The patrols dashboard."""
    return dashboard(
        UID,
        "巡查 Patrols",
        "One officer's shifts: track, distance, coverage, idle and out-of-grid periods, "
        "heartbeat gaps and battery. District and grid are not stored with fixes, so this "
        "dashboard is chosen by officer.",
        [_track(), *_coverage(), *_handheld()],
        [CITY_VAR, OFFICER_VAR, DEVICE_VAR],
        alert_annotations(
            'SELECT "officer", "rule", "status", "severity" FROM "alert_event" '
            f"WHERE {OFFICER} AND \"subject_kind\" = 'officer' AND $timeFilter",
            "officer",
            "rule,status,severity",
            "巡查告警 (alert_event)",
        ),
    )
