"""Embeddings through a real collector (broker + PostgreSQL), the cache, and the backfill."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pydicom
import pytest
from conftest import produce, run_radwatch
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from test_worker import enc, event, worker_for

from collectors.events import INFERENCE_SCHEMA, InferenceEvent, parse_record
from collectors.images.resolver import FetchPolicy, ImageFetcher
from collectors.pseudonym import Pseudonymiser
from detectors.embedding.encoders import default_encoder
from monitor.ingest.backfill import backfill
from monitor.ingest.batch_store import Batch, Position, Record
from monitor.ingest.embedding_stage import EmbeddingStage, UriSealer
from monitor.ingest.image_stage import image_fetcher
from monitor.ingest.wiring import build_worker

SEED = 5
MODEL = "cxr-nodule"


def write_dicom(path: Path, seed: int, rows: int = 192, cols: int = 160) -> str:
    """A small synthetic DX object (12-bit MONOCHROME2); returns its file:// URI."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols]
    body = 1500 + 1200 * np.exp(
        -(((yy - rows / 2) / (rows / 3)) ** 2 + ((xx - cols / 2) / (cols / 4)) ** 2)
    )
    pixels = np.clip(body + rng.normal(0, 40 + 10 * seed, body.shape), 0, 4095).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray for Presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Manufacturer = "DX", "ACME"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.ImagerPixelSpacing = [0.15, 0.15]
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path.resolve().as_uri()


def image_events(uris: list[str], start: int = 0, day: int = 2) -> list[dict]:
    return [
        event(start + i, image={"uri": uri}, occurred_at=f"2026-11-{day:02d}T10:{i % 60:02d}:00Z")
        for i, uri in enumerate(uris)
    ]


def image_ref(settings, uri: str) -> str:
    return Pseudonymiser(settings.pseudonym_key.encode())("uri", uri)


def load_image(uri: str):
    """The image as the fenced fetcher reads it (its folder the one root)."""
    folder = Path(urllib.request.url2pathname(urllib.parse.urlsplit(uri).path)).parent
    return ImageFetcher(FetchPolicy.create([folder])).load(uri, size=224)


def decode_images(batch: Batch) -> Batch:
    """A pre-write stage reading each event's image with the real DICOM reader."""
    for ev, _ in batch.inferences:
        if ev.image_uri:
            batch.images[ev.event_id] = load_image(ev.image_uri)
    return batch


def parsed_batch(settings, docs: list[dict]) -> Batch:
    pseudonym = Pseudonymiser(settings.pseudonym_key.encode())
    batch = Batch()
    for i, doc in enumerate(docs):
        ev = parse_record(enc(doc), default_schema=INFERENCE_SCHEMA, pseudonym=pseudonym,
                          max_bytes=1 << 20)  # fmt: skip
        assert isinstance(ev, InferenceEvent)
        batch.inferences.append((ev, Record(Position("t", 0, i), enc(doc))))
    return decode_images(batch)


@pytest.fixture
def dicoms(settings) -> list[str]:
    # Under the data dir's images/ folder: the default RADWATCH_IMAGE_ROOTS.
    folder = settings.data_dir / "images" / uuid.uuid4().hex
    folder.mkdir(parents=True)
    return [write_dicom(folder / f"img-{i}.dcm", SEED + i) for i in range(6)]


