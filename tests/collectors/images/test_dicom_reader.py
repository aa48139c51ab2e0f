"""DICOM bytes → model-ready pixels and allow-listed tags (collectors.images.dicom_reader).

Real objects from many vendors and transfer syntaxes (pydicom's bundled test files) and
generated DX objects from the synthetic hospital; every bad-input class of the parsing step
maps to its reason. How one frame becomes display values is in test_pixels.py.
"""

from __future__ import annotations

import io
import resource
import time
import zlib

import numpy as np
import pydicom
import pytest
from dicom_objects import secondary_capture
from images_support import bundled, check_model_ready, decode_reason, generated_dx

from collectors.errors import DecodeError, Reason
from collectors.images.dicom_reader import read_dicom_bytes, read_dicom_tags, read_image_bytes
from collectors.images.pixels import DecodeLimits

# Vendors: GE, Toshiba, Philips, QIICR, SonoSite, RT dose; syntaxes: native little/big endian,
# JPEG baseline, JPEG extended, JPEG-LS lossless and near-lossless, JPEG 2000 (lossless and
# lossy), RLE; photometrics: MONOCHROME2, RGB, YBR_FULL_422, YBR_RCT, PALETTE COLOR.
BUNDLED = [
    "CT_small.dcm", "MR_small.dcm", "MR_small_bigendian.dcm", "JPEG2000.dcm", "693_J2KI.dcm",
    "JPGExtended.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_jpeg_gdcm.dcm",
    "MR_small_jpeg_ls_lossless.dcm", "JPEGLSNearLossless_16.dcm", "MR_small_jp2klossless.dcm",
    "MR_small_RLE.dcm", "SC_rgb_rle.dcm", "SC_rgb_rle_2frame.dcm", "examples_palette.dcm",
    "SC_ybr_full_422_uncompressed.dcm", "GDCMJ2K_TextGBR.dcm", "liver_1frame.dcm",
    "examples_ybr_color.dcm", "rtdose.dcm",
]  # fmt: skip


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_objects_decode_to_model_ready_arrays(name: str) -> None:
    image = read_dicom_bytes(bundled(name), 64)
    check_model_ready(image, 64)
    assert image.source == "dicom"


def test_tags_are_the_allow_list_only() -> None:
    raw = bundled("CT_small.dcm")
    ds = pydicom.dcmread(io.BytesIO(raw))
    tags = read_dicom_tags(raw)
    assert tags["Manufacturer"] == "GE MEDICAL SYSTEMS"
    assert tags["Modality"] == "CT"
    assert tags["Rows"] == 128.0 and tags["BitsStored"] == 16.0
    assert tags["RescaleIntercept"] == float(ds.RescaleIntercept)
    assert tags["PixelSpacing"] == [float(v) for v in ds.PixelSpacing]
    text = repr(tags)
    for keyword in ("PatientName", "PatientID", "StudyDate", "PatientBirthDate"):
        value = str(ds.get(keyword, "")) or None
        assert keyword not in tags
        if value and len(value) > 3:
            assert value not in text
    assert "StationName" not in tags  # dropped without a pseudonymiser, never stored raw


def test_station_name_is_pseudonymised_when_a_pseudonymiser_is_given() -> None:
    raw = bundled("CT_small.dcm")
    station = str(pydicom.dcmread(io.BytesIO(raw)).StationName)
    tags = read_dicom_tags(raw, lambda kind, value: f"p:{kind}:{len(value)}")
    assert tags["StationName"] == f"p:StationName:{len(station)}"


# -- bad input -----------------------------------------------------------------------------


