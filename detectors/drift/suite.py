"""The suite fitted on one reference: every windowed detector per stratum, calibrated, and
the window's single multiple-testing family.

Pure computation between the fitting (fitting.py `fit_suite`) and monitor/drift/scheduler.py,
which scores each due window with it and stores the verdicts. The suite is fitted once per
reference, checked on held-out reference sub-windows (empirical false-alarm rate), stored as
data in the reference's artifact (artifact.py), and reused for every window: detection never
refits. What one detector must give is in contract.py.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from detectors.drift.contract import ALL, STRATUM_KINDS, Sample, WindowDetector
from detectors.drift.multiple_testing import adjust
from detectors.drift.results import DriftResult, FeatureFinding, Status
from detectors.drift.score import NullMoments, evidence, unified_score
from detectors.errors import InsufficientDataError


@dataclass(frozen=True)
class SuiteConfig:
    """Everything that changes a verdict; its hash is the detector fingerprint."""

    alpha: float = 0.05
    correction: str = "bh"
    # Share of the window's multiple-testing weight held by the whole-model tests; the
    # strata share the rest (see family_weights).
    whole_model_share: float = 0.5
    min_window: int = 30  # per stratum: fewer events → insufficient_data
    min_reference: int = 50  # per stratum reference
    mmd_max_reference: int = 1000
    mmd_max_reference_stratum: int = 500
    mmd_permutations: int = 100
    rare_share: float = 0.01
    calibration_windows: int = 20
    calibration_window: int = 200
    holdout_share: float = 0.25
    online_ert: int = 2000
    online_window_sizes: tuple[int, ...] = (20, 60)
    online_reference: int = 300
    online_bootstraps: int = 5000
    # Off by default: within a false-alarm budget its ERT is ~10⁵ studies, which alibi-detect
    # calibrates by simulating ~3·d·ERT streams (detectors/false_alarm_budget.py).
    online: bool = False
    strata_kinds: tuple[str, ...] = STRATUM_KINDS
    seed: int = 0

    def fingerprint(self, backend_version: str) -> str:
        doc = dict(self.__dict__, backend=backend_version)
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=list).encode()).hexdigest()[
            :16
        ]


@dataclass(frozen=True)
class Calibration:
    """How each detector behaved on held-out reference sub-windows (no shift by construction)."""

    windows: int
    window_size: int
    false_alarm: Mapping[str, float]  # detector name -> share of sub-windows with p < α
    nulls: Mapping[str, NullMoments]


@dataclass
class FittedStratum:
    kind: str
    value: str
    n_reference: int
    detectors: list[WindowDetector]


@dataclass(frozen=True)
class StratumVerdict:
    kind: str
    value: str
    n_window: int
    results: tuple[DriftResult, ...]
    drift_score: float


class DetectorSuite:
    """All windowed detectors per stratum (and the online one), fitted on one reference."""

    def __init__(self, config: SuiteConfig, backend_version: str) -> None:
        self.config = config
        self.backend_version = backend_version
        self.strata: dict[tuple[str, str], FittedStratum] = {}
        self.calibration: Calibration | None = None
        # alibi_backend.OnlineCVM or None; untyped here so the suite never imports the one
        # module that imports alibi-detect (the BSL boundary).
        self.online: Any = None
        self.n_fit = 0
        self.n_holdout = 0

    @property
    def fingerprint(self) -> str:
        return self.config.fingerprint(self.backend_version)

    @property
    def uses_strata(self) -> list[tuple[str, str]]:
        return list(self.strata)

    def stratum_values(self, sample: Sample) -> list[tuple[str, str]]:
        keys = [ALL]
        for kind in self.config.strata_kinds:
            column = sample.strata.get(kind)
            if column is None:
                continue
            keys += [(kind, str(v)) for v in sorted({v for v in column if v is not None})]
        return keys

    def score(
        self, window: Sample, *, seed: int = 0, alpha: float | None = None
    ) -> list[StratumVerdict]:
        """Every fitted stratum's tests on the window, p-values adjusted over the whole window.

        A stratum seen in the window but absent (or too small) in the reference gets an
        `insufficient_data` result rather than silence.
        """
        raw: list[tuple[tuple[str, str], int, list[DriftResult]]] = []
        seen = set(self.stratum_values(window)) | set(self.strata)
        for i, key in enumerate(sorted(seen, key=lambda k: (k != ALL, k))):
            mask = window.stratum_mask(*key)
            part = window.take(mask)
            fitted = self.strata.get(key)
            if fitted is None:
                if len(part):
                    msg = "stratum absent or too small in the reference"
                    raw.append(
                        (key, len(part), [_insufficient("reference", "all", len(part), msg)])
                    )
                continue
            if len(part) < self.config.min_window:
                msg = f"{len(part)} events < minimum {self.config.min_window}"
                results = [
                    _insufficient(d.name, d.signal, len(part), msg, fitted.n_reference)
                    for d in fitted.detectors
                ]
                raw.append((key, len(part), results))
                continue
            results = []
            for d in fitted.detectors:
                try:
                    results.append(d.score(part, seed=seed * 7919 + i))
                except InsufficientDataError as exc:
                    results.append(_insufficient(d.name, d.signal, len(part), str(exc)))
            raw.append((key, len(part), results))
        # `alpha`: the level the false-alarm budget derived (detectors/false_alarm_budget.py);
        # it sets only the window's verdicts, not the fitted detectors, so it is no refit.
        config = self.config if alpha is None else replace(self.config, alpha=alpha)
        adjusted = adjust_window(
            [r for _, _, rs in raw for r in rs],
            config,
            family_weights([(key, rs) for key, _, rs in raw], self.config),
        )
        out, pos = [], 0
        nulls = self.calibration.nulls if self.calibration else {}
        for (kind, value), n, rs in raw:
            mine = tuple(adjusted[pos : pos + len(rs)])
            pos += len(rs)
            out.append(StratumVerdict(kind, value, n, mine, unified_score(mine, nulls)))
        return out


def _tested(r: DriftResult) -> list[float]:
    """The p-values a result puts in the window's family: one per feature, or its own."""
    if r.status not in (Status.OK, Status.DRIFT):
        return []
    return [f.p_value for f in r.features] if r.features else [r.p_value]


