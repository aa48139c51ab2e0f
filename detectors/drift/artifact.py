"""A fitted detector suite as data: a JSON manifest plus numpy arrays, content-hashed.

Between the fitted suite (fitting.py `fit_suite`) and its storage (monitor/drift/reference.py):
`pack` turns a `DetectorSuite` into manifest bytes, `.npz` bytes and a SHA-256 over both;
`unpack` checks the hash and rebuilds the suite. Loading executes no stored code: arrays are
read with `allow_pickle=False`, and a detector's kind picks its class through the explicit
list in registry.py, never through an import of a stored name.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, fields
from typing import Any

import numpy as np

from detectors.drift.contract import WindowDetector
from detectors.drift.score import NullMoments
from detectors.drift.suite import Calibration, DetectorSuite, FittedStratum, SuiteConfig
from detectors.errors import DetectorError

SCHEMA = "radwatch.reference-artifact/1"


class ArtifactError(DetectorError):
    """A stored reference artifact is corrupted, tampered with, or of an unknown schema."""


def content_hash(manifest: bytes, arrays: bytes) -> str:
    """SHA-256 over both parts, each length-prefixed so no byte can move between them."""
    h = hashlib.sha256()
    for part in (manifest, arrays):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def pack(suite: DetectorSuite) -> tuple[bytes, bytes, str]:
    """(manifest JSON bytes, npz bytes, sha256) for a fitted suite."""
    arrays: dict[str, np.ndarray] = {}

    def entry(prefix: str, detector: Any) -> dict[str, Any]:
        params, own = detector.to_state()
        names = {}
        for key, arr in own.items():
            if arr.dtype == object:
                raise ArtifactError(f"{detector.name}: array {key!r} would need pickle")
            names[key] = f"{prefix}{key}"
            arrays[names[key]] = arr
        return {"kind": detector.kind, "params": params, "arrays": names}

    strata = []
    for i, ((kind, value), fitted) in enumerate(suite.strata.items()):
        detectors = [entry(f"s{i}_d{j}_", d) for j, d in enumerate(fitted.detectors)]
        strata.append({"kind": kind, "value": value, "n_reference": fitted.n_reference,
                       "detectors": detectors})  # fmt: skip
    cal = suite.calibration
    manifest = {
        "schema": SCHEMA,
        "backend": suite.backend_version,
        "fingerprint": suite.fingerprint,
        "config": asdict(suite.config),
        "n_fit": suite.n_fit,
        "n_holdout": suite.n_holdout,
        "calibration": None if cal is None else {
            "windows": cal.windows, "window_size": cal.window_size,
            "false_alarm": [[k, v] for k, v in cal.false_alarm.items()],
            "nulls": [[k, v.mean, v.sd] for k, v in cal.nulls.items()],
        },
        "strata": strata,
        "online": None if suite.online is None else entry("online_", suite.online),
    }  # fmt: skip
    # Lists, not sorted dicts, wherever order matters (strata, detectors, features).
    manifest_bytes = json.dumps(manifest, separators=(",", ":")).encode()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return manifest_bytes, buf.getvalue(), content_hash(manifest_bytes, buf.getvalue())


def read_manifest(manifest: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(manifest)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"manifest is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else None
        raise ArtifactError(f"unknown artifact schema {found!r} (expected {SCHEMA})")
    return doc


def unpack(manifest: bytes, arrays: bytes, sha256: str) -> DetectorSuite:
    """The suite back from its stored parts, after the content hash is checked."""
    if content_hash(manifest, arrays) != sha256:
        raise ArtifactError("artifact hash mismatch (refusing to load)")
    doc = read_manifest(manifest)
    try:
        with np.load(io.BytesIO(arrays), allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
        return _suite(doc, data)
    except ArtifactError:
        raise
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise ArtifactError(f"artifact does not match its schema: {exc!r}") from exc


def _suite(doc: dict[str, Any], data: dict[str, np.ndarray]) -> DetectorSuite:
    config = _config(doc["config"])
    suite = DetectorSuite(config, str(doc["backend"]))
    if suite.fingerprint != doc["fingerprint"]:
        raise ArtifactError("artifact fingerprint does not match its configuration")
    suite.n_fit, suite.n_holdout = int(doc["n_fit"]), int(doc["n_holdout"])
    for s in doc["strata"]:
        detectors = [_detector(d, data) for d in s["detectors"]]
        key = (str(s["kind"]), str(s["value"]))
        suite.strata[key] = FittedStratum(key[0], key[1], int(s["n_reference"]), detectors)
    cal = doc["calibration"]
    if cal is not None:
        suite.calibration = Calibration(
            int(cal["windows"]), int(cal["window_size"]),
            {str(k): float(v) for k, v in cal["false_alarm"]},
            {str(k): NullMoments(float(m), float(sd)) for k, m, sd in cal["nulls"]},
        )  # fmt: skip
    online = doc["online"]
    if online is not None:
        registry = _registry()
        if online["kind"] != registry.ONLINE.kind:
            raise ArtifactError(f"unknown online detector kind {online['kind']!r}")
        suite.online = registry.ONLINE.from_state(online["params"], _arrays(online, data), config)
    return suite


def _detector(entry: dict[str, Any], data: dict[str, np.ndarray]) -> WindowDetector:
    cls = _registry().windowed(entry["kind"])
    if cls is None:
        raise ArtifactError(f"unknown detector kind {entry['kind']!r}")
    return cls.from_state(entry["params"], _arrays(entry, data))


def _arrays(entry: dict[str, Any], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {key: data[name] for key, name in entry["arrays"].items()}


def _config(doc: dict[str, Any]) -> SuiteConfig:
    """SuiteConfig from its JSON form: JSON lists back to tuples, unknown keys refused."""
    known = {f.name for f in fields(SuiteConfig)}
    unknown = set(doc) - known
    if unknown:
        raise ArtifactError(f"artifact configuration has unknown keys {sorted(unknown)}")
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in doc.items()}
    return SuiteConfig(**values)


def _registry() -> Any:
    """The detector list, imported when a suite is unpacked: it brings alibi-detect and torch
    (seconds), which reading a manifest (`read_manifest`, `content_hash`) does not need."""
    from detectors.drift import registry

    return registry
