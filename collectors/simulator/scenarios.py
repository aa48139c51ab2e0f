"""Shift scenarios of the synthetic hospital: what each one changes, where, and from when.

Read by the study planner (`collectors.simulator.study`) and by tests of the drift detectors,
which assert that the stratum and signal named here are the ones that alarm. Every scenario
has an onset (a study index) and a severity in (0, 1]; with severity 1 the effect is full.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    # DICOM attributes (PS3.6 keywords, as stored after normalisation: AgeBand, not
    # PatientAge) whose values change for affected studies.
    attributes: tuple[str, ...]
    # Where it happens: {"site": …} and/or DICOM keywords with their *reference* values
    # (the stratum the QA team would look at); empty = the whole hospital.
    stratum: Mapping[str, str]
    # Which monitored signals move: "metadata", "image", "output", "performance", "prevalence".
    signals: tuple[str, ...]
    # The share of studies in the stratum affected at severity s (after the onset).
    share: str
    # Does the deployed model's performance drop measurably in the stratum? Measured, not
    # assumed: see affected_studies_severity_1 in hospital/weights/cxr_nodule.json.
    harmful: bool


def _s(**kwargs: str) -> Mapping[str, str]:
    return MappingProxyType(dict(kwargs))


SCENARIOS: Mapping[str, Scenario] = MappingProxyType({
    "none": Scenario(
        "none", "No shift: the reference distribution throughout.", (), _s(), (), "0", False),
    "software_update": Scenario(
        "software_update",
        "ACME X1 at north-general gets software 5.0.1: a steeper tone curve (gamma "
        "1 + 0.6·s) and edge enhancement (unsharp mask 0.8·s).",
        ("SoftwareVersions",), _s(site="north-general", ManufacturerModelName="X1"),
        ("metadata", "image", "output", "performance"), "1", True),
    "new_vendor": Scenario(
        "new_vendor",
        "south-clinic replaces its Borealis B-200 with a Zenith Medical ZR-7 for a share s "
        "of its studies: 14-bit, 320 rows, log-like tone curve, heavier processing.",
        ("Manufacturer", "ManufacturerModelName", "SoftwareVersions", "BitsStored", "Rows",
         "Columns", "PixelSpacing", "ImagerPixelSpacing", "KVP", "Exposure", "ExposureInuAs",
         "XRayTubeCurrent", "WindowCenter", "WindowWidth", "StationName"),
        _s(site="south-clinic"), ("metadata", "image", "output"), "s", False),
    "dose_change": Scenario(
        "dose_change",
        "Borealis B-200 at south-clinic lowers the dose to (1 − 0.75·s) of its reference: "
        "exposure tags fall, quantum noise rises by 1/sqrt(dose).",
        ("Exposure", "ExposureInuAs", "XRayTubeCurrent"),
        _s(site="south-clinic", ManufacturerModelName="B-200"),
        ("metadata", "image"), "1", False),
    "resolution_change": Scenario(
        "resolution_change",
        "Borealis B-200 at north-general switches to 2×-binned read-out at s = 1: "
        "Rows/Columns = 256/(1 + s), pixel spacing grows by (1 + s).",
        ("Rows", "Columns", "PixelSpacing", "ImagerPixelSpacing"),
        _s(site="north-general", ManufacturerModelName="B-200"),
        ("metadata", "image"), "1", False),
    "inversion_bug": Scenario(
        "inversion_bug",
        "ACME X2 at east-imaging starts writing MONOCHROME1 (inverted stored values, "
        "PresentationLUTShape INVERSE) for a share s of studies; a pipeline that ignores "
        "PhotometricInterpretation feeds the model inverted images.",
        ("PhotometricInterpretation", "PresentationLUTShape"),
        _s(site="east-imaging", ManufacturerModelName="X2", PhotometricInterpretation="MONOCHROME2"),
        ("metadata", "output", "performance"), "s", True),
    "lateral_leak": Scenario(
        "lateral_leak",
        "Lateral views (ViewPosition LL) leak into the frontal-only pipeline: a share 0.3·s "
        "of studies at every site.",
        ("ViewPosition",), _s(ViewPosition="PA"),
        ("metadata", "image", "output", "performance"), "0.3*s", True),
    "paediatric": Scenario(
        "paediatric",
        "Children (1–15 years, AgeBand 0-17) arrive at every site: a share 0.4·s of studies; "
        "smaller thorax in the field, larger cardiothymic shadow, fewer visible ribs.",
        ("AgeBand",), _s(AgeBand="0-17"),
        ("metadata", "image", "output", "performance"), "0.4*s", True),
    "prevalence_change": Scenario(
        "prevalence_change",
        "Nodule prevalence rises from 0.20 to 0.20 + 0.30·s (a screening programme starts); "
        "images of each class are unchanged.",
        (), _s(), ("output", "prevalence"), "prevalence 0.2 + 0.3*s", False),
})  # fmt: skip

BASE_PREVALENCE = 0.2


def scenario(name: str) -> Scenario:
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ValueError(
            f"unknown scenario {name!r}; choose one of {', '.join(SCENARIOS)}"
        ) from None
