"""Soak: `radwatch collect` workers under a steady event rate for a long time (default 20 min).

Runs on the embedded broker and PostgreSQL in a temporary data dir. A producer thread
publishes inference events carrying a 128-float model embedding (and a radiologist label
for half of them, a little later) at a fixed rate; every `--sample` seconds the group's
consumer lag and each worker's resident memory (psutil, the worker process) are sampled.
Passes when the lag stays bounded (never above `--lag-bound-s` seconds' worth of events
after warm-up, and drained at the end) and each worker's RSS grows < 10% after warm-up.

    python bench/soak.py [--minutes 20] [--rate 100] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import Stack, Worker, event, settle  # noqa: E402

from collectors.kafka_io import KafkaOptions, consumer_lag, make_producer  # noqa: E402


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the producer started
    produced: int
    stored: int
    lag: int
    rss_mb: tuple[float, ...]  # one per worker


class SteadyProducer(threading.Thread):
    """Publishes `rate` inference events per second (plus labels for half), in 100 ms ticks."""

    def __init__(self, bootstrap: str, topics: dict[str, str], rate: float, dim: int) -> None:
        super().__init__(daemon=True)
        self.producer = make_producer(KafkaOptions(bootstrap))
        self.topics, self.rate, self.dim = topics, rate, dim
        self.sent = 0
        self.late = 0  # ticks that could not keep the rate (the bench machine, not radwatch)
        self.stop_event = threading.Event()

    def run(self) -> None:
        rng, start = random.Random(5), time.monotonic()
        pending: list[tuple[bytes, bytes]] = []
        while not self.stop_event.is_set():
            due = int((time.monotonic() - start) * self.rate)
            while self.sent < due:
                key, value = event(self.sent, rng, self.dim)
                self.producer.send(self.topics["inference"], key=key, value=value)
                if self.sent % 2 == 0:
                    pending.append((key, label_for(value)))
                self.sent += 1
            # Labels arrive ~100 events after their inference, as reads arrive after the AI.
            while len(pending) > 50:
                key, value = pending.pop(0)
                self.producer.send(self.topics["label"], key=key, value=value)
            if int((time.monotonic() - start) * self.rate) - self.sent > self.rate:
                self.late += 1
            time.sleep(0.1)
        self.producer.flush(timeout=60)
        self.producer.close()


def label_for(inference: bytes) -> bytes:
    doc = json.loads(inference)
    return json.dumps({
        "schema": "radwatch.label.v1", "event_id": str(uuid.uuid4()),
        "occurred_at": doc["occurred_at"], "model": {"name": doc["model"]["name"]},
        "study": {"study_uid": doc["study"]["study_uid"]}, "labels": {"nodule": 1},
        "source": "radiologist-report",
    }).encode()  # fmt: skip


def stored(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM inferences").fetchone()
    return int(row[0]) if row else 0


def rss_mb(worker: Worker) -> float:
    try:
        proc = psutil.Process(worker.proc.pid)
        return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20
    except psutil.NoSuchProcess:
        return float("nan")


def median_rss(samples: list[Sample], worker: int) -> float:
    return statistics.median(s.rss_mb[worker] for s in samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=100.0, help="inference events per second")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--embedding-dim", type=int, default=128)
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=None,
                        help="warm-up minutes (default: a quarter of the run, at most 5)")  # fmt: skip
    parser.add_argument("--lag-bound-s", type=float, default=30.0,
                        help="lag bound, in seconds of events at --rate")  # fmt: skip
    args = parser.parse_args()
    warmup_s = 60 * (args.warmup if args.warmup is not None else min(5.0, args.minutes / 4))
    duration = 60 * args.minutes
    stack = Stack.start()
    workers: list[Worker] = []
    producer: SteadyProducer | None = None
    try:
        topics = stack.topics(f"soak.{uuid.uuid4().hex[:6]}")
        url = stack.database(f"soak_{uuid.uuid4().hex[:6]}")
        group = f"soak-{uuid.uuid4().hex[:6]}"
        workers = [Worker(stack, url, topics, group, stack.data_dir / f"soak-{i}.log")
                   for i in range(args.workers)]  # fmt: skip
        settle(workers, topics["inference"])
        lag_options = KafkaOptions(stack.bootstrap, group_id=group)
        producer = SteadyProducer(stack.bootstrap, topics, args.rate, args.embedding_dim)
        producer.start()
        start, samples = time.monotonic(), []
        while (elapsed := time.monotonic() - start) < duration:
            time.sleep(min(args.sample, max(0.0, duration - elapsed)))
            for w in workers:
                if w.proc.poll() is not None:
                    raise RuntimeError(f"worker exited: {w.log.read_text()[-2000:]}")
            lag = sum(p["lag"] or 0 for parts in consumer_lag(lag_options, topics.values())
                      .values() for p in parts.values())  # fmt: skip
            samples.append(Sample(time.monotonic() - start, producer.sent, stored(url), lag,
                                  tuple(rss_mb(w) for w in workers)))  # fmt: skip
            s = samples[-1]
            print(f"{s.t:7.0f}s produced {s.produced:>8,} stored {s.stored:>8,} lag {s.lag:>6,} "
                  f"rss {' '.join(f'{r:.0f}' for r in s.rss_mb)} MB", file=sys.stderr)  # fmt: skip
        producer.stop_event.set()
        producer.join(timeout=120)
        produced, drain_start = producer.sent, time.monotonic()
        while stored(url) < produced and time.monotonic() - drain_start < 120:
            time.sleep(0.5)
        drain_s, final = time.monotonic() - drain_start, stored(url)
    finally:
        if producer is not None:
            producer.stop_event.set()
        for w in workers:
            w.stop()
        stack.close()

    after = [s for s in samples if s.t >= warmup_s]
    if len(after) < 6:
        raise SystemExit("run too short for a warm-up and six samples after it: raise --minutes")
    bound = args.rate * args.lag_bound_s
    max_lag = max(s.lag for s in after)
    lag_ok = max_lag <= bound and final == produced
    print(f"\nSoak, {args.minutes:g} min at {args.rate:g} inference events/s (+ labels for half), "
          f"{args.embedding_dim}-float embeddings, {args.workers} workers, 4 partitions, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; "
          f"warm-up {warmup_s / 60:g} min")  # fmt: skip
    print("\n| minute | produced | stored | lag | " +
          " | ".join(f"worker {i} RSS MB" for i in range(args.workers)) + " |")  # fmt: skip
    print("|---:|---:|---:|---:|" + "---:|" * args.workers)
    minute_rows = {max(1, math.ceil((s.t - args.sample / 2) / 60)): s for s in samples}
    for minute, s in sorted(minute_rows.items()):  # the last sample of each minute
        print(f"| {minute} | {s.produced:,} | {s.stored:,} | {s.lag:,} | "
              + " | ".join(f"{r:.0f}" for r in s.rss_mb) + " |")  # fmt: skip
    print("\n| check | measured | limit | ok |")
    print("|---|---:|---:|---|")
    print(f"| max consumer lag after warm-up (events) | {max_lag:,} | {bound:,.0f} "
          f"({args.lag_bound_s:g} s of events) | {'yes' if max_lag <= bound else 'NO'} |")  # fmt: skip
    print(f"| stored / produced after drain ({drain_s:.0f} s) | {final:,} / {produced:,} | equal | "
          f"{'yes' if final == produced else 'NO'} |")  # fmt: skip
    rss_ok = True
    for i in range(args.workers):
        base, end = median_rss(after[:3], i), median_rss(after[-3:], i)
        growth = (end - base) / base
        rss_ok &= growth < 0.10
        print(f"| worker {i} RSS growth after warm-up ({base:.0f} → {end:.0f} MB) | "
              f"{growth:+.1%} | < +10% | {'yes' if growth < 0.10 else 'NO'} |")  # fmt: skip
    if producer is not None and producer.late:
        print(f"\nproducer fell behind its rate in {producer.late} ticks (machine contention)")
    return 0 if lag_ok and rss_ok else 1


if __name__ == "__main__":
    sys.exit(main())
