"""Scale-out throughput: 1, 2 and 4 `radwatch collect` worker processes in one consumer group,
beside a bare kafka-python consumer reading the same topic (the limit for this client),
then a paper estimate for a health system from what the run measured.

Runs on the embedded broker and PostgreSQL in a temporary data dir. Each worker is a real
`radwatch collect` process. The clock starts once every worker holds its final share of
the 4 partitions and the backlog is published (the workers are paused meanwhile; group
joins and interpreter start-up are not counted) and stops when 90% of the events are in
PostgreSQL (the steady state: the end of the log, where drained partitions' fetches wait,
is left out, as in bench/ingest.py); the bare consumer's clock starts at its first record
and stops at 90% too.
On a 2-core machine shared with the broker and PostgreSQL, 2 workers cannot double the
throughput and 4 can only show that oversubscription does not lose events or collapse the
rate; the table says how much of the extra core they turn into events/s. What the run shows
on any machine: partitions spread over the group, every event stored once, the per-worker
rate. What it cannot show here: linear scaling, which needs a core per worker plus the
broker's and PostgreSQL's.

The paper estimate multiplies out a health system (`--studies-per-day`, `--models`, a peak
hour of `--peak-factor` × the mean rate) against the measured 1-worker rate (with 50%
headroom) and the measured on-disk bytes per stored inference (the inferences table, its
indexes and the counters, from pg_total_relation_size after the 1-worker run), kept for the
monitoring plan's default retention (730 days of events; monitor/plan/document.py).

    python bench/scale.py [--events 30000] [--workers 1 2 4] [--studies-per-day 6000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from collectors.kafka_io import KafkaOptions, ensure_topics, make_producer  # noqa: E402
from monitor.services import embedded, runtime  # noqa: E402
from monitor.store import db  # noqa: E402

sys.path.insert(0, str(REPO / "bench"))
from ingest import STEADY, bare_consumer  # noqa: E402  (the same limit as bench/ingest.py)

PSEUDONYM_KEY = "bench-key-0123456789abcdef0123456789abcdef"
# The real CLI, with kafka-python's assignment log line turned up (the CLI quiets "kafka"),
# so the bench can see when every worker holds its partitions.
WORKER = (
    "import logging, sys; "
    "logging.getLogger('kafka.coordinator.consumer').setLevel(logging.INFO); "
    "from monitor.cli import main; sys.exit(main(sys.argv[1:]))"
)
ASSIGNED = re.compile(r"Setting newly assigned partitions \{(.*?)\} for group")


def event(i: int, rng: random.Random, dim: int) -> tuple[bytes, bytes]:
    """A contract-v1 inference event without an image; `dim` floats of model embedding."""
    study = f"2.25.{rng.getrandbits(120)}"
    doc = {
        "schema": "radwatch.inference.v1", "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "occurred_at": f"2026-11-28T10:{i // 60 % 60:02d}:{i % 60:02d}Z",
        "model": {"name": "cxr-nodule", "version": "1.4.2"}, "site": "north-general",
        "study": {"study_uid": study, "accession": f"A{i:08d}", "patient_id": f"P{i:08d}"},
        "dicom": {"Modality": "DX", "Manufacturer": "ACME", "ManufacturerModelName": "X1",
                  "SoftwareVersions": "4.2", "KVP": 110, "PatientAge": "063Y", "PatientSex": "F"},
        "embedding": [round(rng.gauss(0, 1), 4) for _ in range(dim)],
        "prediction": {"scores": {"nodule": round(rng.random(), 4)}, "threshold": {"nodule": 0.5}},
        "latency_ms": 140,
    }  # fmt: skip
    return study.encode(), json.dumps(doc).encode()


@dataclass
class Stack:
    """Embedded broker + PostgreSQL in a temporary directory, removed on close."""

    data_dir: Path
    bootstrap: str
    admin_url: str

    @classmethod
    def start(cls) -> Stack:
        data_dir = Path(tempfile.mkdtemp(prefix="radwatch-bench-"))
        state = embedded.services_up(data_dir)
        # The owner login creates and migrates one database per measurement.
        assert state.bootstrap and state.owner_database_url
        return cls(data_dir, state.bootstrap, state.owner_database_url)

    def close(self) -> None:
        embedded.services_down(self.data_dir)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def database(self, name: str) -> str:
        with db.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = self.admin_url.rsplit("/", 1)[0] + "/" + name
        runtime.migrate_schema(url)
        return url

    def topics(self, prefix: str, partitions: int = 4) -> dict[str, str]:
        names = {"inference": f"{prefix}.inferences", "label": f"{prefix}.labels",
                 "deadletter": f"{prefix}.deadletter"}  # fmt: skip
        ensure_topics(KafkaOptions(self.bootstrap), list(names.values()), partitions)
        return names


class Worker:
    """One `radwatch collect` process; stderr goes to a file read while it runs."""

    def __init__(self, stack: Stack, url: str, topics: dict[str, str], group: str,
                 log: Path, **extra_env: str) -> None:  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("RADWATCH_")}
        env.update(
            RADWATCH_KAFKA_BOOTSTRAP=stack.bootstrap, RADWATCH_DATABASE_URL=url,
            RADWATCH_DATA_DIR=str(log.parent / "data"), RADWATCH_GROUP_ID=group,
            RADWATCH_INFERENCE_TOPIC=topics["inference"], RADWATCH_LABEL_TOPIC=topics["label"],
            RADWATCH_DEADLETTER_TOPIC=topics["deadletter"], RADWATCH_PSEUDONYM_KEY=PSEUDONYM_KEY,
            RADWATCH_BATCH_SIZE="1000", RADWATCH_POLL_TIMEOUT_MS="200", PYTHONUNBUFFERED="1",
            # A paused worker (SIGSTOP while the backlog is published) keeps its membership.
            RADWATCH_SESSION_TIMEOUT_MS="60000", RADWATCH_HEARTBEAT_INTERVAL_MS="3000",
        )  # fmt: skip
        env.update(extra_env)
        self.log = log
        with open(log, "ab") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", WORKER, "collect"], env=env,
                                         cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip

    def partitions(self, topic: str) -> int | None:
        found = ASSIGNED.findall(self.log.read_text(errors="replace"))
        return found[-1].count(f"topic='{topic}'") if found else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def stored(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM inferences").fetchone()
    return int(row[0]) if row else 0


def publish(bootstrap: str, topic: str, n: int, dim: int) -> int:
    producer = make_producer(KafkaOptions(bootstrap), batch_size=256 * 1024, linger_ms=20)
    rng, size = random.Random(11), 0
    for i in range(n):
        key, value = event(i, rng, dim)
        size += len(value)
        producer.send(topic, key=key, value=value)
    producer.flush(timeout=300)
    producer.close()
    return size // n


def settle(procs: list[Worker], topic: str, timeout: float = 240) -> None:
    """Wait until every worker holds partitions of `topic` and together they hold all 4."""
    deadline = time.monotonic() + timeout
    while True:
        shares = [w.partitions(topic) for w in procs]
        if all(shares) and sum(s or 0 for s in shares) == 4:
            return
        for w in procs:
            if w.proc.poll() is not None:
                raise RuntimeError(f"worker exited: {w.log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"group never settled: {shares}")
        time.sleep(0.1)


def bytes_per_inference(url: str) -> float:
    """On-disk bytes per stored inference: every table that grows with inferences, indexes included."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            """SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c
               JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'public' AND c.relkind = 'r'"""
        ).fetchone()
        (n,) = conn.execute("SELECT count(*) FROM inferences").fetchone() or (0,)
    return float(row[0] or 0) / max(1, int(n))


def collect_with(
    stack: Stack, n: int, workers: int, dim: int, log_dir: Path
) -> tuple[float, int, str]:
    """events/s of `workers` processes in one group, from resume to 90% of the events stored.

    The workers join on empty topics and are paused (SIGSTOP) while the events are
    published, so every run starts with a settled group and a full backlog.
    """
    topics = stack.topics(f"scale{workers}.{uuid.uuid4().hex[:6]}")
    url = stack.database(f"scale{workers}_{uuid.uuid4().hex[:6]}")
    group = f"scale-{uuid.uuid4().hex[:6]}"
    procs = [Worker(stack, url, topics, group, log_dir / f"w{workers}-{i}.log")
             for i in range(workers)]  # fmt: skip
    try:
        settle(procs, topics["inference"])
        for w in procs:
            w.proc.send_signal(signal.SIGSTOP)
        size = publish(stack.bootstrap, topics["inference"], n, dim)
        t0 = time.perf_counter()
        for w in procs:
            w.proc.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 900
        while stored(url) < STEADY * n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {stored(url)} of {n} stored")
            time.sleep(0.05)
        rate = STEADY * n / (time.perf_counter() - t0)
        while stored(url) < n:  # every event stored once, before the next run
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {stored(url)} of {n} stored")
            time.sleep(0.1)
        return rate, size, url
    finally:
        for w in procs:
            w.proc.send_signal(signal.SIGCONT)
            w.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--embedding-dim", type=int, default=16)
    parser.add_argument(
        "--studies-per-day",
        type=int,
        default=6000,
        help="imaging studies a day across the health system (2.2 M a year)",
    )
    parser.add_argument("--models", type=int, default=5, help="AI models reading each study")
    parser.add_argument(
        "--peak-factor",
        type=float,
        default=4.0,
        help="busiest hour's rate over the day's mean rate",
    )
    args = parser.parse_args()
    stack = Stack.start()
    try:
        topics = stack.topics(f"bare.{uuid.uuid4().hex[:6]}")
        size = publish(stack.bootstrap, topics["inference"], args.events, args.embedding_dim)
        bare = bare_consumer(stack.bootstrap, topics["inference"], args.events, 1000).steady
        print(f"bare consumer: {bare:,.0f}/s", file=sys.stderr)
        results, per_row = {}, 0.0
        for k in args.workers:
            rate, _, url = collect_with(stack, args.events, k, args.embedding_dim, stack.data_dir)
            results[k] = rate
            if not per_row:
                per_row = bytes_per_inference(url)
            print(f"{k} worker(s): {rate:,.0f}/s", file=sys.stderr)
        load = os.getloadavg()[0]
        print(f"\nScale-out, {args.events:,} events of ~{size} B, 4 partitions, "
              f"{os.cpu_count()} cores, load average {load:.1f} at the end")  # fmt: skip
        print("| path | events/s | vs bare | vs 1 worker |")
        print("|---|---:|---:|---:|")
        print(
            f"| bare kafka-python consumer (poll + json.loads), the limit | {bare:,.0f} | 1.00 | |"
        )
        one = results.get(1)
        for k, rate in results.items():
            scaling = f"{rate / one:.2f}" if one else ""
            print(f"| radwatch collect × {k} (→ PostgreSQL, committed) | {rate:,.0f} | "
                  f"{rate / bare:.2f} | {scaling} |")  # fmt: skip
        paper_estimate(args, results[min(results)], per_row)
    finally:
        stack.close()


def paper_estimate(args: argparse.Namespace, one_worker: float, per_row: float) -> None:
    """A health system on paper, from the rate and the row size this run measured."""
    retention_days = 730  # the plan's default `retention.events_days`
    per_day = args.studies_per_day * args.models
    peak = per_day / 86_400 * args.peak_factor
    workers = max(1, -(-peak * 1.5 // one_worker))  # 50% headroom, rounded up
    year_gb = per_day * 365 * per_row / 1e9
    print(f"\nPaper estimate: {args.studies_per_day:,} studies/day × {args.models} models, "
          f"peak {args.peak_factor:g}× the mean, {per_row:,.0f} B per stored inference "
          f"(measured, embedding dim {args.embedding_dim}; images and 512-d encoder "
          "embeddings add their own rows)")  # fmt: skip
    print("| quantity | value |")
    print("|---|---:|")
    print(f"| inference events/day | {per_day:,} |")
    print(f"| peak events/s | {peak:,.1f} |")
    print(f"| one worker, measured here | {one_worker:,.0f} events/s |")
    print(f"| workers for the peak with 50% headroom | {workers:.0f} |")
    print(f"| PostgreSQL growth per year | {year_gb:,.1f} GB |")
    print(f"| PostgreSQL at the plan's retention ({retention_days} days) | "
          f"{year_gb * retention_days / 365:,.1f} GB |")  # fmt: skip


if __name__ == "__main__":
    main()
