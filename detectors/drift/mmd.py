"""MMD² permutation test on one embedding signal: the windowed detector for vectors.

One detector of the suite (suite.py; listed in registry.py), between a window's embeddings
(`Sample.vectors`, (n, d)) and its typed `DriftResult`. Unbiased MMD² with zeroed diagonal
(Gretton et al. 2012, JMLR 13:723) under a Gaussian RBF kernel k(x, y) = exp(−‖x − y‖² / 2σ²),
σ fixed at fit by the median heuristic on the reference only; the reference kernel block is
cached and the permutation null is computed for all permutations in one matrix product.

Why not alibi-detect's MMDDrift (measured on the 2-core CI machine, see bench/window.py): it
rebuilds a permuted N×N matrix per permutation (~7 s per window at reference 1,000, window
500 here), and LSDDDrift fails in this torch build's batched inverse. The kernel and the
bandwidth are ours, equal to alibi's GaussianRBF bit for bit (tested), so alibi-detect is
imported only by alibi_backend.py.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Self

import numpy as np
import torch
from scipy import stats

from detectors.drift.contract import N_ATYPICAL, Sample
from detectors.drift.results import DriftResult, Status
from detectors.drift.suite import SuiteConfig
from detectors.errors import InsufficientDataError


class EmbeddingMMD:
    """MMD² permutation test on one embedding signal (n, d) against the fitted reference."""

    kind = "EmbeddingMMD"  # its name in a stored reference's manifest

    def __init__(self, signal: str, max_reference: int, n_permutations: int, seed: int) -> None:
        self.signal = signal
        self.name = f"mmd:{signal}"
        self.max_reference = max_reference
        self.n_permutations = n_permutations
        self.seed = seed

    @classmethod
    def candidates(
        cls, part: Sample, config: SuiteConfig, attributes: tuple[str, ...], whole: bool
    ) -> list[Self]:
        """One per embedding signal; the whole-model stratum keeps a larger reference."""
        cap = config.mmd_max_reference if whole else config.mmd_max_reference_stratum
        return [cls(s, cap, config.mmd_permutations, config.seed) for s in sorted(part.vectors)]

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
            # The median heuristic fixes the bandwidth once, on the reference only.
            self.sigma = median_bandwidth(xs[:500])
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
        """The Gaussian RBF kernel, exp(−‖x−y‖² / 2σ²), with cdist (alibi broadcasts: ~10× slower)."""
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


def median_bandwidth(x: torch.Tensor) -> float:
    """σ of the Gaussian RBF kernel by the median heuristic (Gretton et al. 2012, §8).

    σ² = ½ · the lower median of the squared distances ‖xᵢ − xⱼ‖² between distinct rows. The
    squared distances are computed as ‖x‖² + ‖y‖² − 2xyᵀ, clamped at 1e-30, and σ goes through
    log and back as alibi-detect's GaussianRBF keeps it, so fits give the same σ, bit for bit,
    as when that kernel chose it (tests/detectors/drift/test_mmd.py).
    """
    sq = x.pow(2).sum(dim=-1, keepdim=True)
    d2 = torch.addmm(sq.transpose(-2, -1), x, x.transpose(-2, -1), alpha=-2).add_(sq)
    d2 = d2.clamp_min_(1e-30).flatten().sort().values
    n = x.shape[0]
    # Sorted, the n diagonal zeros come first; the median of the n² − n others follows.
    sigma = (0.5 * d2[n + (n * n - n) // 2 - 1]) ** 0.5
    return float(sigma.log().exp())


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


def _finite_rows(x: np.ndarray | None) -> np.ndarray | None:
    if x is None or x.size == 0:
        return None
    return x[np.isfinite(x).all(1)]
