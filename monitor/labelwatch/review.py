"""Watching the labeler: a share of report-derived labels confirmed by a radiologist.

Between the stored labels (PostgreSQL `labels`, source "report-labeler", written by the
collector from the events `radwatch hl7-listen` and `labels import --fhir` publish) and the
agreement metric (monitor/metrics/labeler_section.py, alert RadwatchLabelerAgreementLow):
`sync_queue` queues a configurable share of derived labels, chosen by a keyed hash of the
label's event id (HMAC-SHA-256 with the pseudonym key: reproducible, and a producer who does
not hold the key cannot keep its labels out of review); `session` is the terminal flow of
`radwatch labels review`, reading answers from any line source so a test can pipe them.

No report text is stored (DESIGN.md §5), so the reviewer reads the report in the RIS: the
flow shows the study pseudonym and the `radwatch studies resolve` command that turns it back
into the accession number for an authorised user (monitor/studies.py, itself audited).

A disagreement becomes a corrected label (source "radiologist-report") written with the
collector's own store function (monitor.ingest.batch_store.IngestStore.write), in the same
transaction as the answer and its audit row. Not published to the label topic: a label event
on the wire names its study by the raw UID or accession, which radwatch never keeps, so the
reviewer flow holding only the pseudonym could not build one; the store path gives the same
row, counters and label history (the corrected read supersedes the derived one there).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import psycopg
from psycopg.types.json import Jsonb

from collectors.event_types import AccessionRef, LabelEvent, StudyRef
from collectors.pseudonym import Pseudonymiser
from monitor.audit import trail
from monitor.errors import RadwatchError
from monitor.ingest.batch_store import Batch, IngestStore, Position, Record

DERIVED_SOURCE = "report-labeler"
CORRECTED_SOURCE = "radiologist-report"
# The `kafka_topic` of a label stored from a review: not a Kafka topic, the row's provenance
# (its partition 0 and offset the review's id keep the row's position unique and traceable).
REVIEW_TOPIC = "radwatch.review"
AGREEMENT_DAYS = 30  # the agreement metric's window (the alert asks 30 reviews in it)
_DOMAIN = b"radwatch label review\x00"  # the hash never equals a pseudonym of the same id
_NAMESPACE = uuid.UUID("6b3f0d52-2f1e-4c55-9a8f-6a1f0f1f7e17")
_FINDING = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

Answer = Literal["agree", "disagree", "skip"]


class ReviewError(RadwatchError, ValueError):
    """An answer that cannot be used (the flow asks again), or a review already answered."""


@dataclass(frozen=True)
class ReviewItem:
    id: int
    event_id: str
    model: str
    study: str  # the study pseudonym, or "accession:<pseudonym>" while no inference names it
    accession: str | None  # the accession pseudonym of a label by accession
    derived: Mapping[str, int]
    labeler: Mapping[str, Any] | None
    occurred_at: datetime

    @property
    def pseudonym(self) -> str:
        """What `radwatch studies resolve` takes: the study's, else the accession's pseudonym."""
        return self.study.removeprefix("accession:")


@dataclass(frozen=True)
class ReviewOutcome:
    item: ReviewItem
    answer: Answer
    answers: Mapping[str, int]
    corrected_event_id: str | None


@dataclass(frozen=True)
class SessionSummary:
    queued_new: int
    shown: int
    agreed: int = 0
    disagreed: int = 0
    skipped: int = 0
    left: int = 0
    outcomes: tuple[ReviewOutcome, ...] = field(default=(), repr=False)

    def as_dict(self) -> dict[str, int]:
        return {"queued_new": self.queued_new, "shown": self.shown, "agreed": self.agreed,
                "disagreed": self.disagreed, "skipped": self.skipped, "left": self.left}  # fmt: skip


@dataclass(frozen=True)
class Agreement:
    model: str
    finding: str
    reviewed: int
    agreed: int

    @property
    def ratio(self) -> float | None:
        return self.agreed / self.reviewed if self.reviewed else None


def selected(key: bytes, event_id: str, share: float) -> bool:
    """Whether a derived label is queued: its keyed hash, read as a number in [0, 1), is
    below `share`. The same key and id always give the same answer."""
    digest = hmac.new(key, _DOMAIN + event_id.encode("utf-8"), hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") < share * 2**64


def sync_queue(conn: psycopg.Connection, key: bytes, share: float, *,
               model: str | None = None) -> int:  # fmt: skip
    """Queue the chosen share of derived labels not yet considered; the number queued."""
    rows = conn.execute(
        """SELECT l.event_id, l.model_name, l.study_pseudo, l.labels, l.labeler
           FROM labels l
           WHERE l.source = %s AND (%s::text IS NULL OR l.model_name = %s)
             AND NOT EXISTS (SELECT 1 FROM label_reviews r WHERE r.event_id = l.event_id)
           ORDER BY l.received_at, l.event_id""",
        (DERIVED_SOURCE, model, model),
    ).fetchall()
    chosen = [r for r in rows if selected(key, str(r[0]), share)]
    with conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO label_reviews (event_id, model_name, study_pseudo, derived, labeler)
               VALUES (%s, %s, %s, %s, %s) ON CONFLICT (event_id) DO NOTHING""",
            [(r[0], r[1], r[2], Jsonb(r[3]), Jsonb(r[4]) if r[4] is not None else None)
             for r in chosen],
        )  # fmt: skip
    return len(chosen)


