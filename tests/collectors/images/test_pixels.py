"""One frame → display values in [0, 1] at the model's size (collectors.images.pixels).

The grayscale pipeline of PS3.4 N.2.1 computed by hand on generated DX objects (rescale,
window, VOI LUT function, polarity), colour to luminance, lossless syntaxes against native
pixels, and the limits decided from the header before any Pixel Data is decoded.
"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from dicom_objects import secondary_capture
from images_support import bundled, check_model_ready, decode_reason, generated_dx
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian

from collectors.errors import Reason
from collectors.images.dicom_reader import read_dicom_bytes
from collectors.images.pixels import DecodeLimits, resize_square
from collectors.simulator.study import dicom_bytes, plan_study, stored_pixels


@pytest.mark.parametrize(
    "compressed", ["MR_small_RLE.dcm", "MR_small_jp2klossless.dcm", "MR_small_jpeg_ls_lossless.dcm"]
)
def test_lossless_syntaxes_give_exactly_the_native_pixels(compressed: str) -> None:
    native = read_dicom_bytes(bundled("MR_small.dcm"), 48)
    other = read_dicom_bytes(bundled(compressed), 48)
    np.testing.assert_array_equal(native.pixels, other.pixels)
    assert native.tags == other.tags


def test_generated_dx_window_and_rescale_follow_ps3_3_c_11() -> None:
    raw, stored = generated_dx()
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
    plain, _ = generated_dx(scenario="none")
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
    raw, _ = generated_dx()
    ds = pydicom.dcmread(io.BytesIO(raw))
    ds.PresentationLUTShape = "INVERSE"  # PS3.3 C.11.6.1
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    normal = read_dicom_bytes(raw, 64)
    inverse = read_dicom_bytes(buffer.getvalue(), 64)
    np.testing.assert_allclose(inverse.pixels, 1.0 - normal.pixels, atol=1e-6)


def test_voi_lut_function_sigmoid() -> None:
    raw, stored = generated_dx()
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


# -- refused before decoding: syntax, dimensions, pixel counts -------------------------------


def test_unsupported_transfer_syntax() -> None:
    # MPEG-2 Main Profile (PS3.5 §8.2.5): a video syntax no pixel plugin decodes.
    raw = secondary_capture(8, 8, encapsulate([b"\x00" * 64]), "1.2.840.10008.1.2.4.100")
    assert decode_reason(raw) == Reason.DICOM_UNSUPPORTED_SYNTAX


def test_absurd_and_zero_dimensions() -> None:
    absurd = secondary_capture(60000, 60000, b"\x00" * 64, ExplicitVRLittleEndian)
    assert decode_reason(absurd) == Reason.DICOM_BAD_DIMENSIONS
    zero = secondary_capture(0, 16, b"\x00" * 16, ExplicitVRLittleEndian)
    assert decode_reason(zero) == Reason.DICOM_BAD_DIMENSIONS
    fine = secondary_capture(64, 64, bytes(range(64)) * 64, ExplicitVRLittleEndian)
    assert decode_reason(fine, max_pixels=1000) == Reason.DICOM_BAD_DIMENSIONS
    check_model_ready(read_dicom_bytes(fine, 32), 32)


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
    assert decode_reason(buffer.getvalue(), limits=limits) == Reason.DICOM_TOO_MANY_PIXELS
    ds.NumberOfFrames = 1  # the per-frame limit keeps its own code
    assert decode_reason(buffer.getvalue(), max_pixels=1000) == Reason.DICOM_BAD_DIMENSIONS
