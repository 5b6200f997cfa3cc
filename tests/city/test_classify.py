import pytest

from citytwin.city.classify import safety_class, use_class


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"building": "school"}, "vulnerable"),
        ({"building": "yes", "amenity": "kindergarten"}, "vulnerable"),
        ({"building": "yes", "amenity": "social_facility", "social_facility": "nursing_home"}, "vulnerable"),
        ({"building": "hospital"}, "vulnerable"),
        ({"building": "yes", "healthcare": "clinic"}, "vulnerable"),
        ({"building": "yes", "amenity": "fuel"}, "hazardous"),
        ({"building": "industrial", "industrial": "chemical"}, "hazardous"),
        ({"building": "storage_tank"}, "hazardous"),
        ({"building": "yes", "hazard": "explosive"}, "hazardous"),
        ({"building": "apartments"}, "ordinary"),
        ({"building": "industrial"}, "ordinary"),
        ({"building": "yes", "amenity": "no"}, "ordinary"),
    ],
)
def test_safety_class(tags, expected):
    cls, reasons = safety_class(tags)
    assert cls == expected
    assert bool(reasons) == (expected != "ordinary")


def test_vulnerable_wins_and_keeps_all_reasons():
    cls, reasons = safety_class({"amenity": "hospital", "man_made": "storage_tank"})
    assert cls == "vulnerable"
    assert reasons == ["amenity=hospital", "man_made=storage_tank"]


@pytest.mark.parametrize(
    ("tags", "use"),
    [
        ({"building": "apartments"}, "residential"),
        ({"building": "yes", "amenity": "kindergarten"}, "childcare"),
        ({"building": "yes", "shop": "bakery"}, "retail"),
        ({"building": "office"}, "office"),
        ({"building": "roof"}, "none"),
        ({"building": "yes"}, "mixed"),
    ],
)
def test_use_class(tags, use):
    assert use_class(tags) == use