def test_truncated_objects() -> None:
    assert decode_reason(bundled("MR_truncated.dcm")) == Reason.DICOM_TRUNCATED
    raw, _ = generated_dx()
    for cut in (len(raw) // 2, len(raw) - 1, 2000):
        assert decode_reason(raw[:cut]) == Reason.DICOM_TRUNCATED, cut
    compressed = bundled("JPEG2000.dcm")
    assert decode_reason(compressed[: len(compressed) - 300]) == Reason.DICOM_TRUNCATED
    assert decode_reason(b"") == Reason.DICOM_TRUNCATED


@pytest.mark.parametrize("name", ["test-SR.dcm", "rtplan.dcm", "rtstruct.dcm"])
def test_objects_without_pixel_data(name: str) -> None:
    assert decode_reason(bundled(name)) == Reason.DICOM_NO_PIXELS


def test_not_dicom_at_all() -> None:
    assert decode_reason(b"hello, this is not a DICOM file" * 10) == Reason.DICOM_INVALID


def test_png_and_npy_inline_images() -> None:
    from PIL import Image

    gradient = np.tile(np.arange(64, dtype=np.uint8) * 4, (32, 1))
    buffer = io.BytesIO()
    Image.fromarray(gradient).save(buffer, format="PNG")
    png = read_image_bytes(buffer.getvalue(), "image/png", size=64)
    check_model_ready(png, 64)
    assert png.source == "png" and png.original_shape == (1, 32, 64, 1)
    npy_buffer = io.BytesIO()
    np.save(npy_buffer, gradient.astype(np.float64))
    npy = read_image_bytes(npy_buffer.getvalue(), "application/x-npy", size=64)
    check_model_ready(npy, 64)
    with pytest.raises(DecodeError) as info:
        read_image_bytes(b"not a png", "image/png")
    assert info.value.reason == Reason.DICOM_INVALID


# -- decoding limits (issue 13): each its own reason, checked before the work it bounds --------


def deflated_bomb(inflated_bytes: int) -> bytes:
    """A Deflated Explicit VR Little Endian object whose dataset inflates to `inflated_bytes`.

    The meta header (PS3.10 §7.1) is written by pydicom; the deflated dataset is streamed
    through zlib in 1 MiB steps, so building the bomb never holds its inflated size.
    """
    meta_only = secondary_capture(8, 8, bytes(64), "1.2.840.10008.1.2.1.99")
    group_length = int.from_bytes(meta_only[140:144], "little")
    head = meta_only[: 144 + group_length]
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    # (7FE0,0010) OB, 4-byte length, then zeros: a Pixel Data element of the announced size.
    element = b"\xe0\x7f\x10\x00OB\x00\x00" + (inflated_bytes - 12).to_bytes(4, "little")
    parts = [packer.compress(element)]
    zeros = bytes(1 << 20)
    left = inflated_bytes - 12
    while left > 0:
        parts.append(packer.compress(zeros[: min(left, len(zeros))]))
        left -= len(zeros)
    parts.append(packer.flush())
    return head + b"".join(parts)


def test_a_deflate_bomb_is_refused_without_inflating_it() -> None:
    bomb = deflated_bomb(1_500_000_000)  # 1.5 GB of zeros in about 1.5 MB
    assert len(bomb) < 2_000_000
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    assert decode_reason(bomb) == Reason.DICOM_TOO_LARGE_INFLATED  # default cap: 512 MiB
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 100, f"peak memory grew by {grown_mib:.0f} MiB"
    small = deflated_bomb(3_000_000)
    limits = DecodeLimits(max_inflated_bytes=1_000_000)
    assert decode_reason(small, limits=limits) == Reason.DICOM_TOO_LARGE_INFLATED


def test_deflated_objects_within_the_cap_still_decode() -> None:
    raw = bundled("image_dfl.dcm")
    check_model_ready(read_dicom_bytes(raw, 32), 32)


def test_the_time_budget_in_process_and_in_an_abandonable_worker() -> None:
    raw = bundled("JPEG2000.dcm")
    with pytest.raises(DecodeError) as info:
        read_dicom_bytes(raw, 32, deadline=time.monotonic() - 1)
    assert info.value.reason == Reason.IMAGE_DECODE_TIMEOUT
    from collectors.images.decode_pool import DecodePool

    pool = DecodePool(1)
    try:
        check_model_ready(pool.decode(raw, "application/dicom", size=32, limits=DecodeLimits()), 32)
        # A budget no decoder can meet: the worker is killed mid-decode and replaced.
        started = time.monotonic()
        with pytest.raises(DecodeError) as info:
            pool.decode(raw, "application/dicom", size=32,
                        limits=DecodeLimits(time_budget_s=0.001))  # fmt: skip
        assert info.value.reason == Reason.IMAGE_DECODE_TIMEOUT
        assert time.monotonic() - started < 5 and pool.replaced == 1
        again = pool.decode(raw, "application/dicom", size=32, limits=DecodeLimits())
        np.testing.assert_array_equal(again.pixels, read_dicom_bytes(raw, 32).pixels)
        with pytest.raises(DecodeError) as info:  # errors cross the process boundary intact
            pool.decode(b"not dicom" * 50, "application/dicom", size=32, limits=DecodeLimits())
        assert info.value.reason == Reason.DICOM_INVALID
    finally:
        pool.close()
