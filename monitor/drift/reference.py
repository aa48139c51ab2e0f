"""Frozen references: pick the validated events, fit and calibrate the detectors, persist both.

Between stored inferences and the detection scheduler (`radwatch reference build`): the
reference's event ids, per-stratum counts, content hash and embedder fingerprint are frozen;
the detector suite is fitted once, stored as data (a JSON manifest + numpy arrays, SHA-256
over both: detectors/drift/artifact.py) and loaded (never refitted) by detection. Loading runs no
stored code. References pickled by older releases are refused until an operator converts
them once with `radwatch reference migrate-pickles` (monitor/drift/reference_migration.py).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from detectors.drift import artifact, fitting
from detectors.drift.suite import DetectorSuite, SuiteConfig
from detectors.errors import DetectorError
from monitor.audit import trail
from monitor.drift.windows import CATEGORICAL_ATTRIBUTES, fetch_events, stratum_values, to_sample
from monitor.errors import RadwatchError

ARTIFACT_FORMAT = "manifest+npz"
PICKLED = (
    "reference {ref_id} is stored as a pickle by an older radwatch and pickles are never "
    "loaded: convert it once with `radwatch reference migrate-pickles`"
)


class ReferenceError(RadwatchError):
    """A reference cannot be built or loaded (too few events, corrupted artifact)."""


@dataclass(frozen=True)
class ReferenceInfo:
    id: int
    model: str
    n_events: int
    content_hash: str
    detector_fingerprint: str
    embedder_fingerprint: str | None
    strata_counts: dict[str, dict[str, int]]
    calibration: dict[str, Any]


def _embedder(conn: psycopg.Connection, model: str, event_ids: list[str]) -> str | None:
    """The default encoder most reference images were embedded with (None when none)."""
    if not conn.execute("SELECT to_regclass('embeddings') IS NOT NULL").fetchone()[0]:  # type: ignore[index]
        return None
    row = conn.execute(
        """SELECT e.embedder_fingerprint, count(*) FROM inferences i
           JOIN embeddings e ON e.image_ref = i.image_ref
           WHERE i.model_name = %s AND i.event_id = ANY(%s)
           GROUP BY 1 ORDER BY 2 DESC LIMIT 1""",
        (model, event_ids),
    ).fetchone()
    return str(row[0]) if row else None


def build(
    conn: psycopg.Connection,
    *,
    model: str,
    first: int | None = None,
    period: tuple[datetime, datetime] | None = None,
    config: SuiteConfig | None = None,
    actor: str = "radwatch",
) -> ReferenceInfo:
    """Freeze a reference from the model's first N events or a period, fit, store, audit."""
    config = config or SuiteConfig()
    if (first is None) == (period is None):
        raise ReferenceError("give either the first N events or a period")
    rows = (
        fetch_events(conn, model, limit=first)
        if first
        else fetch_events(
            conn,
            model,
            since=period[0],  # type: ignore[index]
            until=period[1],  # type: ignore[index]
        )
    )
    if len(rows) < config.min_reference:
        raise ReferenceError(
            f"model {model!r} has {len(rows)} events in the reference selection; "
            f"at least {config.min_reference} are needed"
        )
    ids = [r.event_id for r in rows]
    embedder = _embedder(conn, model, ids)
    if embedder:
        rows = fetch_events(conn, model, event_ids=ids, embedder=embedder)
    hashes: dict[str, str] = dict(conn.execute(
        "SELECT event_id, content_hash FROM inferences WHERE event_id = ANY(%s)", (ids,)
    ).fetchall())  # fmt: skip
    content_hash = hashlib.sha256(
        "\n".join(f"{i}:{hashes[i]}" for i in sorted(ids)).encode()
    ).hexdigest()
    counts: dict[str, Counter[str]] = {}
    for r in rows:
        for kind, value in stratum_values(r).items():
            counts.setdefault(kind, Counter())[str(value)] += 1
    strata_counts = {k: dict(c.most_common()) for k, c in counts.items()}
    try:
        suite = fitting.fit_suite(
            to_sample(rows), config, categorical_attributes=CATEGORICAL_ATTRIBUTES
        )
    except DetectorError as exc:
        raise ReferenceError(f"fitting detectors on the reference failed: {exc}") from exc
    manifest_json, arrays, sha = artifact.pack(suite)
    calibration = _calibration_doc(suite)
    from detectors.drift.suite import split_reference

    fit_idx, hold_idx = split_reference(len(rows), config.holdout_share, config.seed)
    with conn.transaction():
        conn.execute("UPDATE drift_references SET active = false WHERE model_name = %s AND active",
                     (model,))  # fmt: skip
        ref_id = conn.execute(
            """INSERT INTO drift_references (model_name, created_by, period_from, period_to,
                   first_n, n_events, n_fit, n_holdout, last_occurred_at, last_event_id,
                   strata_counts, content_hash, embedder_fingerprint, detector_fingerprint,
                   config, calibration)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
               RETURNING id""",
            (model, actor, period[0] if period else None, period[1] if period else None, first,
             len(rows), suite.n_fit, suite.n_holdout, rows[-1].occurred_at, rows[-1].event_id,
             Jsonb(strata_counts), content_hash, embedder, suite.fingerprint,
             Jsonb(json.loads(json.dumps(asdict(config)))), Jsonb(calibration)),
        ).fetchone()[0]  # type: ignore[index]  # fmt: skip
        role = {i: "fit" for i in fit_idx.tolist()} | {i: "holdout" for i in hold_idx.tolist()}
        with conn.cursor().copy(
            "COPY drift_reference_members (reference_id, event_id, role) FROM STDIN"
        ) as copy:
            for i, r in enumerate(rows):
                copy.write_row((ref_id, r.event_id, role[i]))
        store_artifact(conn, ref_id, suite, manifest_json, arrays, sha)
        _store_fits(conn, ref_id, suite)
        conn.execute(
            """INSERT INTO drift_cursors (model_name, reference_id, window_seq, window_at,
                   window_event_id, online_at, online_event_id)
               VALUES (%s, %s, 0, %s, %s, %s, %s)
               ON CONFLICT (model_name) DO UPDATE SET reference_id = EXCLUDED.reference_id,
                   window_seq = 0, window_at = EXCLUDED.window_at,
                   window_event_id = EXCLUDED.window_event_id, online_at = EXCLUDED.online_at,
                   online_event_id = EXCLUDED.online_event_id, updated_at = now()""",
            (model, ref_id, rows[-1].occurred_at, rows[-1].event_id, rows[-1].occurred_at,
             rows[-1].event_id),
        )  # fmt: skip
        trail.record(
            conn, actor=actor, action="reference.built", entity_type="drift_reference",
            entity_id=str(ref_id), entity_version=content_hash[:16],
            refs={"model": model, "content_sha256": content_hash, "artifact_sha256": sha,
                  "detector_fingerprint": suite.fingerprint, "embedder": embedder},
            detail={"n_events": len(rows), "n_fit": suite.n_fit, "n_holdout": suite.n_holdout,
                    "first_n": first, "period": [p.isoformat() for p in period] if period else None,
                    "strata_counts": strata_counts, "calibration": calibration},
        )  # fmt: skip
    return ReferenceInfo(ref_id, model, len(rows), content_hash, suite.fingerprint, embedder,
                         strata_counts, calibration)  # fmt: skip


