"""Hazard: dispersion kernels, substances, threat zones, affected buildings, reports.

Public entry points (see ``docs/hazard.md``):

* :func:`assess_incident` — zones and affected buildings for a toxic release or a fire;
* :func:`threat_at_point` — concentration and dose over time at one point;
* :func:`write_xlsx`, :func:`to_geojson`, :func:`to_kml` — reports;
* :func:`validate_prairie_grass` — model scores on Prairie Grass data;
* :func:`get_substance`, :func:`substance_from_dict`, :func:`list_substances`.
"""

from citytwin.hazard.errors import HazardInputError, UnknownSubstanceError
from citytwin.hazard.report import to_geojson, to_kml, write_xlsx
from citytwin.hazard.service import (
    SCHEMA_VERSION,
    BuildingArrays,
    IncidentResult,
    assess_incident,
    prepare_buildings,
    threat_at_point,
)
from citytwin.hazard.substances import (
    get_substance,
    list_substances,
    mg_m3_to_ppm,
    ppm_to_mg_m3,
    substance_from_dict,
)
from citytwin.hazard.validation import validate_prairie_grass

__all__ = [
    "SCHEMA_VERSION",
    "BuildingArrays",
    "HazardInputError",
    "IncidentResult",
    "UnknownSubstanceError",
    "assess_incident",
    "get_substance",
    "list_substances",
    "mg_m3_to_ppm",
    "ppm_to_mg_m3",
    "prepare_buildings",
    "substance_from_dict",
    "threat_at_point",
    "to_geojson",
    "to_kml",
    "validate_prairie_grass",
    "write_xlsx",
]
