"""The hospital's sites and X-ray scanners, and how each turns a phantom into stored pixels.

Second step of the synthetic hospital: a phantom (display values in [0, 1]) goes through a
scanner's acquisition chain — tone curve, sharpness (MTF), quantum noise, detector sampling,
bit depth — and comes out as the unsigned integers a DX object stores (PS3.3 C.8.11.3).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from collectors.simulator.phantom import FIELD_OF_VIEW_MM


@dataclass(frozen=True)
class Scanner:
    site: str
    manufacturer: str
    model: str
    station: str  # StationName: pseudonymised by the collector
    software: str
    bits_stored: int = 12
    rows: int = 256  # detector sampling of the fixed field of view
    gamma: float = 1.0  # tone curve applied to display values
    blur_px: float = 0.6  # Gaussian MTF, in pixels of a 256-pixel image
    sharpen: float = 0.0  # unsharp-mask amount (vendor "edge enhancement")
    noise: float = 0.018  # relative quantum noise at the reference exposure
    kvp: float = 110.0
    exposure_mas: float = 2.5
    weight: float = 1.0  # share of the hospital's studies

    @property
    def pixel_spacing_mm(self) -> float:
        return FIELD_OF_VIEW_MM / self.rows

    @property
    def window(self) -> tuple[float, float]:
        """WindowCenter, WindowWidth (PS3.3 C.11.2.1.2) spanning the stored range."""
        top = 2**self.bits_stored
        return top / 2.0, float(top)


SCANNERS: tuple[Scanner, ...] = (
    Scanner("north-general", "ACME", "X1", "NG-DR1", "4.2", weight=1.2),
    Scanner("north-general", "Borealis", "B-200", "NG-DR2", "7.1.3", gamma=1.05, blur_px=0.7,
            noise=0.02, kvp=115.0, exposure_mas=2.0),
    Scanner("south-clinic", "Borealis", "B-200", "SC-DR1", "7.1.3", gamma=1.05, blur_px=0.7,
            noise=0.02, kvp=115.0, exposure_mas=2.0),
    Scanner("east-imaging", "ACME", "X2", "EI-DR1", "5.0", gamma=0.95, blur_px=0.5,
            sharpen=0.2, noise=0.016, kvp=120.0, exposure_mas=3.2),
)  # fmt: skip
SITES = tuple(sorted({s.site for s in SCANNERS}))
# A vendor the hospital has not bought yet: the new_vendor scenario installs it.
NEW_VENDOR = Scanner("south-clinic", "Zenith Medical", "ZR-7", "SC-DR9", "1.0.2",
                     bits_stored=14, rows=320, gamma=0.7, blur_px=1.1, sharpen=0.6,
                     noise=0.03, kvp=125.0, exposure_mas=1.6)  # fmt: skip


def scanner_named(site: str, model: str) -> Scanner:
    for scanner in SCANNERS:
        if scanner.site == site and scanner.model == model:
            return scanner
    raise KeyError(f"no scanner {model} at {site}")


def with_changes(scanner: Scanner, **changes: object) -> Scanner:
    return replace(scanner, **changes)  # type: ignore[arg-type]


def acquire(
    display: np.ndarray, scanner: Scanner, *, noise_seed: int, dose_factor: float = 1.0
) -> np.ndarray:
    """Phantom display values → stored unsigned integers (MONOCHROME2), deterministic."""
    image = np.power(np.clip(display, 0.0, 1.0), np.float32(scanner.gamma), dtype=np.float32)
    if scanner.blur_px > 0:
        image = ndimage.gaussian_filter(image, scanner.blur_px, mode="nearest")
    if scanner.sharpen > 0:
        blurred = ndimage.gaussian_filter(image, 2.0, mode="nearest")
        image = image + np.float32(scanner.sharpen) * (image - blurred)
    if scanner.rows != image.shape[0]:
        # Detector sampling of the same field of view (order-1 spline: deterministic).
        image = ndimage.zoom(image, scanner.rows / image.shape[0], order=1, mode="nearest")
    # Quantum noise: Poisson-like, its variance grows with signal and falls with dose.
    rng = np.random.default_rng(noise_seed)
    sigma = scanner.noise / np.sqrt(max(dose_factor, 1e-3))
    noise = rng.standard_normal(image.shape, dtype=np.float32)
    image = image + noise * np.float32(sigma) * np.sqrt(np.clip(image, 0.02, None) + 0.1)
    top = 2**scanner.bits_stored - 1
    return np.clip(np.rint(image * top), 0, top).astype(np.uint16)
