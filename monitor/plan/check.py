"""`radwatch plan check`: what a model's plan can detect at its observed volume, and the strata
too small to watch (issue 16, detectability).

The I/O edge of detectors/detectability.py: reads the model's frozen drift reference (the
fitted suite's manifest and per-stratum reference arrays, hash-checked, never unpickled), its
per-stratum counts, the observed volume (monitor/store/volume.py, as the budget measures it) and the
plan's windows and false-alarm budget, and hands them to the pure `assess`. The command line prints the result;
the plan document (monitor/reports/plan_document.py) renders it. Reads only.

Which feature leads each signal (the one the check shifts): the model's score (the first, by
name, when there are several), the median intensity `p50` (else `mean`), `KVP` (else the first
numeric DICOM attribute), and for embeddings the first principal component of the stratum's
reference vectors (the MMD test's own standardised reference).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np
import psycopg

from detectors.detectability import Detectability, FittedTest, Lead, Setting, Stratum, assess
from detectors.drift import artifact
from detectors.drift.contract import ALL
from detectors.false_alarm_budget import FalseAlarmBudget, derive
from monitor.plan.document import Plan, PlanError, default_plan
from monitor.store.volume import observed_volume

DRIFT_SIGNALS = ("acquisition", "image_quality", "image_embedding", "model_embedding", "scores")
PREFERRED: Mapping[str, tuple[str, ...]] = {"image_quality": ("p50", "mean"),
                                            "acquisition": ("KVP",)}  # fmt: skip
CATEGORICAL_ONLY = ("categorical only: Chi-square per attribute and never-seen values "
                    "(Good–Turing); a value never seen in the reference is found in one window "
                    "once it is a few studies of it")  # fmt: skip
NO_REFERENCE = ("model {model!r} has no frozen drift reference: run `radwatch reference build "
                "--model {model} --first N` first")  # fmt: skip


def detectability(conn: psycopg.Connection, model: str, plan: Plan, *,
                  within_days: float = 7.0, seed: int = 0) -> Detectability:  # fmt: skip
    """Each watched signal × stratum's minimal detectable shift within `within_days` at the
    model's observed volume and the plan's budget; PlanError when there is no reference."""
    ref_id, n_events, counts, manifest, arrays = _reference(conn, model)
    config = manifest["config"]
    volume = observed_volume(conn, model)
    # As detection does (monitor/drift/rules.py): the default plan keeps the reference's own
    # window size; an approved plan's window governs.
    is_default = plan.version == default_plan(model).version
    window = int(config["calibration_window"]) if is_default else plan.windows.drift
    b = plan.false_alarm_budget
    stated = FalseAlarmBudget(b.incidents, b.days)
    derived = derive(stated, volume, drift_window=window,
                     performance_window=plan.windows.performance,
                     online=manifest.get("online") is not None)  # fmt: skip
    setting = Setting(window=window, max_span_days=plan.windows.max_span_days,
                      studies_per_day=volume.studies_per_day, alpha=derived.drift.alpha,
                      persistence=derived.drift.open_after, within_days=within_days,
                      min_window=int(config["min_window"]),
                      min_reference=int(config["min_reference"]),
                      whole_model_share=float(config["whole_model_share"]))  # fmt: skip
    strata = _strata(manifest, arrays, counts, n_events, plan)
    signals = [s for s in plan.signals if s in DRIFT_SIGNALS]
    rows = assess(strata, signals, setting, seed=seed)
    notes = []
    others = [s for s in plan.signals if s not in DRIFT_SIGNALS]
    if others:
        notes.append(f"{', '.join(others)}: judged on labelled studies (windows of "
                     f"{plan.windows.performance}; CUSUM ARL0 {derived.cusum_arl0:,.0f}); the "
                     "drift reference holds no labels, so this check does not estimate them")  # fmt: skip
    notes.append("a stratum's studies per window vary (binomially) around the expectation "
                 "shown: one near the minimum is insufficient_data in some windows")  # fmt: skip
    if volume.basis.startswith("assumed"):
        notes.append(f"the volume is assumed, not observed: {volume.basis}")
    return Detectability(model=model, plan_version=plan.version, reference_id=ref_id,
                         volume=volume, budget=stated, setting=setting, rows=rows,
                         notes=tuple(notes))  # fmt: skip


def _reference(conn: psycopg.Connection, model: str
               ) -> tuple[int, int, dict[str, dict[str, int]], dict[str, Any], Any]:  # fmt: skip
    row = conn.execute(
        """SELECT r.id, r.n_events, r.strata_counts, a.sha256, a.format, a.manifest_json,
                  a.arrays
           FROM drift_references r JOIN drift_reference_artifacts a ON a.reference_id = r.id
           WHERE r.model_name = %s AND r.active""",
        (model,),
    ).fetchone()
    if row is None:
        raise PlanError(NO_REFERENCE.format(model=model))
    ref_id, n_events, counts, sha, fmt, manifest_json, arrays = row
    if manifest_json is None or arrays is None:
        raise PlanError(f"reference {ref_id} of {model!r} is stored in an older format: "
                        "convert it with `radwatch reference migrate-pickles`")  # fmt: skip
    manifest_bytes, array_bytes = bytes(manifest_json), bytes(arrays)
    try:
        if artifact.content_hash(manifest_bytes, array_bytes) != sha:
            raise artifact.ArtifactError("artifact hash mismatch (refusing to read it)")
        manifest = artifact.read_manifest(manifest_bytes)
        npz = np.load(io.BytesIO(array_bytes), allow_pickle=False)
    except (artifact.ArtifactError, ValueError, OSError) as exc:
        raise PlanError(f"reference {ref_id} of {model!r}: {exc}") from exc
    return int(ref_id), int(n_events), counts or {}, manifest, npz


def _strata(manifest: dict[str, Any], arrays: Any, counts: dict[str, dict[str, int]],
            n_events: int, plan: Plan) -> list[Stratum]:  # fmt: skip
    """The whole model, then every value of the plan's stratum kinds seen in the reference."""
    config = manifest["config"]
    fitted = {(str(s["kind"]), str(s["value"])): s for s in manifest["strata"]}
    keys = [ALL] + [(kind, value)
                    for kind in plan.strata
                    for value, _ in sorted(counts.get(kind, {}).items(), key=lambda kv: -kv[1])
                    if value != "None"]  # fmt: skip
    out = []
    for key in keys:
        count = n_events if key == ALL else int(counts[key[0]][key[1]])
        share = count / n_events if n_events else 0.0
        entry = fitted.get(key)
        if entry is None:
            fit_part = round(count * (1.0 - float(config["holdout_share"])))
            why = (f"the reference's detectors are not fitted per {key[0]}"
                   if key[0] not in config["strata_kinds"] else
                   f"{count} reference studies (≈{fit_part} in the fit part) < minimum "
                   f"{config['min_reference']}: no detector fitted")  # fmt: skip
            out.append(Stratum(key[0], key[1], share, count, False, unfitted_reason=why))
            continue
        tests, leads = _tests_and_leads(entry["detectors"], arrays)
        out.append(Stratum(key[0], key[1], share, int(entry["n_reference"]), True,
                           tests=tuple(tests), leads=leads))  # fmt: skip
    return out


