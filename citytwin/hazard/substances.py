"""Hazardous substances: molar mass, levels of concern (AEGL, else ERPG), unit conversion.

The data live in ``substances.csv`` next to this module, one row per substance, with a
source column for every group of values and a ``check`` column (``yes`` = transcribed from
memory of the cited table and not yet verified against it; verify before operational use,
as DOMAIN.md asks for values marked *check*). ``NR`` = not recommended (AEGL-1 not set);
an empty cell = no value for that duration (ERPG gives 60-min values only).

Levels follow ALOHA's order of preference: AEGL-1/2/3, then ERPG-1/2/3. Fire smoke is
modelled as PM2.5 (``smoke_pm``) together with carbon monoxide (``carbon_monoxide``).

ppm ↔ mg/m³ at 25 °C and 1 atm: mg/m³ = ppm · M / 24.45 (DOMAIN.md §4).
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from citytwin.hazard.errors import HazardInputError, UnknownSubstanceError

MOLAR_VOLUME_L = 24.45  # L/mol at 25 °C, 101.325 kPa
DURATIONS: tuple[str, ...] = ("10min", "30min", "60min", "4h", "8h")
DURATION_MIN: dict[str, float] = {"10min": 10, "30min": 30, "60min": 60, "4h": 240, "8h": 480}


def ppm_to_mg_m3(ppm: float, *, molar_mass_g_mol: float) -> float:
    """Convert a gas concentration from ppm (by volume) to mg/m³ at 25 °C.

    Examples
    --------
    >>> round(ppm_to_mg_m3(1.0, molar_mass_g_mol=70.90), 3)  # chlorine
    2.9
    """
    return ppm * molar_mass_g_mol / MOLAR_VOLUME_L


def mg_m3_to_ppm(mg_m3: float, *, molar_mass_g_mol: float) -> float:
    """Convert mg/m³ to ppm (by volume) at 25 °C.

    Examples
    --------
    >>> round(mg_m3_to_ppm(2.9, molar_mass_g_mol=70.90), 3)
    1.0
    """
    return mg_m3 * MOLAR_VOLUME_L / molar_mass_g_mol


@dataclass(frozen=True)
class LevelOfConcern:
    """One level of concern for a chosen exposure duration."""

    level: int  #: 1, 2 or 3
    name: str  #: e.g. "AEGL-2 (60 min)"
    mg_m3: float
    ppm: float | None
    duration: str
    source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "name": self.name,
            "mg_m3": self.mg_m3,
            "ppm": self.ppm,
            "duration": self.duration,
            "source": self.source,
        }


@dataclass(frozen=True)
class Substance:
    """A substance with its levels of concern.

    ``levels[k][duration]`` holds the level-k value in ``unit`` ("ppm" or "mg/m3"), or None
    when not set (NR or no value for that duration).
    """

    key: str
    name: str
    molar_mass_g_mol: float | None
    unit: str = "ppm"
    loc_system: str = "AEGL"
    levels: Mapping[int, Mapping[str, float | None]] = field(default_factory=dict)
    sources: Mapping[int, str] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    cas: str = ""
    formula: str = ""
    status: str = ""
    toxic_load_n: float = 1.0
    toxic_load_n_source: str = ""
    check: bool = False
    notes: str = ""
    user_defined: bool = False

    def to_mg_m3(self, value: float) -> float:
        """Convert a value in this substance's ``unit`` to mg/m³."""
        if self.unit == "mg/m3":
            return float(value)
        if not self.molar_mass_g_mol:
            raise HazardInputError("molar_mass_g_mol", f"{self.name}: needed to convert ppm")
        return ppm_to_mg_m3(float(value), molar_mass_g_mol=self.molar_mass_g_mol)

    def to_ppm(self, mg_m3: float) -> float | None:
        """mg/m³ → ppm, or None for particles (no molar mass)."""
        if not self.molar_mass_g_mol:
            return None
        return mg_m3_to_ppm(mg_m3, molar_mass_g_mol=self.molar_mass_g_mol)

    def levels_of_concern(self, *, duration: str = "60min") -> list[LevelOfConcern]:
        """Levels of concern (lowest first) for an exposure ``duration``.

        Levels not set (NR) are left out. A level without a value for ``duration`` falls back
        to its 60-min value (ERPGs are 60-min values, as ALOHA uses them).

        Examples
        --------
        >>> [round(l.mg_m3, 2) for l in get_substance("Cl2").levels_of_concern()]
        [1.45, 5.8, 58.0]
        >>> [l.name for l in get_substance("phosgene").levels_of_concern()]
        ['AEGL-2 (60 min)', 'AEGL-3 (60 min)']
        """
        if duration not in DURATIONS:
            raise HazardInputError("loc_duration", f"must be one of {', '.join(DURATIONS)}")
        out = []
        for k in (1, 2, 3):
            vals = self.levels.get(k, {})
            v = vals.get(duration)
            used = duration
            if v is None and vals.get("60min") is not None and self.loc_system != "AEGL":
                v, used = vals["60min"], "60min"
            if v is None:
                continue
            mg = self.to_mg_m3(v)
            label = used.replace("min", " min").replace("h", " h")
            out.append(
                LevelOfConcern(
                    level=k,
                    name=f"{self.loc_system}-{k} ({label})",
                    mg_m3=mg,
                    ppm=self.to_ppm(mg),
                    duration=used,
                    source=self.sources.get(k, ""),
                )
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "molar_mass_g_mol": self.molar_mass_g_mol,
            "unit": self.unit,
            "loc_system": self.loc_system,
            "levels": {str(k): dict(v) for k, v in self.levels.items()},
            "sources": {str(k): v for k, v in self.sources.items()},
            "aliases": list(self.aliases),
            "cas": self.cas,
            "formula": self.formula,
            "status": self.status,
            "toxic_load_n": self.toxic_load_n,
            "toxic_load_n_source": self.toxic_load_n_source,
            "check": self.check,
            "notes": self.notes,
            "user_defined": self.user_defined,
        }


