"""assess_incident: geometry, guard rails, input errors, affected buildings."""

from __future__ import annotations

from datetime import UTC, datetime

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from citytwin.hazard import HazardInputError, assess_incident, prepare_buildings, threat_at_point

LON0, LAT0 = 4.90, 52.37
AT = datetime(2024, 6, 21, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def city() -> gpd.GeoDataFrame:
    """Rings of buildings every 10° at 300 m, 800 m, 2 km; a school and a care home east."""
    rows = []
    i = 0
    for r_m in (300.0, 800.0, 2000.0):
        for b in range(0, 360, 10):
            dx = r_m * np.sin(np.radians(b))
            dy = r_m * np.cos(np.radians(b))
            lon = LON0 + dx / (111_320 * np.cos(np.radians(LAT0)))
            lat = LAT0 + dy / 110_574
            rows.append((i, f"b{i}", "ordinary", "residential", 20.0, 40.0, lon, lat))
            i += 1
    east = LON0 + 500 / (111_320 * np.cos(np.radians(LAT0)))
    rows.append((i, "school", "vulnerable", "education", 300.0, 0.0, east, LAT0))
    rows.append((i + 1, "care home", "vulnerable", "care_home", 80.0, 90.0, east, LAT0 + 0.0005))
    rows.append((i + 2, "fuel", "hazardous", "industrial", 5.0, 0.0, east, LAT0 - 0.0005))
    ids, names, sc, uc, od, on, lon, lat = zip(*rows, strict=True)
    return gpd.GeoDataFrame(
        {
            "id": ids,
            "name": names,
            "safety_class": sc,
            "use_class": uc,
            "occupants_day": od,
            "occupants_night": on,
            "height_m": 10.0,
        },
        geometry=shapely.points(lon, lat),
        crs=4326,
    )


def run(city, **kw):
    args = dict(
        buildings=city,
        source_lon=LON0,
        source_lat=LAT0,
        substance="chlorine",
        rate_g_s=1000.0,
        duration_min=30,
        wind_speed_m_s=5.0,
        wind_from_deg=270.0,
        cloud_cover_octas=8,
        at=AT,
    )
    args.update(kw)
    return assess_incident(**args)


def test_westerly_wind_puts_plume_east(city):
    res = run(city)
    zone = next(
        f
        for f in res.zones["features"]
        if f["properties"]["kind"] == "zone" and f["properties"]["level"] == 1
    )
    c = shape(zone["geometry"]).centroid
    assert c.x > LON0 + 0.002  # east
    assert abs(c.y - LAT0) < 0.002
    assert set(res.affected.loc[res.affected.zone_level > 0, "direction"]) <= {"E", "ENE", "ESE"}
    assert res.model["parameters"]["plume_bearing_deg"] == 90.0


def test_northerly_wind_puts_plume_south(city):
    res = run(city, wind_from_deg=0.0)
    zone = next(
        f
        for f in res.zones["features"]
        if f["properties"]["kind"] == "zone" and f["properties"]["level"] == 1
    )
    assert shape(zone["geometry"]).centroid.y < LAT0 - 0.002


def test_result_contents(city):
    res = run(city)
    assert res.schema_version
    assert res.limitations and any("terrain" in s for s in res.limitations)
    assert res.model["parameters"]["stability_class"] == "D"  # overcast
    df = res.affected
    assert len(df) > 0
    # vulnerable and hazardous first
    ranks = df["safety_class"].map({"vulnerable": 0, "hazardous": 1, "ordinary": 2}).to_numpy()
    assert (np.diff(ranks) >= 0).all()
    assert df.iloc[0]["name"] in ("school", "care home")
    # daytime occupants used
    assert df.loc[df.name == "school", "occupants"].iloc[0] == 300.0
    assert (df["peak_indoor_sheltered_mg_m3"] <= df["peak_indoor_mg_m3"] + 1e-12).all()
    assert (df.loc[df.zone_level > 0, "advice"] != "inform").all()
    assert set(df.loc[(df.zone_level == 0), "advice"]) <= {"inform"}
    kinds = {(f["properties"]["kind"], f["properties"].get("level")) for f in res.zones["features"]}
    assert ("zone", 1) in kinds and ("possibly_affected", 1) in kinds
    c = res.counts
    assert c["total"]["total"]["buildings"] == len(df)
    assert c["total"]["vulnerable"]["buildings"] == 2
    d = res.to_dict()
    assert d["affected_total"] == len(df)
    import json

    json.dumps(d)


def test_night_occupants(city):
    res = run(city, at=datetime(2024, 6, 21, 23, 0, tzinfo=UTC), cloud_cover_octas=8)
    df = res.affected
    assert df.loc[df.name == "care home", "occupants"].iloc[0] == 90.0


def test_band_buildings_are_possibly_affected(city):
    res = run(city, sigma_theta_deg=20.0)
    band = res.affected[res.affected.band_level > 0]
    assert len(band) > 0
    assert ((band["advice"] == "inform") | (band["zone_level"] > 0)).all()


def test_stable_class_warning(city):
    res = run(city, stability_class="F", wind_speed_m_s=1.5)
    assert any("Stable" in w for w in res.warnings)


def test_low_wind_gives_radial_zone_and_warning(city):
    res = run(city, wind_speed_m_s=0.5)
    assert any("below 1 m/s" in w for w in res.warnings)
    zone = next(f for f in res.zones["features"] if f["properties"]["kind"] == "zone")
    g = shape(zone["geometry"])
    assert g.contains(shapely.Point(LON0, LAT0))
    assert res.model["parameters"]["band_method"] == "radial"
    # buildings all around the source are affected
    dirs = set(res.affected.loc[res.affected.zone_level > 0, "direction"])
    assert {"N", "E", "S", "W"} <= dirs


def test_zone_cut_at_10_km(city):
    res = run(city, rate_g_s=1e6, duration_min=60, wind_speed_m_s=10.0, cloud_cover_octas=8)
    for f in res.zones["features"]:
        if f["properties"]["kind"] == "zone":
            assert f["properties"]["downwind_extent_m"] <= 10_000.0 + 1e-6


def test_fire_smoke_with_plume_rise(city):
    res = run(city, substance="fire", rate_g_s=None, duration_min=None, heat_mw=20.0)
    assert res.incident["substance"] == "fire"
    assert res.model["parameters"]["buoyancy_flux_m4_s3"] > 100
    assert "co_peak_outdoor_ppm" in res.affected.columns
    names = [lv["name"] for lv in res.levels]
    assert any("PM2.5" in n for n in names)


def test_ensemble_is_reproducible(city):
    a = run(city, band_method="ensemble", ensemble_members=50, seed=3)
    b = run(city, band_method="ensemble", ensemble_members=50, seed=3)
    assert a.affected["id"].tolist() == b.affected["id"].tolist()
    assert "p_level1" in a.affected.columns
    assert a.model["parameters"]["seed"] == 3


def test_prepared_buildings_same_result(city):
    a = run(city)
    b = run(city, buildings=prepare_buildings(city))
    assert a.affected["id"].tolist() == b.affected["id"].tolist()


def test_threat_at_point(city):
    res = run(city)
    east = LON0 + 600 / (111_320 * np.cos(np.radians(LAT0)))
    p = threat_at_point(res, lon=east, lat=LAT0, use_class="residential")
    assert p["peak_outdoor_mg_m3"] > p["peak_indoor_mg_m3"] > p["peak_indoor_sheltered_mg_m3"] > 0
    assert p["dose_outdoor"] > p["dose_indoor_sheltered"]
    west = LON0 - 600 / (111_320 * np.cos(np.radians(LAT0)))
    assert threat_at_point(res, lon=west, lat=LAT0)["peak_outdoor_mg_m3"] == 0.0


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"rate_g_s": -5.0}, "rate_g_s"),
        ({"rate_g_s": None}, "rate_g_s"),
        ({"rate_g_s": 0.0}, "rate_g_s"),
        ({"substance": "kryptonite"}, "substance"),
        ({"wind_speed_m_s": 0.0}, "wind_speed_m_s"),
        ({"wind_speed_m_s": -3.0}, "wind_speed_m_s"),
        ({"wind_speed_m_s": None}, "wind_speed_m_s"),
        ({"wind_from_deg": 400.0}, "wind_from_deg"),
        ({"duration_min": 90.0}, "duration_min"),
        ({"duration_min": 0.0}, "duration_min"),
        ({"cloud_cover_octas": 9}, "cloud_cover_octas"),
        ({"sigma_theta_deg": -1}, "sigma_theta_deg"),
        ({"source_lat": 95.0}, "source_lat"),
        ({"source_lon": 6.5}, "source_lon/source_lat"),
        ({"substance": "fire", "heat_mw": None}, "heat_mw"),
        ({"stability_class": "G"}, "stability_class"),
        ({"sigma_scheme": "magic"}, "sigma_scheme"),
        ({"loc_duration": "2h"}, "loc_duration"),
    ],
)
def test_input_errors_name_the_field(city, kw, field):
    with pytest.raises(HazardInputError) as ei:
        run(city, **kw)
    assert ei.value.field == field
    assert field.split("/")[0] in str(ei.value)


def test_missing_columns(city):
    with pytest.raises(HazardInputError) as ei:
        run(city, buildings=city.drop(columns=["safety_class"]))
    assert ei.value.field == "buildings"
