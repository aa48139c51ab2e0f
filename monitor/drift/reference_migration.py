"""One-time conversion of pickled references into data artifacts (`reference migrate-pickles`).

Between drift_reference_artifacts rows written by older releases (a pickled DetectorSuite
and its SHA-256) and the manifest + arrays format of detectors/drift/artifact.py. This is the only
place in radwatch that unpickles anything, and only when an operator runs the command: the
stored hash is checked first, and the unpickler resolves only the classes a fitted suite is
made of, named by the module paths of the releases that wrote pickles (`LEGACY_CLASSES`: the
detectors have moved since, and a stored pickle names them where they were), plus the exact
numpy, torch and alibi-detect names those pickles hold (`LIBRARY_NAMES`; never eval, os or
subprocess, and a tensor's storage is read with torch's weights-only loader). The
converted artifact must score like the pickle did; each conversion is an audit record.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from dataclasses import dataclass

import psycopg

from detectors.drift import artifact
from detectors.drift.suite import DetectorSuite
from monitor.audit import trail
from monitor.drift.reference import ReferenceError, store_artifact

# Every class of ours a pickled suite refers to, where the releases that wrote pickles
# (radwatch before references were stored as data) defined it -> where it is now. Found by
# pickling a suite fitted with each of those releases: detectors.results and
# detectors.multiple_testing held nothing a suite keeps (typed results are never part of it,
# multiple testing is functions). Any other name under detectors is refused.
LEGACY_CLASSES: dict[tuple[str, str], tuple[str, str]] = {
    ("detectors.drift", "DetectorSuite"): ("detectors.drift.suite", "DetectorSuite"),
    ("detectors.drift", "SuiteConfig"): ("detectors.drift.suite", "SuiteConfig"),
    ("detectors.drift", "Calibration"): ("detectors.drift.suite", "Calibration"),
    ("detectors.drift", "FittedStratum"): ("detectors.drift.suite", "FittedStratum"),
    ("detectors.drift_score", "NullMoments"): ("detectors.drift.score", "NullMoments"),
    ("detectors.alibi_backend", "EmbeddingMMD"): ("detectors.drift.mmd", "EmbeddingMMD"),
    ("detectors.alibi_backend", "ScalarKS"): ("detectors.drift.ks", "ScalarKS"),
    ("detectors.alibi_backend", "CategoricalChi2"): ("detectors.drift.chi2", "CategoricalChi2"),
    ("detectors.categorical", "CategoricalChi2"): ("detectors.drift.chi2", "CategoricalChi2"),
    ("detectors.categorical", "Vocabulary"): ("detectors.drift.chi2", "Vocabulary"),
    ("detectors.alibi_backend", "OnlineCVM"): ("detectors.drift.alibi_backend", "OnlineCVM"),
}
# Exactly the library names a pickled suite of those releases refers to (found the same
# way), in numpy 1 and numpy 2 spelling. Exact (module, name) pairs, never prefixes: a prefix
# would let a crafted row name any attribute path under it (`torch`, "os.system").
LIBRARY_NAMES = frozenset({
    ("collections", "OrderedDict"),
    ("numpy", "dtype"), ("numpy", "ndarray"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("alibi_detect.cd.chisquare", "ChiSquareDrift"), ("alibi_detect.cd.ks", "KSDrift"),
    ("alibi_detect.cd.cvm_online", "CVMDriftOnline"),
})  # fmt: skip
ALLOWED_BUILTINS = frozenset({"set", "frozenset", "slice", "complex", "range", "bytearray",
                              "object", "tuple", "list", "dict", "int", "float", "str",
                              "bool", "bytes"})  # fmt: skip


def _storage_from_bytes(data: bytes) -> object:
    """torch.storage._load_from_bytes without its nested unrestricted pickle load: a tensor's
    storage is read with `weights_only=True` (tensors and plain containers only)."""
    import torch

    return torch.load(io.BytesIO(data), weights_only=True)


@dataclass(frozen=True)
class Converted:
    reference_id: int
    model: str
    old_sha256: str
    new_sha256: str


class _SuiteUnpickler(pickle.Unpickler):
    """Resolves only what a fitted DetectorSuite is made of (defence in depth)."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in LEGACY_CLASSES:
            return super().find_class(*LEGACY_CLASSES[module, name])
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _storage_from_bytes
        if (module, name) in LIBRARY_NAMES or (module == "builtins" and name in ALLOWED_BUILTINS):
            return super().find_class(module, name)
        raise ReferenceError(f"pickled reference refers to {module}.{name}: not converting it")


def load_pickle(blob: bytes, sha256: str, ref_id: int) -> DetectorSuite:
    """The old artifact, after its stored hash matched (the only pickle load in radwatch)."""
    if hashlib.sha256(blob).hexdigest() != sha256:
        raise ReferenceError(f"reference {ref_id}: pickled artifact hash mismatch (not converted)")
    suite = _SuiteUnpickler(io.BytesIO(blob)).load()
    if not isinstance(suite, DetectorSuite):
        raise ReferenceError(f"reference {ref_id}: pickled artifact is not a detector suite")
    return suite


def migrate_pickles(
    conn: psycopg.Connection, *, model: str | None = None, actor: str = "radwatch"
) -> list[Converted]:
    """Convert every pickled reference (of one model, or all) in its own transaction."""
    rows = conn.execute(
        """SELECT a.reference_id, r.model_name, a.sha256, a.blob
           FROM drift_reference_artifacts a JOIN drift_references r ON r.id = a.reference_id
           WHERE a.format = 'pickle' AND (%s::text IS NULL OR r.model_name = %s)
           ORDER BY a.reference_id""",
        (model, model),
    ).fetchall()
    done = []
    for ref_id, name, old_sha, blob in rows:
        suite = load_pickle(bytes(blob), old_sha, ref_id)
        manifest_json, arrays, sha = artifact.pack(suite)
        # Read back through the loader detection uses, so a conversion that would not load
        # is never committed.
        artifact.unpack(manifest_json, arrays, sha)
        with conn.transaction():
            store_artifact(conn, ref_id, suite, manifest_json, arrays, sha)
            trail.record(
                conn, actor=actor, action="reference.migrated", entity_type="drift_reference",
                entity_id=str(ref_id), entity_version=sha[:16],
                refs={"model": name, "pickle_sha256": old_sha, "artifact_sha256": sha,
                      "detector_fingerprint": suite.fingerprint},
                detail={"from": "pickle", "to": artifact.SCHEMA},
            )  # fmt: skip
        done.append(Converted(int(ref_id), str(name), str(old_sha), sha))
    return done
