"""What radwatch holds and how far behind it is: the data behind `radwatch status`.

Reads PostgreSQL (counts per table and model) and Kafka (consumer lag per partition);
other packages add their own sections by extending `collect_status`.
"""

from __future__ import annotations

from typing import Any

from collectors.kafka_io import KafkaOptions, consumer_lag
from monitor.store import db


def database_counts(database_url: str) -> dict[str, Any]:
    with db.connect(database_url) as conn:
        one = conn.execute(
            """SELECT (SELECT count(*) FROM inferences), (SELECT count(*) FROM labels),
                      (SELECT count(*) FROM dead_letters)"""
        ).fetchone()
        assert one is not None
        reasons: dict[str, int] = dict(
            conn.execute("SELECT reason, count(*) FROM dead_letters GROUP BY reason").fetchall()
        )
        models = {
            name: {"inferences": n, "first": str(first), "last": str(last), "reference": None}
            for name, n, first, last in conn.execute(
                """SELECT model_name, count(*), min(occurred_at), max(occurred_at)
                   FROM inferences GROUP BY model_name ORDER BY model_name"""
            ).fetchall()
        }
        # The latest frozen reference per model: a model without one is collected, not tested.
        for ref_id, name, n_events, digest, created in conn.execute(
            """SELECT DISTINCT ON (model_name) id, model_name, n_events, content_hash, created_at
               FROM drift_references ORDER BY model_name, created_at DESC"""
        ).fetchall():
            if name in models:
                models[name]["reference"] = {"id": ref_id, "events": n_events,
                                             "content_hash": digest, "created_at": str(created)}  # fmt: skip
        # Images waiting for the PACS (`radwatch embed --parked` fetches them), and models
        # whose latest detection or performance pass failed (the others went on).
        for name, n in conn.execute(
            "SELECT model_name, count(*) FROM image_fetch_queue GROUP BY model_name"
        ).fetchall():
            if name in models:
                models[name]["images_parked"] = n
        for name, component, error_class in conn.execute(
            """SELECT model_name, component, error_class FROM model_pass_status
               WHERE status = 'error' ORDER BY model_name, component"""
        ).fetchall():
            if name in models:
                models[name].setdefault("failing", {})[component] = error_class
        alerts = [
            {
                "id": a,
                "model": m,
                "signal": s,
                "stratum": f"{k}={v}",
                "state": st,
                "opened_at": str(t),
            }
            for a, m, s, k, v, st, t in conn.execute(
                """SELECT id, model_name, signal, stratum_kind, stratum_value, state, opened_at
                   FROM alerts WHERE state <> 'resolved' ORDER BY opened_at"""
            ).fetchall()
        ]
    return {
        "inferences_stored": one[0],
        "labels_stored": one[1],
        "dead_lettered": one[2],
        "dead_letter_reasons": reasons,
        "models": models,
        "open_alerts": alerts,
    }


def collect_status(database_url: str, kafka: KafkaOptions, topics: list[str]) -> dict[str, Any]:
    status = database_counts(database_url)
    lag = consumer_lag(kafka, topics)
    status["consumer_lag"] = {
        topic: {str(p): v for p, v in parts.items()} for topic, parts in lag.items()
    }
    status["consumer_lag_total"] = sum(
        v["lag"] or 0 for parts in lag.values() for v in parts.values()
    )
    return status
