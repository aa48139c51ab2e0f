"""`radwatch report` renders: HTML with every section, opened in headless Chromium.

The database is filled directly (seed 7, 1,500 inferences, 70% labelled, a new vendor and
higher scores after study 1,000; 12 images sealed in image_locators as .npy files), then
`radwatch report` writes the HTML and Chromium (Debian package) screenshots it. The
screenshot is kept under test-artifacts/ (gitignored).
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
from conftest import REPO, TEST_KEY, run_radwatch
from PIL import Image
from psycopg.types.json import Jsonb

from monitor.reports import model_report, report_document
from monitor.reports.report_tables import subgroup_lines

SEED = 7
N = 1500
SHIFT_AT = 1000
START = datetime(2026, 11, 1, tzinfo=UTC)
ARTIFACTS = REPO / "test-artifacts"


def fill(url: str, images_dir: Path | None) -> None:
    rng = np.random.default_rng(SEED)
    sealer = None
    if images_dir is not None:
        from monitor.ingest.embedding_stage import UriSealer

        sealer = UriSealer(TEST_KEY.encode())
        images_dir.mkdir(parents=True, exist_ok=True)
    inferences, labels = [], []
    with psycopg.connect(url) as conn:
        for i in range(N):
            shifted = i >= SHIFT_AT
            site = ("north-general", "south-clinic", "east-imaging")[i % 3]
            vendor = "NewVendor" if shifted and i % 3 == 0 else "ACME"
            positive = rng.random() < 0.2
            score = float(np.clip(rng.beta(5, 2) if positive else rng.beta(2, 5), 0, 1))
            score = min(1.0, score + (0.15 if shifted else 0.0))
            study = uuid.uuid4().hex
            embedding = (rng.normal(size=8) + (1.5 if shifted and i % 3 == 0 else 0)).tolist()
            image_ref = None
            if sealer is not None and i >= N - 12:
                image_ref = uuid.uuid4().hex
                path = images_dir / f"{i}.dcm"
                write_dicom(path, i)
                conn.execute(
                    "INSERT INTO image_locators (image_ref, sealed_uri, key_id) VALUES (%s, %s, %s)",
                    (image_ref, sealer.seal(image_ref, path.as_uri()), sealer.key_id),
                )
            occurred = START + timedelta(minutes=10 * i)
            inferences.append(
                (str(uuid.uuid4()), site, occurred, study, image_ref,
                 Jsonb({"Manufacturer": vendor, "ManufacturerModelName": "X1",
                        "PatientSex": "F" if i % 2 else "M", "AgeBand": "40-49",
                        "KVP": float(rng.normal(110, 5)),
                        "PhotometricInterpretation": "MONOCHROME2"}),
                 Jsonb({"nodule": score}), Jsonb({"nodule": 0.5}), embedding, i)
            )  # fmt: skip
            if rng.random() < 0.7:
                labels.append((str(uuid.uuid4()), study, Jsonb({"nodule": int(positive)}),
                               occurred + timedelta(hours=6), i))  # fmt: skip
        with conn.cursor() as cur:
            cur.executemany(
                """INSERT INTO inferences (event_id, content_hash, model_name, model_version,
                       site, occurred_at, study_pseudo, image_ref, dicom, scores, thresholds,
                       embedding, kafka_topic, kafka_partition, kafka_offset)
                   VALUES (%s, 'h', 'cxr-nodule', '1.4.2', %s, %s, %s, %s, %s, %s, %s, %s,
                           't', 0, %s)""",
                inferences,
            )
            cur.executemany(
                """INSERT INTO labels (event_id, content_hash, model_name, study_pseudo, labels,
                       source, occurred_at, kafka_topic, kafka_partition, kafka_offset)
                   VALUES (%s, 'h', 'cxr-nodule', %s, %s, 'radiologist-report', %s, 'l', 0, %s)""",
                labels,
            )


def write_dicom(path: Path, i: int) -> None:
    """A small synthetic DX image (a gradient with a disc), no identifiers at all."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    yy, xx = np.mgrid[0:64, 0:64]
    pixels = (xx + yy) * 16 + ((xx - 20 - i % 20) ** 2 + (yy - 32) ** 2 < 100) * 1500
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray (PS3.4)
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def screenshot(html_file: Path, png: Path, profile: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium (Debian package) is required"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=8000",
         f"--screenshot={png}", "--window-size=1280,2000", html_file.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def test_report_renders_in_chromium(settings, database_url: str, tmp_path: Path) -> None:
    fill(database_url, settings.data_dir / "images")  # the default RADWATCH_IMAGE_ROOTS
    out = tmp_path / "report.html"
    run_radwatch(settings, "report", "--model", "cxr-nodule", "--out", str(out), timeout=400)
    text = out.read_text()
    for section in ("Timeline (event time)", "Performance per window", "Subgroups",
                    "Most atypical studies of the period", "Evidently: column-by-column drift",
                    "Evidently: classification report for nodule"):  # fmt: skip
        assert f"<h2>{section}</h2>" in text, section
    # No detection ran on this store: the verdict says so, and no card is invented.
    assert "id='verdict'" in text and "No incident or alert in this period" in text
    assert "id='cards-none'" in text and "data-alerts=" not in text
    assert "id='timeline'" in text and "<svg" in text and "data-axis-from=" in text
    # The period's most atypical studies: the sealed images read back, each with its caption.
    atypical = text[text.index("class='examples thumbs'") :]
    assert atypical.count("data:image/png;base64,") >= 1 and "why:" in atypical
    assert "thumbnails-none" not in text
    assert "NewVendor" in text  # the subgroup table names the new scanner
    assert "srcdoc=" in text and len(text) > 200_000  # Evidently's self-contained report
    ARTIFACTS.mkdir(exist_ok=True)
    png = ARTIFACTS / "report.png"
    png.unlink(missing_ok=True)
    screenshot(out, png, tmp_path / "chromium-profile")
    assert png.exists() and png.stat().st_size > 10_000
    image = np.asarray(Image.open(png).convert("L"))
    assert image.shape == (2000, 1280)
    # Not blank: a rendered page has text, a figure and tables, so many grey levels and a
    # good share of non-white pixels.
    assert len(np.unique(image)) > 32
    assert (image < 200).mean() > 0.01


def test_without_images_the_atypical_studies_keep_their_captions(database_url: str) -> None:
    fill(database_url, None)
    data = model_report.load(database_url, "cxr-nodule")
    document = report_document.render(
        data, pseudonym_key=TEST_KEY.encode(), include_evidently=False
    )
    atypical = document[document.index("class='examples thumbs'") :]
    assert "<img" not in atypical and atypical.count("class='example'") == model_report.THUMBNAILS
    # The shifted studies (embeddings +1.5 from study 1,000 on, NewVendor) are the most atypical.
    assert atypical.count("scanner NewVendor X1") == model_report.THUMBNAILS
    lines = subgroup_lines(data)
    new_vendor = [s for s in lines if (s.kind, s.value) == ("scanner", "NewVendor X1")]
    assert len(new_vendor) == 1 and new_vendor[0].n_studies > 100