def _tests_and_leads(detectors: list[dict[str, Any]], arrays: Any
                     ) -> tuple[list[FittedTest], dict[str, Lead]]:  # fmt: skip
    tests: list[FittedTest] = []
    leads: dict[str, Lead] = {}
    for d in detectors:
        params, names = d["params"], d["arrays"]
        signal = str(params["signal"])
        if d["kind"] == "EmbeddingMMD":
            tests.append(FittedTest(f"mmd:{signal}", signal, 1))
            leads[signal] = Lead(signal, f"mmd:{signal}", f"PC1 of {signal}",
                                 first_component(arrays[names["x_ref"]]), stand_in=True)  # fmt: skip
        elif d["kind"] == "ScalarKS":
            features = [str(f) for f in params["features"]]
            tests.append(FittedTest(f"ks:{signal}", signal, len(features)))
            chosen = next((f for f in PREFERRED.get(signal, ()) if f in features),
                          sorted(features)[0])  # fmt: skip
            values = arrays[names[f"f{features.index(chosen)}"]]
            leads[signal] = Lead(signal, f"ks:{signal}", chosen, np.asarray(values, float))
        elif d["kind"] == "CategoricalChi2":
            tested = sum(1 for v in params["vocab"] if len(v["counts"]) > 1)
            tests.append(FittedTest(f"chi2:{signal}", signal, max(tested, 1)))
            leads.setdefault(signal, Lead(signal, f"chi2:{signal}", "categories", None,
                                          note=CATEGORICAL_ONLY))  # fmt: skip
    return tests, leads


def first_component(vectors: np.ndarray) -> np.ndarray:
    """Each reference vector's projection on the first principal component."""
    x = np.asarray(vectors, dtype=float)
    x = x[np.all(np.isfinite(x), axis=1)]
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[0]
