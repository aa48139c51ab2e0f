"""DICOM (or PNG/NPY) bytes → model-ready pixels and allow-listed tags, with pydicom 3.

Second step of the image path: `image_resolver.ImageFetcher` fetched the bytes; this decodes
them into a `LoadedImage` (float32 [size, size] in [0, 1], MONOCHROME2 convention) for the
embedding and image-quality stages, or raises an `ImageError` whose `reason` is the
dead-letter code. Every limit (`DecodeLimits`) is checked before the work it bounds: pixel
counts from the header before Pixel Data is read, a deflated dataset's inflated size while
inflating, and the time budget between steps (collectors.images.decode_pool can also abandon a
worker mid-step). Nothing here reads a file or the network: bytes come from the fetcher.
"""

from __future__ import annotations

import io
import math
import time
import warnings
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom
import torch
import torch.nn.functional as F
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_voi, get_decoder, pixel_array

from collectors.dicom_tags import ALLOWED, normalise_tags
from collectors.errors import DecodeError, ImageError, ResolveError
from collectors.events import Reason

__all__ = ["DecodeError", "ImageError", "ResolveError", "LoadedImage", "DecodeLimits"]

DEFAULT_SIZE = 224
DEFAULT_MAX_PIXELS = 40_000_000  # per frame; a 6k × 6k detector is the largest seen in DX
# rows × columns × frames × samples: 1,000 frames of 1k × 1k (a large CT or tomosynthesis
# volume); only one frame is decoded, but compressed frames are located across all of them.
DEFAULT_MAX_TOTAL_PIXELS = 1_000_000_000
# A deflated dataset (1.2.840.10008.1.2.1.99) may inflate to this; a 952 KB object inflated
# by 1.45 GB before the cap. 512 MiB is twice the largest accepted fetch (256 MiB).
DEFAULT_MAX_INFLATED_BYTES = 512 * 1024 * 1024
DEFAULT_TIME_BUDGET_S = 20.0  # per image, decoding only (the fetch has its own deadline)
DEFAULT_TIMEOUT_S = 10.0  # per fetch (collectors.images.resolver)
_DEFLATED = b"1.2.840.10008.1.2.1.99"

# pydicom warns (rather than raises) when an encapsulated Pixel Data ends early; we detect
# the truncation ourselves from the stream position, so the warning is only noise.
warnings.filterwarnings("ignore", message="End of file reached before delimiter")

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
_UNDEFINED_LENGTH = 0xFFFFFFFF
# The tag keywords read from the file: the allow-list (collectors.dicom_tags) and nothing else.
_TAG_KEYWORDS = tuple(sorted(ALLOWED - {"AgeBand"}))
_BARE_DATASET_STARTS = (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")


@dataclass(frozen=True)
class DecodeLimits:
    """What one image may cost to decode; each limit has its own dead-letter reason."""

    max_pixels: int = DEFAULT_MAX_PIXELS  # rows × columns per frame: dicom_bad_dimensions
    max_total_pixels: int = DEFAULT_MAX_TOTAL_PIXELS  # × frames × samples: dicom_too_many_pixels
    max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES  # dicom_too_large_inflated
    time_budget_s: float = DEFAULT_TIME_BUDGET_S  # image_decode_timeout


@dataclass(frozen=True)
class LoadedImage:
    """One image, ready for a model.

    `pixels`: float32 [size, size] in [0, 1], bright = dense (MONOCHROME2 convention),
    aspect ratio kept by zero-padding to a square before resizing.
    `tags`: the allow-listed attributes, already normalised (safe to store; StationName is
    only kept when a pseudonymiser was given). The *original* PhotometricInterpretation is
    kept there as a monitored feature even though the pixels were mapped to MONOCHROME2.
    `original_shape`: (frames, rows, columns, samples per pixel) as stored.
    """

    pixels: np.ndarray
    tags: Mapping[str, Any]
    original_shape: tuple[int, int, int, int]
    source: str = "dicom"  # "dicom", "png" or "npy"
    frame_index: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)


Pseudonym = Callable[[str, str], str]


def read_image_bytes(
    raw: bytes,
    media_type: str,
    *,
    size: int = DEFAULT_SIZE,
    max_pixels: int | None = None,
    limits: DecodeLimits | None = None,
    pseudonym: Pseudonym | None = None,
    deadline: float | None = None,
) -> LoadedImage:
    """Dispatch on the media type: DICOM (the default), PNG or NPY.

    `deadline` (time.monotonic()): checked between decoding steps, so an image over its
    budget stops at the next step; a step itself is bounded by the pixel limits, and only
    collectors.images.decode_pool can abandon one mid-way.
    """
    limits = _limits(limits, max_pixels)
    if media_type == "image/png":
        return _read_png(raw, size, limits.max_pixels)
    if media_type in ("application/x-npy", "application/npy"):
        return _read_npy(raw, size, limits.max_pixels)
    return read_dicom_bytes(raw, size, limits=limits, pseudonym=pseudonym, deadline=deadline)


