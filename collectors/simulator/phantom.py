"""Chest-radiograph phantoms: one patient's anatomy (and maybe a nodule) → a display image.

Innermost step of the synthetic hospital: `render` turns an `Anatomy` (every random draw made
up front, so a scenario can change one thing and leave the rest identical) into float32
values in [0, 1], bright = dense, before any scanner's tone curve, blur or noise is applied.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FIELD_OF_VIEW_MM = 358.4  # a 43 cm detector cropped to the chest; 256 px at 1.4 mm


@dataclass(frozen=True)
class Nodule:
    side: int  # -1 patient right (image left), +1 patient left (image right)
    u: float  # position inside the lung ellipse, in [-1, 1] units of its semi-axes
    v: float
    radius_mm: float
    contrast: float


@dataclass(frozen=True)
class Anatomy:
    """Every per-patient draw; `render` is a pure function of it."""

    view: str  # "PA", "AP" (frontal) or "LL" (lateral)
    sex: str  # "F" or "M"
    paediatric: bool
    body_width: float  # relative scale of the thorax, ~1
    lung_height: float
    heart_size: float
    rib_phase: float
    rotation: float  # radians, patient positioning
    shift_x: float
    shift_y: float
    tissue: float  # soft-tissue brightness
    lung: float  # lung-field brightness
    texture_seed: int
    nodule: Nodule | None


def _grid(size: int, rotation: float, shift_x: float, shift_y: float):
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    y, x = np.meshgrid(axis, axis, indexing="ij")
    c, s = np.float32(np.cos(rotation)), np.float32(np.sin(rotation))
    xr = c * (x - shift_x) + s * (y - shift_y)
    yr = -s * (x - shift_x) + c * (y - shift_y)
    return xr, yr


def _ellipse(x, y, cx, cy, ax, ay):
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2


def _soft(d2, edge: float = 0.08):
    """1 inside an ellipse (d2 < 1), 0 outside, with a smooth edge of relative width `edge`."""
    return np.clip((1.0 - d2) / edge, 0.0, 1.0)


def _texture(seed: int, size: int, amplitude: float) -> np.ndarray:
    """Low-frequency anatomical background (vessels, overlapping tissue), deterministic."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(9, 9)).astype(np.float32)
    # Bilinear upsampling of a 9×9 field: smooth, cheap and exactly reproducible.
    idx = np.linspace(0, 8, size, dtype=np.float32)
    i0 = np.minimum(idx.astype(np.int64), 7)
    f = idx - i0
    rows = coarse[i0] * (1 - f)[:, None] + coarse[i0 + 1] * f[:, None]
    field = rows[:, i0] * (1 - f)[None, :] + rows[:, i0 + 1] * f[None, :]
    return (field * amplitude).astype(np.float32)


def render(anatomy: Anatomy, size: int = 256) -> np.ndarray:
    """The anatomy as a [size, size] float32 image in [0, 1] (MONOCHROME2: dense is bright)."""
    a = anatomy
    scale = 0.72 if a.paediatric else 1.0  # a child's thorax fills less of the detector
    x, y = _grid(size, a.rotation, a.shift_x, a.shift_y)
    x = x / np.float32(scale)
    y = y / np.float32(scale)
    if a.view == "LL":
        image, lungs = _lateral(a, x, y)
    else:
        image, lungs = _frontal(a, x, y)
    if a.nodule is not None:
        image += _nodule(a, x, y, lungs, size, scale)
    image += _texture(a.texture_seed, size, 0.025) * (0.4 + lungs)
    return np.clip(image, 0.0, 1.0, out=image)


