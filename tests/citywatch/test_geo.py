"""Chinese map datums (checked against coordtransform's published values) and distances."""

from __future__ import annotations

import math

import pytest

from citywatch.geo import (
    EARTH_RADIUS_M,
    bd09_to_gcj02,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    haversine_m,
    offset_m,
    out_of_china,
    to_wgs84,
    wgs84_to_gcj02,
)

# Tiananmen, the point used in coordtransform's README.
LON, LAT = 116.404, 39.915
# coordtransform's one-step gcj02_to_wgs84 approximation for that point.
COORDTRANSFORM_GCJ_TO_WGS = (116.39775550083061, 39.91359571849836)
# Points in the cities of the examples, and spread over China.
CHINA_POINTS = [
    (LON, LAT),
    (119.922874, 32.455512),  # Taizhou, Jiangsu
    (121.4737, 31.2304),  # Shanghai
    (113.2644, 23.1291),  # Guangzhou
    (87.6168, 43.8256),  # Urumqi
    (126.6424, 45.7569),  # Harbin
    (109.5120, 18.2528),  # Sanya
]
OUTSIDE = [(2.3522, 48.8566), (-74.006, 40.7128), (139.6917, 35.6895), (151.2093, -33.8688)]


@pytest.mark.parametrize(
    ("fn", "expected"),
    [
        (bd09_to_gcj02, (116.39762729119315, 39.90865673957631)),
        (gcj02_to_bd09, (116.41036949371029, 39.92133699351021)),
        (wgs84_to_gcj02, (116.41024449916938, 39.91640428150164)),
    ],
    ids=["bd09_to_gcj02", "gcj02_to_bd09", "wgs84_to_gcj02"],
)
def test_coordtransform_reference_values(fn: object, expected: tuple[float, float]) -> None:
    lon, lat = fn(LON, LAT)  # type: ignore[operator]
    assert lon == pytest.approx(expected[0], abs=1e-9)
    assert lat == pytest.approx(expected[1], abs=1e-9)


def test_gcj02_to_wgs84_inverts_the_forward_transform() -> None:
    wlon, wlat = gcj02_to_wgs84(LON, LAT)
    glon, glat = wgs84_to_gcj02(wlon, wlat)
    assert abs(glon - LON) < 1e-8
    assert abs(glat - LAT) < 1e-8


def test_gcj02_to_wgs84_is_within_a_metre_of_coordtransform() -> None:
    wlon, wlat = gcj02_to_wgs84(LON, LAT)
    assert haversine_m(wlon, wlat, *COORDTRANSFORM_GCJ_TO_WGS) < 1.0
    # ...and better than it: the one-step approximation misses by centimetres.
    alon, alat = wgs84_to_gcj02(*COORDTRANSFORM_GCJ_TO_WGS)
    assert haversine_m(alon, alat, LON, LAT) > haversine_m(*wgs84_to_gcj02(wlon, wlat), LON, LAT)


@pytest.mark.parametrize(("lon", "lat"), CHINA_POINTS)
def test_gcj02_round_trip_across_china(lon: float, lat: float) -> None:
    glon, glat = wgs84_to_gcj02(lon, lat)
    offset = haversine_m(lon, lat, glon, glat)
    assert 10 < offset < 1000, "GCJ-02 shifts points by tens to hundreds of metres"
    wlon, wlat = gcj02_to_wgs84(glon, glat)
    assert abs(wlon - lon) < 1e-8
    assert abs(wlat - lat) < 1e-8


@pytest.mark.parametrize(("lon", "lat"), CHINA_POINTS)
def test_bd09_round_trip(lon: float, lat: float) -> None:
    blon, blat = gcj02_to_bd09(lon, lat)
    assert haversine_m(lon, lat, blon, blat) > 100, "BD-09 adds a further offset"
    back = bd09_to_gcj02(blon, blat)
    # The published BD-09 pair is not an exact inverse: it is off by up to about 20 cm.
    assert haversine_m(lon, lat, *back) < 0.3


@pytest.mark.parametrize(("lon", "lat"), OUTSIDE)
def test_out_of_china_points_are_unchanged(lon: float, lat: float) -> None:
    assert out_of_china(lon, lat)
    assert wgs84_to_gcj02(lon, lat) == (lon, lat)
    assert gcj02_to_wgs84(lon, lat) == (lon, lat)
    assert to_wgs84(lon, lat, "gcj02") == (lon, lat)


