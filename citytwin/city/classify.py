"""Safety class and use class of a building from its OpenStreetMap tags.

A building is **vulnerable** when it houses people who cannot easily protect or evacuate
themselves (schools, kindergartens and childcare, nursing and elderly homes and other social
facilities with residents, hospitals, clinics), **hazardous** when it stores or processes
hazardous substances (fuel stations, chemical and industrial works, storage tanks, explicit
hazard tags), and **ordinary** otherwise. Vulnerable takes precedence over hazardous; every
tag that matched is kept as the reason, so a user can see why a class was given.
"""

from __future__ import annotations

from collections.abc import Mapping

VULNERABLE = "vulnerable"
HAZARDOUS = "hazardous"
ORDINARY = "ordinary"
SAFETY_CLASSES = (VULNERABLE, HAZARDOUS, ORDINARY)

# (key, value) pairs; value None matches any value.
_VULNERABLE_TAGS: tuple[tuple[str, str | None], ...] = (
    ("amenity", "school"),
    ("amenity", "kindergarten"),
    ("amenity", "childcare"),
    ("amenity", "nursery"),
    ("amenity", "hospital"),
    ("amenity", "clinic"),
    ("amenity", "nursing_home"),
    ("amenity", "social_facility"),
    ("building", "school"),
    ("building", "kindergarten"),
    ("building", "hospital"),
    ("building", "nursing_home"),
    ("healthcare", "hospital"),
    ("healthcare", "clinic"),
    ("healthcare", "nursing_home"),
    ("social_facility", "nursing_home"),
    ("social_facility", "group_home"),
    ("social_facility", "assisted_living"),
    ("social_facility", "day_care"),
    ("social_facility:for", "senior"),
    ("social_facility:for", "child"),
    ("social_facility:for", "disabled"),
)

_HAZARDOUS_TAGS: tuple[tuple[str, str | None], ...] = (
    ("amenity", "fuel"),
    ("shop", "gas"),
    ("building", "storage_tank"),
    ("man_made", "storage_tank"),
    ("man_made", "works"),
    ("man_made", "petroleum_well"),
    ("industrial", "chemical"),
    ("industrial", "oil"),
    ("industrial", "refinery"),
    ("industrial", "gas"),
    ("industrial", "fuel"),
    ("industrial", "depot"),
    ("landuse", "industrial"),
    ("hazard", None),
    ("hazard_type", None),
    ("content", "gas"),
    ("content", "oil"),
    ("content", "fuel"),
    ("substance", None),
    ("power", "plant"),
    ("power", "substation"),
)