def read_dicom_bytes(
    raw: bytes,
    size: int = DEFAULT_SIZE,
    *,
    max_pixels: int | None = None,
    limits: DecodeLimits | None = None,
    pseudonym: Pseudonym | None = None,
    deadline: float | None = None,
) -> LoadedImage:
    """A DICOM Part 10 object (or a bare dataset) → `LoadedImage`; raises `DecodeError`."""
    limits = _limits(limits, max_pixels)
    ds = parse_dataset(raw, max_inflated_bytes=limits.max_inflated_bytes)
    check_deadline(deadline, limits)
    tags = read_tags(ds, pseudonym)
    pixels, shape, index = model_ready(ds, size=size, limits=limits, deadline=deadline)
    return LoadedImage(pixels=pixels, tags=tags, original_shape=shape, frame_index=index)


def read_dicom_tags(raw: bytes, pseudonym: Pseudonym | None = None) -> dict[str, Any]:
    """Only the allow-listed tags (no pixel decoding)."""
    return read_tags(parse_dataset(raw), pseudonym)


def _limits(limits: DecodeLimits | None, max_pixels: int | None) -> DecodeLimits:
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


# -- parsing ---------------------------------------------------------------------------------


def parse_dataset(raw: bytes, *, max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES) -> Dataset:
    """Parse bytes into a dataset, telling a truncated object from one that is not DICOM."""
    if not raw:
        raise DecodeError(Reason.DICOM_TRUNCATED, "the object is empty (0 bytes)")
    if raw[128:132] != b"DICM" and raw[:2] not in _BARE_DATASET_STARTS:
        # PS3.10 §7.1: a file starts with a 128-byte preamble and "DICM"; a bare dataset
        # (no meta header) starts with group 0002 or 0008 in either byte order.
        raise DecodeError(Reason.DICOM_INVALID, "not a DICOM object (no DICM prefix)")
    if raw[128:132] == b"DICM":
        _check_inflated_size(raw, max_inflated_bytes)
    fp = io.BytesIO(raw)
    try:
        # force=True also accepts objects without the PS3.10 preamble and meta header,
        # which some PACS exports still produce; they are checked below instead.
        ds = pydicom.dcmread(fp, force=True)
    except EOFError as exc:
        raise DecodeError(Reason.DICOM_TRUNCATED, f"object ends early: {exc}") from exc
    except (InvalidDicomError, OSError, ValueError, KeyError, TypeError) as exc:
        raise DecodeError(Reason.DICOM_INVALID, f"not a readable DICOM object: {exc}") from exc
    # pydicom stops quietly at the end of the stream: an element shorter than its declared
    # length, or a sequence left open, means the object was cut (PS3.5 §7.1).
    short = [
        elem.tag
        for elem in ds._dict.values()
        if isinstance(elem, RawDataElement)
        and elem.length != _UNDEFINED_LENGTH
        and elem.value is not None
        and len(elem.value) < elem.length
    ]
    if short or fp.tell() < len(raw):
        where = f"element {short[0]}" if short else f"byte {fp.tell()}"
        raise DecodeError(Reason.DICOM_TRUNCATED, f"object is truncated at {where}")
    if "SOPClassUID" not in ds and "Rows" not in ds:
        raise DecodeError(
            Reason.DICOM_INVALID, "no SOP Class UID and no image attributes: not a DICOM object"
        )
    if not any(k in ds for k in _PIXEL_KEYWORDS):
        if "Rows" in ds and "Columns" in ds:
            # The Image Pixel Module is there (PS3.3 C.7.6.3) but its Pixel Data is not.
            raise DecodeError(Reason.DICOM_TRUNCATED, "image attributes but no Pixel Data")
        if "SOPClassUID" not in ds:
            raise DecodeError(Reason.DICOM_TRUNCATED, "object ends before its SOP Class UID")
        sop = ds.SOPClassUID
        raise DecodeError(
            Reason.DICOM_NO_PIXELS,
            f"SOP class {getattr(sop, 'name', str(sop))} carries no Pixel Data",
        )
    return ds


