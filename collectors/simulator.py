"""The synthetic hospital stream (walking-skeleton version: image-free events).

Input side of tests and the demo: deterministic inference events (and delayed radiologist
labels) for a few sites and scanners, published to Kafka like a real inference service.
The DICOM-producing hospital with a deployed CNN replaces the event bodies in a later issue.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

SITES = (("north-general", "ACME", "X1"), ("south-clinic", "Borealis", "B-200"),
         ("east-imaging", "ACME", "X2"))  # fmt: skip
MODEL = {"name": "cxr-nodule", "version": "1.4.2"}
START = datetime(2026, 11, 1, tzinfo=UTC)


@dataclass(frozen=True)
class SimulatedStudy:
    key: bytes
    inference: dict
    label: dict | None

    def inference_bytes(self) -> bytes:
        return json.dumps(self.inference).encode()

    def label_bytes(self) -> bytes | None:
        return json.dumps(self.label).encode() if self.label else None


def _uid(rng: np.random.Generator) -> str:
    # 2.25 root: UUID-derived UIDs (PS3.5 §B.2), the standard way to mint UIDs without a root.
    return "2.25." + str(uuid.UUID(bytes=rng.bytes(16), version=4).int)


def generate(n: int, *, seed: int = 0, label_share: float = 0.7) -> Iterator[SimulatedStudy]:
    rng = np.random.default_rng(seed)
    for i in range(n):
        site, vendor, scanner = SITES[int(rng.integers(len(SITES)))]
        positive = bool(rng.random() < 0.2)
        score = float(np.clip(rng.beta(5, 2) if positive else rng.beta(2, 5), 0, 1))
        study_uid = _uid(rng)
        occurred = START + timedelta(seconds=30 * i)
        inference = {
            "schema": "radwatch.inference.v1",
            "event_id": str(uuid.UUID(bytes=rng.bytes(16), version=4)),
            "occurred_at": occurred.isoformat().replace("+00:00", "Z"),
            "model": MODEL,
            "site": site,
            "study": {"study_uid": study_uid, "series_uid": _uid(rng), "sop_uid": _uid(rng),
                      "accession": f"SIM{seed}-{i:07d}", "patient_id": f"SIMPAT{seed}-{i:07d}"},
            "dicom": {"Modality": "DX", "Manufacturer": vendor, "ManufacturerModelName": scanner,
                      "SoftwareVersions": "4.2", "KVP": float(np.round(rng.normal(110, 5), 1)),
                      "PhotometricInterpretation": "MONOCHROME2",
                      "PatientAge": f"{int(rng.integers(20, 90)):03d}Y",
                      "PatientSex": "F" if rng.random() < 0.5 else "M"},
            "embedding": [float(x) for x in np.round(rng.normal(size=16) + positive, 4)],
            "prediction": {"scores": {"nodule": round(score, 5)}, "threshold": {"nodule": 0.5}},
            "latency_ms": int(rng.integers(80, 300)),
        }  # fmt: skip
        label = None
        if rng.random() < label_share:
            label = {
                "schema": "radwatch.label.v1",
                "event_id": str(uuid.UUID(bytes=rng.bytes(16), version=4)),
                "occurred_at": (occurred + timedelta(hours=6)).isoformat().replace("+00:00", "Z"),
                "model": {"name": MODEL["name"]},
                "study": {"study_uid": study_uid},
                "labels": {"nodule": int(positive)},
                "source": "radiologist-report",
            }
        yield SimulatedStudy(study_uid.encode(), inference, label)


def publish(producer, studies: Iterator[SimulatedStudy], inference_topic: str,
            label_topic: str) -> tuple[int, int]:  # fmt: skip
    """Send every study's inference (and label, when it has one); returns the counts."""
    n_inf = n_lab = 0
    for study in studies:
        producer.send(inference_topic, key=study.key, value=study.inference_bytes())
        n_inf += 1
        label = study.label_bytes()
        if label is not None:
            producer.send(label_topic, key=study.key, value=label)
            n_lab += 1
    producer.flush(timeout=60)
    return n_inf, n_lab
