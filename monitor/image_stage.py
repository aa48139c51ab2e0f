"""The collector's image stage: resolve and decode each inference's `image.uri` before the write.

A pre_write stage of monitor.collector (wired in collect_cmd.build_collector): for inference
events with an image it fetches the object (collectors.image_resolver), decodes it to a
model-ready `LoadedImage` (collectors.dicom_reader) kept in `batch.images[event_id]` for the
embedding stages, merges the file's allow-listed tags into the event's `dicom`, and moves
every image that cannot be read to `batch.dead_letters` with its reason code.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from collectors.dicom_reader import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_SIZE,
    DEFAULT_TIMEOUT_S,
    ImageError,
    LoadedImage,
    load_image,
)
from collectors.events import InferenceEvent, Reason
from collectors.image_resolver import DEFAULT_MAX_BYTES
from collectors.pseudonym import Pseudonymiser
from monitor.ingest_store import Batch, DeadLetter, Record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageStageConfig:
    """Read from the config file's [radwatch] table (Settings.extra), e.g. image_size = 224."""

    size: int = DEFAULT_SIZE
    max_pixels: int = DEFAULT_MAX_PIXELS
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_bytes: int = DEFAULT_MAX_BYTES
    # Fetching from a PACS is I/O-bound and pydicom/numpy release the GIL while decoding,
    # so a few threads overlap one image's wait with another's decode.
    workers: int = 4

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any]) -> ImageStageConfig:
        def number(key: str, default: float, kind: type) -> Any:
            value = extra.get(key, default)
            try:
                parsed = kind(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{key} must be a number, got {value!r}") from exc
            if parsed <= 0:
                raise ValueError(f"{key} must be positive, got {value!r}")
            return parsed

        return cls(
            size=number("image_size", DEFAULT_SIZE, int),
            max_pixels=number("image_max_pixels", DEFAULT_MAX_PIXELS, int),
            timeout_s=number("image_timeout_s", DEFAULT_TIMEOUT_S, float),
            max_bytes=number("image_max_bytes", DEFAULT_MAX_BYTES, int),
            workers=number("image_workers", 4, int),
        )


class ImageStage:
    """`Callable[[Batch], Batch]`; events without an image pass untouched and at no cost."""

    def __init__(self, config: ImageStageConfig, pseudonym: Pseudonymiser) -> None:
        self.config = config
        self._pseudonym = pseudonym
        self._pool: ThreadPoolExecutor | None = None

    def _load(self, uri: str) -> LoadedImage | ImageError:
        cfg = self.config
        try:
            return load_image(uri, size=cfg.size, max_pixels=cfg.max_pixels,
                              timeout=cfg.timeout_s, max_bytes=cfg.max_bytes,
                              pseudonym=self._pseudonym)  # fmt: skip
        except ImageError as exc:
            return exc
        except MemoryError as exc:
            return ImageError(Reason.DICOM_BAD_DIMENSIONS, f"decoding ran out of memory: {exc}")
        except Exception as exc:  # noqa: BLE001 - one bad object must not stop the worker
            # An exception the reader did not classify is a bug or an exotic object: logged
            # with its traceback and dead-lettered (never dropped), so the batch still moves.
            log.exception("unexpected error decoding an image (%s)", type(exc).__name__)
            return ImageError(Reason.DICOM_INVALID, f"unexpected {type(exc).__name__}: {exc}")

    def __call__(self, batch: Batch) -> Batch:
        todo = [i for i, (event, _) in enumerate(batch.inferences) if event.image_uri]
        if not todo:
            return batch
        uris = [batch.inferences[i][0].image_uri or "" for i in todo]
        if len(uris) == 1 or self.config.workers == 1:
            results = [self._load(uri) for uri in uris]
        else:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.config.workers, "radwatch-image")
            results = list(self._pool.map(self._load, uris))
        outcome = dict(zip(todo, results, strict=True))
        kept: list[tuple[InferenceEvent, Record]] = []
        for i, (event, record) in enumerate(batch.inferences):
            result = outcome.get(i)
            if result is None:
                kept.append((event, record))
            elif isinstance(result, ImageError):
                batch.dead_letters.append(DeadLetter(record, result.reason, result.message))
            else:
                # Tags read from the object win over those the event forwarded: the file is
                # what the model actually saw.
                merged = {**event.dicom, **result.tags}
                kept.append((replace(event, dicom=merged), record))
                batch.images[event.event_id] = result
        batch.inferences = kept
        return batch

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
