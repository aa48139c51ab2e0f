"""Scrape-time section for readers' interactions with AI results (issue 17).

One section of monitor/metrics/scrape.py's DatabaseCollector, in its own module so the scrape
module stays small. It reads migration 0015: interactions by model and action from the
counter table `interaction_counts` (no scan of `interactions`), the time-to-read histogram
from `histogram_totals` (series `time_to_read`), the acceptance and override rates of the
last 30 days, and the signal "AI-positive study never viewed". Each query is bounded by an
index on (model_name, occurred_at), probed per model named in the counters.

"Never viewed": per model, the inferences of the last NEVER_VIEWED_DAYS days, older than
NEVER_VIEWED_GRACE (a constant, 24 hours: a read the same day is normal, not a miss), with a
score at or above its threshold for any finding (the event's threshold, else 0.5 as in
monitor.performance), whose study has no interaction that saw the result: an interaction of
the same model matching the study (its UID pseudonym, or its accession pseudonym for one sent
by accession) with coalesce(viewed, true). A positive AI result nobody opened is a finding
the deployment was meant to surface and did not reach a reader (an integration or worklist
failure that no accuracy metric shows).

Family names follow monitor.metrics.names' conventions (radwatch_ prefix, counters without
`_total`, `_ratio` for shares, `_seconds` for durations); they are defined here because
names.py belongs to another change.
"""

from __future__ import annotations

from datetime import timedelta

import psycopg

from monitor.metrics.families import Family, Histogram
from monitor.metrics.names import INTERACTIONS, POSITIVE_NEVER_VIEWED, PREFIX
from monitor.store import counters

INTERACTION_ACCEPTANCE = f"{PREFIX}_interaction_acceptance_ratio"  # last 30 days, by model
INTERACTION_OVERRIDE = f"{PREFIX}_interaction_override_ratio"  # last 30 days, by model
INTERACTION_DECISIONS = f"{PREFIX}_interaction_decisions"  # gauge: the rates' denominator
TIME_TO_READ_SECONDS = f"{PREFIX}_time_to_read_seconds"  # histogram by model

TIME_TO_READ_SERIES = "time_to_read"  # histogram_bounds.series (migration 0015)
RATE_DAYS = 30
NEVER_VIEWED_DAYS = 7
NEVER_VIEWED_GRACE = timedelta(hours=24)
DEFAULT_THRESHOLD = 0.5  # as monitor.performance.evaluation when an event names none

_NEVER_VIEWED = """
SELECT i.model_name, count(*)
FROM inferences i
WHERE i.model_name = ANY(%(models)s)
  AND i.occurred_at >= now() - make_interval(days => %(days)s)
  AND i.occurred_at < now() - %(grace)s
  AND EXISTS (SELECT 1 FROM jsonb_each(i.scores) AS s
              WHERE jsonb_typeof(s.value) = 'number'
                AND (s.value)::float8 >= coalesce((i.thresholds ->> s.key)::float8, %(thr)s))
  AND NOT EXISTS (SELECT 1 FROM interactions x
                  WHERE x.model_name = i.model_name AND x.study_pseudo = i.study_pseudo
                    AND coalesce(x.viewed, true))
  AND NOT EXISTS (SELECT 1 FROM interactions x
                  WHERE i.accession_pseudo IS NOT NULL AND x.model_name = i.model_name
                    AND x.accession_pseudo = i.accession_pseudo AND coalesce(x.viewed, true))
GROUP BY i.model_name
"""


def interaction_section(conn: psycopg.Connection) -> list[Family | Histogram]:
    total = Family(INTERACTIONS, "Readers' interactions with AI results stored, by action "
                   "(radwatch.interaction.v1).", ("model", "action"), counter=True)  # fmt: skip
    for model, action, n in conn.execute(
        "SELECT model_name, action, sum(events) FROM interaction_counts GROUP BY 1, 2 "
        "ORDER BY sum(events) DESC, 1, 2"
    ).fetchall():
        total.add((model, action), n)
    interacted = [m for (m,) in conn.execute("SELECT DISTINCT model_name FROM interaction_counts")]
    accept = Family(INTERACTION_ACCEPTANCE, "Share of readers' decisions on AI results that "
                    "accepted them, last 30 days.", ("model",))  # fmt: skip
    override = Family(INTERACTION_OVERRIDE, "Share of readers' decisions on AI results that "
                      "overrode them, last 30 days.", ("model",))  # fmt: skip
    decisions = Family(INTERACTION_DECISIONS, "Readers' decisions (accepted, overridden, "
                       "dismissed) in the last 30 days.", ("model",), summed=True)  # fmt: skip
    for model, n, accepted, overridden in conn.execute(
        # The actions as parameters: `interactions.action`, not audit actions (a literal
        # `action = '…'` here reads as one to tests/monitor/audit/test_audit_actions.py).
        """SELECT model_name, count(*), count(*) FILTER (WHERE action = %s),
                  count(*) FILTER (WHERE action = %s)
           FROM interactions
           WHERE model_name = ANY(%s) AND occurred_at >= now() - make_interval(days => %s)
             AND action <> 'viewed'
           GROUP BY 1""",
        ("accepted", "overridden", interacted, RATE_DAYS),
    ).fetchall():
        accept.add((model,), accepted / n)
        override.add((model,), overridden / n)
        decisions.add((model,), n)
    read_time = Histogram(TIME_TO_READ_SECONDS, "Seconds from an AI result's presentation to "
                          "the reader's action, as reported.", ("model",))  # fmt: skip
    for h in _histograms(conn):
        read_time.add((h.model,), h)
    never = Family(POSITIVE_NEVER_VIEWED, "AI-positive inferences of the last 7 days, older "
                   "than 24 hours, whose study no reader viewed.", ("model",))  # fmt: skip
    models = [m for (m,) in conn.execute(
        "SELECT DISTINCT model_name FROM ingest_counts WHERE kind = 'inference'")]  # fmt: skip
    for model in models:
        # A model with no positive left unviewed reads 0, not absent: an alert can test it
        # (a gauge keeps the larger value, so the count below replaces this 0).
        never.add((model,), 0.0)
    for model, n in conn.execute(
        _NEVER_VIEWED,
        {"models": models, "days": NEVER_VIEWED_DAYS, "grace": NEVER_VIEWED_GRACE,
         "thr": DEFAULT_THRESHOLD},
    ).fetchall():  # fmt: skip
        never.add((model,), n)
    return [total, accept, override, decisions, read_time, never]


def _histograms(conn: psycopg.Connection) -> list[counters.Histogram]:
    """The time-to-read histogram per model, summed over shards (as counters.read does)."""
    out = []
    for model, bounds, count, total, buckets in conn.execute(
        """SELECT t.model_name, b.bounds, sum(t.count), sum(t.sum), array_agg(t.buckets)
           FROM histogram_totals t JOIN histogram_bounds b USING (series)
           WHERE t.series = %s GROUP BY t.model_name, b.bounds ORDER BY 1""",
        (TIME_TO_READ_SERIES,),
    ).fetchall():
        per_bucket = [sum(column) for column in zip(*buckets, strict=True)]
        running, cumulative = 0, []
        for n in per_bucket[:-1]:
            running += n
            cumulative.append(running)
        out.append(counters.Histogram(TIME_TO_READ_SERIES, model, tuple(map(float, bounds)),
                                      tuple(cumulative), int(count), float(total)))  # fmt: skip
    return out
