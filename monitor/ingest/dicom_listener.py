"""`radwatch dicom-listen`: a DICOM Storage SCP that turns AI results (DICOM SR) into events.

The hospital edge of the ingest flow (DESIGN.md §5b): an AI orchestrator or a PACS forward
rule sends studies and AI result objects here (C-STORE, PS3.4 Annex B); images are kept in
the allow-listed image store (the first of RADWATCH_IMAGE_ROOTS) under paths made only of
pseudonyms; each TID 1500 SR is mapped (collectors.dicom_results), paired with its source
images, and published to the inference topic as a contract-v1 event, which the collector then
ingests like any producer's. An SR that cannot be used is dead-lettered with its reason.

C-STORE success (0x0000) is answered only after the event, or the dead letter, is
acknowledged by the broker (acks=all): a success means radwatch holds the result durably.
Dead letters go to the dead-letter topic in the collector's record format (DESIGN.md §4), not
to PostgreSQL: the listener is the most exposed service, so it holds no database login, and
one acknowledgement (Kafka's) decides every status. Nothing identifying is logged.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import pydicom
import pydicom.config
from pydicom.dataset import Dataset
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.events import Event

from collectors.dicom_results import (
    ImageRef,
    ModelOverrides,
    SrMappingError,
    SrResult,
    inference_event,
    map_sr,
)
from collectors.dicom_results.mapping import SR_SOP_CLASSES
from collectors.errors import Reason
from collectors.pseudonym import Pseudonymiser
from collectors.publisher import EventPublisher, PublishError
from monitor.errors import ConfigError
from monitor.metrics.names import count_listener
from monitor.safeguards import binds_loopback

log = logging.getLogger(__name__)

# C-STORE response statuses (PS3.4 Annex B.2.3, PS3.7 Annex C).
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # refused: the sender keeps the object and retries later
CANNOT_UNDERSTAND = 0xC000  # error: the object was dead-lettered (or is not DICOM at all)
DEAD_LETTER_SCHEMA = "radwatch.deadletter.v1"
SOURCE = "dicom-listen"  # the dead-letter record's "topic": where the object came from


class ResultPublisher(Protocol):
    """Where mapped results and dead letters go; each call returns once durably acknowledged."""

    def publish_inference(self, key: bytes, doc: Mapping[str, Any]) -> None: ...

    def publish_dead_letter(self, doc: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True)
class ListenerConfig:
    image_root: Path  # the first of RADWATCH_IMAGE_ROOTS, so the collector may read what is kept
    host: str = "127.0.0.1"
    port: int = 11112
    ae_title: str = "RADWATCH"
    # Calling AE titles accepted; None: any while bound to loopback, refused otherwise.
    calling_aets: tuple[str, ...] | None = None
    source_wait_s: float = 30.0  # how long an SR waits for source images not yet received
    site: str | None = None
    overrides: Mapping[str, ModelOverrides] = field(default_factory=dict)


class DicomListener:
    """The Storage SCP: `start()` binds (returns the port), `stop()` closes it."""

    def __init__(
        self,
        config: ListenerConfig,
        pseudonym: Pseudonymiser,
        publisher: ResultPublisher,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if config.calling_aets is None and not binds_loopback(config.host):
            raise ConfigError(
                "RADWATCH_DICOM_CALLING_AETS is required when dicom-listen binds to a "
                "non-loopback address (no calling AE is accepted otherwise)"
            )
        self._config = config
        self._pseudonym = pseudonym
        self._publisher = publisher
        self._clock = clock
        self._root = config.image_root.resolve()
        self._arrived = threading.Condition()
        self._server: Any = None
        self.counts: dict[str, int] = {"images": 0, "results": 0, "dead_letters": 0}

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> int:
        # pynetdicom logs DIMSE summaries (UIDs) at INFO, highdicom the UIDs of what it reads,
        # kafka-python the record bytes at DEBUG (as in monitor/cli.py): none of them below WARNING.
        for name in ("pynetdicom", "highdicom", "kafka"):
            logging.getLogger(name).setLevel(logging.WARNING)
        # pydicom's validation warnings quote the offending value (a name, an ID, a UID): off,
        # and its logger kept to errors, which name the element, not its value.
        pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
        logging.getLogger("pydicom").setLevel(logging.ERROR)
        try:
            ae = AE(ae_title=self._config.ae_title)
        except ValueError as exc:
            raise ConfigError(f"--ae-title: {exc}") from None
        ae.supported_contexts = AllStoragePresentationContexts
        # An empty list accepts any calling AE (PS3.8 A-ASSOCIATE-RJ reason 3 for the others).
        ae.require_calling_aet = list(self._config.calling_aets or ())
        self._server = ae.start_server(
            (self._config.host, self._config.port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._on_store)],
        )
        port = int(self._server.server_address[1])
        log.info("dicom-listen: AE %s on %s:%d", self._config.ae_title, self._config.host, port)
        return port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    # -- C-STORE ---------------------------------------------------------------------------

    def _on_store(self, event: Event) -> int:
        """Never raises: every object ends in a status (and an SR in an event or a dead letter)."""
        try:
            return self._store(event)
        except Exception as exc:  # noqa: BLE001 - one object's failure never stops the SCP
            # The class only: a message could quote the dataset.
            log.error("C-STORE failed unexpectedly (%s)", type(exc).__name__)
            return self._after_bug(event, type(exc).__name__)

    def _after_bug(self, event: Event, error: str) -> int:
        """An SR that met a bug is dead-lettered (internal_error, DESIGN.md §5a), not refused:
        a retry would meet the same bug. An image is refused, for a retry."""
        try:
            if str(event.request.AffectedSOPClassUID) in SR_SOP_CLASSES:
                message = f"unexpected error ({error})"
                return self._dead_letter(
                    event.encoded_dataset(), None, Reason.INTERNAL_ERROR, message
                )
        except Exception:  # noqa: BLE001 - the status below still answers the sender
            log.error("dead letter for an unexpected error failed too")
        return OUT_OF_RESOURCES

    def _store(self, event: Event) -> int:
        sop_class = str(event.request.AffectedSOPClassUID)
        raw = event.encoded_dataset(include_meta=True)
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            study_uid, sop_uid = str(ds.StudyInstanceUID), str(ds.SOPInstanceUID)
        except Exception:  # noqa: BLE001 - undecodable bytes are the sender's, not ours
            if sop_class in SR_SOP_CLASSES:
                return self._dead_letter(raw, None, Reason.SR_INVALID, "the SR does not decode")
            log.warning("refused an object that does not decode")
            return CANNOT_UNDERSTAND
        try:
            self._keep(self.path_for(study_uid, sop_uid), raw)
        except OSError as exc:
            log.error("cannot write to the image store (%s)", exc.strerror)
            return OUT_OF_RESOURCES
        if sop_class not in SR_SOP_CLASSES:
            self.counts["images"] += 1
            count_listener("dicom", "images")
            return SUCCESS
        return self._result(ds, raw)

    def _result(self, ds: Dataset, raw: bytes) -> int:
        try:
            results = map_sr(ds, self._config.overrides)
        except SrMappingError as exc:
            return self._dead_letter(raw, ds, exc.reason, exc.message)
        docs = []
        for result in results:
            missing = self._await_sources(result)
            if missing:
                n = len(result.sources)
                return self._dead_letter(raw, ds, Reason.SR_SOURCES_MISSING,
                                         f"{missing} of {n} source images not received within "
                                         f"{self._config.source_wait_s:g} s")  # fmt: skip
            docs.append(self._event(result))
        try:
            for result, doc in zip(results, docs, strict=True):
                self._publisher.publish_inference(result.study_uid.encode(), doc)
        except PublishError as exc:
            if exc.reason is None:  # not acknowledged: the sender retries
                log.error("result not published (%s); refused for a retry", exc)
                return OUT_OF_RESOURCES
            # The contract refuses the event (e.g. an SR dated years ago): this SR's dead letter.
            return self._dead_letter(raw, ds, exc.reason, f"the event is refused: {exc.reason}")
        except Exception as exc:  # noqa: BLE001 - not acknowledged: the sender retries
            log.error("result not published (%s); refused for a retry", type(exc).__name__)
            return OUT_OF_RESOURCES
        self.counts["results"] += len(docs)
        count_listener("dicom", "results", len(docs))
        log.info("published %d result event(s)", len(docs))
        return SUCCESS

    def _event(self, result: SrResult) -> dict[str, Any]:
        image = result.sources[0]
        path = self.path_for(image.study_uid or result.study_uid, image.sop_uid)
        try:
            header: Dataset | None = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - the tags are optional; the collector reads the image
            header = None
        if header is not None and image.series_uid is None and "SeriesInstanceUID" in header:
            image = ImageRef(image.sop_uid, image.study_uid, str(header.SeriesInstanceUID))
        return inference_event(
            result, image=image, image_uri=path.as_uri(), image_header=header,
            pseudonym=self._pseudonym, received_at=self._clock(), site=self._config.site,
        )  # fmt: skip

    def _await_sources(self, result: SrResult) -> int:
        """Wait up to source_wait_s for the SR's images; returns how many are still missing."""
        paths = [self.path_for(s.study_uid or result.study_uid, s.sop_uid) for s in result.sources]
        deadline = time.monotonic() + self._config.source_wait_s
        with self._arrived:
            while True:
                missing = sum(1 for p in paths if not p.exists())
                remaining = deadline - time.monotonic()
                if not missing or remaining <= 0:
                    return missing
                # Images arrive on other associations (their handlers notify), or not at all.
                self._arrived.wait(min(remaining, 1.0))

    def _dead_letter(self, raw: bytes, ds: Dataset | None, reason: Reason, message: str) -> int:
        """The collector's dead-letter record (DESIGN.md §4), with a pseudonymised skeleton as
        its original: the SR's bytes carry the patient's identity and stay in the image store."""
        skeleton: dict[str, Any] = {"source": SOURCE, "sha256": hashlib.sha256(raw).hexdigest(),
                                    "size": len(raw)}  # fmt: skip
        if ds is not None:
            study, sop = str(ds.get("StudyInstanceUID", "")), str(ds.get("SOPInstanceUID", ""))
            skeleton["study"] = {"study_uid": "pseudo:" + self._pseudonym("study_uid", study),
                                 "sop_uid": "pseudo:" + self._pseudonym("sop_uid", sop)}  # fmt: skip
            # Made of pseudonyms only: where the kept SR lies under the image root, for a replay.
            skeleton["stored_as"] = self.path_for(study, sop).relative_to(self._root).as_posix()
        doc = {
            "schema": DEAD_LETTER_SCHEMA,
            "original_b64": base64.b64encode(json.dumps(skeleton).encode()).decode(),
            "topic": SOURCE, "partition": -1, "offset": -1,
            "reason": str(reason), "message": message[:500],
        }  # fmt: skip
        try:
            self._publisher.publish_dead_letter(doc)
        except Exception as exc:  # noqa: BLE001 - not acknowledged: the sender retries
            log.error("dead letter not published (%s); refused for a retry", type(exc).__name__)
            return OUT_OF_RESOURCES
        self.counts["dead_letters"] += 1
        count_listener("dicom", f"dead_letter:{reason}")
        log.warning("SR dead-lettered: %s", reason)
        return CANNOT_UNDERSTAND

    # -- the image store -------------------------------------------------------------------

    def path_for(self, study_uid: str, sop_uid: str) -> Path:
        """Where an object is kept: pseudonyms only (no UID in any file name, DESIGN.md §5)."""
        study = self._pseudonym("study_uid", study_uid)
        return self._root / "dicom" / study / (self._pseudonym("sop_uid", sop_uid) + ".dcm")

    def _keep(self, path: Path, raw: bytes) -> None:
        """Durably, atomically (write, fsync, rename), then wake SRs waiting for images."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(raw)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        with self._arrived:
            self._arrived.notify_all()


class KafkaResultPublisher:
    """Events to the inference topic, dead letters to the dead-letter topic, each call returning
    once the broker acknowledged (collectors.publisher: acks=all, flushed)."""

    def __init__(self, events: EventPublisher, dead_letters: EventPublisher) -> None:
        self._events = events
        self._dead_letters = dead_letters

    @classmethod
    def connect(
        cls, bootstrap: str, inference_topic: str, deadletter_topic: str,
        security: Mapping[str, Any] | None = None,
    ) -> KafkaResultPublisher:  # fmt: skip
        def publisher(topic: str, validate: bool) -> EventPublisher:
            return EventPublisher(bootstrap, topic, validate=validate, security=security,
                                  client_id="radwatch-dicom-listen")  # fmt: skip

        # Events are checked with the collector's own parser before they are sent (a refusal
        # becomes this SR's dead letter, with the collector's reason); dead letters are no event.
        return cls(publisher(inference_topic, True), publisher(deadletter_topic, False))

    def publish_inference(self, key: bytes, doc: Mapping[str, Any]) -> None:
        # The record key is the study UID (DESIGN.md §4), which EventPublisher derives itself.
        self._events.publish(doc)

    def publish_dead_letter(self, doc: Mapping[str, Any]) -> None:
        self._dead_letters.publish(doc)

    def close(self) -> None:
        self._events.close()
        self._dead_letters.close()
