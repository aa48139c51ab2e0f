"""The synthetic hospital: determinism, scenarios that change exactly what they claim, the CNN.

Scenario checks compare each study with the same study under scenario "none" (same seed and
index): before the onset and outside the named stratum the DICOM objects must be identical,
and inside it only the claimed attributes (and the pixels) may differ.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

from collectors.images.dicom_reader import read_dicom_tags
from collectors.simulator import model as deployed
from collectors.simulator import stream
from collectors.simulator.scenarios import SCENARIOS
from collectors.simulator.study import StudyPlan, dicom_bytes, plan_study, stored_pixels

SEED = 21
N = 48  # studies per scenario comparison
ONSET = 12
# Attributes whose change follows from the pixels themselves (PS3.3 C.7.6.3), not a claim.
PIXEL_MODULE = {"PixelData", "HighBit"}


def _pseudo(kind: str, value: str) -> str:
    return f"{kind}:{value}"


def _dataset(plan: StudyPlan) -> tuple[bytes, dict]:
    raw = dicom_bytes(plan, stored_pixels(plan))
    return raw, read_dicom_tags(raw, _pseudo)


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        studies = list(stream.generate(5, seed=SEED, scenario="inversion_bug", onset=0,
                                          images_dir=tmp_path / name))  # fmt: skip
        runs.append(studies)
    for one, two in zip(*runs, strict=True):
        assert one.image_path is not None and two.image_path is not None
        assert one.image_path.read_bytes() == two.image_path.read_bytes()
        strip = [json.loads(s.inference_bytes()) for s in (one, two)]
        for doc in strip:
            doc["image"].pop("uri")
        assert strip[0] == strip[1]
        assert one.label_bytes() == two.label_bytes()
    other = list(stream.generate(2, seed=SEED + 1, images_dir=tmp_path / "c"))
    assert (
        other[0].image_path
        and other[0].image_path.read_bytes() != runs[0][0].image_path.read_bytes()
    )


def test_events_carry_the_models_score_embedding_and_image(tmp_path: Path) -> None:
    studies = list(stream.generate(40, seed=SEED, images_dir=tmp_path, label_share=0.5))
    for study in studies:
        doc = study.inference
        assert doc["image"]["uri"].startswith("file://")
        assert study.image_path is not None and study.image_path.exists()
        assert len(doc["embedding"]) == deployed.EMBEDDING_DIM
        assert 0.0 <= doc["prediction"]["scores"]["nodule"] <= 1.0
        assert doc["model"] == stream.MODEL
        assert doc["dicom"]["PhotometricInterpretation"] == "MONOCHROME2"
        if study.label is not None:
            assert study.label["occurred_at"] > doc["occurred_at"]
            assert study.label["study"]["study_uid"] == doc["study"]["study_uid"]
    labelled = sum(s.label is not None for s in studies)
    assert 10 <= labelled <= 30  # share 0.5 of 40, binomial sd ≈ 3.2: ±3 sd
    assert len({s.inference["site"] for s in studies}) == 3


@pytest.mark.parametrize("name", [n for n in SCENARIOS if n != "none"])
def test_each_scenario_changes_what_it_claims_and_nothing_else(name: str) -> None:
    scenario = SCENARIOS[name]
    affected = 0
    for index in range(N):
        ref = plan_study(SEED, index)
        new = plan_study(SEED, index, scenario_name=name, onset=ONSET)
        if index < ONSET or not new.affected:
            # Same plan → same bytes (the study functions are pure); checked on a few.
            assert new == ref, (name, index)
            if index in (0, ONSET):
                assert _dataset(new)[0] == _dataset(ref)[0]
            continue
        affected += 1
        for key, value in scenario.stratum.items():
            if key == "site":
                assert ref.scanner.site == value
        ref_raw, ref_tags = _dataset(ref)
        new_raw, new_tags = _dataset(new)
        changed = {
            k for k in ref_tags.keys() | new_tags.keys() if ref_tags.get(k) != new_tags.get(k)
        }
        assert changed <= set(scenario.attributes), (name, index, changed)
        ref_ds = pydicom.dcmread(io.BytesIO(ref_raw))
        new_ds = pydicom.dcmread(io.BytesIO(new_raw))
        # Identifiers, UIDs and dates are untouched: the same patient and study.
        for keyword in ("PatientID", "StudyInstanceUID", "SOPInstanceUID", "StudyDate"):
            assert ref_ds[keyword].value == new_ds[keyword].value
        if name == "inversion_bug":
            assert (ref.scanner.site, ref.scanner.model) == ("east-imaging", "X2")
            top = 2**ref.scanner.bits_stored - 1
            np.testing.assert_array_equal(new_ds.pixel_array, top - ref_ds.pixel_array)
            assert changed == {"PhotometricInterpretation", "PresentationLUTShape"}
        if name == "prevalence_change":
            assert new.positive and not ref.positive
            assert changed == set()
    assert affected > 0, f"{name}: no study affected in {N - ONSET} after the onset"


def test_prevalence_change_raises_the_positive_rate() -> None:
    n = 400
    before = np.mean([plan_study(SEED, i).positive for i in range(n)])
    after = np.mean([plan_study(SEED, i, scenario_name="prevalence_change", onset=0).positive
                     for i in range(n)])  # fmt: skip
    # Expected 0.20 → 0.50; with n = 400 the binomial sd is ≤ 0.025, tolerance 0.075 (3 sd).
    assert abs(before - 0.20) < 0.075 and abs(after - 0.50) < 0.075


def test_severity_scales_the_share_affected() -> None:
    n = 300
    shares = [
        np.mean(
            [
                plan_study(SEED, i, scenario_name="lateral_leak", onset=0, severity=s).view == "LL"
                for i in range(n)
            ]
        )  # fmt: skip
        for s in (0.2, 1.0)
    ]
    # Expected 0.06 and 0.30; binomial sd ≤ 0.027 at n = 300; tolerance 3 sd.
    assert abs(shares[0] - 0.06) < 0.08 and abs(shares[1] - 0.30) < 0.08


def test_deployed_model_weights_are_checked(tmp_path: Path) -> None:
    model = deployed.load_deployed()
    card = json.loads(deployed.CARD.read_text())
    assert model.sha256 == card["sha256"] == deployed.sha256_file(deployed.WEIGHTS)
    assert deployed.WEIGHTS.stat().st_size < 4 * 1024 * 1024
    assert card["validation"]["auroc"] >= 0.9
    tampered = tmp_path / "cxr_nodule.pt"
    shutil.copy(deployed.WEIGHTS, tampered)
    data = bytearray(tampered.read_bytes())
    data[-100] ^= 0xFF
    tampered.write_bytes(bytes(data))
    with pytest.raises(deployed.WeightsError):
        deployed.load_deployed(tampered, deployed.CARD)


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann–Whitney U / (n_pos · n_neg); continuous scores, so ties are negligible."""
    ranks = np.argsort(np.argsort(scores)) + 1.0
    n_pos = int(labels.sum())
    n_neg = len(labels) - n_pos
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_model_is_good_on_the_reference_and_the_card_records_degradation() -> None:
    # Live: 150 reference studies (seed 77, disjoint from the training seeds 9001–9003),
    # ~30 positives; the AUROC standard error is ~0.03 there, so the bar is 0.85 (card: ≥ 0.9
    # on 600 validation studies).
    model = deployed.load_deployed()
    plans = [plan_study(77, i) for i in range(150)]
    inputs = np.stack(
        [deployed.service_input(stored_pixels(p), p.scanner.bits_stored) for p in plans]
    )
    scores, embeddings = model.predict(inputs)
    labels = np.array([p.positive for p in plans], dtype=int)
    assert embeddings.shape == (150, deployed.EMBEDDING_DIM)
    assert auroc(scores, labels) >= 0.85
    # Recorded by scripts/train_deployed_model.py on the studies each scenario changes (seed
    # 9004, ≤ 120 studies, severity 1), scored with and without it: the scenarios marked
    # harmful cost AUROC in their stratum; the others move inputs, not performance.
    card = json.loads(deployed.CARD.read_text())
    affected = card["affected_studies_severity_1"]
    for name, scenario in SCENARIOS.items():
        if name == "none":
            continue
        if name == "prevalence_change":
            continue  # the changed studies are the new positives: no AUROC among them alone
        drop = affected[name]["auroc_reference"] - affected[name]["auroc_scenario"]
        assert (drop >= 0.03) == scenario.harmful, (name, drop)
    assert affected["inversion_bug"]["auroc_scenario"] < 0.7
