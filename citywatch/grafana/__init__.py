"""Grafana for the command center: dashboards as code, and ``citywatch grafana sync``.

:mod:`citywatch.grafana.build` renders the dashboards (the JSON kept in
``grafana/dashboards/``); :mod:`citywatch.grafana.sync` pushes them to a running
Grafana through its HTTP API.
"""
