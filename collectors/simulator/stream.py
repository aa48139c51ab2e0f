"""The synthetic hospital stream: DICOM files on disk, a deployed CNN, events on Kafka.

Input side of tests and the demo. For each study it renders a chest-radiograph phantom,
writes it as a DX DICOM object under `images_dir`, runs the deployed model on it like an
inference service, and yields the inference event (score, penultimate-layer embedding,
`image.uri` = file://…) and, for a share of studies, the radiologist's label that arrives
later. Deterministic given (seed, scenario, onset, severity): same inputs, same bytes.
"""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from kafka.errors import KafkaError

from collectors.errors import CollectorError
from collectors.simulator import model as deployed
from collectors.simulator.fleet import SITES
from collectors.simulator.scenarios import SCENARIOS
from collectors.simulator.study import START, StudyPlan, dicom_bytes, plan_study, stored_pixels
from collectors.simulator.study import tags as study_tags

MODEL = {"name": deployed.MODEL_NAME, "version": deployed.MODEL_VERSION}
DEFAULT_IMAGES_DIR = Path(".radwatch") / "images"
_CHUNK = 32  # studies per model batch

__all__ = [
    "MODEL", "SCENARIOS", "SITES", "START", "SimulatedStudy", "generate", "publish",
    "scan_and_score", "study_event",
]  # fmt: skip


class NotDelivered(CollectorError, KafkaError):
    """Some events never reached the broker (it went away, or refused them)."""

    def __str__(self) -> str:  # KafkaError's own prefixes the class name
        return str(self.args[0])


@dataclass(frozen=True)
class SimulatedStudy:
    key: bytes
    inference: dict
    label: dict | None
    image_path: Path | None = None
    plan: StudyPlan | None = None

    def inference_bytes(self) -> bytes:
        return json.dumps(self.inference).encode()

    def label_bytes(self) -> bytes | None:
        return json.dumps(self.label).encode() if self.label else None

    @property
    def label_at(self) -> datetime | None:
        return self.plan.label_at if self.plan and self.label else None


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def image_dir_for(images_dir: Path, seed: int, scenario: str) -> Path:
    return Path(images_dir).resolve() / f"seed{seed}-{scenario}"


