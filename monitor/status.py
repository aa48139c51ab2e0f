"""What radwatch holds and how far behind it is: the data behind `radwatch status`.

Reads PostgreSQL (counts per table and model) and Kafka (consumer lag per partition);
other packages add their own sections by extending `collect_status`.
"""

from __future__ import annotations

from typing import Any

from collectors.kafka_io import KafkaOptions, consumer_lag
from monitor import db


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
            name: {"inferences": n, "first": str(first), "last": str(last)}
            for name, n, first, last in conn.execute(
                """SELECT model_name, count(*), min(occurred_at), max(occurred_at)
                   FROM inferences GROUP BY model_name ORDER BY model_name"""
            ).fetchall()
        }
    return {
        "inferences_stored": one[0],
        "labels_stored": one[1],
        "dead_lettered": one[2],
        "dead_letter_reasons": reasons,
        "models": models,
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
