"""Fitted suites as data (issue 14): pack → unpack gives the same verdicts, bit for bit, for
every detector kind (MMD, KS, Chi-square on DICOM attributes and on the model's calls, the
online CVM); a changed byte, an unknown kind or a pickle is refused without running code.

The suite is fitted on a seeded synthetic sample (test_suite.py's shape plus the
model's calls), small enough that the online detector's simulation takes about a second.
"""

from __future__ import annotations

import io
import json
import pickle
from dataclasses import replace

import numpy as np
import pytest

from detectors.drift import artifact, registry
from detectors.drift.contract import ALL, CALL_PREFIX, Sample
from detectors.drift.fitting import fit_suite
from detectors.drift.results import Status
from detectors.drift.suite import SuiteConfig

ATTRS = ("Manufacturer", "PhotometricInterpretation")
CONFIG = SuiteConfig(calibration_window=100, calibration_windows=5, min_window=20,
                     online=True, online_ert=200, online_bootstraps=500, online_reference=200,
                     online_window_sizes=(10, 30), strata_kinds=("site",))  # fmt: skip


def sample(n: int, seed: int, *, shift: float = 0.0) -> Sample:
    rng = np.random.default_rng(seed)
    site = rng.choice(np.array(["north", "south"], dtype=object), size=n)
    vendor = np.where(rng.random(n) < 0.7, "ACME", "Borealis").astype(object)
    vendor[rng.random(n) < shift / 2] = "Zenith"  # a never-seen value once shifted
    score = rng.beta(2, 5, size=n) + shift / 4
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    emb[:, 0] += shift
    return Sample(
        ids=tuple(f"s{seed}-{i}" for i in range(n)),
        vectors={"model_embedding": emb},
        scalars={"scores": {"nodule": score}, "acquisition": {"KVP": rng.normal(110, 5, n)}},
        categories={"Manufacturer": vendor,
                    "PhotometricInterpretation": np.array(["MONOCHROME2"] * n, dtype=object),
                    f"{CALL_PREFIX}nodule": np.where(score >= 0.4, "yes", "no").astype(object)},
        strata={"site": site},
    )  # fmt: skip


@pytest.fixture(scope="module")
def fitted():
    suite = fit_suite(sample(500, 1), CONFIG, categorical_attributes=ATTRS)
    return suite, artifact.pack(suite)


def test_every_detector_kind_round_trips_to_identical_results(fitted):
    suite, (manifest, arrays, sha) = fitted
    back = artifact.unpack(manifest, arrays, sha)
    kinds = {d.kind for f in suite.strata.values() for d in f.detectors}
    assert kinds == {cls.kind for cls in registry.WINDOWED} and suite.online is not None
    assert [d.name for d in suite.strata[ALL].detectors] == [
        "mmd:model_embedding", "ks:acquisition", "ks:scores", "chi2:acquisition", "chi2:scores"
    ]  # fmt: skip
    assert back.fingerprint == suite.fingerprint and back.config == suite.config
    assert back.calibration == suite.calibration and list(back.strata) == list(suite.strata)
    for shift in (0.0, 1.0):
        window = sample(150, 7, shift=shift)
        before, after = suite.score(window, seed=3), back.score(window, seed=3)
        assert before == after  # p-values, adjusted p, statistics, effect sizes, atypical ids
        ps = [r.p_value for v in after for r in v.results if r.p_value is not None]
        assert len(ps) >= 10
    drifted = {
        r.detector for v in after if v.kind == "all" for r in v.results if r.status is Status.DRIFT
    }
    assert {"mmd:model_embedding", "chi2:acquisition"} <= drifted
    stream = sample(120, 9, shift=1.5)
    assert suite.online.update(stream) == back.online.update(stream)
    assert np.array_equal(
        back.online.detector.thresholds, suite.online.detector.thresholds, equal_nan=True
    )  # NaN until the smallest window fills


def test_the_artifact_is_content_hashed_and_a_changed_byte_is_refused(fitted):
    _, (manifest, arrays, sha) = fitted
    assert artifact.content_hash(manifest, arrays) == sha
    flipped = bytearray(arrays)
    flipped[len(flipped) // 2] ^= 0x01
    with pytest.raises(artifact.ArtifactError, match="hash mismatch"):
        artifact.unpack(manifest, bytes(flipped), sha)
    doc = manifest.replace(b'"alpha":0.05', b'"alpha":0.5')
    with pytest.raises(artifact.ArtifactError, match="hash mismatch"):
        artifact.unpack(doc, arrays, sha)


def test_only_registered_kinds_and_plain_arrays_load(fitted):
    _, (manifest, arrays, _) = fitted
    doc = json.loads(manifest)
    doc["strata"][0]["detectors"][0]["kind"] = "os.system"
    evil = json.dumps(doc).encode()
    with pytest.raises(artifact.ArtifactError, match="unknown detector kind 'os.system'"):
        artifact.unpack(evil, arrays, artifact.content_hash(evil, arrays))
    # An object array (which would need pickle) is refused by np.load(allow_pickle=False).
    buf = io.BytesIO()
    np.savez(buf, **{"s0_d0_mean": np.array([object()], dtype=object)})
    with pytest.raises(artifact.ArtifactError):
        artifact.unpack(manifest, buf.getvalue(), artifact.content_hash(manifest, buf.getvalue()))
    # A pickled suite is not an artifact: it is never unpickled here.
    blob = pickle.dumps({"x": 1})
    with pytest.raises(artifact.ArtifactError, match="not JSON|unknown artifact schema"):
        artifact.unpack(blob, b"", artifact.content_hash(blob, b""))


def test_a_suite_without_online_detector_or_strata_round_trips():
    config = replace(CONFIG, online=False, strata_kinds=())
    suite = fit_suite(sample(300, 2), config, categorical_attributes=ATTRS)
    back = artifact.unpack(*artifact.pack(suite))
    assert back.online is None and list(back.strata) == [ALL]
    window = sample(100, 4, shift=0.5)
    assert back.score(window, seed=1) == suite.score(window, seed=1)
