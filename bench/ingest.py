"""Ingest throughput: radwatch collect (Kafka → validate → pseudonymise → PostgreSQL) beside
a bare kafka-python consumer reading the same topic (the limit for this client) and the same
bare consumer storing each record as it came with COPY (what Kafka → PostgreSQL costs it).

Runs on the embedded broker and PostgreSQL in a temporary data dir. Every clock starts at
the first batch handled (received by the bare consumer, stored by the others), so group joins
and idle waits are not counted, and is read twice: at 90% of the events (the steady state,
the rate kept while records are waiting: the one to read) and at the last one. The end of the
log is where kafka-python waits on fetches of drained partitions (fetch_max_wait_ms, 500 ms
by default; on tansu about 1.2 s in all): that stall was most of the bare consumer's time for
20,000 events before it was given a 20 ms wait, and made it look three times slower than it is.
Target (issue 19): ratio to the bare consumer ≥ 0.5 on a 2-core machine.

Two radwatch columns per repeat: the worker `radwatch collect` builds, in this process (one
worker: bound by the interpreter's lock near one core), and `radwatch collect --processes K`
as a real command (K worker processes in one group; by default the cores, at most the 4
partitions), clocked from PostgreSQL's ingest counters, any rebalance of the group inside the
span charged to radwatch.

    python bench/ingest.py [--events 50000] [--repeats 3] [--processes K] [--profile]

`--profile` adds one more radwatch pass (not timed) under cProfile, every thread of the
worker included, and prints its top functions by cumulative and by own time.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import json
import os
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collectors.kafka_io import KafkaOptions, ensure_topics, make_producer  # noqa: E402
from monitor.config import Settings  # noqa: E402
from monitor.ingest.wiring import build_worker  # noqa: E402
from monitor.services import embedded, runtime
from monitor.store import db  # noqa: E402


def event(i: int, rng: random.Random) -> tuple[bytes, bytes]:
    """A contract-v1 inference event without an image (tags, scores, a 16-d embedding)."""
    study = f"2.25.{rng.getrandbits(120)}"
    doc = {
        "schema": "radwatch.inference.v1", "event_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "occurred_at": f"2026-11-28T10:{i // 60 % 60:02d}:{i % 60:02d}Z",
        "model": {"name": "cxr-nodule", "version": "1.4.2"}, "site": "north-general",
        "study": {"study_uid": study, "series_uid": study + ".1", "sop_uid": study + ".1.1",
                  "accession": f"A{i:08d}", "patient_id": f"P{i:08d}"},
        "dicom": {"Modality": "DX", "Manufacturer": "ACME", "ManufacturerModelName": "X1",
                  "SoftwareVersions": "4.2", "KVP": 110, "PixelSpacing": [0.15, 0.15],
                  "PhotometricInterpretation": "MONOCHROME2", "PatientAge": "063Y", "PatientSex": "F"},
        "embedding": [round(rng.gauss(0, 1), 4) for _ in range(16)],
        "prediction": {"scores": {"nodule": round(rng.random(), 4)}, "threshold": {"nodule": 0.5}},
        "latency_ms": 140,
    }  # fmt: skip
    return study.encode(), json.dumps(doc).encode()


def publish(options: KafkaOptions, topic: str, n: int) -> int:
    producer = make_producer(options, batch_size=256 * 1024, linger_ms=20)
    rng, size = random.Random(11), 0
    for i in range(n):
        key, value = event(i, rng)
        size += len(value)
        producer.send(topic, key=key, value=value)
        if i % 10_000 == 0:
            producer.flush()
    producer.flush(timeout=120)
    producer.close()
    return size // n


STEADY = 0.9  # the steady-state clock stops when this share of the events is handled


@dataclass(frozen=True)
class Rates:
    steady: float  # events/s from the first handled batch to STEADY × n
    to_end: float  # events/s from the first handled batch to the last event


@dataclass
class Clock:
    """Events handled over time, marked after each batch; the same convention for every path."""

    n: int
    first: float = 0.0
    first_n: int = 0
    steady_at: float = 0.0
    last: float = 0.0

    def mark(self, handled: int) -> None:
        now = time.perf_counter()
        if not self.first and handled:
            # The first batch's records are not counted: its clock starts when it is done.
            self.first, self.first_n = now, handled
        if not self.steady_at and handled >= STEADY * self.n:
            self.steady_at = now
        if not self.last and handled >= self.n:
            self.last = now

    def rates(self) -> Rates:
        to_end = (self.n - self.first_n) / (self.last - self.first)
        if self.steady_at <= self.first:  # the first batch alone reached the mark
            return Rates(to_end, to_end)
        return Rates((STEADY * self.n - self.first_n) / (self.steady_at - self.first), to_end)


def bare_consumer(bootstrap: str, topic: str, n: int, max_poll_records: int = 500) -> Rates:
    """The limit: kafka-python alone, reading and decoding the topic (no group, no writes)."""
    consumer = _bare_kafka(bootstrap, topic, max_poll_records)
    seen, clock = 0, Clock(n)
    while seen < n:
        for records in consumer.poll(timeout_ms=500).values():
            for record in records:
                json.loads(record.value)  # a consumer that does anything at all decodes
            seen += len(records)
        clock.mark(seen)
    consumer.close()
    return clock.rates()


def bare_to_postgres(bootstrap: str, topic: str, n: int, url: str) -> Rates:
    """A second peer: the bare consumer storing each record as it came (event_id + the JSON
    document, one transaction per poll, a primary key), without radwatch's checks,
    pseudonyms, columns, indexes or counters: what Kafka → PostgreSQL costs this client."""
    consumer = _bare_kafka(bootstrap, topic, 1000)
    with db.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bare_events (event_id text PRIMARY KEY, doc jsonb NOT NULL)")
        seen, clock = 0, Clock(n)
        while seen < n:
            for records in consumer.poll(timeout_ms=500).values():
                with (
                    conn.transaction(),
                    conn.cursor().copy("COPY bare_events (event_id, doc) FROM STDIN") as copy,
                ):
                    for record in records:
                        copy.write_row((json.loads(record.value)["event_id"],
                                        record.value.decode()))  # fmt: skip
                seen += len(records)
            clock.mark(seen)
    consumer.close()
    return clock.rates()


def _bare_kafka(bootstrap: str, topic: str, max_poll_records: int) -> KafkaConsumer:
    # A short fetch wait: with the default 500 ms, fetches of drained partitions stall the
    # end of the log (the steady-state clock leaves that out anyway).
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             max_poll_records=max_poll_records, fetch_max_wait_ms=20)  # fmt: skip
    parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    return consumer


def radwatch_collect(
    options: KafkaOptions,
    url: str,
    topic: str,
    n: int,
    data_dir: Path,
    around_run: contextlib.AbstractContextManager[None] | None = None,
) -> Rates:
    """Events stored per second by the worker `radwatch collect` builds (`around_run` wraps
    only its run: the profile leaves out building it, imports included)."""
    clock = Clock(n)
    stored = 0

    def on_batch(batch, outcome) -> None:
        nonlocal stored
        stored += outcome.inferences_new
        clock.mark(stored)
        if stored >= n:
            worker.request_stop()

    # The ingest worker `radwatch collect` builds, stages included (no-ops for image-free events).
    settings = Settings(
        kafka_bootstrap=options.bootstrap, database_url=url, data_dir=data_dir,
        inference_topic=topic, label_topic=topic + ".labels", deadletter_topic=topic + ".dlq",
        group_id=f"bench-{uuid.uuid4().hex[:6]}", pseudonym_key="bench-key-0123456789abcdef",
        batch_size=1000, poll_timeout_ms=200,
    )  # fmt: skip
    worker = build_worker(settings, on_batch=on_batch)
    with around_run or contextlib.nullcontext():
        worker.run(until_idle=30)
    if not clock.last:
        raise RuntimeError(f"radwatch stored only {stored} of {n}")
    # From the end of the first batch: its records are excluded from the count too, so the
    # group join (seconds on tansu) is not charged to radwatch.
    return clock.rates()


def radwatch_collect_processes(
    options: KafkaOptions, url: str, topic: str, n: int, data_dir: Path, processes: int
) -> Rates:
    """Events stored per second by `radwatch collect --processes K`, a real command: clocked
    from the first stored batch to the last event, read from PostgreSQL's ingest counters."""
    env = {**os.environ, "RADWATCH_KAFKA_BOOTSTRAP": options.bootstrap,
           "RADWATCH_DATABASE_URL": url, "RADWATCH_DATA_DIR": str(data_dir),
           "RADWATCH_INFERENCE_TOPIC": topic, "RADWATCH_LABEL_TOPIC": topic + ".labels",
           "RADWATCH_DEADLETTER_TOPIC": topic + ".dlq",
           "RADWATCH_GROUP_ID": f"bench-{uuid.uuid4().hex[:6]}",
           "RADWATCH_PSEUDONYM_KEY": "bench-key-0123456789abcdef0123456789abcdef",
           "RADWATCH_BATCH_SIZE": "1000", "RADWATCH_POLL_TIMEOUT_MS": "200"}  # fmt: skip
    command = [sys.executable, "-m", "monitor", "collect", "--processes", str(processes),
               "--until-idle", "30"]  # fmt: skip
    proc = subprocess.Popen(command, env=env, cwd=Path(__file__).resolve().parents[1],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    clock, stored = Clock(n), 0
    deadline = time.monotonic() + 600
    try:
        with db.connect(url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                row = conn.execute("SELECT coalesce(sum(events), 0) FROM ingest_counts "
                                   "WHERE kind = 'inference'").fetchone()  # fmt: skip
                stored = int(row[0]) if row else 0
                clock.mark(stored)
                if stored >= n:
                    return clock.rates()
                if proc.poll() is not None:
                    break
                time.sleep(0.02)
        raise RuntimeError(f"radwatch collect --processes {processes} stored only {stored} of {n}")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


@contextlib.contextmanager
def profiled(top: int = 15) -> Iterator[None]:
    """cProfile over the block, threads started inside it included; prints the top functions.

    Wall-clock timer (a per-thread CPU clock is a system call here and would charge each
    call of a small function several µs): waits show as their own lines (epoll's poll, a
    lock's acquire), the rest is where the CPU goes.
    """
    profiles = [cProfile.Profile()]
    original_run = threading.Thread.run

    def run(self: threading.Thread) -> None:
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.runcall(original_run, self)

    threading.Thread.run = run  # type: ignore[method-assign]
    profiles[0].enable()
    try:
        yield
    finally:
        profiles[0].disable()
        threading.Thread.run = original_run  # type: ignore[method-assign]
        out = io.StringIO()
        stats = pstats.Stats(profiles[0], stream=out)
        for profile in profiles[1:]:
            stats.add(profile)
        stats.strip_dirs()
        for key in ("cumulative", "tottime"):
            print(f"\nTop {top} by {key} (seconds, all threads):", file=out)
            stats.sort_stats(key).print_stats(top)
        print(out.getvalue())


def fresh_run(options: KafkaOptions, owner: str, events: int, tag: str) -> tuple[str, str]:
    """A new topic holding `events` records and a new migrated database: (topic, url)."""
    topic = f"bench{tag}.{uuid.uuid4().hex[:6]}"
    ensure_topics(options, [topic, topic + ".labels", topic + ".dlq"], 4)
    publish(options, topic, events)
    return topic, fresh_database(owner, tag)


def fresh_database(owner: str, tag: str) -> str:
    """A new migrated database: its URL."""
    url = owner.rsplit("/", 1)[0] + f"/bench{tag}_{uuid.uuid4().hex[:6]}"
    with db.connect(owner, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{url.rsplit("/", 1)[1]}"')
    runtime.migrate_schema(url)
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--processes", type=int, default=min(os.cpu_count() or 2, 4),
                        help="worker processes of the second radwatch row "
                        "(default: the cores, at most the 4 partitions)")  # fmt: skip
    parser.add_argument("--profile", action="store_true",
                        help="one more radwatch pass under cProfile; print its top functions")  # fmt: skip
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="radwatch-bench-"))
    try:
        state = embedded.services_up(data_dir)
        # The owner login creates and migrates one database per repeat.
        owner = state.owner_database_url
        assert state.bootstrap and owner
        options = KafkaOptions(state.bootstrap)
        size = len(event(0, random.Random(11))[1])
        rows = []
        for repeat in range(args.repeats):
            topic, url = fresh_run(options, owner, args.events, str(repeat))
            # Both in the same run, one after the other, on the same topic: the ratio is
            # meaningful even on a loaded machine (each number alone is not).
            bare = bare_consumer(options.bootstrap, topic, args.events)
            bare_pg = bare_to_postgres(options.bootstrap, topic, args.events,
                                       fresh_database(owner, f"{repeat}b"))  # fmt: skip
            ours = radwatch_collect(options, url, topic, args.events, data_dir)
            # The same topic again, into a fresh database, by K worker processes.
            url_k = fresh_database(owner, f"{repeat}k")
            many = radwatch_collect_processes(options, url_k, topic, args.events, data_dir,
                                              args.processes)  # fmt: skip
            rows.append((bare, bare_pg, ours, many))
            print(f"run {repeat + 1} (steady state): bare {bare.steady:,.0f}/s, bare → "
                  f"PostgreSQL {bare_pg.steady:,.0f}/s, radwatch {ours.steady:,.0f}/s, "
                  f"--processes {args.processes} {many.steady:,.0f}/s", file=sys.stderr)  # fmt: skip
        k = args.processes
        for title, pick in (
            (f"steady state: first record → {STEADY:.0%} of the events", lambda r: r.steady),
            ("to the last event: the end of the log included", lambda r: r.to_end),
        ):  # fmt: skip
            print(f"\nIngest, {args.events:,} events of ~{size} B, 4 partitions, "
                  f"{args.repeats} repeats, {os.cpu_count()} cores; {title}")  # fmt: skip
            print("| repeat | bare kafka-python (poll + json.loads) | bare → PostgreSQL (COPY "
                  "raw JSON) | radwatch collect, 1 process | ratio to bare | ratio to bare → "
                  f"PostgreSQL | radwatch collect --processes {k} | ratio to bare "
                  "| ratio to bare → PostgreSQL |")  # fmt: skip
            print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            table = []
            for b, bp, o, m in rows:
                b_, bp_, o_, m_ = pick(b), pick(bp), pick(o), pick(m)
                table.append((b_, bp_, o_, o_ / b_, o_ / bp_, m_, m_ / b_, m_ / bp_))
            lines = [(str(i), t) for i, t in enumerate(table, 1)]
            if table:
                lines.append(("median", [statistics.median(t[c] for t in table)
                                         for c in range(8)]))  # fmt: skip
            for name, t in lines:
                print(f"| {name} | {t[0]:,.0f} | {t[1]:,.0f} | {t[2]:,.0f} | {t[3]:.2f} "
                      f"| {t[4]:.2f} | {t[5]:,.0f} | {t[6]:.2f} | {t[7]:.2f} |")  # fmt: skip
        print("(events/s; ratios in the same repeat; issue 19's target: ratio to bare ≥ 0.5)")
        if args.profile:
            topic, url = fresh_run(options, owner, args.events, "p")
            radwatch_collect(options, url, topic, args.events, data_dir, around_run=profiled())
    finally:
        embedded.services_down(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
