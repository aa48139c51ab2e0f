"""DICOM (or PNG/NPY) bytes → model-ready pixels and allow-listed tags, with pydicom 3.

Second step of the image path: `collectors.images.resolver.ImageFetcher` fetched the bytes; this
decodes them into a `LoadedImage` (float32 [size, size] in [0, 1], MONOCHROME2 convention) for
the embedding and image-quality stages, or raises an `ImageError` whose `reason` is the
dead-letter code. This module parses the object (telling a truncated one from one that is not
DICOM, a deflated dataset's inflated size bounded while inflating) and reads the allow-listed
tags; collectors.images.pixels decodes one frame within `DecodeLimits` (pixel counts from the
header before Pixel Data is read, the time budget between steps; collectors.images.decode_pool
can also abandon a worker mid-step). Nothing here reads a file or the network: bytes come from
the fetcher.
"""

from __future__ import annotations

import io
import warnings
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from collectors.dicom_tags import ALLOWED, normalise_tags
from collectors.errors import DecodeError, Reason
from collectors.images.pixels import (
    DEFAULT_MAX_INFLATED_BYTES,
    DecodeLimits,
    check_deadline,
    effective_limits,
    model_ready,
    resize_square,
)

DEFAULT_SIZE = 224
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
    limits = effective_limits(limits, max_pixels)
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
    limits = effective_limits(limits, max_pixels)
    ds = parse_dataset(raw, max_inflated_bytes=limits.max_inflated_bytes)
    check_deadline(deadline, limits)
    tags = read_tags(ds, pseudonym)
    pixels, shape, index = model_ready(ds, size=size, limits=limits, deadline=deadline)
    return LoadedImage(pixels=pixels, tags=tags, original_shape=shape, frame_index=index)


def read_dicom_tags(raw: bytes, pseudonym: Pseudonym | None = None) -> dict[str, Any]:
    """Only the allow-listed tags (no pixel decoding)."""
    return read_tags(parse_dataset(raw), pseudonym)


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
