"""A scrape stays cheap at a large site: 10 million stored events, /metrics under 100 ms.

The event tables are filled with INSERT … SELECT generate_series (triggers off and the
secondary indexes built after the rows, as a bulk load would), then the counters are rebuilt
by the migration's own backfill
(`radwatch_rebuild_counters`), so the database is what an upgraded large site holds. A real
`radwatch metrics` process serves /metrics; the test times HTTP GETs the way Prometheus
scrapes (the median of SCRAPES after one warm-up that opens the database connection), and
prints the same section timed with the pre-0012 count(*) queries beside it (the peer; one
run each, bounded by PEER_TIMEOUT_S). n = N_INFERENCES + N_LABELS + N_DEAD = 10,000,000.
"""

from __future__ import annotations

import signal
import statistics
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import psycopg
from conftest import REPO, radwatch_cmd, settings_env
from support import free_port

N_INFERENCES = 5_000_000
N_LABELS = 1_500_000
N_DEAD = 3_500_000
LIMIT_S = 0.100  # the bound for one scrape
SCRAPES = 5
PEER_TIMEOUT_S = 60

# The ingest section as it was before migration 0012: count(*) over the event tables.
OLD_INGEST_SQL = (
    """SELECT model_name, site, count(*), extract(epoch FROM max(received_at))
       FROM inferences GROUP BY model_name, site ORDER BY count(*) DESC, model_name, site""",
    "SELECT model_name, count(*) FROM labels GROUP BY model_name",
    """SELECT i.model_name, avg(CASE WHEN EXISTS (SELECT 1 FROM labels l
              WHERE l.model_name = i.model_name AND l.study_pseudo = i.study_pseudo)
              THEN 1.0 ELSE 0.0 END)
       FROM inferences i GROUP BY i.model_name""",
    "SELECT reason, count(*) FROM dead_letters GROUP BY reason",
)


# Each table's rows: INSERT … SELECT generate_series, the table's (and its indexes') share of
# the load. `%%` is psycopg's escaped `%`.
LOAD_SQL = {
    "inferences": (
        """INSERT INTO inferences (event_id, content_hash, model_name, model_version, site,
               occurred_at, received_at, study_pseudo, scores, latency_ms, kafka_topic,
               kafka_partition, kafka_offset)
           SELECT 'ev-' || g, 'h', 'model-' || (g %% 4), '1', 'site-' || (g %% 20),
                  timestamptz '2026-01-01' + g * interval '3 second',
                  timestamptz '2026-01-01' + g * interval '3 second' + interval '2 second',
                  'study-' || (g / 8), '{"nodule": 0.5}', 20 + (g %% 1980),
                  'inferences', g %% 16, g
           FROM generate_series(1, %s) AS g""",
        N_INFERENCES,
    ),
    "labels": (
        """INSERT INTO labels (event_id, content_hash, model_name, study_pseudo, labels,
               occurred_at, kafka_topic, kafka_partition, kafka_offset)
           SELECT 'lab-' || g, 'h', 'model-' || (g %% 4), 'study-' || (g / 2), '{"nodule": 1}',
                  timestamptz '2026-02-01', 'labels', g %% 16, g
           FROM generate_series(1, %s) AS g""",
        N_LABELS,
    ),
    "dead_letters": (
        """INSERT INTO dead_letters (kafka_topic, kafka_partition, kafka_offset, reason,
               message, payload_sha256, payload_size)
           SELECT 'inferences', g %% 16, g, 'reason_' || (g %% 5), 'm', 'x', 1
           FROM generate_series(1, %s) AS g""",
        N_DEAD,
    ),
}
# Two connections (2 cores on CI): the largest table on one, the other two on the other.
LOAD_LANES = (("inferences",), ("labels", "dead_letters"))
# A bulk load's session settings: the rebuild's aggregates in memory rather than spilled to
# temporary files, and room for the index builds' sorts. They change no result.
BULK_SETTINGS = ("SET work_mem = '256MB'", "SET maintenance_work_mem = '512MB'")

INDEXES_SQL = """SELECT c.relname, i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid),
                        i.indisunique OR i.indisprimary
                 FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
                 WHERE c.relname IN ('inferences', 'labels', 'dead_letters')
                 ORDER BY 1, 2"""


def load_lane(url: str, tables: tuple[str, ...], indexes: list[tuple[str, str, str]]) -> None:
    """Fill `tables`, then build their secondary indexes (as the migrations define them)."""
    with psycopg.connect(url, autocommit=True) as conn:
        for setting in BULK_SETTINGS:
            conn.execute(setting)
        conn.execute("SET session_replication_role = replica")  # a bulk load: triggers off
        for table in tables:
            sql, n = LOAD_SQL[table]
            conn.execute(sql, (n,))
        for table, _, definition in indexes:
            if table in tables:
                conn.execute(definition)


