"""Chest-radiograph phantoms: one patient's anatomy (and maybe a nodule) → a display image.

Innermost step of the synthetic hospital: `render` turns an `Anatomy` (every random draw made
up front, so a scenario can change one thing and leave the rest identical) into float32
values in [0, 1], bright = dense, before any scanner's tone curve, blur or noise is applied.
"""

from __future__ import annotations

import functools
import math
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


@dataclass(frozen=True)
class _Frame:
    """The pixel grid in phantom coordinates (x, y: float32 [size, size]) and its inverse.

    Most structures touch a small part of the image (a clavicle is a thin band, a breast a
    tenth of it): each is computed on the pixel window that holds its support and added
    there. Outside that window the full-image formula gives exactly +0.0, and v + 0.0 == v,
    so the image is bit-identical to computing every structure on every pixel, at a third
    of the cost (tests/collectors/simulator/test_render_identity.py keeps that reference).
    """

    x: np.ndarray
    y: np.ndarray
    size: int
    scale: float
    cos: float
    sin: float
    shift_x: float
    shift_y: float

    def window(self, x0: float, x1: float, y0: float, y1: float) -> tuple[slice, slice]:
        """Rows and columns holding every pixel whose (x, y) lies in [x0, x1] × [y0, y1]."""
        c, s, k = self.cos, self.sin, self.scale
        us, vs = [], []
        for px in (x0, x1):
            for py in (y0, y1):
                xr, yr = px * k, py * k  # undo the scale, then the rotation (_frame)
                us.append(self.shift_x + c * xr - s * yr)
                vs.append(self.shift_y + s * xr + c * yr)
        return self._span(vs), self._span(us)

    def _span(self, axis_values: list[float]) -> slice:
        # Axis value a ↔ index (a + 1) · size / 2 − 0.5; a 2-pixel margin dwarfs the float32
        # rounding of the grid (~1e-4 pixel), so no pixel of the support is left out.
        half = self.size / 2.0
        lo = math.floor((min(axis_values) + 1.0) * half - 0.5) - 2
        hi = math.ceil((max(axis_values) + 1.0) * half - 0.5) + 3
        return slice(min(max(lo, 0), self.size), min(max(hi, 0), self.size))

    def ellipse_window(self, cx: float, cy: float, ax: float, ay: float) -> tuple[slice, slice]:
        """The window of an ellipse's interior (where `_soft(_ellipse(…))` is non-zero)."""
        return self.window(cx - abs(ax), cx + abs(ax), cy - abs(ay), cy + abs(ay))

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(x0, x1, y0, y1) covering the whole image: the images of its four corners."""
        c, s, k = self.cos, self.sin, self.scale
        xs, ys = [], []
        for u in (-1.0, 1.0):
            for v in (-1.0, 1.0):
                du, dv = u - self.shift_x, v - self.shift_y
                xs.append((c * du + s * dv) / k)
                ys.append((-s * du + c * dv) / k)
        return min(xs) - 0.1, max(xs) + 0.1, min(ys) - 0.1, max(ys) + 0.1


@functools.lru_cache(maxsize=4)
def _axes(size: int) -> tuple[np.ndarray, np.ndarray]:
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size * 2.0 - 1.0
    y, x = np.meshgrid(axis, axis, indexing="ij")
    x.flags.writeable = y.flags.writeable = False  # shared between calls
    return x, y


def _grid(size: int, rotation: float, shift_x: float, shift_y: float):
    x, y = _axes(size)
    c, s = np.float32(np.cos(rotation)), np.float32(np.sin(rotation))
    dx, dy = x - shift_x, y - shift_y
    xr = c * dx + s * dy
    yr = -s * dx + c * dy
    return xr, yr


def _frame(a: Anatomy, size: int) -> _Frame:
    scale = 0.72 if a.paediatric else 1.0  # a child's thorax fills less of the detector
    x, y = _grid(size, a.rotation, a.shift_x, a.shift_y)
    if scale != 1.0:  # x / 1 is x: the division only where it changes something
        x = x / np.float32(scale)
        y = y / np.float32(scale)
    return _Frame(x, y, size, scale, float(np.float32(np.cos(a.rotation))),
                  float(np.float32(np.sin(a.rotation))), a.shift_x, a.shift_y)  # fmt: skip


def _ellipse(x, y, cx, cy, ax, ay):
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2


def _soft(d2, edge: float = 0.08):
    """1 inside an ellipse (d2 < 1), 0 outside, with a smooth edge of relative width `edge`."""
    return np.clip((1.0 - d2) / edge, 0.0, 1.0)


@functools.lru_cache(maxsize=4)
def _bilinear(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    idx = np.linspace(0, 8, size, dtype=np.float32)
    i0 = np.minimum(idx.astype(np.int64), 7)
    f = idx - i0
    return i0, i0 + 1, f, 1 - f


def _texture(seed: int, size: int, amplitude: float) -> np.ndarray:
    """Low-frequency anatomical background (vessels, overlapping tissue), deterministic."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(9, 9)).astype(np.float32)
    # Bilinear upsampling of a 9×9 field: smooth, cheap and exactly reproducible.
    i0, i1, f, g = _bilinear(size)
    rows = coarse[i0] * g[:, None] + coarse[i1] * f[:, None]
    field = np.take(rows, i0, axis=1) * g[None, :] + np.take(rows, i1, axis=1) * f[None, :]
    return (field * amplitude).astype(np.float32)  # f is float64: the sums are too


