"""A model's observed volume: studies and labelled studies a day, measured in event time.

Below the false-alarm budget (monitor/alerts/budget.py derives α, persistence and ARL0 from it)
and the plan's detectability check (monitor/plan/check.py), which must measure it the same way;
a query over the stored inferences and labels, nothing else.
"""

from __future__ import annotations

import math
from datetime import timedelta

import psycopg

from detectors.false_alarm_budget import Volume

# The volume is the model's last four weeks of event time, so a replay or backfill is
# measured at its own pace, not at the pace it was loaded.
VOLUME_SPAN = timedelta(days=28)
MIN_SPAN = timedelta(hours=1)  # a burst of a few minutes does not make a huge daily rate
MIN_EVENTS = 50  # fewer: the volume is assumed (ASSUMED_PER_DAY), and said so
ASSUMED_PER_DAY = 200.0  # a mid-sized department's daily studies for one model


def observed_volume(conn: psycopg.Connection, model: str) -> Volume:
    """Studies and labelled studies a day over the model's last VOLUME_SPAN of event time.

    Rounded to two significant figures, so that ordinary day-to-day variation does not
    produce a new derivation (and audit row) at every pass.
    """
    row = conn.execute(
        """WITH latest AS (SELECT max(occurred_at) AS t FROM inferences WHERE model_name = %s)
           SELECT count(*), min(i.occurred_at), max(i.occurred_at),
                  count(*) FILTER (WHERE EXISTS (SELECT 1 FROM labels l
                      WHERE l.model_name = i.model_name
                        -- a label by accession alone (migration 0013) counts for its study
                        AND l.study_pseudo IN (i.study_pseudo, 'accession:' || i.accession_pseudo)))
           FROM inferences i, latest
           WHERE i.model_name = %s AND i.occurred_at > latest.t - %s""",
        (model, model, VOLUME_SPAN),
    ).fetchone()
    n, first, last, labelled = row if row else (0, None, None, 0)
    if not n or n < MIN_EVENTS or first is None or last is None:
        return Volume(ASSUMED_PER_DAY, ASSUMED_PER_DAY * 0.7,
                      f"assumed: only {n or 0} studies stored (fewer than {MIN_EVENTS})")  # fmt: skip
    days = max(last - first, MIN_SPAN) / timedelta(days=1)
    per_day, labels = two_figures(n / days), two_figures(labelled / days)
    return Volume(per_day, labels,
                  f"{n:,} studies, {labelled:,} labelled, over {days:.3g} days of event time "
                  f"ending {last:%Y-%m-%d %H:%M}")  # fmt: skip


def two_figures(x: float) -> float:
    if x <= 0 or not math.isfinite(x):
        return 0.0
    return round(x, 1 - int(math.floor(math.log10(x))))