# OSM value -> use class of citytwin/city/data/occupancy.csv; first match wins.
_USE_BY_TAG: tuple[tuple[str, str, str], ...] = (
    ("amenity", "hospital", "hospital"),
    ("building", "hospital", "hospital"),
    ("healthcare", "hospital", "hospital"),
    ("amenity", "nursing_home", "care_home"),
    ("social_facility", "nursing_home", "care_home"),
    ("social_facility", "assisted_living", "care_home"),
    ("social_facility", "group_home", "care_home"),
    ("amenity", "social_facility", "care_home"),
    ("amenity", "kindergarten", "childcare"),
    ("amenity", "childcare", "childcare"),
    ("building", "kindergarten", "childcare"),
    ("amenity", "school", "education"),
    ("building", "school", "education"),
    ("amenity", "university", "education"),
    ("amenity", "college", "education"),
    ("building", "university", "education"),
    ("building", "college", "education"),
    ("amenity", "clinic", "clinic"),
    ("amenity", "doctors", "clinic"),
    ("amenity", "dentist", "clinic"),
    ("healthcare", "clinic", "clinic"),
    ("amenity", "fuel", "industrial"),
    ("building", "industrial", "industrial"),
    ("building", "manufacture", "industrial"),
    ("building", "storage_tank", "warehouse"),
    ("building", "warehouse", "warehouse"),
    ("building", "hotel", "hotel"),
    ("tourism", "hotel", "hotel"),
    ("tourism", "hostel", "hotel"),
    ("amenity", "restaurant", "hospitality"),
    ("amenity", "cafe", "hospitality"),
    ("amenity", "bar", "hospitality"),
    ("amenity", "pub", "hospitality"),
    ("amenity", "fast_food", "hospitality"),
    ("amenity", "nightclub", "assembly"),
    ("amenity", "theatre", "assembly"),
    ("amenity", "cinema", "assembly"),
    ("amenity", "arts_centre", "assembly"),
    ("amenity", "concert_hall", "assembly"),
    ("amenity", "place_of_worship", "assembly"),
    ("building", "church", "assembly"),
    ("building", "cathedral", "assembly"),
    ("building", "chapel", "assembly"),
    ("building", "museum", "assembly"),
    ("tourism", "museum", "assembly"),
    ("amenity", "library", "assembly"),
    ("building", "stadium", "assembly"),
    ("building", "train_station", "transport"),
    ("building", "transportation", "transport"),
    ("public_transport", "station", "transport"),
    ("amenity", "parking", "parking"),
    ("building", "parking", "parking"),
    ("building", "garage", "parking"),
    ("building", "garages", "parking"),
    ("building", "retail", "retail"),
    ("building", "commercial", "retail"),
    ("building", "supermarket", "retail"),
    ("building", "kiosk", "retail"),
    ("shop", "*", "retail"),
    ("building", "office", "office"),
    ("office", "*", "office"),
    ("building", "government", "office"),
    ("building", "public", "office"),
    ("building", "civic", "office"),
    ("amenity", "townhall", "office"),
    ("amenity", "embassy", "office"),
    ("amenity", "bank", "office"),
    ("building", "apartments", "residential"),
    ("building", "residential", "residential"),
    ("building", "house", "residential"),
    ("building", "detached", "residential"),
    ("building", "terrace", "residential"),
    ("building", "semidetached_house", "residential"),
    ("building", "dormitory", "residential"),
    ("building", "roof", "none"),
    ("building", "shed", "none"),
    ("building", "utility", "none"),
    ("building", "tower", "none"),
    ("building", "pavilion", "none"),
    ("building", "ship", "none"),
    ("building", "ruins", "none"),
    ("building", "construction", "none"),
    ("building", "service", "none"),
    ("building", "bunker", "none"),
    ("building", "atrium", "none"),
)


def _matches(tags: Mapping[str, str], rules: tuple[tuple[str, str | None], ...]) -> list[str]:
    hits = []
    for key, value in rules:
        got = tags.get(key)
        if got is None or got == "" or got == "no":
            continue
        if value is None or got == value:
            hits.append(f"{key}={got}")
    return hits


def safety_class(tags: Mapping[str, str]) -> tuple[str, list[str]]:
    """Return ``(class, reasons)`` for one building's tags (and tags of POIs inside it).

    Examples
    --------
    >>> safety_class({"building": "yes", "amenity": "kindergarten"})
    ('vulnerable', ['amenity=kindergarten'])
    >>> safety_class({"building": "yes", "amenity": "fuel"})
    ('hazardous', ['amenity=fuel'])
    >>> safety_class({"building": "apartments"})
    ('ordinary', [])
    """
    vulnerable = _matches(tags, _VULNERABLE_TAGS)
    hazardous = _matches(tags, _HAZARDOUS_TAGS)
    if vulnerable:
        return VULNERABLE, vulnerable + hazardous
    if hazardous:
        return HAZARDOUS, hazardous
    return ORDINARY, []


def use_class(tags: Mapping[str, str]) -> str:
    """Use class for the occupancy table; ``mixed`` when the tags say nothing specific.

    Examples
    --------
    >>> use_class({"building": "apartments"})
    'residential'
    >>> use_class({"building": "yes", "shop": "clothes"})
    'retail'
    >>> use_class({"building": "yes"})
    'mixed'
    """
    for key, value, use in _USE_BY_TAG:
        got = tags.get(key)
        if got is None or got == "" or got == "no":
            continue
        if value == "*" or got == value:
            return use
    return "mixed"
