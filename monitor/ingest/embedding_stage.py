"""Embeddings and image-quality features for stored images: the collector's post-write stage.

After a batch is durable (monitor/ingest/worker.py), `EmbeddingStage` embeds the decoded images
the image stage left in `batch.images` with the default encoder (detectors/embedding/encoders.py),
skipping those already stored under the same fingerprint (cache hit: no forward pass), and
stores embeddings, image features and the sealed image URI idempotently. Images the image
stage parked (the PACS was down) are queued in `image_fetch_queue` with their sealed URI in
`image_locators`. The backfill (`radwatch embed`, also `--parked`) reuses the storage helpers
and the worker-process decoding (monitor/ingest/decoding.py, re-exported here), reading images
only through the fenced `ImageFetcher`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from psycopg.types.json import Jsonb

from detectors.embedding.contract import EmbedderSpec, EmbeddingError, TorchEmbedder
from detectors.embedding.device import DeviceConfig, DeviceError, select_device
from detectors.embedding.encoders import default_encoder, load_checkpoint
from detectors.embedding.image_features import ImageFeatureError
from monitor.audit import trail
from monitor.config import Settings
from monitor.errors import ConfigError
from monitor.ingest.batch_store import Batch

# The decoding half of the image path lives in monitor.ingest.decoding (importable without
# PostgreSQL or key material, so bench/gpu_embed.py runs it on a bare GPU machine).
from monitor.ingest.decoding import Decoded as Decoded
from monitor.ingest.decoding import decoded_batches as decoded_batches
from monitor.ingest.decoding import features_of
from monitor.ingest.decoding import stack_pixels as stack_pixels

log = logging.getLogger(__name__)

DEFAULT_EMBEDDER = "default"


# -- sealed image locators ---------------------------------------------------------------


class UriSealer:
    """AES-256-GCM for image URIs, keyed by HKDF-SHA256 (RFC 5869) of the pseudonym key.

    The database holds only ciphertext; the key lives where the pseudonym key does. The
    image_ref is the associated data, so a sealed URI only opens in its own row.
    """

    def __init__(self, pseudonym_key: bytes) -> None:
        key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"radwatch image-uri v1"
        ).derive(pseudonym_key)
        self._aead = AESGCM(key)
        self.key_id = hmac.new(key, b"key-id", hashlib.sha256).hexdigest()[:16]

    def seal(self, image_ref: str, uri: str) -> bytes:
        nonce = os.urandom(12)  # 96-bit random nonce (NIST SP 800-38D §8.2.2)
        return nonce + self._aead.encrypt(nonce, uri.encode(), image_ref.encode())

    def open(self, image_ref: str, sealed: bytes) -> str:
        try:
            return self._aead.decrypt(sealed[:12], sealed[12:], image_ref.encode()).decode()
        except InvalidTag as exc:
            raise EmbeddingError(
                "a sealed image URI does not open with this pseudonym key (was the key changed?)"
            ) from exc


# -- building embedders from settings ------------------------------------------------------


def device_for(settings: Settings) -> DeviceConfig:
    try:
        return select_device(settings.device)
    except DeviceError as exc:
        raise ConfigError(f"RADWATCH_DEVICE: {exc}") from exc


def build_embedder(settings: Settings, name: str = DEFAULT_EMBEDDER) -> TorchEmbedder:
    """`default`, or a checkpoint configured in the TOML file, verified on a dummy batch:

    [radwatch.embedders.site-resnet]
    path = "/models/resnet50.pt"   # a local file only; TorchScript when arch is absent
    arch = "resnet50"              # default-cnn, resnet18, resnet34, resnet50
    input_size = [224, 224]
    intensity = "imagenet"         # unit, standard, imagenet
    channels = 3
    output_dim = 2048
    modality = "DX"
    """
    device = device_for(settings)
    if name == DEFAULT_EMBEDDER:
        embedder = default_encoder(device)
    else:
        entry = settings.embedders.get(name)
        if entry is None:
            known = sorted([DEFAULT_EMBEDDER, *settings.embedders])
            raise ConfigError(f"unknown embedder {name!r}: configured are {', '.join(known)}")
        try:
            spec = EmbedderSpec(name=name, modality=entry.modality, input_size=entry.input_size,
                                intensity=entry.intensity, channels=entry.channels,
                                output_dim=entry.output_dim)  # fmt: skip
            embedder = load_checkpoint(entry.path, spec, arch=entry.arch, device=device)
        except (EmbeddingError, TypeError, ValueError) as exc:
            raise ConfigError(f"embedder {name!r}: {exc}") from exc
    try:
        embedder.verify()
    except EmbeddingError as exc:
        raise ConfigError(str(exc)) from exc
    return embedder


# -- storage -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddingRow:
    image_ref: str
    model_name: str
    event_id: str
    vector: np.ndarray


@dataclass(frozen=True)
class FeatureRow:
    image_ref: str
    model_name: str
    event_id: str
    features: Mapping[str, Any]


def register_embedder(conn: psycopg.Connection, embedder: TorchEmbedder, *, actor: str) -> bool:
    """Record the embedder's fingerprint and spec once; a first registration is audited."""
    with conn.transaction():
        row = conn.execute(
            """INSERT INTO embedders (fingerprint, name, spec, weights_sha256)
               VALUES (%s, %s, %s, %s) ON CONFLICT (fingerprint) DO NOTHING RETURNING 1""",
            (embedder.fingerprint, embedder.spec.name, Jsonb(embedder.spec.canonical()),
             embedder.weights_sha256),
        ).fetchone()  # fmt: skip
        if row is not None:
            trail.record(
                conn, actor=actor, action="embedder.registered", entity_type="embedder",
                entity_id=embedder.fingerprint, entity_version=embedder.spec.name,
                refs={"weights_sha256": embedder.weights_sha256},
                detail={"spec": embedder.spec.canonical(), "device": embedder.device.device},
            )  # fmt: skip
    return row is not None