def load(url: str) -> None:
    """10M rows into the real tables: 4 models, 20 sites, 16 partitions, a study per 8
    inferences and per 2 labels, latencies 20-2000 ms, 5 dead-letter reasons.

    Loaded as a bulk load is: triggers off, the secondary (non-unique) indexes dropped first
    and built again from the migrations' own definitions once the rows are in (one sort
    instead of 10M scattered inserts; the unique ones stay, as the rows must satisfy them), the
    tables split over two connections; then the counters by the migration's backfill. The
    indexes are checked to be exactly the ones the migrations created."""
    with psycopg.connect(url, autocommit=True) as conn:
        before = conn.execute(INDEXES_SQL).fetchall()
        secondary = [(table, name, definition) for table, name, definition, unique in before
                     if not unique]  # fmt: skip
        # Unlogged while loading (a throwaway database): less WAL, the same tables (labels
        # stay logged: label corrections reference them).
        conn.execute("ALTER TABLE inferences SET UNLOGGED")
        conn.execute("ALTER TABLE dead_letters SET UNLOGGED")
        for _, name, _ in secondary:
            conn.execute(f"DROP INDEX {name}")
        started = time.perf_counter()
        with ThreadPoolExecutor(len(LOAD_LANES)) as pool:
            for lane in [pool.submit(load_lane, url, tables, secondary) for tables in LOAD_LANES]:
                lane.result()
        loaded = time.perf_counter()
        assert conn.execute(INDEXES_SQL).fetchall() == before  # the real indexes, all of them
        for setting in BULK_SETTINGS:
            conn.execute(setting)
        conn.execute("SELECT radwatch_rebuild_counters()")  # the migration's backfill
        print(f"\nloaded and indexed in {loaded - started:.0f} s, counters rebuilt in "
              f"{time.perf_counter() - loaded:.0f} s")  # fmt: skip


def get(url: str) -> tuple[float, bytes]:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as reply:
        body = reply.read()
    return time.perf_counter() - start, body


def old_ingest_seconds(url: str) -> float | None:
    """The pre-0012 ingest section's queries, once (None past PEER_TIMEOUT_S)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"SET statement_timeout = {PEER_TIMEOUT_S * 1000}")
        start = time.perf_counter()
        try:
            for sql in OLD_INGEST_SQL:
                conn.execute(sql).fetchall()
        except psycopg.errors.QueryCanceled:
            return None
        return time.perf_counter() - start


def test_scrape_over_ten_million_events_is_under_100_ms(settings, tmp_path) -> None:
    load(settings.database_url)
    with psycopg.connect(settings.database_url) as conn:
        stored = conn.execute("SELECT sum(events) FROM ingest_counts").fetchone()
        dead = conn.execute("SELECT sum(letters) FROM dead_letter_counts").fetchone()
    assert stored and dead and int(stored[0]) + int(dead[0]) == 10_000_000

    addr = f"127.0.0.1:{free_port()}"
    log = (tmp_path / "metrics.log").open("w")
    proc = subprocess.Popen(radwatch_cmd("metrics", "--addr", addr, "--no-webhook"),
                            env=settings_env(settings), cwd=REPO, stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip
    try:
        url = f"http://{addr}/metrics"
        end = time.monotonic() + 120
        while True:
            try:
                _, body = get(url)  # the warm-up: connects to PostgreSQL
                break
            except OSError:
                assert proc.poll() is None, (tmp_path / "metrics.log").read_text()[-3000:]
                assert time.monotonic() < end, "radwatch metrics did not answer"
                time.sleep(0.3)
        assert b'radwatch_metrics_source_up{source="ingest"} 1.0' in body
        assert b"radwatch_inferences_stored_total" in body
        assert b"radwatch_model_latency_seconds_bucket" in body
        times = [get(url)[0] for _ in range(SCRAPES)]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    median = statistics.median(times)
    peer = old_ingest_seconds(settings.database_url)
    shown = f"{peer * 1000:.0f} ms" if peer is not None else f"> {PEER_TIMEOUT_S} s"
    print(f"\nscrape of /metrics over {N_INFERENCES + N_LABELS + N_DEAD:,} events: "
          f"median {median * 1000:.1f} ms of {SCRAPES} (limit {LIMIT_S * 1000:.0f} ms); "
          f"pre-0012 count(*) ingest queries alone: {shown}")  # fmt: skip
    assert median < LIMIT_S, times
