"""Helpers the collectors.images tests share: sample objects, a fenced fetcher, the checks.

Importable as `images_support` from the test modules beside it (pytest puts a test module's
directory on sys.path when, as here, it is not in a package).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from pydicom.data import get_testdata_file

from collectors.errors import DecodeError, Reason, ResolveError
from collectors.images.dicom_reader import LoadedImage, read_dicom_bytes
from collectors.images.resolver import FetchPolicy, ImageFetcher
from collectors.simulator.study import dicom_bytes, plan_study, stored_pixels


def bundled(name: str) -> bytes:
    """One of pydicom's bundled test objects."""
    path = get_testdata_file(name)
    assert path is not None, name
    return Path(path).read_bytes()


def generated_dx(index: int = 3, scenario: str = "none") -> tuple[bytes, np.ndarray]:
    """A DX object from the synthetic hospital, and the stored pixels written into it."""
    plan = plan_study(11, index, scenario_name=scenario)
    stored = stored_pixels(plan)
    return dicom_bytes(plan, stored), stored


def check_model_ready(image: LoadedImage, size: int) -> None:
    assert image.pixels.shape == (size, size)
    assert image.pixels.dtype == np.float32
    assert np.isfinite(image.pixels).all()
    assert image.pixels.min() >= 0.0 and image.pixels.max() <= 1.0
    assert image.pixels.max() > image.pixels.min()  # something was decoded


def fence(roots=(), urls=(), **options) -> ImageFetcher:
    return ImageFetcher(FetchPolicy.create(roots, urls, **options))


def refused(fetcher: ImageFetcher, uri: str) -> ResolveError:
    started = time.monotonic()
    with pytest.raises(ResolveError) as info:
        fetcher.fetch(uri)
    assert time.monotonic() - started < 5.0, "a refusal must be quick"
    return info.value


def decode_reason(raw: bytes, **kwargs) -> Reason:
    """The reason `read_dicom_bytes` refuses `raw` with (at size 32)."""
    with pytest.raises(DecodeError) as info:
        read_dicom_bytes(raw, 32, **kwargs)
    return info.value.reason