def _calibration_doc(suite: DetectorSuite) -> dict[str, Any]:
    cal = suite.calibration
    if cal is None:
        return {}
    return {
        "windows": cal.windows,
        "window_size": cal.window_size,
        "alpha": suite.config.alpha,
        "false_alarm": dict(cal.false_alarm),
        "nulls": {k: [v.mean, v.sd] for k, v in cal.nulls.items()},
    }


def _store_fits(conn: psycopg.Connection, ref_id: int, suite: DetectorSuite) -> None:
    cal = suite.calibration
    for (kind, value), fitted in suite.strata.items():
        for d in fitted.detectors:
            whole = (kind, value) == ("all", "all")
            null = cal.nulls.get(d.name) if cal and whole else None
            conn.execute(
                """INSERT INTO drift_detector_fits (reference_id, detector, signal, stratum_kind,
                       stratum_value, n_reference, false_alarm_rate, calibration_windows,
                       null_mean, null_sd, fingerprint)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                (ref_id, d.name, d.signal, kind, value, fitted.n_reference,
                 cal.false_alarm.get(d.name) if cal and whole else None,
                 cal.windows if cal and whole else None, null.mean if null else None,
                 null.sd if null else None, suite.fingerprint),
            )  # fmt: skip
    if suite.online is not None:
        conn.execute(
            """INSERT INTO drift_detector_fits (reference_id, detector, signal, stratum_kind,
                   stratum_value, n_reference, fingerprint)
               VALUES (%s, %s, %s, 'all', 'all', %s, %s)""",
            (
                ref_id,
                suite.online.name,
                suite.online.signal,
                suite.config.online_reference,
                suite.fingerprint,
            ),
        )


def artifact_summary(suite: DetectorSuite, manifest_json: bytes, arrays: bytes) -> dict:
    """The queryable summary kept in the `manifest` jsonb column (the artifact is the bytes)."""
    return {"format": ARTIFACT_FORMAT, "schema": artifact.SCHEMA,
            "backend": suite.backend_version, "fingerprint": suite.fingerprint,
            "strata": [list(k) for k in suite.strata], "online": suite.online is not None,
            "bytes": len(manifest_json) + len(arrays)}  # fmt: skip


def store_artifact(conn: psycopg.Connection, ref_id: int, suite: DetectorSuite,
                   manifest_json: bytes, arrays: bytes, sha: str) -> None:  # fmt: skip
    """Insert or replace the reference's artifact row (replacing clears a pickled blob)."""
    conn.execute(
        """INSERT INTO drift_reference_artifacts (reference_id, manifest, sha256, blob, format,
               manifest_json, arrays) VALUES (%s, %s, %s, NULL, %s, %s, %s)
           ON CONFLICT (reference_id) DO UPDATE SET manifest = EXCLUDED.manifest,
               sha256 = EXCLUDED.sha256, blob = NULL, format = EXCLUDED.format,
               manifest_json = EXCLUDED.manifest_json, arrays = EXCLUDED.arrays""",
        (ref_id, Jsonb(artifact_summary(suite, manifest_json, arrays)), sha, ARTIFACT_FORMAT,
         manifest_json, arrays),
    )  # fmt: skip


def active(conn: psycopg.Connection, model: str) -> tuple[ReferenceInfo, DetectorSuite] | None:
    """The model's active reference and its fitted suite, verified against the stored hash."""
    row = conn.execute(
        """SELECT r.id, r.n_events, r.content_hash, r.detector_fingerprint,
                  r.embedder_fingerprint, r.strata_counts, r.calibration, a.sha256, a.format,
                  a.manifest_json, a.arrays
           FROM drift_references r JOIN drift_reference_artifacts a ON a.reference_id = r.id
           WHERE r.model_name = %s AND r.active""",
        (model,),
    ).fetchone()
    if row is None:
        return None
    ref_id, n, chash, dfp, efp, counts, cal, sha, fmt, manifest_json, arrays = row
    if fmt != ARTIFACT_FORMAT:
        raise ReferenceError(PICKLED.format(ref_id=ref_id))
    try:
        suite = artifact.unpack(bytes(manifest_json), bytes(arrays), sha)
    except artifact.ArtifactError as exc:
        raise ReferenceError(f"reference {ref_id}: {exc}") from exc
    return ReferenceInfo(int(ref_id), model, int(n), chash, dfp, efp, counts, cal), suite


def models_with_reference(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT model_name FROM drift_references WHERE active ORDER BY model_name"
    ).fetchall()]  # fmt: skip
