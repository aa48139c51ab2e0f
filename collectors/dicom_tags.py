"""The allow-list of technical DICOM attributes radwatch keeps, and how each is normalised.

Used by event parsing (tags sent in the event) and by the DICOM reader (tags read from the
file). Anything not listed here is dropped at the edge, in the spirit of DICOM PS3.15
Annex E (basic application level confidentiality profile): identifying attributes never
pass; PatientAge is kept only as a band; StationName is kept only as a pseudonym.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

# Attributes kept verbatim (after type normalisation). Keywords are the standard's (PS3.6).
CATEGORICAL = (
    "Modality",
    "Manufacturer",
    "ManufacturerModelName",
    "SoftwareVersions",
    "BodyPartExamined",
    "ViewPosition",
    "PhotometricInterpretation",
    "PresentationLUTShape",
    "ConvolutionKernel",
    "PatientSex",
)
NUMERIC = (
    "KVP",
    "Exposure",
    "ExposureInuAs",
    "XRayTubeCurrent",
    "Rows",
    "Columns",
    "BitsStored",
    "RescaleSlope",
    "RescaleIntercept",
    "WindowCenter",
    "WindowWidth",
    "SliceThickness",
    "MagneticFieldStrength",
)
SPACING = ("PixelSpacing", "ImagerPixelSpacing")
PSEUDONYMISED = ("StationName",)
_CATEGORICAL, _NUMERIC, _SPACING = frozenset(CATEGORICAL), frozenset(NUMERIC), frozenset(SPACING)
_SCALAR = (str, int, float)
ALLOWED = frozenset(CATEGORICAL + NUMERIC + SPACING + PSEUDONYMISED + ("PatientAge", "AgeBand"))

AGE_BANDS = ((18, "0-17"), (30, "18-29"), (45, "30-44"), (60, "45-59"), (75, "60-74"))
# A forwarded AgeBand is kept only if it is one of ours: a free string could carry anything.
AGE_BAND_NAMES = frozenset([band for _, band in AGE_BANDS] + ["75+"])
_AGE = re.compile(r"^(\d{1,3})([DWMY])$")


def age_band(patient_age: str) -> str | None:
    """PS3.5 §6.2 Age String 'nnnD|W|M|Y' → a coarse band; None when unparseable."""
    match = _AGE.match(patient_age.strip().upper())
    if not match:
        return None
    number, unit = int(match.group(1)), match.group(2)
    years = {"D": number / 365.25, "W": number / 52.18, "M": number / 12.0, "Y": float(number)}[
        unit
    ]
    for upper, band in AGE_BANDS:
        if years < upper:
            return band
    return "75+"


def _first_number(value: Any) -> float | None:
    """Multi-valued numeric attributes (WindowCenter may hold several, PS3.3 C.11.2) → first."""
    if isinstance(value, list | tuple):
        value = value[0] if value else None
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        # OverflowError: an integer beyond the double range (the parser refuses those too).
        return None
    return number if math.isfinite(number) else None


def normalise_tags(tags: Mapping[str, Any], pseudonym: Callable[[str, str], str]) -> dict[str, Any]:
    """Keep only allow-listed attributes, in JSON-friendly types; drop what is unparseable."""
    out: dict[str, Any] = {}
    present = tags.keys()
    for name in _CATEGORICAL & present:
        value = tags[name]
        if isinstance(value, list | tuple):
            if not all(isinstance(v, _SCALAR) for v in value):
                continue  # nested structure is no DICOM value: dropped, never stringified
            value = "\\".join(str(v) for v in value)  # PS3.5 §6.4 value multiplicity
        if isinstance(value, _SCALAR) and str(value).strip() != "":
            out[name] = str(value).strip()[:64]
    for name in _NUMERIC & present:
        number = _first_number(tags[name])
        if number is not None:
            out[name] = number
    for name in _SPACING & present:
        value = tags[name]
        if isinstance(value, list | tuple) and len(value) == 2:
            pair = [_first_number(v) for v in value]
            if all(p is not None and p > 0 for p in pair):
                out[name] = pair
    for name in PSEUDONYMISED:
        value = tags.get(name)
        if value and isinstance(value, _SCALAR):
            out[name] = pseudonym(name, str(value))
    if isinstance(tags.get("PatientAge"), str):
        band = age_band(tags["PatientAge"])
        if band:
            out["AgeBand"] = band
    elif isinstance(tags.get("AgeBand"), str) and tags["AgeBand"] in AGE_BAND_NAMES:
        out["AgeBand"] = tags["AgeBand"]
    return out
