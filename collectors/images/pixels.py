"""A parsed DICOM dataset's pixels → one model-ready frame, within `DecodeLimits`.

Inside the image path's decoding step: collectors.images.dicom_reader parses the bytes and
reads the tags, then hands the dataset here. The limits are checked before the work they
bound: the pixel counts from the header before any Pixel Data is decoded, the transfer
syntax's decoder before it is called, and the time budget between steps. One frame is decoded
and mapped to display values by the grayscale pipeline of PS3.4 N.2.1 (Modality LUT, VOI LUT
or window, polarity), colour to luminance, then padded to a square and resized.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
import torch
import torch.nn.functional as F
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_voi, get_decoder, pixel_array

from collectors.errors import DecodeError, Reason

DEFAULT_MAX_PIXELS = 40_000_000  # per frame; a 6k × 6k detector is the largest seen in DX
# rows × columns × frames × samples: 1,000 frames of 1k × 1k (a large CT or tomosynthesis
# volume); only one frame is decoded, but compressed frames are located across all of them.
DEFAULT_MAX_TOTAL_PIXELS = 1_000_000_000
# A deflated dataset (1.2.840.10008.1.2.1.99) may inflate to this; a 952 KB object inflated
# by 1.45 GB before the cap. 512 MiB is twice the largest accepted fetch (256 MiB).
DEFAULT_MAX_INFLATED_BYTES = 512 * 1024 * 1024
DEFAULT_TIME_BUDGET_S = 20.0  # per image, decoding only (the fetch has its own deadline)


@dataclass(frozen=True)
class DecodeLimits:
    """What one image may cost to decode; each limit has its own dead-letter reason."""

    max_pixels: int = DEFAULT_MAX_PIXELS  # rows × columns per frame: dicom_bad_dimensions
    max_total_pixels: int = DEFAULT_MAX_TOTAL_PIXELS  # × frames × samples: dicom_too_many_pixels
    max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES  # dicom_too_large_inflated
    time_budget_s: float = DEFAULT_TIME_BUDGET_S  # image_decode_timeout


def effective_limits(limits: DecodeLimits | None, max_pixels: int | None) -> DecodeLimits:
    """`limits` (or the defaults), with `max_pixels` replacing the per-frame cap when given."""
    limits = limits or DecodeLimits()
    if max_pixels is not None:
        limits = DecodeLimits(max_pixels, limits.max_total_pixels, limits.max_inflated_bytes,
                              limits.time_budget_s)  # fmt: skip
    return limits


def check_deadline(deadline: float | None, limits: DecodeLimits) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise DecodeError(
            Reason.IMAGE_DECODE_TIMEOUT,
            f"decoding ran past its {limits.time_budget_s:g} s budget",
        )


def _dimensions(ds: Dataset, limits: DecodeLimits) -> tuple[int, int, int, int]:
    max_pixels = limits.max_pixels
    try:
        rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
        frames = int(ds.get("NumberOfFrames") or 1)
        samples = int(ds.get("SamplesPerPixel") or 1)
    except (TypeError, ValueError) as exc:
        raise DecodeError(Reason.DICOM_BAD_DIMENSIONS, f"unreadable dimensions: {exc}") from exc
    if rows <= 0 or cols <= 0 or frames <= 0 or samples not in (1, 3):
        raise DecodeError(
            Reason.DICOM_BAD_DIMENSIONS,
            f"Rows={rows} Columns={cols} NumberOfFrames={frames} SamplesPerPixel={samples}",
        )
    if rows * cols > max_pixels:
        raise DecodeError(
            Reason.DICOM_BAD_DIMENSIONS,
            f"{rows}×{cols} = {rows * cols} pixels per frame exceeds the limit {max_pixels}",
        )
    total = rows * cols * frames * samples
    if total > limits.max_total_pixels:
        raise DecodeError(
            Reason.DICOM_TOO_MANY_PIXELS,
            f"{frames} frame(s) × {rows}×{cols} × {samples} sample(s) = {total} values exceeds "
            f"the limit {limits.max_total_pixels}",
        )
    return frames, rows, cols, samples


def _check_syntax(ds: Dataset) -> None:
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    if uid is None:
        # No meta header (force-read): the encoding pydicom detected is the syntax.
        implicit, little = ds.original_encoding
        uid = pydicom.uid.ImplicitVRLittleEndian if implicit else (
            pydicom.uid.ExplicitVRLittleEndian if little else pydicom.uid.ExplicitVRBigEndian
        )  # fmt: skip
        ds.file_meta = ds.file_meta if meta is not None else pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = uid
    try:
        decoder = get_decoder(uid)
    except NotImplementedError as exc:
        name = getattr(uid, "name", str(uid))
        raise DecodeError(
            Reason.DICOM_UNSUPPORTED_SYNTAX, f"no decoder for transfer syntax {name} ({uid})"
        ) from exc
    if not decoder.is_available:
        missing = "; ".join(str(m) for m in decoder.missing_dependencies)
        raise DecodeError(
            Reason.DICOM_UNSUPPORTED_SYNTAX,
            f"transfer syntax {uid.name} needs a plugin that is not installed ({missing})",
        )


def model_ready(
    ds: Dataset,
    *,
    size: int,
    max_pixels: int | None = None,
    limits: DecodeLimits | None = None,
    deadline: float | None = None,
) -> tuple[np.ndarray, tuple[int, int, int, int], int]:
    """Decode one frame and map it to display values in [0, 1], resized to size × size.

    Order follows the grayscale pipeline of PS3.4 N.2.1: Modality LUT (PS3.3 C.11.1),
    VOI LUT or window (C.11.2), then polarity (C.7.6.3.1.2, C.11.6).
    """
    if size <= 0:
        raise ValueError("size must be positive")
    limits = effective_limits(limits, max_pixels)
    # From the header, before any Pixel Data is read or decoded.
    shape = _dimensions(ds, limits)
    _check_syntax(ds)
    check_deadline(deadline, limits)
    frames = shape[0]
    # Multi-frame objects: the middle frame is the deterministic, most representative choice
    # (mid-volume for enhanced CT/MR; the only frame for single-frame DX).
    index = frames // 2 if frames > 1 else 0
    try:
        arr = pixel_array(ds, index=index if frames > 1 else None)
    except ValueError as exc:
        reason = Reason.DICOM_TRUNCATED if "less than expected" in str(exc) else (
            Reason.DICOM_INVALID
        )  # fmt: skip
        raise DecodeError(reason, f"pixel data cannot be decoded: {exc}") from exc
    except NotImplementedError as exc:
        raise DecodeError(Reason.DICOM_UNSUPPORTED_SYNTAX, str(exc)) from exc
    except (RuntimeError, AttributeError, TypeError, KeyError, OSError) as exc:
        raise DecodeError(Reason.DICOM_INVALID, f"pixel data cannot be decoded: {exc}") from exc
    check_deadline(deadline, limits)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if arr.ndim == 3 or photometric == "PALETTE COLOR":
        display = _colour_to_gray(arr, ds, photometric)
    elif arr.ndim == 2:
        display = _grayscale_display(arr, ds, photometric)
    else:
        raise DecodeError(Reason.DICOM_BAD_DIMENSIONS, f"decoded frame has shape {arr.shape}")
    check_deadline(deadline, limits)
    return resize_square(display, size), shape, index


def _grayscale_display(arr: np.ndarray, ds: Dataset, photometric: str) -> np.ndarray:
    # PS3.3 C.11.6.1 / C.7.6.3.1.2: MONOCHROME1 shows the minimum as white, and an INVERSE
    # Presentation LUT Shape inverts too (DX requires INVERSE with MONOCHROME1, C.8.11.7, so
    # that pair means one inversion, not two).
    shape = str(ds.get("PresentationLUTShape", "")).strip().upper()
    invert = photometric == "MONOCHROME1" or shape == "INVERSE"
    if "ModalityLUTSequence" in ds or ("VOILUTSequence" in ds and ds.VOILUTSequence):
        out = _lut_display(arr, ds)
    else:
        out = _linear_display(arr, ds)
    if invert:
        out = np.subtract(np.float32(1.0), out, out=out)
    return out


def _linear_display(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """Rescale (C.11.1.1.2) and window (C.11.2.1.2), fused into one affine map and a clip.

    y = ((slope·x + intercept) − (c − 0.5)) / (w − 1) + 0.5 is affine in the stored value x,
    so it costs one multiply-add pass over the pixels instead of five.
    """
    slope = _number(ds.get("RescaleSlope"), 1.0)
    intercept = _number(ds.get("RescaleIntercept"), 0.0)
    center = _number(ds.get("WindowCenter"), math.nan)
    width = _number(ds.get("WindowWidth"), math.nan)
    function = str(ds.get("VOILUTFunction", "LINEAR")).strip().upper()
    windowed = math.isfinite(center) and math.isfinite(width)
    if windowed and function == "SIGMOID" and width > 0:
        # C.11.2.1.3.1
        values = arr.astype(np.float32) * np.float32(slope) + np.float32(intercept)
        return (1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))).astype(np.float32)
    if windowed and function == "LINEAR_EXACT" and width > 0:
        # C.11.2.1.3.2: y = (x − c) / w + 0.5
        scale, offset = 1.0 / width, 0.5 - center / width
    elif windowed and width > 1:
        # C.11.2.1.2.1 (LINEAR)
        scale, offset = 1.0 / (width - 1), 0.5 - (center - 0.5) / (width - 1)
    elif windowed and width == 1:
        # C.11.2.1.2.1: a window of width 1 is a threshold at c − 0.5.
        return (
            arr.astype(np.float32) * np.float32(slope) + np.float32(intercept) > center - 0.5
        ).astype(np.float32)
    else:
        # No usable window: the full range of this frame (min-max) is displayed.
        lo, hi = float(arr.min()) * slope + intercept, float(arr.max()) * slope + intercept
        lo, hi = min(lo, hi), max(lo, hi)
        if hi <= lo:
            return np.zeros(arr.shape, dtype=np.float32)
        scale, offset = 1.0 / (hi - lo), -lo / (hi - lo)
    out = arr.astype(np.float32)
    out *= np.float32(slope * scale)
    out += np.float32(intercept * scale + offset)
    return np.clip(out, 0.0, 1.0, out=out)


def _lut_display(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """Modality LUT Sequence (C.11.1) and/or VOI LUT Sequence (C.11.2), through pydicom."""
    from pydicom.pixels import apply_modality_lut

    values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    if "VOILUTSequence" in ds and ds.VOILUTSequence:
        descriptor = ds.VOILUTSequence[0].LUTDescriptor
        # C.11.2.1.1: the third LUT Descriptor value is the bit depth of the LUT entries.
        bits = int(descriptor[2]) if len(descriptor) > 2 else 16
        looked_up = np.asarray(apply_voi(values, ds, index=0), dtype=np.float32)
        return np.clip(looked_up / np.float32(2**bits - 1), 0.0, 1.0)
    center = _number(ds.get("WindowCenter"), math.nan)
    width = _number(ds.get("WindowWidth"), math.nan)
    if math.isfinite(center) and math.isfinite(width) and width > 1:
        # C.11.2.1.2.1 (LINEAR) on the Modality LUT's output.
        out = (values - np.float32(center - 0.5)) / np.float32(width - 1) + np.float32(0.5)
        return np.clip(out, 0.0, 1.0, out=out)
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return np.zeros_like(values)
    return (values - np.float32(lo)) * np.float32(1.0 / (hi - lo))


def _colour_to_gray(arr: np.ndarray, ds: Dataset, photometric: str) -> np.ndarray:
    """RGB (YBR already converted by pydicom) or PALETTE COLOR → luminance in [0, 1]."""
    if photometric == "PALETTE COLOR":
        # PS3.3 C.7.6.3.1.5: the palette maps stored values to RGB; its descriptor's third
        # value is the entries' bit depth.
        rgb = apply_color_lut(arr, ds)
        bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
    else:
        rgb = arr
        bits = int(ds.get("BitsStored") or 8)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise DecodeError(Reason.DICOM_BAD_DIMENSIONS, f"colour frame has shape {rgb.shape}")
    # ITU-R BT.601 luma weights (the Y of YBR_FULL, PS3.3 C.7.6.3.1.2).
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32) / np.float32(2**bits - 1)
    return np.clip(rgb.astype(np.float32) @ weights, 0.0, 1.0)


def _number(value: Any, default: float) -> float:
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None  # C.11.2.1.2: the first pair is the default
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad to a centred square (keeps the aspect ratio), then resize.

    Downsampling averages each output pixel's footprint (torch "area", a box filter), so fine
    texture (noise, ribs) does not alias into the model's input; it is several times faster
    than antialiased bilinear on large detectors (bench/dicom.py). Upsampling is bilinear.
    torch's CPU interpolation is deterministic.
    """
    h, w = image.shape
    side = max(h, w)
    if h != w:
        square = np.zeros((side, side), dtype=np.float32)
        top, left = (side - h) // 2, (side - w) // 2
        square[top : top + h, left : left + w] = image
        image = square
    if side == size:
        return np.ascontiguousarray(image, dtype=np.float32)
    tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    if side > size:
        out = F.interpolate(tensor, size=(size, size), mode="area")
    else:
        out = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
    return np.clip(out[0, 0].numpy(), 0.0, 1.0)