def render(anatomy: Anatomy, size: int = 256) -> np.ndarray:
    """The anatomy as a [size, size] float32 image in [0, 1] (MONOCHROME2: dense is bright)."""
    a = anatomy
    frame = _frame(a, size)
    if a.view == "LL":
        image, lungs = _lateral(a, frame)
    else:
        image, lungs = _frontal(a, frame)
    if a.nodule is not None:
        image += _nodule(a, frame.x, frame.y, lungs, size, frame.scale)
    image += _texture(a.texture_seed, size, 0.025) * (0.4 + lungs)
    return np.clip(image, 0.0, 1.0, out=image)


def _frontal(a: Anatomy, f: _Frame):
    x, y = f.x, f.y
    x0, x1, y0, y1 = f.extent
    bw, lh = a.body_width, a.lung_height
    body = _soft(_ellipse(x, y, 0.0, 0.15, 0.88 * bw, 1.25), 0.05)
    image = 0.04 + body * a.tissue
    # Lungs: two ellipses whose lower edge is cut by the diaphragm domes.
    lungs = np.zeros_like(x)
    for side in (-1, 1):
        cx = side * 0.36 * bw
        w = f.ellipse_window(cx, -0.12, 0.27 * bw, 0.58 * lh)
        lung = _soft(_ellipse(x[w], y[w], cx, -0.12, 0.27 * bw, 0.58 * lh))
        dome = 0.30 * lh + 0.22 * ((x[w] - cx) / (0.3 * bw)) ** 2
        lung *= np.clip((dome - y[w]) / 0.05, 0.0, 1.0)
        lungs[w] = np.maximum(lungs[w], lung)
    w = f.window(-0.63 * abs(bw), 0.63 * abs(bw), -0.12 - 0.58 * abs(lh), -0.12 + 0.58 * abs(lh))
    image[w] -= lungs[w] * (a.tissue - a.lung)
    # Mediastinum and spine: a dense central column, wider towards the heart.
    reach = 0.11 + 0.05 * (max(abs(y0), abs(y1)) + 1.0)  # |x| where the column ends
    w = f.window(-reach, reach, y0, y1)
    column = np.clip((0.11 + 0.05 * (y[w] + 1.0) - np.abs(x[w])) / 0.03, 0.0, 1.0)
    image[w] += column * 0.16 * (y[w] > -0.95)
    w = f.window(-0.055, 0.055, y0, y1)
    spine = np.clip((0.055 - np.abs(x[w])) / 0.015, 0.0, 1.0)
    image[w] += spine * 0.08
    # Heart: left of the midline (image right), over the lower lungs.
    hs = a.heart_size * (1.25 if a.paediatric else 1.0)
    w = f.ellipse_window(0.12 * bw, 0.22, 0.27 * hs * bw, 0.21 * hs)
    heart = _soft(_ellipse(x[w], y[w], 0.12 * bw, 0.22, 0.27 * hs * bw, 0.21 * hs), 0.15)
    image[w] += heart * np.maximum(lungs[w], 0.3) * (a.tissue - a.lung + 0.1)
    # Posterior ribs: arcs that fall laterally, evenly spaced; each side is one vectorised
    # pass (the distance to the nearest rib centre line), visible mostly over the lungs
    # (and only inside the body, on its side of x = ±0.05).
    n_ribs = 8 if a.paediatric else 10
    spacing = 1.05 * lh / n_ribs
    for side in (-1, 1):
        inner, outer = side * 0.05, side * 0.88 * abs(bw)
        w = f.window(min(inner, outer), max(inner, outer), 0.15 - 1.25, 0.15 + 1.25)
        xs = x[w]
        lateral = np.clip(side * xs, 0.0, None) / bw
        offset = y[w] - (0.32 * lateral**2 + (0.02 if a.paediatric else 0.09) * lateral)
        t = (offset - (-0.72 + 0.03 * a.rib_phase)) / spacing
        k = np.clip(np.rint(t), 0, n_ribs - 1)
        band = np.clip(1.0 - np.abs(t - k) * spacing / 0.022, 0.0, 1.0)
        image[w] += band * ((side * xs > 0.05) * body[w]) * (0.05 + 0.05 * lungs[w])
    # Clavicles: side·x in (0.05, 0.7), so the curve stays in [-0.78, -0.7608] and the
    # band (|y − curve| < 0.03) in y ∈ (-0.81, -0.7308).
    for side in (-1, 1):
        w = f.window(min(side * 0.05, side * 0.7), max(side * 0.05, side * 0.7), -0.81, -0.73)
        xs = x[w]
        curve = -0.78 + 0.12 * (side * xs - 0.3) ** 2
        image[w] += np.clip(1.0 - np.abs(y[w] - curve) / 0.03, 0.0, 1.0) * (
            (side * xs > 0.05) & (side * xs < 0.7)
        ) * 0.1  # fmt: skip
    if a.sex == "F":
        # Breast soft tissue over the lower lateral lung fields.
        for side in (-1, 1):
            w = f.ellipse_window(side * 0.45 * bw, 0.35, 0.3 * bw, 0.25)
            breast = _soft(_ellipse(x[w], y[w], side * 0.45 * bw, 0.35, 0.3 * bw, 0.25), 0.4)
            image[w] += breast * 0.06
    return image.astype(np.float32, copy=False), lungs.astype(np.float32, copy=False)