def queue(conn: psycopg.Connection, *, model: str | None = None,
          limit: int | None = None) -> list[ReviewItem]:  # fmt: skip
    """The labels waiting for a review, oldest queued first."""
    rows = conn.execute(
        """SELECT r.id, r.event_id, r.model_name,
                  radwatch_label_study(l.model_name, l.study_pseudo, l.accession_pseudo),
                  l.accession_pseudo, r.derived, r.labeler, l.occurred_at
           FROM label_reviews r JOIN labels l USING (event_id)
           WHERE r.state = 'queued' AND (%s::text IS NULL OR r.model_name = %s)
           ORDER BY r.id LIMIT %s""",
        (model, model, limit),
    ).fetchall()
    return [ReviewItem(int(r[0]), str(r[1]), str(r[2]), str(r[3]), r[4], dict(r[5]), r[6], r[7])
            for r in rows]  # fmt: skip


def parse_answer(text: str, derived: Mapping[str, int]) -> tuple[Answer, dict[str, int]]:
    """`a` (agree), `s` (skip), or `d FINDING=0|1 ...` (disagree, naming the right values)."""
    words = text.strip().lower().split()
    if not words:
        raise ReviewError("answer a (agree), d FINDING=0|1 ... (disagree) or s (skip)")
    head, rest = words[0], words[1:]
    if head in ("a", "agree") and not rest:
        return "agree", dict(derived)
    if head in ("s", "skip") and not rest:
        return "skip", {}
    if head not in ("d", "disagree"):
        raise ReviewError(f"unknown answer {head[:20]!r}: a, d FINDING=0|1 ... or s")
    values = dict(derived)
    for word in rest:
        name, sep, value = word.partition("=")
        if not sep or value not in ("0", "1") or not _FINDING.match(name):
            raise ReviewError(f"{word[:40]!r}: write FINDING=0 or FINDING=1")
        values[name] = int(value)
    if values == dict(derived):
        raise ReviewError("a disagreement names at least one finding with its right value")
    return "disagree", values


def record_answer(conn: psycopg.Connection, item: ReviewItem, answer: Answer,
                  answers: Mapping[str, int], *, reviewer: str, key: bytes,
                  now: datetime | None = None) -> ReviewOutcome:  # fmt: skip
    """Store one answer, the corrected label of a disagreement and the audit row, together."""
    now = now or datetime.now(UTC)
    corrected = None
    with conn.transaction():
        if answer == "disagree":
            corrected = _store_correction(conn, item, answers, reviewer, key, now)
        row = conn.execute(
            """UPDATE label_reviews SET state = %s, reviewer = %s, reviewed_at = %s,
                   answers = %s, corrected_event_id = %s
               WHERE id = %s AND state = 'queued' RETURNING id""",
            (answer, reviewer, now, Jsonb(dict(answers)), corrected, item.id),
        ).fetchone()
        if row is None:
            raise ReviewError(f"review {item.id} was answered meanwhile (by another session)")
        changed = sorted(k for k in answers if item.derived.get(k) != answers[k])
        trail.record(conn, actor=reviewer, action="label.reviewed", entity_type="label",
                     entity_id=item.event_id, outcome=answer,
                     refs={"model": item.model, "study_pseudo": item.study,
                           "review": item.id, "corrected_by": corrected},
                     detail={"derived": dict(item.derived), "answers": dict(answers),
                             "changed_findings": changed,
                             "labeler": dict(item.labeler) if item.labeler else None})  # fmt: skip
    return ReviewOutcome(item, answer, dict(answers), corrected)


