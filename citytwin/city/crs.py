"""Coordinate reference systems: compute in a projected metric CRS, serve in WGS84."""

from __future__ import annotations

from functools import lru_cache

from pyproj import CRS, Transformer

WGS84 = 4326


def utm_epsg(*, lon: float, lat: float) -> int:
    """EPSG code of the WGS84/UTM zone containing ``(lon, lat)`` (degrees, EPSG:4326).

    Examples
    --------
    >>> utm_epsg(lon=24.94, lat=60.17)  # Helsinki
    32635
    >>> utm_epsg(lon=4.30, lat=52.08)  # Den Haag
    32631
    """
    if not (-180.0 <= lon <= 180.0 and -90.0 <= lat <= 90.0):
        raise ValueError(f"lon/lat out of range: ({lon}, {lat}); accepted: lon -180..180, lat -90..90")
    zone = int((lon + 180.0) // 6.0) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


@lru_cache(maxsize=64)
def transformer(src_epsg: int, dst_epsg: int) -> Transformer:
    """A cached always-xy transformer between two EPSG codes."""
    return Transformer.from_crs(CRS.from_epsg(src_epsg), CRS.from_epsg(dst_epsg), always_xy=True)