def test_collected_events_get_embeddings_with_fingerprints(settings, dicoms) -> None:
    # 8 events, 6 distinct images: two events re-read an image already seen.
    docs = image_events(dicoms + dicoms[:2])
    produce(settings, settings.inference_topic, [enc(d) for d in docs])
    stage = EmbeddingStage.from_settings(settings)
    stats = worker_for(settings, max_event_bytes=1 << 20, pre_write=[decode_images],
                          post_write=[stage]).run(until_idle=2)  # fmt: skip
    assert stats.inferences == 8 and stats.dead_letters == 0
    fingerprint = default_encoder().fingerprint
    with psycopg.connect(settings.database_url) as conn:
        rows = conn.execute(
            "SELECT e.image_ref, e.embedder_fingerprint, e.vector, e.model_name, i.event_id "
            "FROM embeddings e JOIN inferences i USING (event_id) ORDER BY i.event_id"
        ).fetchall()
        assert len(rows) == 6 and {r[1] for r in rows} == {fingerprint}
        assert all(len(r[2]) == 256 and r[3] == MODEL for r in rows)
        # The stored vector is the default encoder's embedding of the decoded image.
        by_ref = {r[0]: np.asarray(r[2], dtype=np.float32) for r in rows}
        expected = default_encoder().embed([load_image(u).pixels for u in dicoms])
        for i, uri in enumerate(dicoms):
            got = by_ref[image_ref(settings, uri)]
            np.testing.assert_allclose(got, expected[i], rtol=1e-5, atol=1e-6)
        registered = conn.execute("SELECT name, spec, weights_sha256 FROM embedders").fetchall()
        assert [r[0] for r in registered] == ["radwatch-default-cnn-v1"]
        assert registered[0][1]["output_dim"] == 256
        features = conn.execute("SELECT features FROM image_features").fetchall()
        assert len(features) == 6
        f = features[0][0]
        assert (f["rows"], f["columns"], f["spacing_row_mm"]) == (192, 160, 0.15)
        assert f["noise_sigma"] > 0 and 0 <= f["p01"] <= f["p99"] <= 1
        sealed = conn.execute("SELECT image_ref, sealed_uri FROM image_locators").fetchall()
        assert len(sealed) == 6
        sealer = UriSealer(settings.pseudonym_key.encode())
        assert {sealer.open(r[0], bytes(r[1])) for r in sealed} == set(dicoms)
        assert all(b"img-" not in bytes(r[1]) for r in sealed)  # no path in the clear
        audit = conn.execute(
            "SELECT entity_id FROM audit_events WHERE action = 'embedder.registered'"
        ).fetchall()
        assert audit == [(fingerprint,)]
    assert stage.stats.computed == 6


def test_cache_hit_does_no_forward_pass(settings, dicoms) -> None:
    stage = EmbeddingStage.from_settings(settings)
    calls: list[int] = []
    stage.embedder.module.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    first = parsed_batch(settings, image_events(dicoms[:4]))
    second = parsed_batch(settings, image_events(dicoms[:4], start=100))  # same images, new events
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        stage(conn, first)
        assert sum(calls) == 4 and stage.stats.computed == 4
        stage(conn, second)
        stage(conn, first)  # a replay after a crash
        assert sum(calls) == 4, "a cached image went through the network again"
        assert stage.stats.cached == 8
        third = parsed_batch(settings, image_events(dicoms[:5], start=200))
        stage(conn, third)
        assert calls[-1] == 1  # only the one new image
        count = conn.execute("SELECT count(*) FROM embeddings").fetchone()
        assert count == (5,)


def test_backfill_on_a_stored_stream_resumes_after_interruption(settings, dicoms) -> None:
    # Collected without decoding (as when images arrive before an embedder is chosen): only
    # the sealed locators are stored, and the backfill reads the images again from them.
    produce(settings, settings.inference_topic, [enc(d) for d in image_events(dicoms)])
    produce(
        settings,
        settings.inference_topic,
        [enc(d) for d in image_events(dicoms[:1], start=50, day=20)],
    )  # outside the window
    stage = EmbeddingStage.from_settings(settings)
    worker_for(settings, max_event_bytes=1 << 20, post_write=[stage]).run(until_idle=2)
    from datetime import UTC, datetime

    since, until = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 10, tzinfo=UTC)

    class Interrupted(Exception):
        pass

    def interrupt(done: int) -> None:
        raise Interrupted(done)

    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM embeddings").fetchone() == (0,)
        with pytest.raises(Interrupted):
            backfill(conn, stage.embedder, stage.sealer, image_fetcher(settings), model=MODEL, since=since, until=until,
                     workers=1, batch_size=2, on_batch=interrupt)  # fmt: skip
        assert conn.execute("SELECT count(*) FROM embeddings").fetchone() == (2,)
    result = run_radwatch(settings, "embed", "--model", MODEL, "--since", "2026-11-01",
                          "--until", "2026-11-10", "--workers", "2", "--batch-size", "2", "--json")  # fmt: skip
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["pending"] == 4 and summary["embedded"] == 4 and summary["failed"] == 0
    assert summary["fingerprint"] == stage.embedder.fingerprint
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        again = backfill(conn, stage.embedder, stage.sealer, image_fetcher(settings), model=MODEL,
                         since=since,
                         until=until, workers=0)  # fmt: skip
        assert (again.pending, again.embedded) == (0, 0)
        assert conn.execute("SELECT count(*) FROM embeddings").fetchone() == (6,)
        assert conn.execute("SELECT count(*) FROM image_features").fetchone() == (6,)
        vectors = dict(conn.execute("SELECT image_ref, vector FROM embeddings").fetchall())
        expected = default_encoder().embed([load_image(u).pixels for u in dicoms])
        got = [vectors[image_ref(settings, u)] for u in dicoms]
        np.testing.assert_allclose(np.asarray(got, dtype=np.float32), expected, rtol=1e-5,
                                   atol=1e-6)  # fmt: skip
        actions = conn.execute(
            "SELECT outcome, detail->>'embedded' FROM audit_events "
            "WHERE action = 'embeddings.backfilled' ORDER BY seq"
        ).fetchall()
        assert actions == [("success", "4"), ("success", "0")]