def _store_correction(conn: psycopg.Connection, item: ReviewItem, values: Mapping[str, int],
                      reviewer: str, key: bytes, now: datetime) -> str:  # fmt: skip
    """The reviewer's reading as a label row, through the collector's store function."""
    doc = {"review": item.id, "supersedes": item.event_id, "model": item.model,
           "study": item.study, "labels": dict(sorted(values.items())),
           "source": CORRECTED_SOURCE, "reviewer": reviewer,
           "occurred_at": now.isoformat()}  # fmt: skip
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    event_id = str(uuid.uuid5(_NAMESPACE, f"{item.event_id}|{item.id}"))
    study: StudyRef | AccessionRef
    if item.study.startswith("accession:") and item.accession:
        study = AccessionRef(accession=item.accession)  # still unresolved: keep the join key
    else:
        study = StudyRef(study=item.study, accession=item.accession)
    event = LabelEvent(event_id=event_id, occurred_at=now, model_name=item.model, study=study,
                       labels=dict(values), source=CORRECTED_SOURCE,
                       content_hash=hashlib.sha256(raw).hexdigest())  # fmt: skip
    record = Record(Position(REVIEW_TOPIC, 0, item.id), raw)
    outcome = IngestStore(conn, Pseudonymiser(key)).write(Batch(labels=[(event, record)]))
    if outcome.dead_letters:
        raise ReviewError(f"the corrected label was refused: {outcome.dead_letters[0].message}")
    return event_id


def agreement(conn: psycopg.Connection, *, days: int = AGREEMENT_DAYS) -> list[Agreement]:
    """Per model and finding, the reviewed derived labels of the last `days` days and how
    many of them the reviewer confirmed (skipped reviews are not counted)."""
    rows = conn.execute(
        """SELECT r.model_name, f.key, count(*),
                  count(*) FILTER (WHERE r.answers -> f.key = f.value)
           FROM label_reviews r, jsonb_each(r.derived) AS f
           WHERE r.state IN ('agree', 'disagree')
             AND r.reviewed_at > now() - make_interval(days => %s)
           GROUP BY 1, 2 ORDER BY 1, 2""",
        (days,),
    ).fetchall()
    return [Agreement(str(m), str(f), int(n), int(a)) for m, f, n, a in rows]


def describe(item: ReviewItem) -> list[str]:
    """What the reviewer sees for one item: never report text (there is none to show)."""
    labeler = item.labeler or {}
    words = {1: "positive", 0: "negative"}
    lines = [f"review {item.id}: model {item.model}, labeler {labeler.get('name', '?')} "
             f"{labeler.get('version', '')}".rstrip(),
             f"  study pseudonym {item.pseudonym} (report of {item.occurred_at:%Y-%m-%d})",
             f"  open the report: radwatch studies resolve {item.pseudonym} --by YOU"]  # fmt: skip
    lines += [f"  {name}: {words.get(v, v)} ({v})" for name, v in sorted(item.derived.items())]
    return lines


def console(stream: TextIO) -> tuple[Callable[[str], str], Callable[[str], None]]:
    """Ask and say on `stream` (stderr when stdout carries --json), answers from stdin; the
    end of stdin is EOFError, as input() raises it."""

    def ask(prompt: str) -> str:
        stream.write(prompt)
        stream.flush()
        line = sys.stdin.readline()
        if not line:
            raise EOFError
        return line

    def say(line: str) -> None:
        print(line, file=stream, flush=True)

    return ask, say


def session(conn: psycopg.Connection, *, key: bytes, share: float, reviewer: str,
            model: str | None, limit: int | None, ask: Callable[[str], str],
            say: Callable[[str], None]) -> SessionSummary:  # fmt: skip
    """The terminal flow: sync the queue, then each item shown and answered until the queue,
    `limit` or the input ends (EOF or `q`). A bad answer is said and asked again."""
    new = sync_queue(conn, key, share, model=model)
    items = queue(conn, model=model, limit=limit)
    counts = {"agree": 0, "disagree": 0, "skip": 0}
    outcomes: list[ReviewOutcome] = []
    shown = 0
    for item in items:
        shown += 1
        for line in describe(item):
            say(line)
        while True:
            try:
                text = ask("agree [a], disagree [d FINDING=0|1 ...], skip [s], quit [q]: ")
            except EOFError:
                text = "q"
            if text.strip().lower() in ("q", "quit"):
                return _summary(conn, new, shown - 1, counts, outcomes, model)
            try:
                answer, values = parse_answer(text, item.derived)
                outcomes.append(record_answer(conn, item, answer, values,
                                              reviewer=reviewer, key=key))  # fmt: skip
            except ReviewError as exc:
                say(f"  {exc}")
                if "meanwhile" in str(exc):
                    break
                continue
            counts[answer] += 1
            break
    return _summary(conn, new, shown, counts, outcomes, model)


def _summary(conn: psycopg.Connection, new: int, shown: int, counts: Mapping[str, int],
             outcomes: list[ReviewOutcome], model: str | None) -> SessionSummary:  # fmt: skip
    left = conn.execute(
        """SELECT count(*) FROM label_reviews
           WHERE state = 'queued' AND (%s::text IS NULL OR model_name = %s)""",
        (model, model),
    ).fetchone()
    return SessionSummary(new, shown, counts["agree"], counts["disagree"], counts["skip"],
                          int(left[0]) if left else 0, tuple(outcomes))  # fmt: skip
