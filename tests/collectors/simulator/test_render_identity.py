"""The fast simulator writes what the straightforward one wrote, bit for bit.

Two steps of the synthetic hospital were rewritten for speed (the drift-power tests render
~18,000 studies): phantom drawing computes each structure on the pixel window that holds it
(collectors.simulator.phantom._Frame), and the DX object is encoded directly
(collectors.simulator.dicom_encode) instead of through a pydicom Dataset. Both must leave every
seeded study unchanged, so the statistical tests keep their meaning. The references below
are the previous implementations, kept verbatim: every structure on every pixel, and
pydicom.dcmwrite. Exact equality, not a tolerance: float32 bit patterns and file bytes.
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian

from collectors.simulator import phantom
from collectors.simulator.phantom import FIELD_OF_VIEW_MM, Anatomy
from collectors.simulator.scenarios import SCENARIOS
from collectors.simulator.study import StudyPlan, dicom_bytes, plan_study, stored_pixels, tags

SEED = 33
PER_SCENARIO = 12  # studies of each scenario at severity 1 (every branch of the planner)
POSES = 48  # anatomies re-posed far outside the planner's range (edges of the windows)


# -- reference: the phantom with every structure computed on every pixel ---------------------


def _ref_grid(size, rotation, shift_x, shift_y):
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    y, x = np.meshgrid(axis, axis, indexing="ij")
    c, s = np.float32(np.cos(rotation)), np.float32(np.sin(rotation))
    return c * (x - shift_x) + s * (y - shift_y), -s * (x - shift_x) + c * (y - shift_y)


def _ell(x, y, cx, cy, ax, ay):
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2


def _soft(d2, edge=0.08):
    return np.clip((1.0 - d2) / edge, 0.0, 1.0)


def _ref_texture(seed, size, amplitude):
    coarse = np.random.default_rng(seed).normal(size=(9, 9)).astype(np.float32)
    idx = np.linspace(0, 8, size, dtype=np.float32)
    i0 = np.minimum(idx.astype(np.int64), 7)
    f = idx - i0
    rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]
    field = rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]
    return (field * amplitude).astype(np.float32)


def _ref_frontal(a, x, y):
    bw, lh = a.body_width, a.lung_height
    body = _soft(_ell(x, y, 0.0, 0.15, 0.88 * bw, 1.25), 0.05)
    image = 0.04 + body * a.tissue
    lungs = np.zeros_like(x)
    for side in (-1, 1):
        cx = side * 0.36 * bw
        lung = _soft(_ell(x, y, cx, -0.12, 0.27 * bw, 0.58 * lh))
        dome = 0.30 * lh + 0.22 * ((x - cx) / (0.3 * bw)) ** 2
        lung *= np.clip((dome - y) / 0.05, 0.0, 1.0)
        lungs = np.maximum(lungs, lung)
    image -= lungs * (a.tissue - a.lung)
    image += np.clip((0.11 + 0.05 * (y + 1.0) - np.abs(x)) / 0.03, 0.0, 1.0) * 0.16 * (y > -0.95)
    image += np.clip((0.055 - np.abs(x)) / 0.015, 0.0, 1.0) * 0.08
    hs = a.heart_size * (1.25 if a.paediatric else 1.0)
    heart = _soft(_ell(x, y, 0.12 * bw, 0.22, 0.27 * hs * bw, 0.21 * hs), 0.15)
    image += heart * np.maximum(lungs, 0.3) * (a.tissue - a.lung + 0.1)
    n_ribs = 8 if a.paediatric else 10
    spacing = 1.05 * lh / n_ribs
    for side in (-1, 1):
        lateral = np.clip(side * x, 0.0, None) / bw
        offset = y - (0.32 * lateral**2 + (0.02 if a.paediatric else 0.09) * lateral)
        t = (offset - (-0.72 + 0.03 * a.rib_phase)) / spacing
        k = np.clip(np.rint(t), 0, n_ribs - 1)
        band = np.clip(1.0 - np.abs(t - k) * spacing / 0.022, 0.0, 1.0)
        image += band * ((side * x > 0.05) * body) * (0.05 + 0.05 * lungs)
    for side in (-1, 1):
        curve = -0.78 + 0.12 * (side * x - 0.3) ** 2
        image += np.clip(1.0 - np.abs(y - curve) / 0.03, 0.0, 1.0) * (
            (side * x > 0.05) & (side * x < 0.7)
        ) * 0.1  # fmt: skip
    if a.sex == "F":
        for side in (-1, 1):
            image += _soft(_ell(x, y, side * 0.45 * bw, 0.35, 0.3 * bw, 0.25), 0.4) * 0.06
    return image.astype(np.float32), lungs.astype(np.float32)


def _ref_lateral(a, x, y):
    body = _soft(_ell(x, y, 0.0, 0.12, 0.8 * a.body_width, 1.25), 0.05)
    image = 0.04 + body * a.tissue
    lung = _soft(_ell(x, y, 0.02, -0.1, 0.55 * a.body_width, 0.62 * a.lung_height))
    dome = 0.34 * a.lung_height + 0.12 * (x / 0.5) ** 2
    lung *= np.clip((dome - y) / 0.05, 0.0, 1.0)
    image -= lung * (a.tissue - a.lung) * 0.8
    image += np.clip((0.08 - np.abs(x - 0.6 * a.body_width)) / 0.02, 0.0, 1.0) * 0.25
    heart = _soft(_ell(x, y, -0.22, 0.22, 0.3 * a.heart_size, 0.26 * a.heart_size), 0.15)
    image += heart * (a.tissue - a.lung) * 0.8
    sternum = np.clip((0.025 - np.abs(x + 0.68 * a.body_width)) / 0.01, 0.0, 1.0)
    image += sternum * 0.15 * (np.abs(y + 0.1) < 0.7)
    return image.astype(np.float32), lung.astype(np.float32)


def _ref_nodule(a, x, y, lungs, scale):
    n = a.nodule
    if a.view == "LL":
        cx, cy = 0.02 + 0.45 * n.u * a.body_width, -0.1 + 0.45 * n.v * a.lung_height
    else:
        cx = n.side * 0.36 * a.body_width + 0.2 * n.u * a.body_width
        cy = -0.12 + 0.4 * n.v * a.lung_height
    sigma = n.radius_mm / FIELD_OF_VIEW_MM * 2.0 / scale / 1.6
    blob = np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2)))
    return (blob * n.contrast * (0.5 + 0.5 * lungs)).astype(np.float32)


def _ref_render(a: Anatomy, size: int = 256) -> np.ndarray:
    scale = 0.72 if a.paediatric else 1.0
    x, y = _ref_grid(size, a.rotation, a.shift_x, a.shift_y)
    x, y = x / np.float32(scale), y / np.float32(scale)
    image, lungs = _ref_lateral(a, x, y) if a.view == "LL" else _ref_frontal(a, x, y)
    if a.nodule is not None:
        image += _ref_nodule(a, x, y, lungs, scale)
    image += _ref_texture(a.texture_seed, size, 0.025) * (0.4 + lungs)
    return np.clip(image, 0.0, 1.0, out=image)


# -- reference: the DX object through a pydicom Dataset -----------------------------------------


def _ref_dicom_bytes(plan: StudyPlan, stored: np.ndarray) -> bytes:
    rows, columns = stored.shape
    ds = Dataset()
    for keyword, value in tags(plan, rows, columns).items():
        setattr(ds, keyword, value)
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.SOPInstanceUID = plan.sop_uid
    ds.StudyInstanceUID = plan.study_uid
    ds.SeriesInstanceUID = plan.series_uid
    ds.PatientName = f"SYNTHETIC^PATIENT{plan.patient_number}"
    ds.PatientID = f"SIMPAT{plan.patient_number}"
    ds.PatientBirthDate = f"{plan.occurred_at.year - plan.age_years}0615"
    ds.AccessionNumber = f"SIMACC{plan.seed}{plan.index:07d}"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = plan.occurred_at.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = plan.occurred_at.strftime("%H%M%S")
    ds.StudyID = str(plan.index)
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.ReferringPhysicianName = "SYNTHETIC^REFERRER"
    ds.InstitutionName = f"{plan.scanner.site} (synthetic)"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.DetectorType = "SCINTILLATOR"
    ds.BurnedInAnnotation = "NO"
    ds.RescaleType = "US"
    ds.SamplesPerPixel = 1
    ds.BitsAllocated = 16
    ds.HighBit = plan.scanner.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


# -- the studies compared ----------------------------------------------------------------------


def _plans() -> list[StudyPlan]:
    return [plan_study(SEED, i, scenario_name=name, onset=0, severity=1.0)
            for name in SCENARIOS for i in range(PER_SCENARIO)]  # fmt: skip


def _anatomies() -> list[Anatomy]:
    """The planner's anatomies, and the same re-posed: every view × sex × age, rotations up
    to ~0.6 rad and shifts up to ~0.4 (the planner's are ~0.03), so structures reach the
    image border and window edges land everywhere."""
    planned = [p.anatomy for p in _plans()]
    rng = np.random.default_rng(SEED)
    posed = [
        dataclasses.replace(
            planned[i % len(planned)], view=("PA", "AP", "LL")[i % 3], sex="FM"[(i // 3) % 2],
            paediatric=bool((i // 6) % 2), rotation=float(rng.normal(0.0, 0.3)),
            shift_x=float(rng.normal(0.0, 0.2)), shift_y=float(rng.normal(0.0, 0.2)),
        )
        for i in range(POSES)
    ]  # fmt: skip
    return planned + posed


def test_windowed_phantom_is_bit_identical_to_the_full_image_reference() -> None:
    anatomies = _anatomies()
    assert {a.view for a in anatomies} == {"PA", "AP", "LL"}
    assert any(a.nodule for a in anatomies) and any(a.paediatric for a in anatomies)
    for i, anatomy in enumerate(anatomies):
        want, got = _ref_render(anatomy), phantom.render(anatomy)
        assert got.dtype == want.dtype == np.float32
        # Bit patterns, so even a -0.0 for a 0.0 would count as a difference.
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), (
            i, anatomy.view, float(np.abs(got - want).max()))  # fmt: skip


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_dicom_bytes_are_pydicoms(name: str) -> None:
    """Every scenario at severity 1: 12- and 14-bit, 256/171/320 rows, MONOCHROME1, LL."""
    for index in range(PER_SCENARIO // 2):
        plan = plan_study(SEED, index, scenario_name=name, onset=0, severity=1.0)
        stored = stored_pixels(plan)
        assert dicom_bytes(plan, stored) == _ref_dicom_bytes(plan, stored), (name, index)
