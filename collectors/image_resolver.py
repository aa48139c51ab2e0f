"""`image.uri` → the object's bytes: file://, DICOMweb WADO-RS over http(s)://, or data:.

First step of the image path (DESIGN.md §4): the collector's image stage calls `resolve`, then
`dicom_reader` decodes. Every failure is a `ResolveError` whose reason is a dead-letter code;
a slow or failing PACS costs at most `timeout` seconds per image and never stops the worker.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from collectors.dicom_reader import ResolveError
from collectors.events import Reason

DEFAULT_MAX_BYTES = 512 * 1024 * 1024  # a large multi-frame DX/CT object; beyond is refused
_CHUNK = 1 << 20
DICOM_MEDIA = "application/dicom"
# WADO-RS "Retrieve Instance" (PS3.18 §10.4.1): the instance as a multipart/related payload;
# transfer-syntax=* lets the PACS send it as stored, with no transcoding on its side.
_WADO_ACCEPT = f'multipart/related; type="{DICOM_MEDIA}"; transfer-syntax=*'
_DATA_MEDIA = {
    "application/dicom": DICOM_MEDIA,
    "image/png": "image/png",
    "application/x-npy": "application/x-npy",
    "application/npy": "application/x-npy",
    "application/octet-stream": DICOM_MEDIA,
}


@dataclass(frozen=True)
class FetchedImage:
    data: bytes
    media_type: str  # application/dicom, image/png or application/x-npy


def resolve(
    uri: str, *, timeout: float, max_bytes: int = DEFAULT_MAX_BYTES, headers: dict | None = None
) -> FetchedImage:
    """Fetch the object behind `uri`; raises ResolveError (never returns partial bytes)."""
    scheme = urllib.parse.urlsplit(uri).scheme.lower()
    if scheme == "file":
        return FetchedImage(_read_file(uri, max_bytes), DICOM_MEDIA)
    if scheme in ("http", "https"):
        return _fetch_wado(uri, timeout=timeout, max_bytes=max_bytes, headers=headers or {})
    if scheme == "data":
        return _read_data_uri(uri, max_bytes)
    # The message never repeats the URI: it may carry identifiers (DESIGN.md §5).
    raise ResolveError(Reason.IMAGE_UNREADABLE, f"unsupported URI scheme {scheme[:16]!r}")


def _read_file(uri: str, max_bytes: int) -> bytes:
    parts = urllib.parse.urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise ResolveError(Reason.IMAGE_UNREADABLE, "file:// URI names a remote host")
    path = Path(urllib.request.url2pathname(parts.path))
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ResolveError(Reason.TOO_LARGE, f"file is {size} bytes, limit is {max_bytes}")
        return path.read_bytes()
    except OSError as exc:
        raise ResolveError(
            Reason.IMAGE_UNREADABLE, f"cannot read file: {exc.strerror or type(exc).__name__}"
        ) from exc


def _read_data_uri(uri: str, max_bytes: int) -> FetchedImage:
    # RFC 2397: data:[<mediatype>][;base64],<data>
    header, sep, payload = uri[5:].partition(",")
    if not sep:
        raise ResolveError(Reason.IMAGE_UNREADABLE, "data: URI has no ',' before its payload")
    params = [p.strip().lower() for p in header.split(";")]
    media = params[0] or "application/octet-stream"
    if media not in _DATA_MEDIA:
        raise ResolveError(Reason.IMAGE_UNREADABLE, f"data: URI media type {media[:40]!r}")
    if "base64" not in params[1:]:
        raise ResolveError(Reason.IMAGE_UNREADABLE, "data: URI must be base64-encoded")
    if len(payload) * 3 // 4 > max_bytes:
        raise ResolveError(Reason.TOO_LARGE, f"data: URI payload exceeds {max_bytes} bytes")
    try:
        data = base64.b64decode(urllib.parse.unquote(payload), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ResolveError(
            Reason.IMAGE_UNREADABLE, f"data: URI is not valid base64: {exc}"
        ) from exc
    return FetchedImage(data, _DATA_MEDIA[media])


def _fetch_wado(uri: str, *, timeout: float, max_bytes: int, headers: dict) -> FetchedImage:
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(uri, headers={"Accept": _WADO_ACCEPT, **headers})
    try:
        # The socket timeout bounds each blocking call; the deadline bounds the whole transfer
        # (a PACS trickling bytes slowly must not hold the batch longer than `timeout`).
        with urllib.request.urlopen(request, timeout=timeout) as response:
            content_type = response.headers.get("Content-Type", "")
            declared = response.headers.get("Content-Length")
            if declared is not None and declared.isdigit() and int(declared) > max_bytes:
                raise ResolveError(
                    Reason.TOO_LARGE, f"response is {declared} bytes, limit is {max_bytes}"
                )
            chunks: list[bytes] = []
            total = 0
            while True:
                if time.monotonic() > deadline:
                    raise ResolveError(
                        Reason.IMAGE_TIMEOUT, f"PACS response not complete after {timeout:g} s"
                    )
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                total += len(chunk)
                if total > max_bytes:
                    raise ResolveError(Reason.TOO_LARGE, f"response exceeds {max_bytes} bytes")
                chunks.append(chunk)
    except urllib.error.HTTPError as exc:
        raise ResolveError(
            Reason.IMAGE_HTTP_ERROR, f"PACS answered HTTP {exc.code} {exc.reason}"
        ) from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError | socket.timeout):
            raise ResolveError(
                Reason.IMAGE_TIMEOUT, f"PACS did not answer within {timeout:g} s"
            ) from exc
        raise ResolveError(Reason.IMAGE_HTTP_ERROR, f"cannot reach the PACS: {exc.reason}") from exc
    except TimeoutError as exc:
        raise ResolveError(
            Reason.IMAGE_TIMEOUT, f"PACS did not answer within {timeout:g} s"
        ) from exc
    except (http.client.HTTPException, ConnectionError, OSError) as exc:
        raise ResolveError(
            Reason.IMAGE_HTTP_ERROR, f"PACS connection failed: {type(exc).__name__}"
        ) from exc
    body = b"".join(chunks)
    return FetchedImage(_first_part(body, content_type), DICOM_MEDIA)


def _first_part(body: bytes, content_type: str) -> bytes:
    """The first part of a multipart/related body (PS3.18 §8.6.1.2, RFC 2046 §5.1.1).

    Parsed by hand: the email package copies a large body several times over.
    """
    media = content_type.split(";")[0].strip().lower()
    if not media.startswith("multipart/"):
        if media in (DICOM_MEDIA, "application/octet-stream"):
            return body
        raise ResolveError(Reason.IMAGE_HTTP_ERROR, f"PACS answered {media[:60]!r}, not DICOM")
    boundary = ""
    for param in content_type.split(";")[1:]:
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary:
        raise ResolveError(Reason.IMAGE_HTTP_ERROR, "multipart response has no boundary")
    delimiter = b"--" + boundary.encode("latin-1")
    start = body.find(delimiter)
    header_end = body.find(b"\r\n\r\n", start) if start >= 0 else -1
    if header_end < 0:
        raise ResolveError(Reason.IMAGE_HTTP_ERROR, "multipart response holds no part")
    headers = body[start + len(delimiter) : header_end].decode("latin-1").lower()
    if "content-type:" in headers and DICOM_MEDIA not in headers:
        raise ResolveError(Reason.IMAGE_HTTP_ERROR, "first multipart part is not application/dicom")
    end = body.find(b"\r\n" + delimiter, header_end + 4)
    if end < 0:
        raise ResolveError(
            Reason.IMAGE_HTTP_ERROR, "multipart response ends before its closing boundary"
        )
    return body[header_end + 4 : end]
