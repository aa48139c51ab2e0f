"""A monitored model with incidents, for the model report's tests: the real pipeline on a seed.

tests/drift_streams.py writes 2,400 inferences (seed 5, three sites; from study 1,400 a share of
south-clinic studies come from a never-seen Zenith Medical scanner with shifted embeddings);
here radiologists' labels are added for 70% of them (a positive with probability rising steeply
with the score, except on the Zenith scanner, where the score says nothing: the model is harmed
there). Then the real engine runs: a reference of the first 600 studies, the drift scheduler,
the performance watch (windows of 300), and one incident is acknowledged by a person.
"""

from __future__ import annotations

import hashlib
import math
from datetime import timedelta

import numpy as np
import psycopg
from drift_streams import CONFIG, MODEL, START, insert_stream
from psycopg.types.json import Jsonb

N = 2400
ONSET = 1400
REFERENCE = 600
SEED = 5
LABEL_SHARE = 0.7


def onset_time():
    return START + timedelta(minutes=10 * ONSET)


def end_time():
    return START + timedelta(minutes=10 * (N - 1))


def build(url: str) -> None:
    from monitor.alerts import incidents
    from monitor.drift import reference
    from monitor.drift.scheduler import DetectionConfig, Scheduler
    from monitor.performance import watch
    from monitor.performance.evaluation import PerformanceConfig

    insert_stream(url, N, seed=SEED, onset=ONSET)
    add_labels(url)
    with psycopg.connect(url) as conn:
        reference.build(conn, model=MODEL, first=REFERENCE, config=CONFIG, actor="test")
    scheduler = Scheduler(url, DetectionConfig(), actor="test-detect")
    assert scheduler.acquire()
    try:
        scheduler.run_once()
    finally:
        scheduler.release()
    with psycopg.connect(url) as conn:
        watch.run(conn, model=MODEL, config=PerformanceConfig(window=300), actor="test-perf")
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        found = incidents.list_incidents(conn, model=MODEL)
        if found:
            incidents.acknowledge(conn, found[0].id, by="qa.lead", note="vendor onboarding?")


def add_labels(url: str) -> None:
    rng = np.random.default_rng(SEED + 1)
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """SELECT study_pseudo, occurred_at, (scores->>'nodule')::float,
                      dicom->>'Manufacturer' FROM inferences WHERE model_name = %s
               ORDER BY occurred_at""",
            (MODEL,),
        ).fetchall()
        labels = []
        for i, (study, occurred, score, vendor) in enumerate(rows):
            if rng.random() >= LABEL_SHARE:
                continue
            p = 0.3 if vendor == "Zenith Medical" else 1 / (1 + math.exp(-14 * (score - 0.35)))
            eid = f"label-{SEED}-{i:05d}"
            labels.append((eid, hashlib.sha256(eid.encode()).hexdigest(), MODEL, study,
                           Jsonb({"nodule": int(rng.random() < p)}),
                           occurred + timedelta(hours=6), i))  # fmt: skip
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO labels (event_id, content_hash, model_name, study_pseudo, labels,
                       source, occurred_at, kafka_topic, kafka_partition, kafka_offset)
                   VALUES (%s, %s, %s, %s, %s, 'radiologist-report', %s, 'l', 0, %s)""",
                labels,
            )