def stored_refs(conn: psycopg.Connection, table: str, refs: Sequence[str],
                fingerprint: str | None = None) -> set[str]:  # fmt: skip
    """Which of `refs` already have a row (for `fingerprint`, in the embeddings table)."""
    if not refs:
        return set()
    if table == "embeddings":
        rows = conn.execute(
            "SELECT image_ref FROM embeddings WHERE embedder_fingerprint = %s "
            "AND image_ref = ANY(%s)",
            (fingerprint, list(refs)),
        ).fetchall()
    elif table == "image_features":
        rows = conn.execute(
            "SELECT image_ref FROM image_features WHERE image_ref = ANY(%s)", (list(refs),)
        ).fetchall()
    else:
        raise ValueError(f"no such derived table {table!r}")
    return {str(r[0]) for r in rows}


@dataclass(frozen=True)
class ParkedRow:
    """An image the PACS could not serve: waits in image_fetch_queue (no PHI: a pseudonym)."""

    image_ref: str
    model_name: str
    event_id: str
    reason: str


def store(
    conn: psycopg.Connection,
    fingerprint: str,
    embeddings: Sequence[EmbeddingRow],
    features: Sequence[FeatureRow] = (),
    locators: Sequence[tuple[str, bytes, str]] = (),
    parked: Sequence[ParkedRow] = (),
) -> None:
    """Insert derived rows in one transaction; rows already there are kept (idempotent).

    An embedded image leaves image_fetch_queue in the same transaction; a parked one enters
    it (or counts one more attempt).
    """
    with conn.transaction(), conn.cursor() as cur:
        if locators:
            cur.executemany(
                """INSERT INTO image_locators (image_ref, sealed_uri, key_id) VALUES (%s, %s, %s)
                   ON CONFLICT (image_ref) DO NOTHING""",
                list(locators),
            )
        if parked:
            cur.executemany(
                """INSERT INTO image_fetch_queue (image_ref, event_id, model_name, reason)
                   VALUES (%s, %s, %s, %s)
                   ON CONFLICT (image_ref) DO UPDATE SET reason = EXCLUDED.reason,
                       attempts = image_fetch_queue.attempts + 1, last_attempt_at = now()""",
                [(p.image_ref, p.event_id, p.model_name, p.reason) for p in parked],
            )
        if embeddings:
            cur.execute("DELETE FROM image_fetch_queue WHERE image_ref = ANY(%s)",
                        ([r.image_ref for r in embeddings],))  # fmt: skip
        if embeddings:
            cur.executemany(
                """INSERT INTO embeddings (image_ref, embedder_fingerprint, model_name, event_id,
                       vector) VALUES (%s, %s, %s, %s, %s)
                   ON CONFLICT (image_ref, embedder_fingerprint) DO NOTHING""",
                [(r.image_ref, fingerprint, r.model_name, r.event_id, r.vector.tolist())
                 for r in embeddings],
            )  # fmt: skip
        if features:
            cur.executemany(
                """INSERT INTO image_features (image_ref, model_name, event_id, features)
                   VALUES (%s, %s, %s, %s) ON CONFLICT (image_ref) DO NOTHING""",
                [(r.image_ref, r.model_name, r.event_id, Jsonb(dict(r.features)))
                 for r in features],
            )  # fmt: skip


