"""citytwin: an open-source digital twin for the safety of cities."""

__version__ = "0.1.0"