def family_weights(
    strata: Sequence[tuple[tuple[str, str], Sequence[DriftResult]]], config: SuiteConfig
) -> list[float]:
    """Weights for the window's p-values, in `adjust_window`'s order (weighted BH).

    Hierarchical and equal at each level: the whole-model stratum holds
    `whole_model_share` of the weight and the other strata share the rest equally; inside a
    stratum each signal gets an equal part, inside a signal each test, inside a test each
    feature. Without it a window's ~700 p-values (16 strata × ~45 features) put a lone
    whole-model signal — the model's scores after a prevalence change — under a threshold
    of α/700, and the question a QA team asks first ("has the model's output moved?")
    would be the one answered least often. Subgroup findings are strong when they are real
    (a never-seen value, a shifted scanner), so halving their weight costs little power.
    """
    tested = [(key, [r for r in rs if _tested(r)]) for key, rs in strata]
    tested = [(key, rs) for key, rs in tested if rs]
    others = sum(1 for key, _ in tested if key != ALL)
    has_whole = any(key == ALL for key, _ in tested)
    weights: list[float] = []
    for key, rs in tested:
        if key == ALL:
            share = config.whole_model_share if others else 1.0
        else:
            share = (1.0 - config.whole_model_share if has_whole else 1.0) / others
        signals: dict[str, list[DriftResult]] = {}
        for r in rs:
            signals.setdefault(r.signal, []).append(r)
        for r in rs:
            per_test = share / len(signals) / len(signals[r.signal])
            ps = _tested(r)
            weights += [per_test / len(ps)] * len(ps)
    return weights


def adjust_window(
    results: Sequence[DriftResult], config: SuiteConfig, weights: Sequence[float] | None = None
) -> list[DriftResult]:
    """One multiple-testing family per window: every feature p-value of every test.

    A detector's adjusted p is the smallest adjusted p of its features (or its own, for
    single-statistic tests such as MMD); its status becomes DRIFT when that is below α.
    `weights` (one per p-value, see family_weights) make it a weighted procedure.
    """
    flat: list[float] = []
    for r in results:
        flat += _tested(r)
    adj = adjust(flat, config.correction, weights)
    out, pos = [], 0
    for r in results:
        if r.status not in (Status.OK, Status.DRIFT):
            out.append(r)
            continue
        if r.features:
            k = len(r.features)
            mine = adj[pos : pos + k]
            pos += k
            feats = tuple(
                FeatureFinding(**{**f.__dict__, "adjusted_p": a})
                for f, a in zip(r.features, mine, strict=True)
            )
            finite = [a for a in mine if math.isfinite(a)]
            out.append(r.with_adjusted(min(finite) if finite else 1.0, feats, config.alpha))
        else:
            a = adj[pos]
            pos += 1
            out.append(r.with_adjusted(a if math.isfinite(a) else 1.0, (), config.alpha))
    return out


def calibrate(suite: DetectorSuite, holdout: Sample, config: SuiteConfig) -> Calibration:
    """Score whole-model detectors on sub-windows of the held-out reference part.

    Each detector's empirical false-alarm rate is the share of sub-windows whose p-value
    (Bonferroni across the detector's own features) is below α; its -log10 p moments feed
    the unified drift score. (Thresholds fitted on reference chunks, as NannyML does.)
    """
    fitted = suite.strata.get(ALL)
    size = min(config.calibration_window, len(holdout) // 2)
    if fitted is None or size < config.min_window:
        return Calibration(0, size, {}, {})
    rng = np.random.default_rng(config.seed + 1)
    per: dict[str, list[float]] = {d.name: [] for d in fitted.detectors}
    for w in range(config.calibration_windows):
        idx = np.sort(rng.choice(len(holdout), size=size, replace=False))
        part = holdout.take(idx)
        for d in fitted.detectors:
            r = d.score(part, seed=10_000 + w)
            if r.status not in (Status.OK, Status.DRIFT):
                continue
            ps = [f.p_value for f in r.features] or [r.p_value]
            per[d.name].append(min(1.0, min(ps) * len(ps)))
    far = {k: float(np.mean([p < config.alpha for p in v])) for k, v in per.items() if v}
    nulls = {}
    for k, v in per.items():
        if len(v) >= 2:
            e = [evidence(p) for p in v]
            nulls[k] = NullMoments(float(np.mean(e)), float(np.std(e, ddof=1)))
    return Calibration(config.calibration_windows, size, far, nulls)


def split_reference(n: int, holdout_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved fit / hold-out indices (random, seeded) so both span the whole period."""
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    k = int(round(n * holdout_share))
    return np.sort(perm[k:]), np.sort(perm[:k])


def _insufficient(
    name: str, signal: str, n: int, message: str, n_reference: int = 0
) -> DriftResult:
    return DriftResult(
        detector=name, signal=signal, status=Status.INSUFFICIENT_DATA, n_window=n,
        n_reference=n_reference, message=message,
    )  # fmt: skip