def _lateral(a: Anatomy, f: _Frame):
    x, y = f.x, f.y
    x0, x1, y0, y1 = f.extent
    bw, lh, hs = a.body_width, a.lung_height, a.heart_size
    body = _soft(_ellipse(x, y, 0.0, 0.12, 0.8 * bw, 1.25), 0.05)
    image = 0.04 + body * a.tissue
    lungs = np.zeros_like(x)
    w = f.ellipse_window(0.02, -0.1, 0.55 * bw, 0.62 * lh)
    lung = _soft(_ellipse(x[w], y[w], 0.02, -0.1, 0.55 * bw, 0.62 * lh))
    dome = 0.34 * lh + 0.12 * (x[w] / 0.5) ** 2
    lung *= np.clip((dome - y[w]) / 0.05, 0.0, 1.0)
    lungs[w] = lung
    image[w] -= lung * (a.tissue - a.lung) * 0.8
    w = f.window(0.6 * bw - 0.08, 0.6 * bw + 0.08, y0, y1)
    spine = np.clip((0.08 - np.abs(x[w] - 0.6 * bw)) / 0.02, 0.0, 1.0)
    image[w] += spine * 0.25
    w = f.ellipse_window(-0.22, 0.22, 0.3 * hs, 0.26 * hs)
    heart = _soft(_ellipse(x[w], y[w], -0.22, 0.22, 0.3 * hs, 0.26 * hs), 0.15)
    image[w] += heart * (a.tissue - a.lung) * 0.8
    w = f.window(-0.68 * bw - 0.025, -0.68 * bw + 0.025, -0.8, 0.6)
    sternum = np.clip((0.025 - np.abs(x[w] + 0.68 * bw)) / 0.01, 0.0, 1.0)
    image[w] += sternum * 0.15 * (np.abs(y[w] + 0.1) < 0.7)
    return image.astype(np.float32, copy=False), lungs


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
