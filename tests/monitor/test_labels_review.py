"""`radwatch labels review` (monitor/labelwatch/review.py): the queue is a keyed, reproducible
share of report-derived labels; answers piped on stdin are stored, audited, a disagreement
becomes a corrected label that supersedes the derived one, and agreement shows on a scrape.

Real PostgreSQL (the embedded server, a fresh migrated database per test); the derived labels
are inserted as the collector stores them (source "report-labeler", labeler provenance), so
no broker round trip is needed to test the review itself.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from conftest import REPO, radwatch_cmd, settings_env
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from psycopg.types.json import Jsonb

from monitor.config import Settings
from monitor.labelwatch import review
from monitor.metrics import names
from monitor.metrics.scrape import DatabaseCollector

LABELER = {"name": "radwatch-negex", "version": "1.0.0", "fingerprint": "ab" * 32}
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def derived_labels(url: str, n: int, *, model: str = "cxr-nodule") -> list[tuple[str, str]]:
    """`n` studies, each with an inference and a derived label {nodule: 1, pneumothorax: 0};
    returns (label event id, study pseudonym) in insertion order."""
    out = []
    with psycopg.connect(url) as conn:
        for i in range(n):
            study = uuid.uuid4().hex
            event = f"derived-{i}-{uuid.uuid4().hex[:8]}"
            at = T0 + timedelta(minutes=i)
            conn.execute(
                """INSERT INTO inferences (event_id, content_hash, model_name, model_version,
                       site, occurred_at, study_pseudo, scores, thresholds, kafka_topic,
                       kafka_partition, kafka_offset)
                   VALUES (%s, 'h', %s, '2.0', 'north', %s, %s, %s, %s, 't', 0, %s)""",
                (str(uuid.uuid4()), model, at, study, Jsonb({"nodule": 0.8}),
                 Jsonb({"nodule": 0.5}), i),
            )  # fmt: skip
            conn.execute(
                """INSERT INTO labels (event_id, content_hash, model_name, study_pseudo, labels,
                       source, occurred_at, kafka_topic, kafka_partition, kafka_offset, labeler)
                   VALUES (%s, 'h', %s, %s, %s, 'report-labeler', %s, 'l', 0, %s, %s)""",
                (event, model, study, Jsonb({"nodule": 1, "pneumothorax": 0}),
                 at + timedelta(hours=2), i, Jsonb(LABELER)),
            )  # fmt: skip
            out.append((event, study))
    return out


def review_cli(settings: Settings, answers: str, *args: str) -> subprocess.CompletedProcess:
    env = {**settings_env(settings), "RADWATCH_LABEL_REVIEW_SHARE": "1"}
    return subprocess.run(radwatch_cmd("labels", "review", *args), input=answers, env=env,
                          capture_output=True, text=True, timeout=120, cwd=REPO)  # fmt: skip


def scrape(url: str) -> dict[str, list]:
    registry = CollectorRegistry()
    collector = DatabaseCollector(url)
    registry.register(collector)
    try:
        text = generate_latest(registry).decode()
    finally:
        collector.close()
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


def test_the_queue_is_a_keyed_reproducible_share():
    """5% of 4,000 ids: within 4 binomial SE of 200; the same key picks the same ids; another
    key picks other ids (a producer without the key cannot tell which of its labels are
    reviewed)."""
    ids = [f"event-{i}" for i in range(4000)]
    pick = {i for i in ids if review.selected(b"key-one", i, 0.05)}
    assert abs(len(pick) - 200) < 4 * (4000 * 0.05 * 0.95) ** 0.5, len(pick)
    assert pick == {i for i in ids if review.selected(b"key-one", i, 0.05)}
    other = {i for i in ids if review.selected(b"key-two", i, 0.05)}
    assert len(pick & other) < 40, len(pick & other)
    assert all(review.selected(b"k", i, 1.0) for i in ids[:50])


def test_parse_answer_refuses_what_it_cannot_use():
    derived = {"nodule": 1, "pneumothorax": 0}
    assert review.parse_answer("a", derived) == ("agree", derived)
    assert review.parse_answer(" S ", derived) == ("skip", {})
    assert review.parse_answer("d nodule=0", derived) == (
        "disagree",
        {"nodule": 0, "pneumothorax": 0},
    )
    for bad in ("", "x", "d", "d nodule=1", "d nodule=2", "d 1nodule=0", "a nodule=0"):
        try:
            review.parse_answer(bad, derived)
        except review.ReviewError:
            continue
        raise AssertionError(f"{bad!r} was accepted")


def test_piped_answers_are_stored_audited_corrected_and_scraped(settings: Settings):
    url = settings.database_url
    assert url
    items = derived_labels(url, 4)
    # 1 agree; 2 a bad line then a disagreement; 3 skip; then EOF leaves the 4th queued.
    result = review_cli(settings, "a\nwhat\nd nodule=0\ns\n", "--reviewer", "dr.lee")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"radwatch studies resolve {items[0][1]}" in out  # the reviewer's way to the report
    assert "nodule: positive (1)" in out and "unknown answer" in out
    assert "agreed" in out and "left" in out

    with psycopg.connect(url) as conn:
        rows = conn.execute(
            """SELECT event_id, state, reviewer, answers, corrected_event_id
               FROM label_reviews ORDER BY id"""
        ).fetchall()
        assert [(r[0], r[1]) for r in rows] == [
            (items[0][0], "agree"), (items[1][0], "disagree"), (items[2][0], "skip"),
            (items[3][0], "queued")]  # fmt: skip
        assert rows[0][2] == "dr.lee" and rows[3][2] is None
        assert rows[1][3] == {"nodule": 0, "pneumothorax": 0}
        corrected = rows[1][4]
        assert corrected is not None and rows[0][4] is None
        # The corrected reading is a label row of its own, source radiologist-report, and
        # the study's current read: it supersedes the derived one in label_history.
        current = conn.execute(
            "SELECT event_id, labels, source FROM current_labels WHERE study_pseudo = %s",
            (items[1][1],),
        ).fetchone()
        assert current == (corrected, {"nodule": 0, "pneumothorax": 0}, "radiologist-report")
        audit = conn.execute(
            """SELECT actor, outcome, entity_id, refs, detail FROM audit_events
               WHERE action = 'label.reviewed' ORDER BY seq"""
        ).fetchall()
        assert [(a[0], a[1], a[2]) for a in audit] == [
            ("dr.lee", "agree", items[0][0]), ("dr.lee", "disagree", items[1][0]),
            ("dr.lee", "skip", items[2][0])]  # fmt: skip
        assert audit[1][3]["corrected_by"] == corrected
        assert audit[1][4]["changed_findings"] == ["nodule"]

    samples = scrape(url)
    ratio = {(s.labels["model"], s.labels["finding"]): s.value
             for s in samples[names.LABELER_AGREEMENT]}  # fmt: skip
    # Two reviewed (the skip is not): nodule agreed once of twice, pneumothorax twice.
    assert ratio == {("cxr-nodule", "nodule"): 0.5, ("cxr-nodule", "pneumothorax"): 1.0}
    counts = {s.labels["finding"]: s.value for s in samples[names.LABELER_REVIEWS]}
    assert counts == {"nodule": 2.0, "pneumothorax": 2.0}
    assert [s.value for s in samples[names.LABELER_REVIEW_QUEUE]] == [1.0]

    # The next session starts where this one stopped, and --json gives the summary.
    again = review_cli(settings, "a\n", "--reviewer", "dr.lee", "--json")
    assert again.returncode == 0, again.stderr
    summary = json.loads(again.stdout)
    assert summary == {"queued_new": 0, "shown": 1, "agreed": 1, "disagreed": 0,
                       "skipped": 0, "left": 0}  # fmt: skip


def test_a_blank_reviewer_is_a_usage_error(settings: Settings):
    result = review_cli(settings, "", "--reviewer", " ")
    assert result.returncode == 2
    assert "must name who reviews" in result.stderr