@pytest.mark.parametrize(("lon", "lat"), CHINA_POINTS)
def test_china_points_are_in_china(lon: float, lat: float) -> None:
    assert not out_of_china(lon, lat)


def test_to_wgs84_wgs84_is_identity() -> None:
    assert to_wgs84(LON, LAT, "wgs84") == (LON, LAT)


def test_to_wgs84_gcj02() -> None:
    assert to_wgs84(LON, LAT, "gcj02") == gcj02_to_wgs84(LON, LAT)


def test_to_wgs84_bd09() -> None:
    assert to_wgs84(LON, LAT, "bd09") == gcj02_to_wgs84(*bd09_to_gcj02(LON, LAT))


@pytest.mark.parametrize(("lon", "lat"), CHINA_POINTS)
def test_to_wgs84_undoes_what_the_map_sdks_do(lon: float, lat: float) -> None:
    gcj = wgs84_to_gcj02(lon, lat)
    bd = gcj02_to_bd09(*gcj)
    assert haversine_m(lon, lat, *to_wgs84(*gcj, "gcj02")) < 0.001
    assert haversine_m(lon, lat, *to_wgs84(*bd, "bd09")) < 0.3


@pytest.mark.parametrize("crs", ["cgcs2000", "WGS84", "", "bd-09"])
def test_to_wgs84_unknown_crs(crs: str) -> None:
    with pytest.raises(ValueError, match="unknown coordinate system"):
        to_wgs84(LON, LAT, crs)


@pytest.mark.parametrize(
    ("a", "b", "metres", "tol"),
    [
        ((0.0, 0.0), (0.0, 1.0), 111_195.0, 1.0),  # 1 degree of latitude
        ((116.0, 39.0), (116.0, 40.0), 111_195.0, 1.0),
        ((0.0, 0.0), (1.0, 0.0), 111_195.0, 1.0),  # 1 degree of longitude on the equator
        ((0.0, 0.0), (180.0, 0.0), 20_015_115.0, 10.0),  # half the equator
        ((0.0, 90.0), (0.0, -90.0), 20_015_115.0, 10.0),  # pole to pole
        ((LON, LAT), (LON, LAT), 0.0, 1e-9),
    ],
)
def test_haversine_known_distances(
    a: tuple[float, float], b: tuple[float, float], metres: float, tol: float
) -> None:
    assert haversine_m(*a, *b) == pytest.approx(metres, abs=tol)
    assert haversine_m(*b, *a) == pytest.approx(haversine_m(*a, *b))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ((116.5975, 40.0799), (121.8053, 31.1443)),  # Beijing Capital to Shanghai Pudong
        ((119.922874, 32.455512), (119.911042, 32.448301)),  # across Taizhou
        ((87.6168, 43.8256), (109.5120, 18.2528)),  # Urumqi to Sanya
    ],
)
def test_haversine_agrees_with_the_spherical_law_of_cosines(
    a: tuple[float, float], b: tuple[float, float]
) -> None:
    (lon1, lat1), (lon2, lat2) = a, b
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    central = math.acos(math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl))
    assert haversine_m(lon1, lat1, lon2, lat2) == pytest.approx(EARTH_RADIUS_M * central, abs=0.01)


def test_haversine_one_degree_of_longitude_shrinks_with_latitude() -> None:
    at_60 = haversine_m(0.0, 60.0, 1.0, 60.0)
    assert at_60 == pytest.approx(111_195.0 / 2, rel=1e-3)


@pytest.mark.parametrize(("east", "north"), [(0, 1000), (1000, 0), (-300, 400), (25, -25)])
@pytest.mark.parametrize("lat", [0.0, 32.45, 45.76])
def test_offset_m(east: float, north: float, lat: float) -> None:
    lon2, lat2 = offset_m(119.9, lat, east, north)
    expected = (east**2 + north**2) ** 0.5
    assert haversine_m(119.9, lat, lon2, lat2) == pytest.approx(expected, rel=1e-3)
    assert (lon2 > 119.9) == (east > 0) or east == 0
    assert (lat2 > lat) == (north > 0) or north == 0


def test_offset_zero_is_identity() -> None:
    assert offset_m(LON, LAT, 0.0, 0.0) == (LON, LAT)