def generate(
    n: int,
    *,
    seed: int = 0,
    label_share: float = 0.7,
    scenario: str = "none",
    onset: int | None = None,
    severity: float = 1.0,
    images_dir: Path | str | None = None,
    label_delay: timedelta = timedelta(hours=6),
    include_tags: bool = True,
    start_index: int = 0,
) -> Iterator[SimulatedStudy]:
    """Yield `n` studies, writing each DICOM file before its event is yielded.

    `onset` is the study index where the scenario starts (default: half-way, n // 2).
    `include_tags`: events carry the allow-listed tags an inference service forwards;
    without them the collector reads the tags from the DICOM file itself.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    if not 0.0 <= label_share <= 1.0:
        raise ValueError("label_share must be in [0, 1]")
    onset = n // 2 if onset is None else onset
    folder = image_dir_for(Path(images_dir or DEFAULT_IMAGES_DIR), seed, scenario)
    folder.mkdir(parents=True, exist_ok=True)
    model = deployed.load_deployed()
    indices = range(start_index, start_index + n)
    for chunk_start in range(0, n, _CHUNK):
        chunk = indices[chunk_start : chunk_start + _CHUNK]
        plans = [
            plan_study(
                seed,
                i,
                scenario_name=scenario,
                onset=onset,
                severity=severity,
                label_share=label_share,
                label_delay=label_delay,
            )  # fmt: skip
            for i in chunk
        ]
        for plan, pixels, score, emb in zip(plans, *scan_and_score(plans, model), strict=True):
            path = folder / f"{plan.index:07d}.dcm"
            path.write_bytes(dicom_bytes(plan, pixels))
            yield study_event(
                plan, path.as_uri(), float(score), emb, include_tags, pixels.shape, path
            )


def scan_and_score(
    plans: Sequence[StudyPlan], model: deployed.DeployedModel
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """What the scanners store for `plans` and what the deployed model answers on them:
    (stored pixels per study, scores [N], penultimate embeddings [N, D])."""
    stored = [stored_pixels(p) for p in plans]
    inputs = np.stack(
        [
            deployed.service_input(s, p.scanner.bits_stored)
            for s, p in zip(stored, plans, strict=True)
        ]
    )
    scores, embeddings = model.predict(inputs)
    return stored, scores, embeddings


def study_event(plan: StudyPlan, uri: str, score: float, embedding: np.ndarray,
                include_tags: bool, shape: tuple[int, ...],
                image_path: Path | None = None) -> SimulatedStudy:  # fmt: skip
    """The inference event (and the label, if the study is read) an inference service sends."""
    inference: dict = {
        "schema": "radwatch.inference.v1",
        "event_id": plan.event_id,
        "occurred_at": _iso(plan.occurred_at),
        "model": MODEL,
        "site": plan.scanner.site,
        "study": {
            "study_uid": plan.study_uid,
            "series_uid": plan.series_uid,
            "sop_uid": plan.sop_uid,
            "accession": f"SIMACC{plan.seed}{plan.index:07d}",
            "patient_id": f"SIMPAT{plan.patient_number}",
        },  # fmt: skip
        "image": {"uri": uri},
        # Rounded: the wire carries 6 significant digits, enough for any drift test.
        "embedding": [float(f"{v:.6g}") for v in embedding],
        "prediction": {
            "scores": {"nodule": round(score, 6)},
            "threshold": {"nodule": deployed.THRESHOLD},
        },  # fmt: skip
        "latency_ms": plan.latency_ms,
    }
    if include_tags:
        inference["dicom"] = study_tags(plan, shape[0], shape[1])
    label = None
    if plan.labelled:
        label = {
            "schema": "radwatch.label.v1",
            "event_id": plan.label_event_id,
            "occurred_at": _iso(plan.label_at),
            "model": {"name": MODEL["name"]},
            "study": {"study_uid": plan.study_uid},
            "labels": {"nodule": int(plan.positive)},
            "source": "radiologist-report",
        }
    return SimulatedStudy(plan.study_uid.encode(), inference, label, image_path, plan)


def publish(
    producer,
    studies: Iterable[SimulatedStudy],
    inference_topic: str,
    label_topic: str,
    *,
    rate: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[int, int]:
    """Send inferences in order and each label once simulated time passes its `label_at`.

    `rate`: inference events per second of wall time (None: as fast as possible).
    `progress(inferences_sent, labels_sent)` is called after each inference.
    Returns (inferences, labels) sent; raises NotDelivered when the broker did not take
    them all (a flush alone would report a lost stream as published).
    """
    pending: list[tuple[datetime, int, bytes, bytes]] = []  # label_at, order, key, value
    n_inf = n_lab = 0
    failed: list[BaseException] = []

    def send(topic: str, key: bytes, value: bytes) -> None:
        producer.send(topic, key=key, value=value).add_errback(failed.append)

    started = time.monotonic()
    for order, study in enumerate(studies):
        now = datetime.fromisoformat(study.inference["occurred_at"].replace("Z", "+00:00"))
        while pending and pending[0][0] <= now:
            _, _, key, value = heapq.heappop(pending)
            send(label_topic, key, value)
            n_lab += 1
        if rate:
            # Pace against the start, not the previous send, so slow steps do not add up.
            delay = started + n_inf / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        send(inference_topic, study.key, study.inference_bytes())
        n_inf += 1
        label = study.label_bytes()
        if label is not None:
            label_at = study.label_at or now
            heapq.heappush(pending, (label_at, order, study.key, label))
        if progress is not None:
            progress(n_inf, n_lab)
    # The stream ends: the reads still outstanding arrive now, in their time order.
    while pending:
        _, _, key, value = heapq.heappop(pending)
        send(label_topic, key, value)
        n_lab += 1
    producer.flush(timeout=60)
    if failed:
        raise NotDelivered(f"{len(failed)} of {n_inf + n_lab} events were not delivered "
                           f"({type(failed[0]).__name__})")  # fmt: skip
    if progress is not None:
        progress(n_inf, n_lab)
    return n_inf, n_lab
