"""案件 Cases: steps over time, the evaluation KPIs by unit, time to close, monthly ranking."""

from __future__ import annotations

from citywatch.grafana.model import (
    CITY,
    CITY_VAR,
    DISTRICT_VAR,
    GRID,
    GRID_VAR,
    JSON,
    UNIT,
    UNIT_VAR,
    alert_annotations,
    dashboard,
    field_unit,
    influx,
    keep_if,
    panel,
    query_var,
)

UID = "citywatch-cases"
CATEGORY = '"category" =~ /^$category$/'
EVENTS = f"{CITY} AND {UNIT} AND {CATEGORY} AND {GRID}"
KPI = f"{CITY} AND \"period\" = '$period'"

RATES = {
    "closing_rate": "结案率",
    "on_time_closing_rate": "按期结案率",
    "on_time_disposal_rate": "按期处置率",
    "rework_rate": "返工率",
    "extension_rate": "延期率",
}

CATEGORY_VAR = query_var(
    "category",
    "类别 category",
    f'SHOW TAG VALUES FROM "case_event" WITH KEY = "category" WHERE {CITY}',
    description="Case category code (a tag of case_event).",
)
PERIOD_VAR = query_var(
    "period",
    "月份 period",
    f'SHOW TAG VALUES FROM "case_kpi" WITH KEY = "period" WHERE {CITY}',
    multi=False,
    include_all=False,
    description="Month of the KPIs (YYYY-MM, a tag of case_kpi).",
)
PERIOD_VAR["sort"] = 2


def _rate_overrides() -> list[JSON]:
    return [field_unit(name, "percentunit", f"{label} {name}") for name, label in RATES.items()]


def _steps_and_kpis() -> list[JSON]:
    rates = ", ".join(f'last("{n}") AS "{n}"' for n in RATES)
    return [
        panel(
            1,
            "timeseries",
            "各环节事件数",
            "Case events per interval by step (reported, filed, dispatched, ...), filtered by "
            "unit and category (tags) and district and grid (the grid field: events without a "
            "grid are left out).",
            (0, 0, 24, 8),
            [
                influx(
                    "A",
                    'SELECT count("case") FROM "case_event" '
                    f'WHERE {EVENTS} AND $timeFilter GROUP BY time($__interval), "event" fill(0)',
                    alias="$tag_event",
                )
            ],
            options={"legend": {"displayMode": "table", "placement": "right"}},
            defaults={"custom": {"drawStyle": "bars", "stacking": {"mode": "normal"}}},
        ),
        panel(
            2,
            "table",
            "考核指标 (按单位)",
            "The CJ/T 292 evaluation KPIs of the chosen month per unit (_all: the whole city), "
            "from case_kpi as last computed by the case rule. Rates with a zero denominator "
            "are blank; mean disposal time is counted on the disposal calendar.",
            (0, 8, 14, 8),
            [
                influx(
                    "A",
                    f'SELECT last("filed") AS "filed", last("due_to_close") AS "due_to_close", '
                    f'{rates}, last("mean_disposal_seconds") AS "mean_disposal_seconds" '
                    f'FROM "case_kpi" WHERE {KPI} AND {UNIT} GROUP BY "unit"',
                    fmt="table",
                )
            ],
            overrides=[
                *_rate_overrides(),
                field_unit("mean_disposal_seconds", "s", "平均处置时长"),
            ],
        ),
        panel(
            3,
            "barchart",
            "月度单位排名 (按期结案率)",
            "Units of the chosen month ranked by on-time closing rate (按期结案率), with the "
            "closing rate (结案率) beside, from case_kpi.",
            (14, 8, 10, 8),
            [
                influx(
                    "A",
                    'SELECT last("on_time_closing_rate") AS "on_time_closing_rate", '
                    'last("closing_rate") AS "closing_rate" FROM "case_kpi" '
                    f'WHERE {KPI} AND "unit" != \'_all\' GROUP BY "unit"',
                    fmt="table",
                )
            ],
            options={"orientation": "horizontal", "xField": "unit", "showValue": "auto"},
            unit="percentunit",
            transformations=[
                {
                    "id": "sortBy",
                    "options": {"sort": [{"desc": True, "field": "on_time_closing_rate"}]},
                }
            ],
        ),
    ]


