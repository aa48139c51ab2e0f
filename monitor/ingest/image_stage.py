"""The ingest image stage: resolve and decode each inference's `image.uri` before the write.

A pre_write stage of monitor.ingest.worker (wired in monitor.ingest.wiring.build_worker): for
inference events with an image it fetches the object through the fenced `ImageFetcher`
(collectors.images.resolver), decodes it in an abandonable worker process
(collectors.images.decode_pool) to a model-ready `LoadedImage` kept in `batch.images[event_id]` for
the embedding stages, merges the file's allow-listed tags into the event's `dicom`, and moves
every image that cannot be read to `batch.dead_letters` with its reason code.

A PACS outage is not the study's fault: when the fetch fails for a reason the fetcher calls
parkable (timeouts, 5xx, refused connections or credentials, after its retries), the event
is stored anyway and `batch.images[event_id]` holds a `ParkedImage`; the embedding stage
queues it in `image_fetch_queue`, and `radwatch embed --parked` fetches it later.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace

from collectors.errors import ImageError, Reason, ResolveError
from collectors.events import InferenceEvent
from collectors.images.decode_pool import DecodePool
from collectors.images.dicom_reader import DEFAULT_SIZE, LoadedImage
from collectors.images.dicomweb import DicomWebAuth
from collectors.images.pixels import (
    DEFAULT_MAX_INFLATED_BYTES,
    DEFAULT_MAX_PIXELS,
    DEFAULT_MAX_TOTAL_PIXELS,
    DEFAULT_TIME_BUDGET_S,
    DecodeLimits,
)
from collectors.images.resolver import (
    DEFAULT_INFLIGHT_BYTES,
    DEFAULT_MAX_BYTES,
    DEFAULT_TIMEOUT_S,
    FetchPolicy,
    ImageFetcher,
)
from collectors.pseudonym import Pseudonymiser
from monitor.config import ImageSettings, Settings
from monitor.errors import ConfigError
from monitor.ingest.batch_store import Batch, DeadLetter, Record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImageStageConfig:
    """Settings.images filled in with the decoder's defaults (TOML image_size = 224, ...)."""

    size: int = DEFAULT_SIZE
    max_pixels: int = DEFAULT_MAX_PIXELS
    timeout_s: float = DEFAULT_TIMEOUT_S  # total per fetch, retries included
    max_bytes: int = DEFAULT_MAX_BYTES  # per image
    inflight_bytes: int = DEFAULT_INFLIGHT_BYTES  # all of a batch's fetches together
    max_total_pixels: int = DEFAULT_MAX_TOTAL_PIXELS
    max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES
    decode_timeout_s: float = DEFAULT_TIME_BUDGET_S
    # Fetching from a PACS is I/O-bound and decoding runs in worker processes, so a few
    # threads overlap one image's wait with another's decode.
    workers: int = 4

    @property
    def limits(self) -> DecodeLimits:
        return DecodeLimits(self.max_pixels, self.max_total_pixels, self.max_inflated_bytes,
                            self.decode_timeout_s)  # fmt: skip

    @classmethod
    def from_settings(cls, images: ImageSettings) -> ImageStageConfig:
        """The typed [radwatch] image settings (validated positive when loaded); an unset
        one keeps the decoder's default."""
        return cls(**{f.name: value for f in fields(images)
                      if (value := getattr(images, f.name)) is not None})  # fmt: skip


def image_config(settings: Settings) -> ImageStageConfig:
    return ImageStageConfig.from_settings(settings.images)


def image_fetcher(settings: Settings, config: ImageStageConfig | None = None) -> ImageFetcher:
    """The one fenced fetcher of a process (the image stage, the backfill and the report),
    from RADWATCH_IMAGE_ROOTS, RADWATCH_DICOMWEB_URLS and the DICOMweb auth settings."""
    config = config or image_config(settings)
    auth = DicomWebAuth(
        token=settings.dicomweb_token, username=settings.dicomweb_username,
        password=settings.dicomweb_password, client_cert=settings.dicomweb_client_cert,
        client_key=settings.dicomweb_client_key, ca_bundle=settings.dicomweb_ca_bundle,
        tls_verify=settings.dicomweb_tls_verify,
    )  # fmt: skip
    if auth.token and auth.username:
        raise ConfigError("set either dicomweb_token or dicomweb_username, not both")
    try:
        policy = FetchPolicy.create(
            settings.image_root_paths(), settings.dicomweb_base_urls(), auth=auth,
            timeout_s=config.timeout_s, max_bytes=config.max_bytes,
            inflight_bytes=config.inflight_bytes,
        )  # fmt: skip
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return ImageFetcher(policy)


@dataclass(frozen=True)
class ParkedImage:
    """In `batch.images`: the PACS could not serve this image now; fetch it later."""

    reason: Reason


class ImageStage:
    """`Callable[[Batch], Batch]`; events without an image pass untouched and at no cost."""

    def __init__(
        self,
        config: ImageStageConfig,
        pseudonym: Pseudonymiser,
        fetcher: ImageFetcher,
        *,
        isolate: bool = True,
    ) -> None:
        self.config = config
        self.fetcher = fetcher
        self._pseudonym = pseudonym
        self._pool: ThreadPoolExecutor | None = None
        # Decoding in worker processes that are killed past the budget (isolate=False:
        # in this process, the budget checked between steps only).
        self.decoder = DecodePool(config.workers) if isolate else None

    def _load(self, uri: str) -> LoadedImage | ImageError:
        cfg = self.config
        try:
            return self.fetcher.load(uri, size=cfg.size, limits=cfg.limits,
                                     pseudonym=self._pseudonym, decoder=self.decoder)  # fmt: skip
        except ImageError as exc:
            return exc
        except MemoryError:
            return ImageError(Reason.DICOM_BAD_DIMENSIONS, "decoding ran out of memory")
        except Exception as exc:  # noqa: BLE001 - one bad object must not stop the worker
            # An exception the reader did not classify is a bug or an exotic object: logged
            # by class (its message may quote the object) and dead-lettered, never dropped.
            log.error("unexpected error decoding an image (%s)", type(exc).__name__)
            return ImageError(Reason.DICOM_INVALID, f"unexpected {type(exc).__name__}")

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
        parked: dict[str, int] = {}
        for i, (event, record) in enumerate(batch.inferences):
            result = outcome.get(i)
            if result is None:
                kept.append((event, record))
            elif isinstance(result, ResolveError) and result.parkable:
                # The PACS's failure, not the study's: stored now, its image fetched later.
                kept.append((event, record))
                batch.images[event.event_id] = ParkedImage(result.reason)
                parked[str(result.reason)] = parked.get(str(result.reason), 0) + 1
            elif isinstance(result, ImageError):
                batch.dead_letters.append(DeadLetter(record, result.reason, result.message))
            else:
                # Tags read from the object win over those the event forwarded: the file is
                # what the model actually saw.
                merged = {**event.dicom, **result.tags}
                kept.append((replace(event, dicom=merged), record))
                batch.images[event.event_id] = result
        batch.inferences = kept
        if parked:
            log.warning("parked %d image(s) for a later fetch (radwatch embed --parked): %s",
                        sum(parked.values()), ", ".join(f"{k}={v}" for k, v in sorted(parked.items())))  # fmt: skip
        return batch

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self.decoder is not None:
            self.decoder.close()
