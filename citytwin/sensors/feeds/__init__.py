"""City feeds as first-class SensorThings sources, each tied to the city model.

One module per feed: :mod:`.cameras` (people counts per zone or counting line),
:mod:`.parking` (garage occupancy and capacity), :mod:`.traffic` (speed and flow per street
segment), :mod:`.gbfs` (shared vehicles from GBFS 2.3 / 3.0), :mod:`.weather` (a weather
station), :mod:`.appgps` (app-GPS visitor counts, aggregates only, k-anonymised). Each maps its
source onto Thing + Location + Sensor + ObservedProperty + Datastream(s) and turns payloads into
Observations that go through the one ingest path (:func:`citytwin.sensors.ingest.ingest_observations`).
"""

from citytwin.sensors.feeds._base import FeedError, Source, find_source

__all__ = ["FeedError", "Source", "find_source"]