def _check_inflated_size(raw: bytes, cap: int) -> None:
    """A Deflated Explicit VR Little Endian dataset (PS3.5 §A.5) inflates within `cap`.

    pydicom inflates the whole dataset in one zlib call; this inflates it first in bounded
    chunks, counting and discarding the output, so a bomb costs CPU for at most `cap` bytes
    and never the memory.
    """
    # PS3.10 §7.1: (0002,0000) File Meta Information Group Length, explicit VR UL, first.
    has_length = raw[132:138] == b"\x02\x00\x00\x00UL" and len(raw) >= 144
    start = 144 + int.from_bytes(raw[140:144], "little") if has_length else 132 + 4096
    if _DEFLATED not in raw[132:start]:
        return
    if not has_length:
        raise DecodeError(Reason.DICOM_INVALID, "deflated object without a meta group length")
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total, pending = 0, raw[start:]
    try:
        while True:  # bounded output per call; also drains what consumed input still holds
            out = inflater.decompress(pending, 1 << 20)
            total += len(out)
            if total > cap:
                raise DecodeError(Reason.DICOM_TOO_LARGE_INFLATED,
                                  f"deflated dataset inflates past the {cap}-byte limit")  # fmt: skip
            pending = inflater.unconsumed_tail
            if not out and not pending or inflater.eof:
                break
    except zlib.error as exc:
        raise DecodeError(Reason.DICOM_INVALID, "deflated dataset is not valid deflate") from exc
    if total > cap:
        raise DecodeError(Reason.DICOM_TOO_LARGE_INFLATED,
                          f"deflated dataset inflates past the {cap}-byte limit")  # fmt: skip


def _plain(value: Any) -> Any:
    """pydicom value types → JSON-friendly Python values."""
    if isinstance(value, MultiValue | list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, int | float | str):
        # IS/DS subclass int/float/str; plain types keep the JSON encoder honest.
        if isinstance(value, int) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, float):
            return float(value)
        return str(value)
    return str(value)


def read_tags(ds: Dataset, pseudonym: Pseudonym | None = None) -> dict[str, Any]:
    """The allow-list (collectors.dicom_tags), normalised; PatientAge becomes a band."""
    raw: dict[str, Any] = {}
    for keyword in _TAG_KEYWORDS:
        if keyword == "StationName" and pseudonym is None:
            continue  # only ever stored as a pseudonym
        elem = ds.get(keyword)
        if elem is None or elem == "":
            continue
        try:
            raw[keyword] = _plain(elem)
        except (TypeError, ValueError):
            continue  # a malformed optional attribute is dropped, like normalise_tags does
    return normalise_tags(raw, pseudonym or _no_pseudonym)


def _no_pseudonym(kind: str, value: str) -> str:
    raise AssertionError("StationName is skipped when no pseudonymiser is given")


# -- pixels ----------------------------------------------------------------------------------


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
    limits = _limits(limits, max_pixels)
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


# -- non-DICOM inline images (data: URIs in tests and small deployments) -----------------------


def _read_png(raw: bytes, size: int, max_pixels: int) -> LoadedImage:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(raw)) as img:
            w, h = img.size
            if w <= 0 or h <= 0 or w * h > max_pixels:
                raise DecodeError(Reason.DICOM_BAD_DIMENSIONS, f"PNG is {w}×{h}")
            if img.mode in ("I;16", "I;16B", "I"):
                arr = np.asarray(img, dtype=np.float32) / np.float32(65535.0)
            else:
                arr = np.asarray(img.convert("L"), dtype=np.float32) / np.float32(255.0)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DecodeError(Reason.DICOM_INVALID, f"not a readable PNG: {exc}") from exc
    pixels = resize_square(np.clip(arr, 0.0, 1.0), size)
    return LoadedImage(pixels=pixels, tags={}, original_shape=(1, h, w, 1), source="png")


def _read_npy(raw: bytes, size: int, max_pixels: int) -> LoadedImage:
    try:
        arr = np.load(io.BytesIO(raw), allow_pickle=False)  # never unpickle input
    except (ValueError, OSError, EOFError) as exc:
        raise DecodeError(Reason.DICOM_INVALID, f"not a readable .npy array: {exc}") from exc
    if arr.ndim == 3 and arr.shape[-1] in (1, 3):
        arr = arr.mean(axis=-1)
    if arr.ndim != 2 or arr.size == 0 or arr.size > max_pixels:
        raise DecodeError(Reason.DICOM_BAD_DIMENSIONS, f".npy array has shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number):
        raise DecodeError(Reason.DICOM_INVALID, f".npy dtype {arr.dtype} is not numeric")
    values = arr.astype(np.float32)
    if not np.isfinite(values).all():
        raise DecodeError(Reason.DICOM_INVALID, ".npy array holds NaN or infinity")
    lo, hi = float(values.min()), float(values.max())
    values = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    h, w = arr.shape
    return LoadedImage(
        pixels=resize_square(values, size), tags={}, original_shape=(1, h, w, 1), source="npy"
    )