def _frontal(a: Anatomy, x, y):
    bw, lh = a.body_width, a.lung_height
    body = _soft(_ellipse(x, y, 0.0, 0.15, 0.88 * bw, 1.25), 0.05)
    image = 0.04 + body * a.tissue
    # Lungs: two ellipses whose lower edge is cut by the diaphragm domes.
    lungs = np.zeros_like(x)
    for side in (-1, 1):
        cx = side * 0.36 * bw
        lung = _soft(_ellipse(x, y, cx, -0.12, 0.27 * bw, 0.58 * lh))
        dome = 0.30 * lh + 0.22 * ((x - cx) / (0.3 * bw)) ** 2
        lung *= np.clip((dome - y) / 0.05, 0.0, 1.0)
        lungs = np.maximum(lungs, lung)
    image -= lungs * (a.tissue - a.lung)
    # Mediastinum and spine: a dense central column, wider towards the heart.
    column = np.clip((0.11 + 0.05 * (y + 1.0) - np.abs(x)) / 0.03, 0.0, 1.0)
    image += column * 0.16 * (y > -0.95)
    spine = np.clip((0.055 - np.abs(x)) / 0.015, 0.0, 1.0)
    image += spine * 0.08
    # Heart: left of the midline (image right), over the lower lungs.
    hs = a.heart_size * (1.25 if a.paediatric else 1.0)
    heart = _soft(_ellipse(x, y, 0.12 * bw, 0.22, 0.27 * hs * bw, 0.21 * hs), 0.15)
    image += heart * np.maximum(lungs, 0.3) * (a.tissue - a.lung + 0.1)
    # Posterior ribs: arcs that fall laterally, evenly spaced; each side is one vectorised
    # pass (the distance to the nearest rib centre line), visible mostly over the lungs.
    n_ribs = 8 if a.paediatric else 10
    spacing = 1.05 * lh / n_ribs
    for side in (-1, 1):
        lateral = np.clip(side * x, 0.0, None) / bw
        offset = y - (0.32 * lateral**2 + (0.02 if a.paediatric else 0.09) * lateral)
        t = (offset - (-0.72 + 0.03 * a.rib_phase)) / spacing
        k = np.clip(np.rint(t), 0, n_ribs - 1)
        band = np.clip(1.0 - np.abs(t - k) * spacing / 0.022, 0.0, 1.0)
        image += band * ((side * x > 0.05) * body) * (0.05 + 0.05 * lungs)
    # Clavicles.
    for side in (-1, 1):
        curve = -0.78 + 0.12 * (side * x - 0.3) ** 2
        image += np.clip(1.0 - np.abs(y - curve) / 0.03, 0.0, 1.0) * (
            (side * x > 0.05) & (side * x < 0.7)
        ) * 0.1  # fmt: skip
    if a.sex == "F":
        # Breast soft tissue over the lower lateral lung fields.
        for side in (-1, 1):
            breast = _soft(_ellipse(x, y, side * 0.45 * bw, 0.35, 0.3 * bw, 0.25), 0.4)
            image += breast * 0.06
    return image.astype(np.float32), lungs.astype(np.float32)


def _lateral(a: Anatomy, x, y):
    body = _soft(_ellipse(x, y, 0.0, 0.12, 0.8 * a.body_width, 1.25), 0.05)
    image = 0.04 + body * a.tissue
    lung = _soft(_ellipse(x, y, 0.02, -0.1, 0.55 * a.body_width, 0.62 * a.lung_height))
    dome = 0.34 * a.lung_height + 0.12 * (x / 0.5) ** 2
    lung *= np.clip((dome - y) / 0.05, 0.0, 1.0)
    image -= lung * (a.tissue - a.lung) * 0.8
    spine = np.clip((0.08 - np.abs(x - 0.6 * a.body_width)) / 0.02, 0.0, 1.0)
    image += spine * 0.25
    heart = _soft(_ellipse(x, y, -0.22, 0.22, 0.3 * a.heart_size, 0.26 * a.heart_size), 0.15)
    image += heart * (a.tissue - a.lung) * 0.8
    sternum = np.clip((0.025 - np.abs(x + 0.68 * a.body_width)) / 0.01, 0.0, 1.0)
    image += sternum * 0.15 * (np.abs(y + 0.1) < 0.7)
    return image.astype(np.float32), lung.astype(np.float32)


def _nodule(a: Anatomy, x, y, lungs, size: int, scale: float):
    n = a.nodule
    assert n is not None
    if a.view == "LL":
        cx, cy = 0.02 + 0.45 * n.u * a.body_width, -0.1 + 0.45 * n.v * a.lung_height
    else:
        cx = n.side * 0.36 * a.body_width + 0.2 * n.u * a.body_width
        cy = -0.12 + 0.4 * n.v * a.lung_height
    # Radius in normalised units: the field of view spans 2 units.
    sigma = n.radius_mm / FIELD_OF_VIEW_MM * 2.0 / scale / 1.6
    blob = np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2)))
    return (blob * n.contrast * (0.5 + 0.5 * lungs)).astype(np.float32)


def nodule_map(anatomy: Anatomy, size: int) -> np.ndarray:
    """Where the nodule is: its unit-height blob on a [size, size] grid (zeros when absent).

    Used only to train the deployed model (weak localisation supervision).
    """
    if anatomy.nodule is None:
        return np.zeros((size, size), dtype=np.float32)
    scale = 0.72 if anatomy.paediatric else 1.0
    x, y = _grid(size, anatomy.rotation, anatomy.shift_x, anatomy.shift_y)
    x = x / np.float32(scale)
    y = y / np.float32(scale)
    unit = Anatomy(
        **{
            **anatomy.__dict__,
            "nodule": Nodule(
                anatomy.nodule.side,
                anatomy.nodule.u,
                anatomy.nodule.v,
                anatomy.nodule.radius_mm,
                1.0,
            ),
        }
    )
    return _nodule(unit, x, y, np.ones_like(x), size, scale)
