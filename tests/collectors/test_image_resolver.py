"""image.uri resolution: file://, data:, and DICOMweb WADO-RS against a real Orthanc PACS.

Orthanc (Debian package, with its DICOMweb plugin) is started by the fixture on free ports
with a temporary storage directory; objects are stored through POST /instances and fetched
back with WADO-RS Retrieve Instance (PS3.18 §10.4.1).
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pacs_servers import Orthanc, free_port, orthanc, stalling_server
from pydicom.data import get_testdata_file

from collectors.dicom_reader import ResolveError, load_image, read_dicom_bytes
from collectors.events import Reason
from collectors.hospital.study import dicom_bytes, plan_study, stored_pixels
from collectors.image_resolver import resolve


def bundled(name: str) -> bytes:
    path = get_testdata_file(name)
    assert path is not None
    return Path(path).read_bytes()


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    with orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server


def _generated() -> bytes:
    plan = plan_study(5, 0)
    return dicom_bytes(plan, stored_pixels(plan))


@pytest.mark.parametrize(
    "source", ["CT_small.dcm", "JPEG2000.dcm", "MR_small_RLE.dcm", "generated"]
)
def test_wado_rs_gives_the_same_image_as_the_file(pacs: Orthanc, source: str) -> None:
    raw = _generated() if source == "generated" else bundled(source)
    url = pacs.upload(raw)
    fetched = load_image(url, size=64, timeout=10)
    local = read_dicom_bytes(raw, 64)
    np.testing.assert_array_equal(fetched.pixels, local.pixels)
    assert fetched.tags == local.tags


def test_wado_rs_unknown_instance_is_an_http_error(pacs: Orthanc) -> None:
    url = pacs.wado_url("1.2.3", "1.2.3.4", "1.2.3.4.5")
    with pytest.raises(ResolveError) as info:
        resolve(url, timeout=10)
    assert info.value.reason == Reason.IMAGE_HTTP_ERROR
    assert "404" in info.value.message
    assert "1.2.3.4.5" not in info.value.message  # the URI (identifiers) is never repeated


def test_a_pacs_that_never_answers_times_out() -> None:
    with stalling_server() as base:
        started = time.monotonic()
        with pytest.raises(ResolveError) as info:
            resolve(f"{base}/dicom-web/studies/1/series/2/instances/3", timeout=0.5)
        elapsed = time.monotonic() - started
    assert info.value.reason == Reason.IMAGE_TIMEOUT
    assert elapsed < 5.0  # bounded by the timeout, with slack for a loaded machine


def test_a_pacs_that_is_down_is_an_http_error() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(ResolveError) as info:
        resolve(f"http://127.0.0.1:{port}/dicom-web/studies/1/series/2/instances/3", timeout=2)
    assert info.value.reason == Reason.IMAGE_HTTP_ERROR


def test_file_uris(tmp_path: Path) -> None:
    raw = bundled("CT_small.dcm")
    path = tmp_path / "dir with space" / "a.dcm"
    path.parent.mkdir()
    path.write_bytes(raw)
    assert resolve(path.as_uri(), timeout=1).data == raw
    with pytest.raises(ResolveError) as missing:
        resolve((tmp_path / "nope.dcm").as_uri(), timeout=1)
    assert missing.value.reason == Reason.IMAGE_UNREADABLE
    assert "nope" not in missing.value.message
    with pytest.raises(ResolveError) as remote:
        resolve("file://otherhost/a.dcm", timeout=1)
    assert remote.value.reason == Reason.IMAGE_UNREADABLE
    with pytest.raises(ResolveError) as large:
        resolve(path.as_uri(), timeout=1, max_bytes=100)
    assert large.value.reason == Reason.TOO_LARGE


def test_data_uris() -> None:
    raw = bundled("MR_small.dcm")
    uri = "data:application/dicom;base64," + base64.b64encode(raw).decode()
    image = load_image(uri, size=32)
    np.testing.assert_array_equal(image.pixels, read_dicom_bytes(raw, 32).pixels)
    buffer = io.BytesIO()
    np.save(buffer, np.arange(100, dtype=np.int16).reshape(10, 10))
    npy = load_image("data:application/x-npy;base64," + base64.b64encode(buffer.getvalue()).decode(),
                     size=10)  # fmt: skip
    assert npy.source == "npy" and npy.pixels[0, 0] == 0.0 and npy.pixels[9, 9] == 1.0
    for bad, reason in [
        ("data:application/dicom;base64,@@@not-base64", Reason.IMAGE_UNREADABLE),
        ("data:text/html;base64,PGI+", Reason.IMAGE_UNREADABLE),
        ("data:application/dicom,plain", Reason.IMAGE_UNREADABLE),
        ("data:application/dicom;base64", Reason.IMAGE_UNREADABLE),
        ("ftp://pacs/a.dcm", Reason.IMAGE_UNREADABLE),
    ]:
        with pytest.raises(ResolveError) as info:
            resolve(bad, timeout=1)
        assert info.value.reason == reason, bad