def _num(cell: str) -> float | None:
    cell = (cell or "").strip()
    if cell == "" or cell.upper() == "NR":
        return None
    return float(cell)


def _norm(name: str) -> str:
    s = str(name).strip().lower()
    s = re.sub(r"[\s_\-]+", " ", s)
    return s.replace("sulfur", "sulphur").replace("sulfide", "sulphide")


def parse_substances_csv(text: str) -> dict[str, Substance]:
    """Parse the substances CSV text into ``{key: Substance}`` (pure; no file access)."""
    out: dict[str, Substance] = {}
    for row in csv.DictReader(io.StringIO(text)):
        levels = {k: {d: _num(row[f"l{k}_{d}"]) for d in DURATIONS} for k in (1, 2, 3)}
        mm = _num(row["molar_mass_g_mol"])
        out[row["key"]] = Substance(
            key=row["key"],
            name=row["name"],
            molar_mass_g_mol=mm,
            unit=row["unit"],
            loc_system=row["loc_system"],
            levels=levels,
            sources={k: row[f"l{k}_source"] for k in (1, 2, 3)},
            aliases=tuple(a.strip() for a in row["aliases"].split(";") if a.strip()),
            cas=row["cas"],
            formula=row["formula"],
            status=row["status"],
            toxic_load_n=float(row["toxic_load_n"] or 1.0),
            toxic_load_n_source=row["toxic_load_n_source"],
            check=row["check"].strip().lower() == "yes",
            notes=row["notes"],
        )
    return out


@lru_cache(maxsize=1)
def _builtin() -> dict[str, Substance]:
    text = resources.files("citytwin.hazard").joinpath("substances.csv").read_text("utf-8")
    return parse_substances_csv(text)


@lru_cache(maxsize=1)
def _index() -> dict[str, str]:
    idx: dict[str, str] = {}
    for key, s in _builtin().items():
        for n in (key, s.name, s.formula, s.cas, *s.aliases):
            if n:
                idx.setdefault(_norm(n), key)
    return idx


def list_substances() -> list[Substance]:
    """All built-in substances, sorted by name."""
    return sorted(_builtin().values(), key=lambda s: s.name)


def get_substance(name: str) -> Substance:
    """Look a substance up by key, name, formula, CAS number or alias (case-insensitive).

    Raises
    ------
    UnknownSubstanceError
        (a :class:`ValueError`) listing close matches.

    Examples
    --------
    >>> get_substance("cl2").name
    'Chlorine'
    >>> get_substance("Hydrogen Sulfide").key
    'hydrogen_sulphide'
    >>> get_substance("chlorene")
    Traceback (most recent call last):
    ...
    citytwin.hazard.errors.UnknownSubstanceError: substance: unknown substance 'chlorene'; ...
    """
    if not isinstance(name, str) or not name.strip():
        raise HazardInputError("substance", "a substance name is required")
    idx = _index()
    key = idx.get(_norm(name))
    if key is None:
        close = difflib.get_close_matches(_norm(name), list(idx), n=5, cutoff=0.6)
        seen: list[str] = []
        for c in close:
            if c not in seen:
                seen.append(c)
        raise UnknownSubstanceError(name, seen)
    return _builtin()[key]