def test_radwatch_collect_wires_the_embedding_stage(settings, dicoms) -> None:
    produce(settings, settings.inference_topic, [enc(d) for d in image_events(dicoms[:3])])
    # In-process (a subprocess would only add a torch import): the same build_worker.
    worker = build_worker(settings)
    assert any(isinstance(s, EmbeddingStage) for s in worker._post_write)
    assert worker.run(until_idle=2).inferences == 3
    with psycopg.connect(settings.database_url) as conn:
        assert conn.execute("SELECT count(*) FROM image_locators").fetchone() == (3,)
        fps = conn.execute("SELECT fingerprint FROM embedders").fetchall()
        assert fps == [(default_encoder().fingerprint,)]
        # The image stage decodes before the write; the embedding stage embeds after it.
        stored = conn.execute(
            "SELECT embedder_fingerprint, count(*) FROM embeddings GROUP BY 1"
        ).fetchall()
        assert stored == [(fps[0][0], 3)]
        assert conn.execute("SELECT count(*) FROM image_features").fetchone() == (3,)


def test_configured_checkpoint_embedder_is_built_and_verified(tmp_path: Path) -> None:
    import torch

    from detectors.embedding.encoders import resnet18
    from monitor.config import Settings, load_settings
    from monitor.errors import ConfigError
    from monitor.ingest.embedding_stage import build_embedder

    torch.manual_seed(SEED)
    torch.save(resnet18().state_dict(), tmp_path / "r18.pt")
    entry = {"path": str(tmp_path / "r18.pt"), "arch": "resnet18", "input_size": [64, 64],
             "intensity": "imagenet", "channels": 3, "output_dim": 512, "modality": "DX"}  # fmt: skip
    settings = Settings(device="cpu", embedders={"site-r18": entry})
    embedder = build_embedder(settings, "site-r18")
    assert embedder.spec.output_dim == 512 and embedder.spec.modality == "DX"
    assert embedder.fingerprint != build_embedder(settings).fingerprint
    wrong = Settings(device="cpu", embedders={"site-r18": {**entry, "output_dim": 128}})
    with pytest.raises(ConfigError, match=r"returned shape \(2, 512\)"):
        build_embedder(wrong, "site-r18")
    with pytest.raises(ConfigError, match="unknown embedder 'nope'.*default, site-r18"):
        build_embedder(settings, "nope")
    (tmp_path / "radwatch.toml").write_text('[radwatch.embedders.x]\npath = "/a"\n')
    with pytest.raises(ConfigError, match="embedders.x.output_dim is required"):
        load_settings(tmp_path / "radwatch.toml", environ={})


def test_sealed_uris_open_only_with_their_key_and_row() -> None:
    from detectors.embedding.contract import EmbeddingError

    sealer = UriSealer(b"k" * 32)
    sealed = sealer.seal("ref-1", "file:///data/PATIENT-NAME/a.dcm")
    assert b"PATIENT" not in sealed and sealer.open("ref-1", sealed).endswith("a.dcm")
    assert sealer.seal("ref-1", "file:///x") != sealer.seal("ref-1", "file:///x")  # fresh nonce
    with pytest.raises(EmbeddingError, match="does not open"):
        sealer.open("ref-2", sealed)  # moved to another row
    with pytest.raises(EmbeddingError, match="does not open"):
        UriSealer(b"j" * 32).open("ref-1", sealed)
    assert UriSealer(b"k" * 32).key_id == sealer.key_id != UriSealer(b"j" * 32).key_id