def _categories_and_times() -> list[JSON]:
    return [
        panel(
            4,
            "table",
            "类别: 派遣数",
            "Cases dispatched per category in the time range. case_kpi has no category "
            "breakdown: read this with the red steps per category beside as the category view.",
            (0, 16, 8, 8),
            [
                influx(
                    "A",
                    'SELECT count("case") AS "dispatched" FROM "case_event" '
                    f"WHERE \"event\" = 'dispatched' AND {EVENTS} AND $timeFilter "
                    'GROUP BY "category"',
                    fmt="table",
                )
            ],
        ),
        panel(
            5,
            "barchart",
            "类别: 超期环节数",
            "Steps that went overdue (case_overdue firing) in the time range, per category "
            "(a field of alert_event, counted by a Grafana transformation).",
            (8, 16, 8, 8),
            [
                influx(
                    "A",
                    'SELECT "category", "fingerprint" FROM "alert_event" '
                    "WHERE \"rule\" = 'case_overdue' AND \"status\" = 'firing' "
                    f"AND {CITY} AND {UNIT} AND {GRID} AND $timeFilter",
                    fmt="table",
                )
            ],
            options={"orientation": "horizontal", "xField": "category"},
            transformations=[
                {
                    "id": "groupBy",
                    "options": {
                        "fields": {
                            "category": {"aggregations": [], "operation": "groupby"},
                            "fingerprint": {"aggregations": ["count"], "operation": "aggregate"},
                        }
                    },
                }
            ],
        ),
        panel(
            6,
            "histogram",
            "结案用时分布",
            "Hours from reported to closed, for cases both reported and closed in the time "
            "range (InfluxQL cannot pair events of one case: the time field is grouped by case "
            "id in Grafana). Wall-clock hours, not the counted working time.",
            (16, 16, 8, 8),
            [
                influx(
                    "A",
                    'SELECT "case" FROM "case_event" '
                    "WHERE (\"event\" = 'reported' OR \"event\" = 'closed') "
                    f"AND {EVENTS} AND $timeFilter",
                    fmt="table",
                )
            ],
            transformations=[
                {
                    "id": "convertFieldType",
                    "options": {
                        "conversions": [{"destinationType": "number", "targetField": "Time"}]
                    },
                },
                {
                    "id": "groupBy",
                    "options": {
                        "fields": {
                            "Time": {"aggregations": ["range", "count"], "operation": "aggregate"},
                            "case": {"aggregations": [], "operation": "groupby"},
                        }
                    },
                },
                keep_if("Time (count)", "^2$", "A"),
                {
                    "id": "calculateField",
                    "options": {
                        "alias": "hours",
                        "binary": {"left": "Time (range)", "operator": "/", "right": "3600000"},
                        "mode": "binary",
                        "replaceFields": True,
                    },
                },
            ],
            options={"bucketSize": 1},
        ),
    ]


def build() -> JSON:
    """The cases dashboard."""
    return dashboard(
        UID,
        "案件 Cases",
        "Case events by step, the evaluation KPIs (结案率, 按期结案率, 按期处置率, 返工率, "
        "延期率) by unit, categories, time to close and the monthly ranking of units.",
        [*_steps_and_kpis(), *_categories_and_times()],
        [CITY_VAR, DISTRICT_VAR, GRID_VAR, UNIT_VAR, CATEGORY_VAR, PERIOD_VAR],
        alert_annotations(
            'SELECT "subject", "rule", "step", "unit" FROM "alert_event" '
            f"WHERE {CITY} AND \"rule\" = 'case_overdue' AND \"status\" = 'firing' "
            "AND $timeFilter",
            "subject",
            "rule,step,unit",
            "红灯 (case_overdue)",
        ),
        time_from="now-7d",
        refresh="1m",
    )