def substance_from_dict(data: Mapping[str, Any]) -> Substance:
    """Validate and build a user-defined substance.

    Parameters
    ----------
    data : mapping
        ``name`` (str), ``molar_mass_g_mol`` (> 0; optional when ``unit`` is "mg/m3"),
        ``unit`` ("ppm" or "mg/m3", default "ppm"), ``levels``: ``{1|2|3: value}`` (60-min
        values) or ``{1|2|3: {duration: value}}`` with durations 10min, 30min, 60min, 4h, 8h;
        optional ``toxic_load_n`` (> 0), ``source`` (str, recommended), ``loc_system``.

    Raises
    ------
    HazardInputError
        naming the offending field.

    Examples
    --------
    >>> s = substance_from_dict({"name": "My gas", "molar_mass_g_mol": 50,
    ...                          "levels": {2: 10, 3: 100}, "source": "site safety report"})
    >>> [l.name for l in s.levels_of_concern()]
    ['USER-2 (60 min)', 'USER-3 (60 min)']
    """
    if not isinstance(data, Mapping):
        raise HazardInputError("substance", "a user-defined substance must be a mapping")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise HazardInputError("substance.name", "a non-empty name is required")
    unit = data.get("unit", "ppm")
    if unit not in ("ppm", "mg/m3"):
        raise HazardInputError("substance.unit", f"must be 'ppm' or 'mg/m3', got {unit!r}")
    mm = data.get("molar_mass_g_mol")
    if mm is not None:
        try:
            mm = float(mm)
        except (TypeError, ValueError):
            raise HazardInputError("substance.molar_mass_g_mol", "must be a number") from None
        if not 1.0 <= mm <= 2000.0:
            raise HazardInputError("substance.molar_mass_g_mol", f"must be 1–2000 g/mol, got {mm}")
    elif unit == "ppm":
        raise HazardInputError("substance.molar_mass_g_mol", "required when unit is 'ppm'")
    raw = data.get("levels")
    if not isinstance(raw, Mapping) or not raw:
        raise HazardInputError("substance.levels", "give at least one of levels 1, 2, 3")
    levels: dict[int, dict[str, float | None]] = {}
    for k_raw, v in raw.items():
        try:
            k = int(k_raw)
        except (TypeError, ValueError):
            raise HazardInputError(
                "substance.levels", f"level keys are 1, 2, 3; got {k_raw!r}"
            ) from None
        if k not in (1, 2, 3):
            raise HazardInputError("substance.levels", f"level keys are 1, 2, 3; got {k_raw!r}")
        per = v if isinstance(v, Mapping) else {"60min": v}
        vals: dict[str, float | None] = dict.fromkeys(DURATIONS)
        for d, x in per.items():
            if d not in DURATIONS:
                raise HazardInputError(
                    f"substance.levels.{k}", f"durations are {', '.join(DURATIONS)}; got {d!r}"
                )
            if x is None:
                continue
            try:
                fx = float(x)
            except (TypeError, ValueError):
                raise HazardInputError(f"substance.levels.{k}", "values must be numbers") from None
            if not fx > 0:
                raise HazardInputError(f"substance.levels.{k}", f"values must be > 0, got {x}")
            vals[d] = fx
        levels[k] = vals
    for d in DURATIONS:
        seq = [levels[k][d] for k in sorted(levels) if levels[k].get(d) is not None]
        if any(b < a for a, b in zip(seq, seq[1:], strict=False)):
            raise HazardInputError("substance.levels", f"levels must increase 1 < 2 < 3 ({d})")
    n = float(data.get("toxic_load_n", 1.0))
    if not 0.5 <= n <= 5.0:
        raise HazardInputError("substance.toxic_load_n", f"must be 0.5–5, got {n}")
    src = str(data.get("source", "user-defined"))
    return Substance(
        key=_norm(name).replace(" ", "_"),
        name=name.strip(),
        molar_mass_g_mol=mm,
        unit=unit,
        loc_system=str(data.get("loc_system", "USER")),
        levels=levels,
        sources=dict.fromkeys(levels, src),
        toxic_load_n=n,
        toxic_load_n_source=src if "toxic_load_n" in data else "default n = 1",
        status="user-defined",
        user_defined=True,
    )


def resolve_substance(spec: str | Mapping[str, Any] | Substance) -> Substance:
    """A :class:`Substance` from a name, a user-defined mapping or a Substance."""
    if isinstance(spec, Substance):
        return spec
    if isinstance(spec, Mapping):
        return substance_from_dict(spec)
    return get_substance(spec)
