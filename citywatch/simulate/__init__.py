"""``citywatch simulate``: a synthetic district, its officers' handhelds and its cases.

:func:`make_district` builds the unit-grid GeoJSON, :class:`Fleet` turns a
:class:`SimConfig` into a deterministic stream of :class:`Message` objects,
and :func:`run_simulation` publishes that stream to an MQTT broker in real
(or sped-up) time.
"""

from citywatch.simulate.fleet import Fleet, SimConfig
from citywatch.simulate.grid import cell_index, make_district, write_geojson
from citywatch.simulate.message import Message
from citywatch.simulate.runner import SimStats, run_simulation

__all__ = [
    "Fleet",
    "Message",
    "SimConfig",
    "SimStats",
    "cell_index",
    "make_district",
    "run_simulation",
    "write_geojson",
]
