"""Image-quality features measure what their names say, on images with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detectors.embedding.image_features import ImageFeatureError, image_features, spacing_from_tags

SEED = 11
SIZE = 256


def _gradient() -> np.ndarray:
    ramp = np.linspace(0.2, 0.8, SIZE, dtype=np.float64)
    return np.add.outer(ramp, ramp) / 2.0  # locally linear: no noise, no Laplacian


def test_constant_image_has_no_noise_sharpness_or_entropy() -> None:
    f = image_features(np.full((64, 64), 0.4, dtype=np.float32))
    assert f.noise_sigma == 0 and f.sharpness == 0 and f.entropy_bits == 0 and f.std == 0
    assert f.p01 == pytest.approx(0.4) and f.p99 == pytest.approx(0.4) and f.contrast == 0
    assert f.saturated_fraction == 0 and f.black_fraction == 0


def test_noise_estimate_recovers_known_sigma() -> None:
    # Seed 11, 256×256, σ ∈ {0.01, 0.03, 0.05} on a gradient; Immerkær's estimator is
    # unbiased for Gaussian noise: tolerance ±5 %.
    rng = np.random.default_rng(SEED)
    base = _gradient()
    assert image_features(base).noise_sigma < 1e-9
    for sigma in (0.01, 0.03, 0.05):
        noisy = base + rng.normal(0, sigma, base.shape)
        assert image_features(noisy).noise_sigma == pytest.approx(sigma, rel=0.05)


def test_blur_lowers_sharpness() -> None:
    rng = np.random.default_rng(SEED)
    sharp = (rng.random((SIZE, SIZE)) > 0.5).astype(np.float64)
    blurred = sharp.copy()
    for _ in range(3):  # a 3-tap box blur, three times, in both directions
        blurred = (np.roll(blurred, 1, 0) + blurred + np.roll(blurred, -1, 0)) / 3
        blurred = (np.roll(blurred, 1, 1) + blurred + np.roll(blurred, -1, 1)) / 3
    assert image_features(blurred).sharpness < 0.1 * image_features(sharp).sharpness


def test_entropy_percentiles_and_edge_fractions() -> None:
    uniform = (np.arange(SIZE * SIZE) % 256 / 255.0).reshape(SIZE, SIZE)
    f = image_features(uniform)
    assert f.entropy_bits == pytest.approx(8.0, abs=1e-6)  # 256 equally full bins
    assert f.p50 == pytest.approx(0.5, abs=0.01)
    half = np.zeros((100, 100))
    half[:, 50:] = 1.0
    g = image_features(half)
    assert g.saturated_fraction == pytest.approx(0.5) and g.black_fraction == pytest.approx(0.5)
    assert g.contrast == pytest.approx(1.0) and g.entropy_bits == pytest.approx(1.0)


def test_size_and_spacing_and_json() -> None:
    tags = {"ImagerPixelSpacing": [0.15, 0.14], "Modality": "DX"}
    f = image_features(np.zeros((32, 32)), original_shape=(1, 3000, 2500, 1),
                       spacing=spacing_from_tags(tags))  # fmt: skip
    assert (f.rows, f.columns) == (3000, 2500)
    assert (f.spacing_row_mm, f.spacing_col_mm) == (0.15, 0.14)
    assert spacing_from_tags({"PixelSpacing": [0.2, 0.2], "ImagerPixelSpacing": [1, 1]}) == (
        0.2,
        0.2,
    )
    assert spacing_from_tags({}) is None and spacing_from_tags(None) is None
    bare = image_features(np.zeros((8, 8)))
    assert bare.rows is None and bare.spacing_row_mm is None
    json.dumps(f.as_dict())  # storable as one jsonb value


def test_bad_input_is_refused() -> None:
    with pytest.raises(ImageFeatureError, match="2-D"):
        image_features(np.zeros(10))
    bad = np.zeros((8, 8))
    bad[2, 2] = np.nan
    with pytest.raises(ImageFeatureError, match="NaN"):
        image_features(bad)
