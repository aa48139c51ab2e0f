"""Image-quality features of one decoded image: intensity, contrast, noise, sharpness, size.

Beside the embeddings, between the DICOM reader's pixels (float32 [H, W] in [0, 1]) and the
univariate drift tests (KS / CVM, DESIGN.md §6). Pure numpy; every value is a float (or
None when the input does not carry it) so the result stores as one JSON object.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from detectors.errors import DetectorError

PERCENTILES = (1, 5, 25, 50, 75, 95, 99)
# Pixels within this distance of 0 or 1 count as black / saturated: after windowing
# (PS3.3 C.11.2) clipped values sit exactly at the ends, bilinear resizing smears them a bit.
EDGE_TOLERANCE = 1.0 / 255.0
HISTOGRAM_BINS = 256


class ImageFeatureError(DetectorError, ValueError):
    """The pixels are not a finite 2-D image."""


@dataclass(frozen=True)
class ImageFeatures:
    p01: float
    p05: float
    p25: float
    p50: float
    p75: float
    p95: float
    p99: float
    mean: float
    std: float  # RMS contrast (Peli 1990)
    contrast: float  # p99 − p01: the robust dynamic range actually used
    noise_sigma: float  # Immerkær 1996 fast noise estimate
    sharpness: float  # variance of the Laplacian (Pech-Pacheco et al. 2000)
    entropy_bits: float  # Shannon entropy of the 256-bin histogram
    saturated_fraction: float
    black_fraction: float
    rows: int | None  # the stored image's size, before resizing to the model's input
    columns: int | None
    spacing_row_mm: float | None  # PixelSpacing (PS3.3 10.7.1.3), else ImagerPixelSpacing
    spacing_col_mm: float | None

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
_LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)


def _convolve3(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """'valid' 3×3 correlation by shifted slices (kernels here are symmetric)."""
    h, w = image.shape
    out = np.zeros((h - 2, w - 2), dtype=np.float64)
    for dy in range(3):
        for dx in range(3):
            k = kernel[dy, dx]
            if k:
                out += k * image[dy : dy + h - 2, dx : dx + w - 2]
    return out


def image_features(
    pixels: np.ndarray,
    *,
    original_shape: Sequence[int] | None = None,
    spacing: Sequence[float] | None = None,
) -> ImageFeatures:
    """Features of one [H, W] image in [0, 1].

    `original_shape` is the stored (…, rows, columns[, samples]) shape — for a
    `LoadedImage`, (frames, rows, columns, samples); `spacing` is (row, column) in mm.
    """
    image = np.asarray(pixels, dtype=np.float64)
    if image.ndim != 2 or min(image.shape) < 3:
        raise ImageFeatureError(f"expected a 2-D image of at least 3×3, got {image.shape}")
    if not np.isfinite(image).all():
        raise ImageFeatureError("image holds NaN or infinity")
    pct = np.percentile(image, PERCENTILES)
    h, w = image.shape
    # Immerkær (1996), "Fast noise variance estimation", CVIU 64(2): the kernel is the
    # difference of two Laplacians, blind to locally linear structure; σ = √(π/2)/(6(W−2)(H−2))
    # Σ|I * N|. Robust to edges in the way a plain high-pass std is not.
    noise = math.sqrt(math.pi / 2) * np.abs(_convolve3(image, _IMMERKAER)).sum()
    noise /= 6.0 * (w - 2) * (h - 2)
    sharpness = float(_convolve3(image, _LAPLACIAN).var())
    counts, _ = np.histogram(np.clip(image, 0.0, 1.0), bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    prob = counts[counts > 0] / image.size
    entropy = float(-(prob * np.log2(prob)).sum())
    rows = columns = None
    if original_shape is not None and len(original_shape) >= 2:
        # (frames, rows, columns, samples) from the reader, or a plain (rows, columns).
        rows, columns = (
            (int(original_shape[1]), int(original_shape[2]))
            if len(original_shape) == 4
            else (int(original_shape[-2]), int(original_shape[-1]))
        )
    sr = sc = None
    if spacing is not None and len(spacing) >= 2:
        sr, sc = float(spacing[0]), float(spacing[1])
    return ImageFeatures(
        p01=float(pct[0]), p05=float(pct[1]), p25=float(pct[2]), p50=float(pct[3]),
        p75=float(pct[4]), p95=float(pct[5]), p99=float(pct[6]),
        mean=float(image.mean()), std=float(image.std()), contrast=float(pct[6] - pct[0]),
        noise_sigma=float(noise), sharpness=sharpness, entropy_bits=entropy,
        saturated_fraction=float((image >= 1.0 - EDGE_TOLERANCE).mean()),
        black_fraction=float((image <= EDGE_TOLERANCE).mean()),
        rows=rows, columns=columns, spacing_row_mm=sr, spacing_col_mm=sc,
    )  # fmt: skip


def spacing_from_tags(tags: Mapping[str, object] | None) -> tuple[float, float] | None:
    """(row, column) spacing in mm from allow-listed tags: PixelSpacing, else ImagerPixelSpacing.

    PS3.3 10.7.1.3: PixelSpacing is in the patient plane; ImagerPixelSpacing (DX, C.8.11.4)
    is at the detector — still a consistent per-scanner value for drift purposes.
    """
    if not tags:
        return None
    for key in ("PixelSpacing", "ImagerPixelSpacing"):
        value = tags.get(key)
        if isinstance(value, list | tuple) and len(value) >= 2:
            try:
                row, col = float(value[0]), float(value[1])
            except (TypeError, ValueError):
                continue
            if math.isfinite(row) and math.isfinite(col):
                return row, col
    return None
