"""alibi-detect behind our detector contract: the only module that imports alibi_detect.

Pure computation used by detectors/drift/contract.py's suite. alibi-detect ≥ 0.12 is under the
Business Source License 1.1 (see README), so it stays behind this one boundary, and its
dict results are converted to our typed `DriftResult` here and nowhere else.

Choices (measured on the 2-core CI machine, see bench/window.py):
- Embeddings: MMD² with alibi's GaussianRBF kernel, bandwidth fixed at fit (median
  heuristic), the reference kernel block cached, and the permutation null computed for all
  permutations in one matrix product. alibi's MMDDrift rebuilds a permuted N×N matrix per
  permutation (~7 s per window at reference 1,000, window 500 here) and LSDDDrift fails in
  this torch build's batched inverse, so the statistic is alibi's (Gretton et al. 2012,
  JMLR 13:723, unbiased MMD² with zeroed diagonal) while the permutation loop is ours.
- Scalars (scores, image-quality, numeric DICOM): two-sample KS per feature, computed here
  in one vectorised pass (`ks_two_sample`). alibi's KSDrift calls scipy's ks_2samp once
  per feature, ~1.5 ms each for its exact p-value, and a window with strata has ~500
  scalar features (0.8 s of a 1.5 s window); the statistic is the same, the p-value is
  the Kolmogorov limit with Stephens' correction (tested against scipy's exact p).
- Categorical DICOM: Chi-square per attribute with scipy directly, plus never-seen values as
  their own finding (detectors/drift/categorical.py; alibi's ChiSquareDrift only called scipy).
- Online: alibi CVMDriftOnline (Ross & Adams 2012) on the scores and the embedding's first
  principal component, with a configured expected run time; state saved with alibi's
  save_state and restored with load_state.

Each detector turns into JSON parameters + numpy arrays (`to_state`) and back (`from_state`)
for the stored reference (detectors/drift/artifact.py): nothing fitted is ever pickled.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tarfile
import tempfile
from collections.abc import Iterator, Mapping
from typing import Any, Self

import numpy as np
import torch
from alibi_detect.cd import CVMDriftOnline
from alibi_detect.utils.pytorch.kernels import GaussianRBF
from alibi_detect.version import __version__ as ALIBI_VERSION
from scipy import special, stats

from detectors.drift.categorical import N_ATYPICAL, CategoricalChi2
from detectors.drift.contract import (
    ALL,
    CALL_PREFIX,
    Calibration,
    DetectorSuite,
    FittedStratum,
    Sample,
    SuiteConfig,
    calibrate,
    split_reference,
)
from detectors.drift.results import (
    DetectorError,
    DriftResult,
    FeatureFinding,
    InsufficientDataError,
    OnlineUpdate,
    Status,
)

BACKEND_VERSION = f"alibi-detect {ALIBI_VERSION}, torch {torch.__version__}"
__all__ = ["N_ATYPICAL", "CategoricalChi2", "EmbeddingMMD", "OnlineCVM", "ScalarKS"]


class EmbeddingMMD:
    """MMD² permutation test on one embedding signal (n, d) against the fitted reference."""

    kind = "EmbeddingMMD"  # its name in a stored reference's manifest

    def __init__(self, signal: str, max_reference: int, n_permutations: int, seed: int) -> None:
        self.signal = signal
        self.name = f"mmd:{signal}"
        self.max_reference = max_reference
        self.n_permutations = n_permutations
        self.seed = seed

    def fit(self, reference: Sample) -> Self:
        x = _finite_rows(reference.vectors.get(self.signal))
        if x is None or len(x) < 10:
            raise InsufficientDataError(f"{self.signal}: too few reference vectors")
        rng = np.random.default_rng(self.seed)
        if len(x) > self.max_reference:
            x = x[np.sort(rng.choice(len(x), self.max_reference, replace=False))]
        self.mean = x.mean(0)
        self.sd = x.std(0) + 1e-6
        xs = torch.as_tensor((x - self.mean) / self.sd, dtype=torch.float32)
        with torch.no_grad(), single_thread():
            # alibi's median heuristic fixes the bandwidth once, on the reference only.
            kernel = GaussianRBF()
            kernel(xs[:500], xs[:500], infer_sigma=True)
            self.sigma = float(kernel.sigma.reshape(-1)[0])
            k = self._kernel(xs, xs)
        self._set_reference(xs, k)
        return self

    def _set_reference(self, xs: torch.Tensor, k: torch.Tensor) -> None:
        self.x_ref = xs
        self.k_xx = k - torch.diag(torch.diag(k))
        self.k_xx_rowsum = self.k_xx.sum(1)

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Parameters and the standardised reference; the kernel block is recomputed at load."""
        params = {
            "signal": self.signal,
            "max_reference": self.max_reference,
            "n_permutations": self.n_permutations,
            "seed": self.seed,
            "sigma": self.sigma,
        }
        return params, {"mean": np.asarray(self.mean), "sd": np.asarray(self.sd),
                        "x_ref": self.x_ref.numpy()}  # fmt: skip

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Self:
        self = cls(str(params["signal"]), int(params["max_reference"]),
                   int(params["n_permutations"]), int(params["seed"]))  # fmt: skip
        self.mean, self.sd, self.sigma = arrays["mean"], arrays["sd"], float(params["sigma"])
        xs = torch.as_tensor(arrays["x_ref"], dtype=torch.float32)
        with torch.no_grad(), single_thread():  # as at fit, so the block is the same bits
            self._set_reference(xs, self._kernel(xs, xs))
        return self

    def _kernel(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """alibi's GaussianRBF, exp(-‖x−y‖² / 2σ²), with cdist (alibi broadcasts: ~10× slower)."""
        return torch.exp(-torch.cdist(x, y).square() / (2.0 * self.sigma**2))

    def _standardise(self, v: np.ndarray) -> torch.Tensor:
        return torch.as_tensor((v - self.mean) / self.sd, dtype=torch.float32)

    def atypicality(self, vectors: np.ndarray) -> np.ndarray:
        """1 − mean kernel similarity to the reference: high for studies unlike the reference."""
        with torch.no_grad():
            k = self._kernel(self._standardise(vectors), self.x_ref)
        return (1.0 - k.mean(1)).numpy()

    def indicator(self, window: Sample, result: DriftResult) -> np.ndarray | None:
        """Each study's atypicality: the whole embedding moves, not one feature."""
        vectors = window.vectors.get(self.signal)
        return None if vectors is None else self.atypicality(np.nan_to_num(vectors))

    def summary(self, result: DriftResult) -> str | None:
        return f"standardised MMD² {result.effect_size:.1f}"

    def score(self, window: Sample, *, seed: int = 0) -> DriftResult:
        with single_thread():
            return self._score(window, seed)

    def _score(self, window: Sample, seed: int) -> DriftResult:
        raw = window.vectors.get(self.signal)
        keep = np.isfinite(raw).all(1) if raw is not None and raw.size else None
        if raw is None or keep is None or keep.sum() < 5:
            raise InsufficientDataError(f"{self.signal}: too few window vectors")
        y = self._standardise(raw[keep])
        ids = [i for i, k in zip(window.ids, keep, strict=True) if k]
        n, m, perms_n = self.x_ref.shape[0], y.shape[0], self.n_permutations
        with torch.no_grad():
            k_xy = self._kernel(self.x_ref, y)
            k_yy = self._kernel(y, y)
            k_yy = k_yy - torch.diag(torch.diag(k_yy))
            # Column j of `a` marks who is "reference" in permutation j; the last column is
            # the observed split. Block products avoid materialising the pooled matrix.
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + seed)
            chosen = torch.argsort(torch.rand(perms_n, n + m, generator=gen), dim=1)[:, :n]
            a = torch.zeros(perms_n + 1, n + m)
            a.scatter_(1, torch.cat([chosen, torch.arange(n).unsqueeze(0)], 0), 1.0)
            a = a.T.contiguous()
            a_x, a_y = a[:n], a[n:]
            ka_x = self.k_xx @ a_x + k_xy @ a_y
            ka_y = k_xy.T @ a_x + k_yy @ a_y
            r_x = (self.k_xx_rowsum + k_xy.sum(1)).unsqueeze(1)
            r_y = (k_xy.sum(0) + k_yy.sum(1)).unsqueeze(1)
            aka = (a_x * ka_x).sum(0) + (a_y * ka_y).sum(0)
            bka = ((1 - a_x) * ka_x).sum(0) + ((1 - a_y) * ka_y).sum(0)
            bkb = ((1 - a_x) * (r_x - ka_x)).sum(0) + ((1 - a_y) * (r_y - ka_y)).sum(0)
            aka, bka, bkb = aka.double(), bka.double(), bkb.double()
            mmd2 = aka / (n * (n - 1)) + bkb / (m * (m - 1)) - 2.0 * bka / (n * m)
        observed, null = float(mmd2[-1]), mmd2[:-1].numpy()
        p = permutation_p_value(observed, null)
        effect = (observed - float(null.mean())) / (float(null.std()) or 1e-12)
        atyp = (1.0 - k_xy.mean(0)).numpy()
        order = np.argsort(-atyp)[:N_ATYPICAL]
        return DriftResult(
            detector=self.name, signal=self.signal, status=Status.OK, p_value=p,
            statistic=observed, threshold=float(np.quantile(null, 0.95)), effect_size=effect,
            n_reference=n, n_window=m, atypical_ids=tuple(ids[i] for i in order),
            extra={"sigma": self.sigma},
        )  # fmt: skip


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """One torch thread for window-sized work: intra-op threads cost more than they save on
    matrices this small, and on a shared CPU spinning OpenMP workers slow it 10–25× (measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def permutation_p_value(observed: float, null: np.ndarray, min_exceed: int = 10) -> float:
    """Permutation p-value, with a Pearson type III tail beyond the permutations' reach.

    (1 + #{null ≥ obs}) / (1 + P) is exact but cannot go below 1/(P+1), which no multiple-
    testing correction over dozens of tests would accept. When fewer than `min_exceed`
    permutations exceed the observed value, the tail comes from a three-moment (mean, sd,
    skewness) Pearson III fit to the permutation null, as in Mielke & Berry's permutation
    methods (2007, ch. 2); it is never allowed above the exact count-based value.
    """
    exceed = int((null >= observed).sum())
    exact = (1.0 + exceed) / (1.0 + len(null))
    if exceed >= min_exceed:
        return exact
    mu, sd = float(null.mean()), float(null.std(ddof=1))
    if sd <= 0:
        return exact
    skew = float(stats.skew(null))
    z = (observed - mu) / sd
    if skew < 0.05:
        tail = float(stats.norm.sf(z))
    else:
        shape = 4.0 / skew**2
        tail = float(stats.gamma.sf(z + 2.0 / skew, shape, scale=skew / 2.0))
    return min(exact, max(tail, 1e-16))


def ks_two_sample(reference_sorted: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Two-sided two-sample Kolmogorov–Smirnov test: (D, p).

    D is the largest gap between the two empirical CDFs over the pooled points, as scipy and
    alibi compute it. p is the Kolmogorov limiting distribution at
    λ = (√nₑ + 0.12 + 0.11/√nₑ)·D, nₑ = nm/(n+m) (Stephens 1970, JRSS-B 32:115; Numerical
    Recipes §14.3.3): within 0.02 of scipy's exact p at these sample sizes and never more
    than 0.005 below it (tested).
    """
    v = np.sort(values)
    n, m = len(reference_sorted), len(v)
    pooled = np.concatenate([reference_sorted, v])
    gap = (np.searchsorted(reference_sorted, pooled, side="right") / n
           - np.searchsorted(v, pooled, side="right") / m)  # fmt: skip
    d = float(np.max(np.abs(gap)))
    root = math.sqrt(n * m / (n + m))
    p = float(special.kolmogorov((root + 0.12 + 0.11 / root) * d))
    return d, min(max(p, 0.0), 1.0)


class ScalarKS:
    """Kolmogorov–Smirnov per scalar feature of one signal (`ks_two_sample`)."""

    kind = "ScalarKS"  # its name in a stored reference's manifest

    def __init__(self, signal: str) -> None:
        self.signal = signal
        self.name = f"ks:{signal}"

    def fit(self, reference: Sample) -> Self:
        self.features: dict[str, np.ndarray] = {}
        for feature, values in reference.scalars.get(self.signal, {}).items():
            v = values[np.isfinite(values)]
            if len(v) >= 10:
                self.features[feature] = np.sort(v)
        if not self.features:
            raise InsufficientDataError(f"{self.signal}: no scalar feature with reference data")
        return self

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """Feature names in fit order, and each feature's sorted reference values."""
        names = list(self.features)
        arrays = {f"f{i}": np.asarray(self.features[n]) for i, n in enumerate(names)}
        return {"signal": self.signal, "features": names}, arrays

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Self:
        self = cls(str(params["signal"]))
        self.features = {str(n): arrays[f"f{i}"] for i, n in enumerate(params["features"])}
        return self

    def __setstate__(self, state: dict) -> None:
        # References frozen before ks_two_sample hold (alibi KSDrift, sorted values) pairs;
        # they keep working after an upgrade (detection never refits).
        features = state.get("features", {})
        state["features"] = {k: v[1] if isinstance(v, tuple) else v for k, v in features.items()}
        self.__dict__.update(state)

    def indicator(self, window: Sample, result: DriftResult) -> np.ndarray | None:
        """The leading feature's values (finite ones): a shift in its mean is the onset."""
        top = result.top_features(1)
        column = window.scalars.get(self.signal, {}).get(top[0].feature) if top else None
        return None if column is None else column[np.isfinite(column)]

    def summary(self, result: DriftResult) -> str | None:
        return None  # the per-feature findings say what moved

    def score(self, window: Sample, *, seed: int = 0) -> DriftResult:
        findings = []
        columns = window.scalars.get(self.signal, {})
        for feature, ref in self.features.items():
            values = columns.get(feature)
            v = values[np.isfinite(values)] if values is not None else np.empty(0)
            if len(v) < 5:
                continue
            d, p = ks_two_sample(ref, v)
            ref_med, cur_med = float(np.median(ref)), float(np.median(v))
            findings.append(FeatureFinding(
                feature=feature, test="ks", p_value=p, statistic=d,
                effect_size=d,  # KS D: bounded, comparable across features
                reference=f"median {ref_med:.4g}", current=f"median {cur_med:.4g}",
            ))  # fmt: skip
        if not findings:
            raise InsufficientDataError(f"{self.signal}: no scalar feature in the window")
        best = min(findings, key=lambda f: f.p_value)
        return DriftResult(
            detector=self.name, signal=self.signal, status=Status.OK, p_value=best.p_value,
            statistic=best.statistic, effect_size=max(f.statistic for f in findings),
            n_reference=max(len(r) for r in self.features.values()), n_window=len(window),
            features=tuple(findings),
        )  # fmt: skip


class OnlineCVM:
    """alibi CVMDriftOnline on the scores and the embedding's first principal component.

    Thresholds depend only on reference size, window sizes and the expected run time (the
    statistic is rank-based), so they are configured once at fit; `update` is the only
    method that changes state, and `save_state`/`load_state` carry it across restarts.
    """

    signal = "online"
    name = "cvm_online"
    kind = "OnlineCVM"  # its name in a stored reference's manifest

    def __init__(self, config: SuiteConfig, embedding_signal: str | None) -> None:
        self.config = config
        self.embedding_signal = embedding_signal

    def _columns(self, sample: Sample) -> np.ndarray:
        cols = [sample.scalars.get("scores", {}).get(f) for f in self.score_features]
        mat = [np.asarray(c, dtype=float) if c is not None else np.full(len(sample), np.nan)
               for c in cols]  # fmt: skip
        if self.embedding_signal and self.pc is not None:
            vec = sample.vectors.get(self.embedding_signal)
            if vec is not None and vec.size:
                mat.append((vec - self.pc_mean) @ self.pc)
            else:
                mat.append(np.full(len(sample), np.nan))
        return np.column_stack(mat) if mat else np.empty((len(sample), 0))

    def fit(self, reference: Sample) -> Self:
        cfg = self.config
        self.score_features = sorted(reference.scalars.get("scores", {}))
        self.pc = None
        vec = reference.vectors.get(self.embedding_signal or "")
        if vec is not None and len(vec) >= 10 and np.isfinite(vec).all():
            self.pc_mean = vec.mean(0)
            # First principal component: the embedding direction of largest reference variance.
            _, _, vt = np.linalg.svd(vec - self.pc_mean, full_matrices=False)
            self.pc = vt[0]
        x = self._columns(reference)
        x = x[np.isfinite(x).all(1)] if x.size else x
        if x.shape[1] == 0 or len(x) < 2 * max(cfg.online_window_sizes):
            raise InsufficientDataError("online detector: too little reference data")
        rng = np.random.default_rng(cfg.seed + 2)
        if len(x) > cfg.online_reference:
            x = x[np.sort(rng.choice(len(x), cfg.online_reference, replace=False))]
        np.random.seed(cfg.seed + 3)  # alibi simulates null streams with the global generator
        # alibi estimates a (1 - 1/(d·ERT)) quantile and drops streams as they cross it, so
        # it needs several times d·ERT simulated streams.
        n_boot = max(cfg.online_bootstraps, int(3 * x.shape[1] * cfg.online_ert))
        self.detector = CVMDriftOnline(
            x, ert=cfg.online_ert, window_sizes=list(cfg.online_window_sizes),
            n_bootstraps=n_boot, verbose=False,
        )  # fmt: skip
        self.n_features = x.shape[1]
        return self

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The fitted detector as data: its reference rows and simulated thresholds.

        The running state (t, windows) is not part of a reference: detection keeps it in
        drift_online_state (`save_state`), and a freshly fitted detector has none.
        """
        d = self.detector
        params = {
            "embedding_signal": self.embedding_signal,
            "score_features": list(self.score_features),
            "n_features": self.n_features,
            "n_bootstraps": int(d.n_bootstraps),
            "has_pc": self.pc is not None,
        }
        arrays = {"x_ref": np.asarray(d.x_ref), "thresholds": np.asarray(d.thresholds)}
        if self.pc is not None:
            arrays |= {"pc": np.asarray(self.pc), "pc_mean": np.asarray(self.pc_mean)}
        return params, arrays  # fmt: skip

    @classmethod
    def from_state(
        cls, params: dict[str, Any], arrays: dict[str, np.ndarray], config: SuiteConfig
    ) -> Self:
        """Rebuilt with the stored thresholds: no stream is simulated again at load."""
        self = cls(config, params["embedding_signal"])
        self.score_features = [str(f) for f in params["score_features"]]
        self.pc = arrays["pc"] if params["has_pc"] else None
        if self.pc is not None:
            self.pc_mean = arrays["pc_mean"]
        self.n_features = int(params["n_features"])
        self.detector = _PresetCVM(
            arrays["x_ref"], arrays["thresholds"], ert=config.online_ert,
            window_sizes=list(config.online_window_sizes),
            n_bootstraps=int(params["n_bootstraps"]), verbose=False,
        )  # fmt: skip
        return self

    def update(self, sample: Sample) -> list[OnlineUpdate]:
        """Feed events in order; a firing resets the detector (alibi's guidance after drift)."""
        out = []
        x = self._columns(sample)
        for row in x:
            if not np.isfinite(row).all():
                continue
            pred = self.detector.predict(row.astype(np.float64), return_test_stat=True)["data"]
            fired = bool(pred["is_drift"])
            stat, thr = _max_or_nan(pred["test_stat"]), _max_or_nan(pred["threshold"])
            out.append(OnlineUpdate(self.name, self.signal, fired, int(pred["time"]), stat, thr))
            if fired:
                self.detector.reset_state()
        return out

    def save_state(self) -> bytes:
        with tempfile.TemporaryDirectory() as tmp:
            self.detector.save_state(tmp)
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as tar:
                tar.add(tmp, arcname="state")
            return buf.getvalue()

    def load_state(self, blob: bytes) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
                tar.extractall(tmp, filter="data")
            self.detector.load_state(os.path.join(tmp, "state"))

    def reset(self) -> None:
        self.detector.reset_state()


class _PresetCVM(CVMDriftOnline):
    """CVMDriftOnline whose thresholds come from a stored reference instead of simulation."""

    def __init__(self, x_ref: np.ndarray, thresholds: np.ndarray, **kwargs: Any) -> None:
        self._preset_thresholds = thresholds
        super().__init__(x_ref, **kwargs)

    def _configure_thresholds(self) -> None:
        # alibi calls this from __init__; the thresholds were simulated once, at fit.
        self.thresholds = self._preset_thresholds


def fit_suite(
    reference: Sample,
    config: SuiteConfig,
    *,
    categorical_attributes: tuple[str, ...],
) -> DetectorSuite:
    """Fit every detector on the reference's fit part, per stratum; calibrate on the hold-out."""
    if len(reference) < config.min_reference:
        raise InsufficientDataError(
            f"reference has {len(reference)} events < minimum {config.min_reference}"
        )
    suite = DetectorSuite(config, BACKEND_VERSION)
    fit_idx, hold_idx = split_reference(len(reference), config.holdout_share, config.seed)
    fit_part, holdout = reference.take(fit_idx), reference.take(hold_idx)
    suite.n_fit, suite.n_holdout = len(fit_part), len(holdout)
    for key in suite.stratum_values(fit_part):
        part = fit_part.take(fit_part.stratum_mask(*key))
        if len(part) < config.min_reference:
            continue
        detectors = _fit_detectors(part, config, categorical_attributes, key == ALL)
        if detectors:
            suite.strata[key] = FittedStratum(key[0], key[1], len(part), detectors)
    if ALL not in suite.strata:
        raise InsufficientDataError("no detector could be fitted on the reference")
    suite.calibration = (
        calibrate(suite, holdout, config) if len(holdout) else Calibration(0, 0, {}, {})
    )
    if config.online:
        embedding = next(iter(sorted(reference.vectors)), None)
        try:
            suite.online = OnlineCVM(config, embedding).fit(reference)
        except InsufficientDataError:
            suite.online = None
    return suite


def _fit_detectors(
    part: Sample, config: SuiteConfig, attributes: tuple[str, ...], whole: bool
) -> list:
    candidates: list = []
    for signal in sorted(part.vectors):
        cap = config.mmd_max_reference if whole else config.mmd_max_reference_stratum
        candidates.append(EmbeddingMMD(signal, cap, config.mmd_permutations, config.seed))
    for signal in sorted(part.scalars):
        candidates.append(ScalarKS(signal))
    if any(a in part.categories for a in attributes):
        candidates.append(CategoricalChi2("acquisition", attributes, config.rare_share))
    # The model's calls ("call:<score>") belong to its output signal.
    calls = tuple(sorted(a for a in part.categories if a.startswith(CALL_PREFIX)))
    if calls:
        candidates.append(CategoricalChi2("scores", calls, config.rare_share))
    fitted = []
    for detector in candidates:
        try:
            fitted.append(detector.fit(part))
        except InsufficientDataError:
            continue
        except (ValueError, RuntimeError) as exc:
            raise DetectorError(f"fitting {detector.name} failed: {exc}") from exc
    return fitted


def _max_or_nan(values: object) -> float:
    """Largest finite entry (the statistic is NaN until the online window fills)."""
    arr = np.atleast_1d(np.asarray(values, dtype=float))
    arr = arr[np.isfinite(arr)]
    return float(arr.max()) if arr.size else math.nan


def _finite_rows(x: np.ndarray | None) -> np.ndarray | None:
    if x is None or x.size == 0:
        return None
    return x[np.isfinite(x).all(1)]


def describe(config: SuiteConfig) -> Mapping[str, object]:
    return {"backend": BACKEND_VERSION, "config": config.__dict__}
