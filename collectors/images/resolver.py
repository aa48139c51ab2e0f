"""`image.uri` → the object's bytes, fenced: file:// under the roots, DICOMweb under listed URLs.

First step of the image path (DESIGN.md §4, §5a): one `ImageFetcher`, built from Settings, is
handed to everything that reads images (the collector's image stage, the `radwatch embed`
backfill, the report); `collectors.images.dicom_reader` then decodes. This module is the front
door: the policy, the byte budget a fetch leases from (collectors.images.byte_budget), the
dispatch on the URI's scheme and the inline data: URIs; file:// is read by
collectors.images.file_source and http(s):// by collectors.images.dicomweb. Every failure is a
`ResolveError` whose reason is a dead-letter code and whose message names the rule that
refused the URI, never the URI itself, nor whether a file or port exists.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collectors.errors import Reason, ResolveError
from collectors.images.byte_budget import ByteBudget, Lease
from collectors.images.dicomweb import DICOM_MEDIA, BaseUrl, DicomWebAuth, DicomWebClient
from collectors.images.file_source import read_file

if TYPE_CHECKING:
    from collectors.images.decode_pool import DecodePool
    from collectors.images.dicom_reader import LoadedImage, Pseudonym
    from collectors.images.pixels import DecodeLimits

# 256 MiB: a large multi-frame DX/CT instance; beyond is refused (512 MiB let four fetches of
# one batch peak at 2.4 GB, over a 2 Gi pod limit).
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
# Bytes a fetcher holds at once across its concurrent fetches (the batch's threads), from
# the first byte read until the image is decoded: the cap is not multiplied by the threads.
DEFAULT_INFLIGHT_BYTES = 512 * 1024 * 1024
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_TRIES = 3
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


@dataclass(frozen=True)
class FetchPolicy:
    """What an `ImageFetcher` may read, and how much and how long."""

    roots: tuple[Path, ...] = ()
    base_urls: tuple[BaseUrl, ...] = ()
    auth: DicomWebAuth = DicomWebAuth()
    timeout_s: float = DEFAULT_TIMEOUT_S  # total per fetch, all tries included
    max_bytes: int = DEFAULT_MAX_BYTES
    inflight_bytes: int = DEFAULT_INFLIGHT_BYTES
    tries: int = DEFAULT_TRIES

    @classmethod
    def create(cls, roots: Sequence[str | Path] = (), urls: Sequence[str] = (),
               **options: Any) -> FetchPolicy:  # fmt: skip
        """Roots resolved (symlinks included), URLs parsed; raises ValueError when malformed."""
        return cls(
            roots=tuple(Path(os.path.realpath(r)) for r in roots),
            base_urls=tuple(BaseUrl.parse(u) for u in urls),
            **options,
        )


class ImageFetcher:
    """Reads image URIs within a `FetchPolicy`; thread-safe, picklable (for worker processes)."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy
        self.budget = ByteBudget(policy.inflight_bytes)
        self._dicomweb = DicomWebClient(policy.base_urls, policy.auth, timeout_s=policy.timeout_s,
                                        max_bytes=policy.max_bytes, tries=policy.tries)  # fmt: skip

    def __getstate__(self) -> dict[str, Any]:
        return {"policy": self.policy}  # the budget, locks and SSL context: rebuilt there

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["policy"])  # type: ignore[misc]

    # -- the two entry points ----------------------------------------------------------------

    def fetch(self, uri: str) -> FetchedImage:
        """The object behind `uri`; raises ResolveError (never returns partial bytes)."""
        with self._lease() as lease:
            return self._fetch(uri, lease)

    def load(
        self,
        uri: str,
        *,
        size: int,
        limits: DecodeLimits | None = None,
        pseudonym: Pseudonym | None = None,
        decoder: DecodePool | None = None,
    ) -> LoadedImage:
        """Fetch and decode; the fetched bytes count against the budget until decoded.

        `decoder`: a `DecodePool` (abandonable worker processes: the collector) or None (in
        this process, the time budget checked between decoding steps: backfill workers,
        which are processes already, and the report).
        """
        from collectors.images import dicom_reader, pixels

        limits = limits or pixels.DecodeLimits()
        with self._lease() as lease:
            fetched = self._fetch(uri, lease)
            if decoder is not None:
                return decoder.decode(fetched.data, fetched.media_type, size=size,
                                      limits=limits, pseudonym=pseudonym)  # fmt: skip
            return dicom_reader.read_image_bytes(
                fetched.data, fetched.media_type, size=size, limits=limits, pseudonym=pseudonym,
                deadline=time.monotonic() + limits.time_budget_s,
            )  # fmt: skip

    @contextmanager
    def _lease(self) -> Iterator[Lease]:
        lease = Lease(self.budget, time.monotonic() + self.policy.timeout_s)
        try:
            yield lease
        finally:
            lease.release()

    def _fetch(self, uri: str, lease: Lease) -> FetchedImage:
        scheme = urllib.parse.urlsplit(uri).scheme.lower()
        if scheme == "file":
            policy = self.policy
            return FetchedImage(read_file(uri, policy.roots, policy.max_bytes, lease), DICOM_MEDIA)
        if scheme in ("http", "https"):
            return FetchedImage(self._dicomweb.fetch(uri, lease), DICOM_MEDIA)
        if scheme == "data":
            return self._read_data_uri(uri, lease)
        raise ResolveError(Reason.IMAGE_UNREADABLE, f"unsupported URI scheme {scheme[:16]!r}")

    # -- data: ------------------------------------------------------------------------------

    def _read_data_uri(self, uri: str, lease: Lease) -> FetchedImage:
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
        cap = self.policy.max_bytes
        if len(payload) * 3 // 4 > cap:
            raise ResolveError(Reason.TOO_LARGE, f"data: URI payload exceeds {cap} bytes")
        lease.reserve(len(payload) * 3 // 4)
        try:
            data = base64.b64decode(urllib.parse.unquote(payload), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ResolveError(Reason.IMAGE_UNREADABLE, "data: URI is not valid base64") from exc
        return FetchedImage(data, _DATA_MEDIA[media])
