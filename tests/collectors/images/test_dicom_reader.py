"""DICOM bytes → model-ready pixels and allow-listed tags (collectors.images.dicom_reader).

Real objects from many vendors and transfer syntaxes (pydicom's bundled test files) and
generated DX objects from the synthetic hospital; every bad-input class maps to its reason.
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
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian

from collectors.events import Reason
from collectors.images.dicom_reader import (
    DecodeError,
    DecodeLimits,
    LoadedImage,
    read_dicom_bytes,
    read_dicom_tags,
    read_image_bytes,
    resize_square,
)
from collectors.simulator.study import dicom_bytes, plan_study, stored_pixels


def bundled(name: str) -> bytes:
    path = get_testdata_file(name)
    assert path is not None, name
    with open(path, "rb") as fh:
        return fh.read()


def check_model_ready(image: LoadedImage, size: int) -> None:
    assert image.pixels.shape == (size, size)
    assert image.pixels.dtype == np.float32
    assert np.isfinite(image.pixels).all()
    assert image.pixels.min() >= 0.0 and image.pixels.max() <= 1.0
    assert image.pixels.max() > image.pixels.min()  # something was decoded


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


@pytest.mark.parametrize(
    "compressed", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"]
)
def test_lossless_syntaxes_give_exactly_the_native_pixels(compressed: str) -> None:
    native = read_dicom_bytes(bundled("MR_small.dcm"), 48)
    other = read_dicom_bytes(bundled(compressed), 48)
    np.testing.assert_array_equal(native.pixels, other.pixels)
    assert native.tags == other.tags


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


def _generated(index: int = 3, scenario: str = "none") -> tuple[bytes, np.ndarray]:
    plan = plan_study(11, index, scenario_name=scenario)
    stored = stored_pixels(plan)
    return dicom_bytes(plan, stored), stored


def test_generated_dx_window_and_rescale_follow_ps3_3_c_11() -> None:
    raw, stored = _generated()
    ds = pydicom.dcmread(io.BytesIO(raw))
    # Rescale (C.11.1.1.2) then a linear window (C.11.2.1.2.1), computed by hand at full size.
    ds.RescaleSlope, ds.RescaleIntercept = 2, -100
    ds.WindowCenter, ds.WindowWidth = 3000, 2001
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    image = read_dicom_bytes(buffer.getvalue(), stored.shape[0])
    x = stored.astype(np.float64) * 2 - 100
    expected = np.clip((x - (3000 - 0.5)) / (2001 - 1) + 0.5, 0, 1)
    np.testing.assert_allclose(image.pixels, expected, atol=1e-5)


def test_monochrome1_is_mapped_to_monochrome2_and_the_original_kept_as_a_tag() -> None:
    plain, _ = _generated(scenario="none")
    index = next(i for i in range(200)
                 if plan_study(11, i, scenario_name="inversion_bug", onset=0).inverted)  # fmt: skip
    plan_ref = plan_study(11, index)
    plan_inv = plan_study(11, index, scenario_name="inversion_bug", onset=0)
    ref = read_dicom_bytes(dicom_bytes(plan_ref, stored_pixels(plan_ref)), 96)
    inv = read_dicom_bytes(dicom_bytes(plan_inv, stored_pixels(plan_inv)), 96)
    assert ref.tags["PhotometricInterpretation"] == "MONOCHROME2"
    assert inv.tags["PhotometricInterpretation"] == "MONOCHROME1"
    assert inv.tags["PresentationLUTShape"] == "INVERSE"
    # The window spans the stored range, so polarity is the only difference: ≤ 1 ULP-ish.
    np.testing.assert_allclose(inv.pixels, ref.pixels, atol=2e-4)
    assert plain  # the generator produced a file


def test_monochrome2_with_inverse_presentation_lut_is_inverted() -> None:
    raw, _ = _generated()
    ds = pydicom.dcmread(io.BytesIO(raw))
    ds.PresentationLUTShape = "INVERSE"  # PS3.3 C.11.6.1
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    normal = read_dicom_bytes(raw, 64)
    inverse = read_dicom_bytes(buffer.getvalue(), 64)
    np.testing.assert_allclose(inverse.pixels, 1.0 - normal.pixels, atol=1e-6)


def test_voi_lut_function_sigmoid() -> None:
    raw, stored = _generated()
    ds = pydicom.dcmread(io.BytesIO(raw))
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 2000, 1000, "SIGMOID"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    image = read_dicom_bytes(buffer.getvalue(), stored.shape[0])
    expected = 1 / (1 + np.exp(-4 * (stored.astype(np.float64) - 2000) / 1000))  # C.11.2.1.3.1
    np.testing.assert_allclose(image.pixels, expected, atol=1e-5)


def test_multiframe_takes_the_middle_frame_and_rgb_becomes_luminance() -> None:
    raw = bundled("SC_rgb_rle_2frame.dcm")
    image = read_dicom_bytes(raw, 100)
    assert image.original_shape == (2, 100, 100, 3)
    assert image.frame_index == 1
    ds = pydicom.dcmread(io.BytesIO(raw))
    rgb = pydicom.pixels.pixel_array(ds, index=1).astype(np.float64) / 255.0
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(image.pixels, luma, atol=1e-5)


def test_non_square_images_are_padded_not_stretched() -> None:
    wide = np.ones((10, 40), dtype=np.float32)
    out = resize_square(wide, 40)
    assert out.shape == (40, 40)
    assert out[:15].max() == 0.0 and out[25:].max() == 0.0
    assert out[15:25].min() == 1.0


def test_decoding_is_deterministic() -> None:
    raw = bundled("JPEG2000.dcm")
    a, b = read_dicom_bytes(raw, 224), read_dicom_bytes(raw, 224)
    assert a.pixels.tobytes() == b.pixels.tobytes()


# -- bad input -----------------------------------------------------------------------------


def _reason(raw: bytes, **kwargs) -> Reason:
    with pytest.raises(DecodeError) as info:
        read_dicom_bytes(raw, 32, **kwargs)
    return info.value.reason


def test_truncated_objects() -> None:
    assert _reason(bundled("MR_truncated.dcm")) == Reason.DICOM_TRUNCATED
    raw, _ = _generated()
    for cut in (len(raw) // 2, len(raw) - 1, 2000):
        assert _reason(raw[:cut]) == Reason.DICOM_TRUNCATED, cut
    compressed = bundled("JPEG2000.dcm")
    assert _reason(compressed[: len(compressed) - 300]) == Reason.DICOM_TRUNCATED
    assert _reason(b"") == Reason.DICOM_TRUNCATED


@pytest.mark.parametrize("name", ["test-SR.dcm", "rtplan.dcm", "rtstruct.dcm"])
def test_objects_without_pixel_data(name: str) -> None:
    assert _reason(bundled(name)) == Reason.DICOM_NO_PIXELS


def test_not_dicom_at_all() -> None:
    assert _reason(b"hello, this is not a DICOM file" * 10) == Reason.DICOM_INVALID


def test_unsupported_transfer_syntax() -> None:
    # MPEG-2 Main Profile (PS3.5 §8.2.5): a video syntax no pixel plugin decodes.
    raw = secondary_capture(8, 8, encapsulate([b"\x00" * 64]), "1.2.840.10008.1.2.4.100")
    assert _reason(raw) == Reason.DICOM_UNSUPPORTED_SYNTAX


def test_absurd_and_zero_dimensions() -> None:
    absurd = secondary_capture(60000, 60000, b"\x00" * 64, ExplicitVRLittleEndian)
    assert _reason(absurd) == Reason.DICOM_BAD_DIMENSIONS
    zero = secondary_capture(0, 16, b"\x00" * 16, ExplicitVRLittleEndian)
    assert _reason(zero) == Reason.DICOM_BAD_DIMENSIONS
    fine = secondary_capture(64, 64, bytes(range(64)) * 64, ExplicitVRLittleEndian)
    assert _reason(fine, max_pixels=1000) == Reason.DICOM_BAD_DIMENSIONS
    check_model_ready(read_dicom_bytes(fine, 32), 32)


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
    assert _reason(bomb) == Reason.DICOM_TOO_LARGE_INFLATED  # default cap: 512 MiB
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 100, f"peak memory grew by {grown_mib:.0f} MiB"
    small = deflated_bomb(3_000_000)
    limits = DecodeLimits(max_inflated_bytes=1_000_000)
    assert _reason(small, limits=limits) == Reason.DICOM_TOO_LARGE_INFLATED


def test_deflated_objects_within_the_cap_still_decode() -> None:
    raw = bundled("image_dfl.dcm")
    check_model_ready(read_dicom_bytes(raw, 32), 32)


def test_pixel_counts_are_checked_from_the_header_before_pixel_data() -> None:
    # 10,000 frames of 200 × 200 announced, 64 bytes present: refused for its size, not as
    # truncated, so the limit was decided from the header alone.
    import pydicom as _pydicom

    ds = _pydicom.dcmread(io.BytesIO(secondary_capture(200, 200, bytes(64),
                                                      ExplicitVRLittleEndian)))  # fmt: skip
    ds.NumberOfFrames = 10_000
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    limits = DecodeLimits(max_total_pixels=100_000_000)
    assert _reason(buffer.getvalue(), limits=limits) == Reason.DICOM_TOO_MANY_PIXELS
    ds.NumberOfFrames = 1  # the per-frame limit keeps its own code
    assert _reason(buffer.getvalue(), max_pixels=1000) == Reason.DICOM_BAD_DIMENSIONS


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
