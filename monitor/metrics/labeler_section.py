"""Scrape-time section for the labeler watch and the discrepancy signal (issue 17).

One section of monitor/metrics/scrape.py's DatabaseCollector, kept in its own module so the
scrape module stays small: reads migration 0014's `label_reviews` (agreement of the reviewed
report-derived labels over the last 30 days, per model and finding; the queue's depth) and the
latest window of `discrepancy_results` per model, finding and stratum, and returns bounded
families (monitor.metrics.families). The alert RadwatchLabelerAgreementLow
(deploy/prometheus/rules) reads the first two.
"""

from __future__ import annotations

import psycopg

from monitor.metrics import names
from monitor.metrics.families import Family

AGREEMENT_DAYS = 30  # the same window as monitor.labelwatch.review.AGREEMENT_DAYS
DISCREPANCY_LABELS = ("model", "finding", "stratum_kind", "stratum_value")


def labeler_section(conn: psycopg.Connection) -> list[Family]:
    ratio = Family(names.LABELER_AGREEMENT, "Share of reviewed report-derived labels a "
                    "radiologist confirmed, last 30 days.", ("model", "finding"))  # fmt: skip
    reviews = Family(names.LABELER_REVIEWS, "Report-derived labels reviewed by a radiologist "
                      "in the last 30 days.", ("model", "finding"), summed=True)  # fmt: skip
    # The query of monitor.labelwatch.review.agreement, repeated rather than imported: the
    # review module imports the ingest store, which imports these metrics (a cycle).
    for model, finding, n, agreed in conn.execute(
        """SELECT r.model_name, f.key, count(*),
                  count(*) FILTER (WHERE r.answers -> f.key = f.value)
           FROM label_reviews r, jsonb_each(r.derived) AS f
           WHERE r.state IN ('agree', 'disagree')
             AND r.reviewed_at > now() - make_interval(days => %s)
           GROUP BY 1, 2""",
        (AGREEMENT_DAYS,),
    ).fetchall():
        ratio.add((model, finding), agreed / n if n else None)
        reviews.add((model, finding), n)
    depth = Family(names.LABELER_REVIEW_QUEUE, "Report-derived labels waiting for a "
                    "radiologist's review (radwatch labels review).", ("model",),
                    summed=True)  # fmt: skip
    for model, n in conn.execute(
        "SELECT model_name, count(*) FROM label_reviews WHERE state = 'queued' GROUP BY 1"
    ).fetchall():
        depth.add((model,), n)
    rate = Family(names.DISCREPANCY_RATE, "AI call vs report label: share of discrepant "
                   "calls in the latest window.", DISCREPANCY_LABELS)  # fmt: skip
    flagged = Family(names.DISCREPANCY_FLAGGED, "1 when the latest window's discrepancy rate "
                      "rose significantly above the reference period's.",
                      DISCREPANCY_LABELS)  # fmt: skip
    for model, finding, kind, value, r, flag in conn.execute(
        """SELECT DISTINCT ON (model_name, finding, stratum_kind, stratum_value)
                  model_name, CASE WHEN finding = '*' THEN 'all' ELSE finding END,
                  stratum_kind, stratum_value, rate, flagged
           FROM discrepancy_results WHERE window_kind <> 'reference'
           ORDER BY model_name, finding, stratum_kind, stratum_value,
                    window_end DESC, window_index DESC"""
    ).fetchall():
        labels = (model, finding, kind, value)
        rate.add(labels, r)
        flagged.add(labels, 1.0 if flag else 0.0)
    return [ratio, reviews, depth, rate, flagged]
