"""Backfill: embeddings and image features for a model's stored events, after the fact.

Beside the ingest loop, for what it did not embed: images of a period (a new embedder, a
model's history) or images parked while the PACS was unavailable. Finds images by their
sealed locator: the worker's embedding stage stores each image URI AES-256-GCM-sealed (key
derived from the pseudonym key) in `image_locators`, because the raw URI may carry
identifiers and must not sit in PostgreSQL in the clear (DESIGN.md §5). Re-reading the
inference topic instead was rejected: Kafka retention is days, a backfill for a new
embedder may need months. Images are decoded in worker processes (a torch DataLoader) ahead
of the forward pass; each batch is committed on its own, and images already embedded under
the embedder's fingerprint are skipped, so an interrupted run resumes where it stopped.

Parked images (`image_fetch_queue`, filled by the image stage during a PACS outage) are read
through the same fenced `ImageFetcher` and taken off the queue once embedded; one the PACS
still cannot serve stays queued with one more attempt counted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import psycopg

from monitor.config import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackfillResult:
    pending: int  # images in the window without this embedding when the run started
    embedded: int
    failed: int
    no_locator: int  # images in the window whose URI was never stored (cannot be read again)
    fingerprint: str

    def as_dict(self) -> dict[str, object]:
        return {"pending": self.pending, "embedded": self.embedded, "failed": self.failed,
                "no_locator": self.no_locator, "fingerprint": self.fingerprint}  # fmt: skip


_PENDING = """
    SELECT DISTINCT ON (i.image_ref) i.image_ref, i.event_id, i.model_name, l.sealed_uri,
           f.image_ref IS NOT NULL
    FROM inferences i
    JOIN image_locators l ON l.image_ref = i.image_ref
    LEFT JOIN image_features f ON f.image_ref = i.image_ref
    WHERE i.model_name = %(model)s AND i.occurred_at >= %(since)s AND i.occurred_at < %(until)s
      AND NOT EXISTS (SELECT 1 FROM embeddings e
                      WHERE e.image_ref = i.image_ref AND e.embedder_fingerprint = %(fp)s)
    ORDER BY i.image_ref, i.occurred_at, i.event_id"""
_PARKED = """
    SELECT q.image_ref, q.event_id, q.model_name, l.sealed_uri, f.image_ref IS NOT NULL
    FROM image_fetch_queue q
    JOIN image_locators l ON l.image_ref = q.image_ref
    LEFT JOIN image_features f ON f.image_ref = q.image_ref
    WHERE (%(model)s::text IS NULL OR q.model_name = %(model)s)
      AND NOT EXISTS (SELECT 1 FROM embeddings e
                      WHERE e.image_ref = q.image_ref AND e.embedder_fingerprint = %(fp)s)
    ORDER BY q.parked_at, q.image_ref
    LIMIT %(limit)s"""
# Parked images embedded meanwhile (by a window backfill or a later event): off the queue.
_UNPARK_DONE = """
    DELETE FROM image_fetch_queue q WHERE EXISTS (SELECT 1 FROM embeddings e
        WHERE e.image_ref = q.image_ref AND e.embedder_fingerprint = %(fp)s)"""
_UNLOCATED = """
    SELECT count(DISTINCT i.image_ref) FROM inferences i
    WHERE i.model_name = %(model)s AND i.occurred_at >= %(since)s AND i.occurred_at < %(until)s
      AND i.image_ref IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM image_locators l WHERE l.image_ref = i.image_ref)"""


def backfill(
    conn: psycopg.Connection,
    embedder,
    sealer,
    fetcher,
    *,
    model: str | None,
    since: datetime | None = None,
    until: datetime | None = None,
    parked: bool = False,
    limit: int | None = None,
    workers: int,
    batch_size: int | None = None,
    size: int | None = None,
    actor: str = "radwatch",
    progress: bool = False,
    on_batch: Callable[[int], None] | None = None,
) -> BackfillResult:
    """Embed every image of `model` in [since, until) not yet embedded by `embedder`.

    parked=True: every image in image_fetch_queue (of `model`, or all) instead of a window,
    the longest-parked `limit` of them when a limit is given.
    `fetcher`: the fenced ImageFetcher every image is read through.
    """
    from tqdm import tqdm

    from monitor.audit import trail
    from monitor.ingest.embedding_stage import (
        EmbeddingRow,
        FeatureRow,
        decoded_batches,
        register_embedder,
        stack_pixels,
        store,
    )

    register_embedder(conn, embedder, actor=actor)
    params = {"model": model, "since": since, "until": until, "fp": embedder.fingerprint,
              "limit": limit}  # fmt: skip
    if parked:
        conn.execute(_UNPARK_DONE, params)
        rows = conn.execute(_PARKED, params).fetchall()
        no_locator = 0
    else:
        rows = conn.execute(_PENDING, params).fetchall()
        unlocated_row = conn.execute(_UNLOCATED, params).fetchone()
        no_locator = int(unlocated_row[0]) if unlocated_row else 0
    uris = [sealer.open(str(r[0]), bytes(r[3])) for r in rows]
    rows_size = size or embedder.spec.input_size[0]
    batch = batch_size or embedder.device.batch_size
    embedded = failed = 0
    bar = tqdm(total=len(rows), unit="img", desc=f"embed {model or 'parked'}",
               disable=not progress)  # fmt: skip
    try:
        for items in decoded_batches(uris, fetcher, size=rows_size, batch_size=batch,
                                     workers=workers):  # fmt: skip
            ok = [d for d in items if d.pixels is not None]
            for d in items:
                if d.error is not None:
                    # The event id and the reason only: the URI may carry identifiers.
                    log.warning("cannot read the image of event %s: %s", rows[d.index][1], d.error)
            failed += len(items) - len(ok)
            _requeue(conn, [d for d in items if d.error is not None], rows)
            vectors = embedder.embed(stack_pixels(ok, embedder.device.pin_memory)) if ok else []
            embeddings = [
                EmbeddingRow(str(rows[d.index][0]), str(rows[d.index][2]), str(rows[d.index][1]),
                             vectors[i])
                for i, d in enumerate(ok)
            ]  # fmt: skip
            features = [
                FeatureRow(str(rows[d.index][0]), str(rows[d.index][2]), str(rows[d.index][1]),
                           d.features)
                for d in ok
                if d.features is not None and not rows[d.index][4]
            ]  # fmt: skip
            store(conn, embedder.fingerprint, embeddings, features)
            embedded += len(ok)
            bar.update(len(items))
            if on_batch is not None:
                on_batch(embedded)
    finally:
        bar.close()
    result = BackfillResult(len(rows), embedded, failed, no_locator, embedder.fingerprint)
    trail.record(
        conn, actor=actor, action="embeddings.backfilled", entity_type="embedder",
        entity_id=embedder.fingerprint, entity_version=embedder.spec.name,
        outcome="success" if failed == 0 else "partial",
        reason=None if failed == 0 else f"{failed} image(s) could not be read",
        refs={"model": model or "*"},
        detail={**result.as_dict(), "parked": parked,
                "since": since.isoformat() if since else None,
                "until": until.isoformat() if until else None},
    )  # fmt: skip
    return result


def _requeue(conn: psycopg.Connection, failed: list, rows: list) -> None:
    """Images the PACS still cannot serve stay queued (one more attempt); others leave it.

    An image that fails for a reason of its own (gone from the PACS, undecodable) is not
    retried forever: it leaves the queue, and the run reports it as failed.
    """
    if not failed:
        return
    with conn.transaction():
        for d in failed:
            ref = str(rows[d.index][0])
            if d.parkable:
                conn.execute(
                    "UPDATE image_fetch_queue SET attempts = attempts + 1, last_attempt_at = now(),"
                    " reason = %s WHERE image_ref = %s",
                    (str(d.error).split(":", 1)[0], ref),
                )
            else:
                conn.execute("DELETE FROM image_fetch_queue WHERE image_ref = %s", (ref,))


def run_backfill(settings: Settings, database_url: str, *, embedder: str = "default",
                 model: str | None, since: datetime | None = None,
                 until: datetime | None = None, parked: bool = False,
                 limit: int | None = None, workers: int,
                 batch_size: int | None = None, progress: bool = False,
                 on_batch: Callable[[int], None] | None = None) -> BackfillResult:  # fmt: skip
    """`backfill` with the embedder (by its name in the settings), the URI sealer and the
    fenced image fetcher built from the settings, each batch committed on its own."""
    from monitor.ingest.embedding_stage import UriSealer, build_embedder
    from monitor.ingest.image_stage import image_fetcher
    from monitor.store import db

    built = build_embedder(settings, embedder)
    sealer = UriSealer(settings.key_bytes())
    fetcher = image_fetcher(settings)
    with db.connect(database_url, autocommit=True) as conn:
        return backfill(conn, built, sealer, fetcher, model=model, since=since, until=until,
                        parked=parked, limit=limit, workers=workers, batch_size=batch_size,
                        actor=settings.actor, progress=progress, on_batch=on_batch)  # fmt: skip


def parked_count(conn: psycopg.Connection) -> int:
    """Images waiting in image_fetch_queue for the PACS (every model)."""
    row = conn.execute("SELECT count(*) FROM image_fetch_queue").fetchone()
    return int(row[0]) if row else 0


@dataclass(frozen=True)
class ParkedRetry:
    """What one scheduled retry of the parked images did (monitor.pilot.run)."""

    waiting: int  # parked images when the retry started
    probed: bool  # the longest-parked image was tried first
    result: BackfillResult | None  # the whole queue's run; None when the PACS still fails


def retry_parked(settings: Settings, database_url: str) -> ParkedRetry:
    """Fetch the parked images again if the PACS answers: `radwatch embed --parked`, scheduled.

    One image first (the longest parked): while the PACS still cannot serve it, the queue is
    left for the next retry instead of waiting out a fetch timeout per image (an outage can
    park thousands). The probe is a backfill of its own, so it is audited like one.
    """
    from monitor.store import db

    with db.connect(database_url, autocommit=True) as conn:
        waiting = parked_count(conn)
    if waiting == 0:
        return ParkedRetry(0, probed=False, result=None)
    probe = run_backfill(settings, database_url, model=None, parked=True, limit=1, workers=0)
    with db.connect(database_url, autocommit=True) as conn:
        left = parked_count(conn)
    if probe.embedded == 0 and left >= waiting:
        log.info("%d parked image(s): the PACS still cannot serve them; retrying later", waiting)
        return ParkedRetry(waiting, probed=True, result=None)
    # In-thread decoding (workers=0): `radwatch run` is one process beside the ingest worker.
    return ParkedRetry(waiting, probed=True,
                       result=run_backfill(settings, database_url, model=None, parked=True,
                                           workers=0))  # fmt: skip
