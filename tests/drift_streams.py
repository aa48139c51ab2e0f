"""A seeded synthetic stream written straight into `inferences`, shared by the drift tests.

1,400 events (or as asked), three sites; from `onset` a share of south-clinic studies come
from a never-seen vendor with shifted embeddings. The collector is tested elsewhere; these
rows are what detection reads.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from detectors.drift.suite import SuiteConfig

MODEL = "cxr-nodule"
START = datetime(2026, 11, 1, tzinfo=UTC)
ONSET = 1000
SITES = (("north-general", "ACME", "X1"), ("south-clinic", "Borealis", "B-200"),
         ("east-imaging", "ACME", "X2"))  # fmt: skip


def insert_stream(url: str, n: int, *, seed: int, onset: int | None, share: float = 0.6) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        site, vendor, scanner = SITES[int(rng.integers(3))]
        emb = rng.normal(size=16)
        shifted = (
            onset is not None and i >= onset and site == "south-clinic" and rng.random() < share
        )
        if shifted:
            vendor, scanner = "Zenith Medical", "ZR-7"
            emb[:4] += 1.5
        dicom = {
            "Modality": "DX",
            "Manufacturer": vendor,
            "ManufacturerModelName": scanner,
            "PhotometricInterpretation": "MONOCHROME2",
            "KVP": float(rng.normal(110, 5)),
            "PatientSex": "F" if rng.random() < 0.5 else "M",
            "AgeBand": str(rng.choice(["18-29", "30-44", "45-59", "60-74"])),
        }
        eid = str(uuid.UUID(int=seed * 10**7 + i))
        rows.append((eid, hashlib.sha256(eid.encode()).hexdigest(), MODEL, "1.4.2", site,
                     START + timedelta(minutes=10 * i), f"study-{seed}-{i:05d}", Jsonb(dicom),
                     Jsonb({"nodule": float(rng.beta(2, 5))}), emb.astype(np.float32).tolist(),
                     "t", 0, i))  # fmt: skip
    with (
        psycopg.connect(url) as conn,
        conn.cursor().copy(
            """COPY inferences (event_id, content_hash, model_name, model_version, site, occurred_at,
               study_pseudo, dicom, scores, embedding, kafka_topic, kafka_partition,
               kafka_offset) FROM STDIN"""
        ) as copy,
    ):
        for r in rows:
            copy.write_row(r)


CONFIG = SuiteConfig(calibration_window=100, calibration_windows=10, min_window=20,
                     online=True, online_ert=500, online_bootstraps=3000, online_reference=200,
                     online_window_sizes=(10, 30), strata_kinds=("site", "scanner"))  # fmt: skip