# -- the collector stage -------------------------------------------------------------------


@dataclass
class StageStats:
    computed: int = 0  # images that went through a forward pass
    cached: int = 0  # images whose embedding was already stored (no forward pass)
    failed: int = 0  # images whose features could not be computed (logged)


@dataclass
class EmbeddingStage:
    """Post-write stage: embed and describe `batch.images`, seal URIs for later backfills."""

    embedder: TorchEmbedder
    sealer: UriSealer
    actor: str = "radwatch"
    stats: StageStats = field(default_factory=StageStats)
    _registered: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> EmbeddingStage:
        return cls(build_embedder(settings), UriSealer(settings.key_bytes()), settings.actor)

    def __call__(self, conn: psycopg.Connection, batch: Batch) -> None:
        from monitor.ingest.image_stage import ParkedImage

        locators: dict[str, tuple[str, bytes, str]] = {}
        todo: dict[str, tuple[Any, str, Any]] = {}  # image_ref → (event, model, image)
        parked: dict[str, ParkedRow] = {}
        for event, _ in batch.inferences:
            ref = event.image_ref
            if ref is None:
                continue
            if event.image_uri and ref not in locators:
                locators[ref] = (ref, self.sealer.seal(ref, event.image_uri), self.sealer.key_id)
            image = batch.images.get(event.event_id)
            if isinstance(image, ParkedImage):
                if event.image_uri:  # the sealed URI is what the later fetch reads
                    parked[ref] = ParkedRow(ref, event.model_name, event.event_id, image.reason)
            elif image is not None and ref not in todo:
                todo[ref] = (event, event.model_name, image)
        for ref in todo:
            parked.pop(ref, None)  # another event of the batch brought the same image
        refs = list(todo)
        have = stored_refs(conn, "embeddings", refs, self.embedder.fingerprint)
        have_features = stored_refs(conn, "image_features", refs)
        self.stats.cached += len(have)
        missing = [r for r in refs if r not in have]
        embeddings: list[EmbeddingRow] = []
        if missing:
            if not self._registered:
                # Registered (and audited) when it first embeds, not when a worker starts:
                # an image-free stream leaves no trace of an embedder it never used.
                register_embedder(conn, self.embedder, actor=self.actor)
                self._registered = True
            vectors = self.embedder.embed([np.asarray(todo[r][2].pixels) for r in missing])
            self.stats.computed += len(missing)
            embeddings = [
                EmbeddingRow(r, todo[r][1], todo[r][0].event_id, vectors[i])
                for i, r in enumerate(missing)
            ]
        features: list[FeatureRow] = []
        for ref in refs:
            if ref in have_features:
                continue
            event, model, image = todo[ref]
            try:
                features.append(FeatureRow(ref, model, event.event_id, features_of(image)))
            except ImageFeatureError as exc:
                self.stats.failed += 1
                log.warning("no image features for event %s: %s", event.event_id, exc)
        store(conn, self.embedder.fingerprint, embeddings, features, list(locators.values()),
              list(parked.values()))  # fmt: skip
