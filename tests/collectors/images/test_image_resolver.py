"""The fenced fetcher's front door (collectors.images.resolver): inline data: URIs, the schemes.

file:// and DICOMweb are tested beside their modules (test_file_source.py, test_dicomweb.py).
"""

from __future__ import annotations

import base64
import io
import pickle

import numpy as np
from images_support import bundled, fence, refused

from collectors.errors import Reason
from collectors.images.dicom_reader import read_dicom_bytes


def test_data_uris() -> None:
    fetcher = fence()  # no roots, no URLs: data: URIs need neither
    raw = bundled("MR_small.dcm")
    uri = "data:application/dicom;base64," + base64.b64encode(raw).decode()
    image = fetcher.load(uri, size=32)
    np.testing.assert_array_equal(image.pixels, read_dicom_bytes(raw, 32).pixels)
    buffer = io.BytesIO()
    np.save(buffer, np.arange(100, dtype=np.int16).reshape(10, 10))
    npy = fetcher.load("data:application/x-npy;base64," + base64.b64encode(buffer.getvalue()).decode(),
                       size=10)  # fmt: skip
    assert npy.source == "npy" and npy.pixels[0, 0] == 0.0 and npy.pixels[9, 9] == 1.0
    for bad in [
        "data:application/dicom;base64,@@@not-base64",
        "data:text/html;base64,PGI+",
        "data:application/dicom,plain",
        "data:application/dicom;base64",
        "ftp://pacs/a.dcm",
    ]:
        assert refused(fetcher, bad).reason == Reason.IMAGE_UNREADABLE, bad


def test_the_fetcher_pickles_to_a_worker_with_its_own_budget() -> None:
    # Backfill and DataLoader workers receive the fetcher pickled: the policy travels, the
    # budget, locks and SSL context are rebuilt on the other side.
    fetcher = fence(urls=["https://pacs.example/dicom-web"], max_bytes=1000, timeout_s=3.0)
    fetcher.budget.acquire(10, 0.0)
    copy = pickle.loads(pickle.dumps(fetcher))
    assert copy.policy == fetcher.policy and copy.budget.used == 0
    raw = b"DICM" * 300  # 1,200 bytes: over the copy's cap, as over the original's
    uri = "data:application/dicom;base64," + base64.b64encode(raw).decode()
    assert refused(copy, uri).reason == Reason.TOO_LARGE
