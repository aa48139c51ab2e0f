"""Sequential performance monitoring: CUSUM charts designed from an in-control run length.

Pure computation beside detectors/performance/degradation.py: where the windowed test asks "is
this window worse than the reference?", a CUSUM reads the per-study stream as it arrives (an
AI-vs-radiologist discrepancy, or a miss among label-positive studies) and alarms once the
evidence for a stated rise has accumulated. The hospital states how many studies it accepts
between false alarms (ARL0); the design returns the limit and the expected delay (ARL1) for
the stated shift. The running state is plain data; monitor/ stores it and decides what an
alarm opens.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike
from scipy import sparse
from scipy.sparse.linalg import splu, spsolve
from scipy.special import ndtr
from scipy.stats import beta, norm

from detectors.performance.realised import PerformanceError

# Rounding the log-likelihood-ratio increments to integers changes their ratio by at most
# this much (relative): the chart run is then the LLR chart of a p1 within ~1% of the
# stated one, and its run length is exactly that of a finite Markov chain.
RATIO_TOLERANCE = 0.01
_MAX_STATES = 2_000_000


@dataclass(frozen=True)
class BernoulliCusumDesign:
    """Upper Bernoulli CUSUM for a rise of a per-study rate from p0 to p1 (Page 1954;
    Reynolds & Stoumbos 1999, J. Quality Technology 31:87).

    Each study adds `up` (indicator 1) or subtracts `down` (indicator 0), integers
    proportional to the log-likelihood ratios log(p1/p0) and log((1-p1)/(1-p0)); the chart
    alarms when the statistic reaches `limit` and restarts from 0. `h` is the limit in
    log-likelihood-ratio units. Run lengths are in studies (indicators), exact for this
    integer chart by the Markov chain of Brook & Evans (1972, Biometrika 59:539).
    """

    p0: float
    p1: float
    up: int
    down: int
    limit: int
    h: float
    arl0_target: float
    arl0_achieved: float  # zero-state in-control ARL of the chart run (>= target)
    arl1: float  # zero-state ARL at p1: the expected delay, in studies, after the shift
    # The delay when the shift comes after a long quiet run (start drawn from the in-control
    # quasi-stationary distribution): the steady-state ARL AIM-CU reports (spc's xcusum.ad).
    arl1_steady: float

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        return cls(float(state["p0"]), float(state["p1"]), int(state["up"]),
                   int(state["down"]), int(state["limit"]), float(state["h"]),
                   float(state["arl0_target"]), float(state["arl0_achieved"]),
                   float(state["arl1"]), float(state["arl1_steady"]))  # fmt: skip

    def arl(self, p: float) -> float:
        """Zero-state average run length, in studies, when the true rate is p."""
        return integer_cusum_arl(self.up, self.down, self.limit, p)


@dataclass(frozen=True)
class CusumState:
    """Where a running chart stands: its statistic (integer units), studies read, alarms."""

    statistic: int = 0
    studies: int = 0
    alarms: int = 0
    last_alarm: int | None = None  # 0-based index, over all studies read, of the last alarm

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        last = state.get("last_alarm")
        return cls(int(state["statistic"]), int(state["studies"]), int(state["alarms"]),
                   None if last is None else int(last))  # fmt: skip


@dataclass(frozen=True)
class CusumUpdate:
    state: CusumState
    alarms: tuple[int, ...]  # indices into this batch of the studies at which the chart alarmed


def design_bernoulli(p0: float, p1: float, arl0: float, *,
                     guard: float | None = None) -> BernoulliCusumDesign:  # fmt: skip
    """The smallest limit whose in-control ARL reaches `arl0` (studies), and its ARL1 at p1.

    p0 is the reference's rate (estimate it on the frozen reference); p1 the rise worth
    detecting, e.g. 1.5 × p0 or p0 + 0.05. Increments are scaled as Reynolds & Stoumbos
    (1999) do for the Bernoulli CUSUM (smallest integer pair whose ratio is within
    RATIO_TOLERANCE); the limit is found by bisection on the exact ARL.

    An estimated p0 one standard error too low cuts the true ARL0 several-fold (bench/
    cusum.py, table 3). `guard` (a rate in [p0, p1), e.g. `upper_rate(p0, n, 0.9)`) keeps
    the weights of p0 but sets the limit so the ARL0 is reached even at the guard rate, in
    the spirit of Gandy & Kvaløy's guaranteed conditional performance (2013, Scand. J.
    Statist. 40:647); `arl0_achieved` is then the ARL at the guard, `arl1` is longer.
    """
    if not 0 < p0 < p1 < 1:
        raise PerformanceError(f"need 0 < p0 < p1 < 1, got p0={p0}, p1={p1}")
    guard = p0 if guard is None else guard
    if not p0 <= guard < p1:
        raise PerformanceError(f"guard rate must lie in [p0, p1), got {guard}")
    if not arl0 > 1:
        raise PerformanceError(f"arl0 must exceed 1 study, got {arl0}")
    w_up = math.log(p1 / p0)
    w_down = math.log((1 - p0) / (1 - p1))
    up, down = _integer_increments(w_up / w_down)
    limit = integer_limit(up, down, guard, arl0)
    h = limit * (w_up + w_down) / (up + down)  # integer units back to log-likelihood ratios
    return BernoulliCusumDesign(p0, p1, up, down, limit, h, float(arl0),
                                integer_cusum_arl(up, down, limit, guard),
                                integer_cusum_arl(up, down, limit, p1),
                                steady_state_delay(up, down, limit, p0, p1))  # fmt: skip


def upper_rate(p_hat: float, n: int, confidence: float = 0.9) -> float:
    """One-sided Clopper–Pearson upper confidence bound of a rate seen as p_hat over n
    studies (the `guard` for a p0 estimated on a reference of n labelled studies)."""
    if n < 1 or not 0 <= p_hat <= 1 or not 0 < confidence < 1:
        raise PerformanceError(f"need n ≥ 1, 0 ≤ p_hat ≤ 1, 0 < confidence < 1; got {n}, "
                               f"{p_hat}, {confidence}")  # fmt: skip
    k = round(p_hat * n)
    return 1.0 if k >= n else float(beta.ppf(confidence, k + 1, n - k))


def integer_limit(up: int, down: int, p0: float, arl0: float) -> int:
    """The smallest limit whose zero-state ARL at rate p0 reaches arl0 (ARL rises with the
    limit): doubling, then bisection on the exact ARL."""
    lo, hi = 1, up
    while integer_cusum_arl(up, down, hi, p0) < arl0:
        lo, hi = hi + 1, hi * 2
        if hi > _MAX_STATES:
            raise PerformanceError(f"arl0 {arl0:g} needs more than {_MAX_STATES} states")
    while lo < hi:
        mid = (lo + hi) // 2
        if integer_cusum_arl(up, down, mid, p0) >= arl0:
            hi = mid
        else:
            lo = mid + 1
    return lo


def _integer_increments(ratio: float) -> tuple[int, int]:
    for down in range(1, 10_000):
        up = round(ratio * down)
        if up >= 1 and abs(up / down / ratio - 1) <= RATIO_TOLERANCE:
            return up, down
    raise PerformanceError(f"no integer increments for ratio {ratio:g}")  # pragma: no cover


def integer_cusum_arl(up: int, down: int, limit: int, p: float) -> float:
    """Zero-state ARL of S_t = max(0, S_{t-1} + up·X_t − down·(1−X_t)), alarm at S_t ≥ limit,
    X_t ~ Bernoulli(p): (I − Q) a = 1 over the transient states 0..limit−1 (Brook & Evans
    1972), solved sparse (two transitions a state)."""
    return float(_arl_vector(up, down, limit, p)[0])


def steady_state_delay(up: int, down: int, limit: int, p0: float, p1: float) -> float:
    """ARL at p1 from the in-control quasi-stationary distribution π (the chart's law after a
    long run without alarm): π is Q0's Perron left eigenvector, found by inverse iteration
    on (I − Q0)ᵀ (its eigenvalue nearest 1 is the Perron root 1 − ~1/ARL0, so a few
    iterations converge)."""
    lu = splu((sparse.identity(limit, format="csc") - _transitions(up, down, limit, p0)).T.tocsc())
    pi = np.full(limit, 1.0 / limit)
    for _ in range(200):
        nxt = lu.solve(pi)
        nxt /= nxt.sum()
        converged = np.abs(nxt - pi).sum() < 1e-12
        pi = nxt
        if converged:
            break
    return float(pi @ _arl_vector(up, down, limit, p1))


def _transitions(up: int, down: int, limit: int, p: float) -> sparse.csc_matrix:
    states = np.arange(limit)
    rise = states + up
    stay = rise < limit
    rows = np.concatenate([states[stay], states])
    cols = np.concatenate([rise[stay], np.maximum(0, states - down)])
    vals = np.concatenate([np.full(int(stay.sum()), p), np.full(limit, 1 - p)])
    return sparse.csc_matrix((vals, (rows, cols)), shape=(limit, limit))


def _arl_vector(up: int, down: int, limit: int, p: float) -> np.ndarray:
    q = _transitions(up, down, limit, p)
    return np.atleast_1d(spsolve(sparse.identity(limit, format="csc") - q, np.ones(limit)))


def update(design: BernoulliCusumDesign, state: CusumState,
           indicators: ArrayLike) -> CusumUpdate:  # fmt: skip
    """Read a batch of per-study indicators (1 = discrepancy/miss) in arrival order.

    Returns the new state and the batch indices at which the chart alarmed; after an alarm
    the statistic restarts from 0, so ARL0 is the mean number of studies between false
    alarms. Pure: the state passed in is not changed.
    """
    x = np.asarray(indicators)
    if x.ndim != 1 or (x.size and not np.isin(x, (0, 1)).all()):
        raise PerformanceError("indicators must be a 1-d sequence of 0/1")
    steps = np.where(x.astype(bool), design.up, -design.down).astype(np.int64)
    alarms: list[int] = []
    s, start = state.statistic, 0
    while start < steps.size:
        hit, s = _first_crossing(s, steps[start:], design.limit)
        if hit is None:
            break
        alarms.append(start + hit)
        s, start = 0, start + hit + 1
    last = state.last_alarm if not alarms else state.studies + alarms[-1]
    new = CusumState(int(s), state.studies + int(x.size), state.alarms + len(alarms), last)
    return CusumUpdate(new, tuple(alarms))


def _first_crossing(s0: int, steps: np.ndarray, limit: int) -> tuple[int | None, int]:
    """First index where the CUSUM from s0 reaches limit, and the statistic at the end.

    Page's recursion in closed form: S_t = C_t − min(0, min_{j≤t} C_j), C = s0 + cumsum.
    """
    c = s0 + np.cumsum(steps)
    stat = c - np.minimum(np.minimum.accumulate(c), 0)
    over = np.flatnonzero(stat >= limit)
    if over.size:
        return int(over[0]), int(stat[over[0]])
    return None, int(stat[-1]) if stat.size else s0


METRIC_INDICATORS = ("discrepancy", "sensitivity", "specificity")


def indicators(metric: str, labels: ArrayLike, calls: ArrayLike) -> np.ndarray:
    """The per-study 0/1 stream a metric's CUSUM reads, from labels and the AI's calls.

    `discrepancy`: AI call ≠ label, every labelled study (the PE-AI monitor's rate).
    `sensitivity`: a miss among label-positive studies (rate 1 − sensitivity);
    `specificity`: a false call among label-negative studies (rate 1 − specificity). A metric
    that is a proportion is watched as the Bernoulli stream of its complement, so the same
    exact design holds; its run lengths count the studies in its denominator (divide by
    the prevalence, or 1 − prevalence, for all studies).
    """
    y = np.asarray(labels).astype(bool)
    c = np.asarray(calls).astype(bool)
    if y.shape != c.shape or y.ndim != 1:
        raise PerformanceError("labels and calls must be 1-d and of one length")
    if metric == "discrepancy":
        return (y != c).astype(np.int8)
    if metric == "sensitivity":
        return (~c[y]).astype(np.int8)
    if metric == "specificity":
        return c[~y].astype(np.int8)
    raise PerformanceError(f"unknown metric {metric!r}; known: {', '.join(METRIC_INDICATORS)}")


def simulate_run_lengths(design: BernoulliCusumDesign, p: float, runs: int,
                         rng: np.random.Generator, max_studies: int) -> np.ndarray:  # fmt: skip
    """Monte Carlo zero-state run lengths (studies, 1-based) at rate p, `runs` independent
    charts; a run still quiet after `max_studies` is returned as max_studies + 1."""
    out = np.full(runs, max_studies + 1, dtype=np.int64)
    s = np.zeros(runs, dtype=np.int64)
    alive = np.arange(runs)
    block = int(min(max(64, 2 * design.arl(p)), 1 << 16))
    done = 0
    while alive.size and done < max_studies:
        n = min(block, max_studies - done)
        steps = np.where(rng.random((alive.size, n)) < p, design.up, -design.down)
        c = s[alive, None] + np.cumsum(steps, axis=1)
        stat = c - np.minimum(np.minimum.accumulate(c, axis=1), 0)
        crossed = stat >= design.limit
        hit = crossed.any(axis=1)
        out[alive[hit]] = done + crossed[hit].argmax(axis=1) + 1
        s[alive] = stat[:, -1]
        alive = alive[~hit]
        done += n
    return out


# --- The normal CUSUM (AIM-CU's chart), for a standardised metric and for comparison ---


@dataclass(frozen=True)
class NormalCusumDesign:
    """Upper CUSUM of standardised values z_t: S_t = max(0, S_{t-1} + z_t − k), alarm at h
    (Page 1954). With k = δ/2 the increments are the log-likelihood ratio of N(δ, 1) against
    N(0, 1), the choice Lorden (1971) and Moustakides (1986) show optimal for that shift.
    FDA's AIM-CU designs this chart in the same units through R's spc (default h = 4, k
    from ARL0, two-sided); spc solves the same integral equation, here by Gauss–Legendre
    Nyström. For a per-window metric z (e.g. a daily AUROC against the reference, over its
    DeLong standard error) it fits; on per-study 0/1 data use the Bernoulli chart (bench/
    cusum.py: normal-theory h gives 1.6–2.9× the false alarms stated)."""

    delta: float
    k: float
    h: float
    arl0_target: float
    arl0_achieved: float
    arl1: float

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        return cls(**{name: float(state[name]) for name in cls.__dataclass_fields__})


def normal_cusum_arl(k: float, h: float, mu: float = 0.0, nodes: int | None = None) -> float:
    """Zero-state ARL of the upper normal CUSUM with N(mu, 1) observations.

    L(z) = 1 + L(0)·Φ(k − z − μ) + ∫_0^h L(y) φ(y − z + k − μ) dy (Page 1954), solved on
    Gauss–Legendre nodes (Nyström). The kernel is one σ wide, so the nodes grow with h
    (12 per σ, at least 48): the published tables are matched to 0.1%.
    """
    if h <= 0:
        return 1.0
    nodes = nodes or max(48, math.ceil(12 * h))
    x, w = np.polynomial.legendre.leggauss(nodes)
    y, w = (x + 1) * h / 2, w * h / 2
    z = np.concatenate([[0.0], y])
    kernel = norm.pdf(y[None, :] - z[:, None] + k - mu) * w[None, :]
    a = np.zeros((nodes + 1, nodes + 1))
    a[:, 0] = -ndtr(k - z - mu)
    a[:, 1:] = -kernel
    a += np.eye(nodes + 1)
    return float(np.linalg.solve(a, np.ones(nodes + 1))[0])


def design_normal(delta: float, arl0: float) -> NormalCusumDesign:
    """k = δ/2 and the h whose in-control ARL equals `arl0` (bisection; ARL rises with h)."""
    if not delta > 0 or not arl0 > 1:
        raise PerformanceError(f"need delta > 0 and arl0 > 1, got {delta}, {arl0}")
    k = delta / 2
    lo, hi = 0.0, 1.0
    while normal_cusum_arl(k, hi) < arl0:
        lo, hi = hi, hi * 2
        if hi > 400:
            raise PerformanceError(f"arl0 {arl0:g} out of range for delta {delta:g}")
    for _ in range(45):  # h to ~1e-12 relative
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if normal_cusum_arl(k, mid) < arl0 else (lo, mid)
    return NormalCusumDesign(delta, k, hi, float(arl0), normal_cusum_arl(k, hi),
                             normal_cusum_arl(k, hi, delta))  # fmt: skip


def normal_on_bernoulli(design: NormalCusumDesign, p0: float,
                        resolution: int = 400) -> tuple[int, int, int]:  # fmt: skip
    """The normal chart run on standardised Bernoulli(p0) indicators is a two-step chart:
    +((1−p0)/σ − k) on 1, −(p0/σ + k) on 0, σ = √(p0(1−p0)). Its integer form (steps
    scaled by `resolution` per σ) for integer_cusum_arl: its true ARL on 0/1 data."""
    sd = math.sqrt(p0 * (1 - p0))
    up = round(((1 - p0) / sd - design.k) * resolution)
    down = round((p0 / sd + design.k) * resolution)
    return up, down, math.ceil(design.h * resolution)
