"""Rebuilding the reference keeps acknowledged alerts: same id, same acknowledgement.

A rebuild moves the scheduler's cursor back to the new reference's last event, so the
windows after it are judged again, including the quiet ones from before the shift. Those
end before the alerts' onset and must not resolve them; the windows after the onset still
fire and keep the acknowledged alerts open, with no unacknowledged duplicate.
Seeded stream of tests/drift_streams.py: 1,400 events, onset at event 1,000, window 100.
"""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from drift_streams import CONFIG, MODEL, ONSET, START, insert_stream

from monitor.alerts import lifecycle
from monitor.drift import reference
from monitor.drift.scheduler import DetectionConfig, Scheduler


def _detect(url: str) -> None:
    with Scheduler(url, DetectionConfig(), actor="test-detect") as scheduler:
        scheduler.run_once()


@pytest.mark.parametrize("rebuild_first", [600, 500], ids=["same-range", "other-range"])
def test_rebuild_keeps_acknowledged_alerts(database_url: str, rebuild_first: int) -> None:
    url = database_url
    insert_stream(url, 1400, seed=5, onset=ONSET)
    with psycopg.connect(url, autocommit=True) as conn:
        reference.build(conn, model=MODEL, first=600, config=CONFIG, actor="test")
    _detect(url)
    onset_time = START + timedelta(minutes=10 * ONSET)
    with psycopg.connect(url, autocommit=True) as conn:
        drift = [a for a in lifecycle.list_alerts(conn, model=MODEL)
                 if a.signal != "online" and a.state == lifecycle.OPEN]  # fmt: skip
        assert drift, "no drift alert opened after the onset"
        assert all(a.onset is not None and a.onset >= onset_time - timedelta(hours=17)
                   for a in drift)  # fmt: skip
        for a in drift:
            lifecycle.acknowledge(conn, a.id, by="qa.lead", note="vendor rollout, tracking")
        reference.build(conn, model=MODEL, first=rebuild_first, config=CONFIG, actor="test")
        cursor_at = conn.execute(
            "SELECT window_at FROM drift_cursors WHERE model_name = %s", (MODEL,)
        ).fetchone()[0]
        assert cursor_at < onset_time  # the rebuild rewinds: pre-onset windows are judged again

    _detect(url)

    with psycopg.connect(url, autocommit=True) as conn:
        for a in drift:
            now = lifecycle.get(conn, a.id)
            what = (a.signal, a.stratum_value, now.resolved_note)
            assert now.state == lifecycle.ACKNOWLEDGED, what
            assert now.acknowledged_by == "qa.lead"
            same = [b.id for b in lifecycle.list_alerts(conn, model=MODEL)
                    if (b.stratum_kind, b.stratum_value, b.signal)
                    == (a.stratum_kind, a.stratum_value, a.signal)]  # fmt: skip
            assert same == [a.id], (a.signal, a.stratum_value, same)
        resolved = conn.execute(
            """SELECT count(*) FROM audit_events WHERE action = 'alert.resolved'
                 AND entity_id = ANY(%s)""",
            ([str(a.id) for a in drift],),
        ).fetchone()[0]
        assert resolved == 0
