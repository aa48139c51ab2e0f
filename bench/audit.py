"""Audit trail cost: radwatch's chained append, verify and export beside their bare limits.

Runs on an embedded PostgreSQL in a temporary data dir. Peers, in the same run:
- append: `audit.record` (advisory lock, read tail, jsonb round trip, SHA-256, INSERT), one
  transaction per row, beside a bare single-row INSERT of the same values into an unchained
  copy of the table, also one transaction per row;
- verify: `audit_verify.verify` (chain + checkpoint) beside just reading the rows;
- export: FHIR NDJSON (built and validated per row) beside CSV.

    python bench/audit.py [--rows 3000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from psycopg.types.json import Jsonb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.audit import trail  # noqa: E402
from monitor.audit.checkpoint import create_checkpoint, key_paths  # noqa: E402
from monitor.audit.export import export  # noqa: E402
from monitor.audit.verify import verify  # noqa: E402
from monitor.config import Settings  # noqa: E402
from monitor.services import embedded, runtime
from monitor.store import db


def row(i: int) -> dict:
    return {"actor": "radwatch", "action": "drift.window", "entity_type": "drift_window",
            "outcome": "ok",
            "entity_id": f"cxr-nodule/w{i}", "entity_version": "1",
            "refs": {"model_version": "1.4.2", "reference": "ab12cd", "detector": "mmd:9f3e"},
            "detail": {"n": 500, "p_value": 0.0123 + i * 1e-6, "stat": 0.31, "decision": "ok",
                       "strata": {"site": "north-general", "age_band": "60-69"}}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=3000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="radwatch-bench-audit-"))
    try:
        state = embedded.services_up(tmp, broker=False)
        # The database's owner: the bench migrates and creates a comparison table.
        assert state.owner_database_url
        url = state.owner_database_url
        runtime.migrate_schema(url)
        settings = Settings(database_url=url, data_dir=tmp)
        with db.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE bare_events (LIKE audit_events)")
            base = conn.execute("SELECT count(*) FROM audit_events").fetchone()
            assert base is not None
            t0 = time.perf_counter()
            for i in range(args.rows):
                trail.record(conn, **row(i))
            chained = time.perf_counter() - t0
            t0 = time.perf_counter()
            for i in range(args.rows):
                r = row(i)
                conn.execute(
                    f"INSERT INTO bare_events ({trail.COLUMNS}) VALUES "
                    "(%s, now(), %s, %s, %s, %s, %s, 'success', NULL, %s, %s, '', '')",
                    (i + 1, r["actor"], r["action"], r["entity_type"], r["entity_id"],
                     r["entity_version"], Jsonb(r["refs"]), Jsonb(r["detail"])),
                )  # fmt: skip
            bare = time.perf_counter() - t0
            create_checkpoint(conn, settings)
            paths = key_paths(settings)
            t0 = time.perf_counter()
            result = verify(conn, public_key=paths.public, checkpoint_file=paths.checkpoints)
            verified = time.perf_counter() - t0
            assert result.ok, result.summary()
            t0 = time.perf_counter()
            n_read = sum(1 for _ in trail.read_records(conn))
            read = time.perf_counter() - t0
            t0 = time.perf_counter()
            export(conn, tmp / "a.ndjson", fmt="fhir")
            fhir = time.perf_counter() - t0
            t0 = time.perf_counter()
            export(conn, tmp / "a.csv", fmt="csv")
            csv_s = time.perf_counter() - t0
        n = args.rows
        lines = [
            ("append, 1 row per transaction", n / chained, "bare INSERT", n / bare),
            ("verify (chain + checkpoint)", n_read / verified, "read rows", n_read / read),
            ("export FHIR R4 NDJSON", n_read / fhir, "export CSV", n_read / csv_s),
        ]
        print(f"audit trail, {n} rows (+{base[0]} from migrations), embedded PostgreSQL")
        print(f"{'operation':32} {'radwatch rows/s':>16} {'peer':>14} {'peer rows/s':>12} "
              f"{'ratio':>6}")  # fmt: skip
        for what, ours, peer, theirs in lines:
            print(f"{what:32} {ours:16.0f} {peer:>14} {theirs:12.0f} {ours / theirs:6.2f}")
    finally:
        embedded.services_down(tmp)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
