"""One synthetic study: every random draw (`plan_study`), its pixels and its DICOM object.

Middle of the synthetic hospital: the simulator plans study i from (seed, i) alone, so a
study is the same whatever was generated before it, and a scenario changes only the studies
and attributes it names (the draws are made identically whether or not it applies).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from pydicom.uid import DigitalXRayImageStorageForPresentation

from collectors.simulator.dicom_encode import part10
from collectors.simulator.fleet import NEW_VENDOR, SCANNERS, Scanner, acquire, with_changes
from collectors.simulator.phantom import Anatomy, Nodule, render
from collectors.simulator.scenarios import BASE_PREVALENCE, scenario

START = datetime(2026, 11, 1, tzinfo=UTC)
STUDY_INTERVAL = timedelta(seconds=30)
BASE_SIZE = 256


@dataclass(frozen=True)
class StudyPlan:
    seed: int
    index: int
    scanner: Scanner
    anatomy: Anatomy
    positive: bool
    age_years: int
    dose_factor: float
    noise_seed: int
    inverted: bool
    kvp: float
    exposure_mas: float
    study_uid: str
    series_uid: str
    sop_uid: str
    event_id: str
    label_event_id: str
    patient_number: int
    occurred_at: datetime
    latency_ms: int
    labelled: bool
    label_at: datetime
    affected: bool  # the scenario changed this study

    @property
    def sex(self) -> str:
        return self.anatomy.sex

    @property
    def view(self) -> str:
        return self.anatomy.view

    @property
    def patient_age(self) -> str:
        return f"{self.age_years:03d}Y"  # PS3.5 §6.2 AS


def _uid(rng: np.random.Generator) -> str:
    # 2.25 root: UUID-derived UIDs (PS3.5 §B.2), the standard way to mint UIDs without a root.
    return "2.25." + str(uuid.UUID(bytes=rng.bytes(16), version=4).int)


def _pick_scanner(u: float) -> Scanner:
    total = sum(s.weight for s in SCANNERS)
    acc = 0.0
    for s in SCANNERS:
        acc += s.weight / total
        if u < acc:
            return s
    return SCANNERS[-1]


def plan_study(
    seed: int,
    index: int,
    *,
    scenario_name: str = "none",
    onset: int = 0,
    severity: float = 1.0,
    label_share: float = 0.7,
    label_delay: timedelta = timedelta(hours=6),
) -> StudyPlan:
    """All draws for study `index`; the same draws are made whatever the scenario."""
    scenario(scenario_name)  # validates the name
    if not 0.0 < severity <= 1.0:
        raise ValueError("severity must be in (0, 1]")
    rng = np.random.default_rng([seed, index])
    scanner = base = _pick_scanner(float(rng.random()))
    age = int(rng.integers(20, 91))
    sex = "F" if rng.random() < 0.5 else "M"
    view = "AP" if rng.random() < 0.15 else "PA"
    u_positive = float(rng.random())
    nodule_draw = (
        1 if rng.random() < 0.5 else -1,
        float(rng.uniform(-0.8, 0.8)),
        float(rng.uniform(-0.7, 0.6)),
        float(rng.uniform(9.0, 18.0)),
        float(rng.uniform(0.22, 0.40)),
    )
    anatomy_draw: dict[str, Any] = dict(
        body_width=float(rng.normal(1.0 if sex == "F" else 1.06, 0.04)),
        lung_height=float(rng.normal(1.0, 0.05)),
        heart_size=float(rng.normal(1.0 + 0.003 * (age - 50), 0.07)),
        rib_phase=float(rng.uniform(-1, 1)),
        rotation=float(rng.normal(0.0, 0.03)),
        shift_x=float(rng.normal(0.0, 0.03)),
        shift_y=float(rng.normal(0.0, 0.03)),
        tissue=float(rng.normal(0.46, 0.03)),
        lung=float(rng.normal(0.16, 0.02)),
        texture_seed=int(rng.integers(2**31)),
    )
    noise_seed = int(rng.integers(2**31))
    kvp = float(np.round(scanner.kvp + rng.normal(0, 2.0), 1))
    exposure = float(np.round(scanner.exposure_mas * rng.lognormal(0, 0.1), 2))
    u_scenario = float(rng.random())
    child_age = int(rng.integers(1, 16))
    uids = [_uid(rng) for _ in range(3)]
    event_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))
    label_event_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))
    patient_number = int(rng.integers(10**6, 10**7))
    latency = int(rng.integers(80, 300))
    labelled = bool(rng.random() < label_share)
    delay_jitter = float(rng.uniform(0.0, 0.5))

    # -- the scenario, from its onset on ------------------------------------------------------
    active = scenario_name != "none" and index >= onset
    s = severity
    prevalence = BASE_PREVALENCE
    dose_factor, inverted, paediatric, affected = 1.0, False, False, False
    if active:
        site, model = scanner.site, scanner.model
        if scenario_name == "software_update" and (site, model) == ("north-general", "X1"):
            scanner = with_changes(scanner, software="5.0.1", gamma=1.0 + 0.6 * s,
                                   sharpen=0.8 * s)  # fmt: skip
            affected = True
        elif scenario_name == "new_vendor" and site == "south-clinic" and u_scenario < s:
            scanner, affected = NEW_VENDOR, True
        elif scenario_name == "dose_change" and (site, model) == ("south-clinic", "B-200"):
            dose_factor, affected = 1.0 - 0.75 * s, True
        elif scenario_name == "resolution_change" and (site, model) == ("north-general", "B-200"):
            scanner = with_changes(scanner, rows=int(round(BASE_SIZE / (1.0 + s))))
            affected = True
        elif (scenario_name == "inversion_bug" and (site, model) == ("east-imaging", "X2")
              and u_scenario < s):  # fmt: skip
            inverted, affected = True, True
        elif scenario_name == "lateral_leak" and u_scenario < 0.3 * s:
            view, affected = "LL", True
        elif scenario_name == "paediatric" and u_scenario < 0.4 * s:
            paediatric, age, affected = True, child_age, True
        elif scenario_name == "prevalence_change":
            prevalence = BASE_PREVALENCE + 0.3 * s
    positive = u_positive < prevalence
    if scenario_name == "prevalence_change" and active:
        affected = positive != (u_positive < BASE_PREVALENCE)
    if scanner is NEW_VENDOR:
        # The same patient-specific jitter around the new vendor's protocol.
        kvp = float(np.round(NEW_VENDOR.kvp + (kvp - base.kvp), 1))
        exposure = NEW_VENDOR.exposure_mas * exposure / base.exposure_mas
    nodule = Nodule(*nodule_draw) if positive else None
    anatomy = Anatomy(view=view, sex=sex, paediatric=paediatric, nodule=nodule, **anatomy_draw)
    occurred = START + STUDY_INTERVAL * index
    return StudyPlan(
        seed=seed, index=index, scanner=scanner, anatomy=anatomy, positive=positive,
        age_years=age, dose_factor=dose_factor, noise_seed=noise_seed, inverted=inverted,
        kvp=kvp, exposure_mas=round(exposure * dose_factor, 3), study_uid=uids[0],
        series_uid=uids[1], sop_uid=uids[2], event_id=event_id,
        label_event_id=label_event_id, patient_number=patient_number, occurred_at=occurred,
        latency_ms=latency, labelled=labelled,
        label_at=occurred + label_delay * (1.0 + delay_jitter), affected=affected,
    )  # fmt: skip


def stored_pixels(plan: StudyPlan) -> np.ndarray:
    """The values the scanner stores (uint16), MONOCHROME1-inverted when the plan says so."""
    display = render(plan.anatomy, BASE_SIZE)
    stored = acquire(display, plan.scanner, noise_seed=plan.noise_seed,
                     dose_factor=plan.dose_factor)  # fmt: skip
    if plan.inverted:
        # PS3.3 C.7.6.3.1.2 MONOCHROME1: the minimum stored value is displayed white.
        stored = (2**plan.scanner.bits_stored - 1) - stored
    return stored


def tags(plan: StudyPlan, rows: int, columns: int) -> dict[str, object]:
    """The technical attributes an inference service forwards with its event (allow-list)."""
    sc = plan.scanner
    spacing = round(sc.pixel_spacing_mm * BASE_SIZE / rows, 4)
    center, width = sc.window
    return {
        "Modality": "DX", "Manufacturer": sc.manufacturer, "ManufacturerModelName": sc.model,
        "SoftwareVersions": sc.software, "StationName": sc.station, "BodyPartExamined": "CHEST",
        "ViewPosition": plan.view, "KVP": plan.kvp, "Exposure": int(round(plan.exposure_mas)),
        "ExposureInuAs": int(round(plan.exposure_mas * 1000)),
        "XRayTubeCurrent": int(round(plan.exposure_mas * 100)),  # 10 ms exposures
        "ImagerPixelSpacing": [spacing, spacing], "PixelSpacing": [spacing, spacing],
        "Rows": rows, "Columns": columns, "BitsStored": sc.bits_stored,
        "PhotometricInterpretation": "MONOCHROME1" if plan.inverted else "MONOCHROME2",
        "PresentationLUTShape": "INVERSE" if plan.inverted else "IDENTITY",
        "RescaleSlope": 1.0, "RescaleIntercept": 0.0, "WindowCenter": center,
        "WindowWidth": width, "PatientAge": plan.patient_age, "PatientSex": plan.sex,
    }  # fmt: skip


def dicom_bytes(plan: StudyPlan, stored: np.ndarray) -> bytes:
    """A DX For Presentation object (PS3.3 A.26) carrying synthetic identifiers.

    The identifying attributes (PatientName, PatientID, dates, AccessionNumber) are filled on
    purpose: radwatch must drop them at its edge, and the tests prove it does. Encoded by
    collectors.simulator.dicom_encode: the bytes pydicom.dcmwrite writes, ten times faster.
    """
    rows, columns = stored.shape
    birth_year = plan.occurred_at.year - plan.age_years
    study_date = plan.occurred_at.strftime("%Y%m%d")
    study_time = plan.occurred_at.strftime("%H%M%S")
    attributes: dict[str, object] = {
        **tags(plan, rows, columns),
        "SOPClassUID": str(DigitalXRayImageStorageForPresentation),
        "SOPInstanceUID": plan.sop_uid, "StudyInstanceUID": plan.study_uid,
        "SeriesInstanceUID": plan.series_uid,
        "PatientName": f"SYNTHETIC^PATIENT{plan.patient_number}",
        "PatientID": f"SIMPAT{plan.patient_number}",
        "PatientBirthDate": f"{birth_year}0615",
        "AccessionNumber": f"SIMACC{plan.seed}{plan.index:07d}",
        "StudyDate": study_date, "SeriesDate": study_date, "ContentDate": study_date,
        "StudyTime": study_time, "SeriesTime": study_time, "ContentTime": study_time,
        "StudyID": str(plan.index), "SeriesNumber": 1, "InstanceNumber": 1,
        "ReferringPhysicianName": "SYNTHETIC^REFERRER",
        "InstitutionName": f"{plan.scanner.site} (synthetic)",
        "ImageType": ["ORIGINAL", "PRIMARY"], "PresentationIntentType": "FOR PRESENTATION",
        "DetectorType": "SCINTILLATOR", "BurnedInAnnotation": "NO", "RescaleType": "US",
        "SamplesPerPixel": 1, "BitsAllocated": 16, "HighBit": plan.scanner.bits_stored - 1,
        "PixelRepresentation": 0,
        "PixelData": np.ascontiguousarray(stored, dtype="<u2").tobytes(),
    }  # fmt: skip
    return part10(attributes, str(DigitalXRayImageStorageForPresentation), plan.sop_uid)
