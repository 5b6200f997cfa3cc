"""Errors of the hazard package: values a user can act on (STYLE convention 12)."""

from __future__ import annotations


class HazardInputError(ValueError):
    """An input to a hazard computation is missing or outside its accepted range.

    Parameters
    ----------
    field : str
        Name of the offending input (as spelled in the function signature).
    message : str
        What is wrong and which values are accepted.

    Examples
    --------
    >>> e = HazardInputError("wind_speed_m_s", "must be > 0 m/s, got -3")
    >>> str(e)
    'wind_speed_m_s: must be > 0 m/s, got -3'
    >>> e.field
    'wind_speed_m_s'
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")

    def to_dict(self) -> dict[str, str]:
        """JSON-ready form, e.g. for a 422 response body."""
        return {"field": self.field, "message": self.message}


class UnknownSubstanceError(HazardInputError):
    """A substance name matches no entry; ``suggestions`` lists close matches."""

    def __init__(self, name: str, suggestions: list[str], field: str = "substance") -> None:
        self.name = name
        self.suggestions = list(suggestions)
        hint = (
            f"; did you mean {', '.join(repr(s) for s in suggestions)}?"
            if suggestions
            else "; see citytwin.hazard.substances.list_substances()"
        )
        super().__init__(field, f"unknown substance {name!r}{hint}")
