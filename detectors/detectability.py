"""Detectability: the smallest shift each signal × stratum can find within a stated time, and
the strata too small to watch — what the monitoring plan cannot see (issue 16).

Pure computation beside the false-alarm budget (false_alarm_budget.py): monitor/plan/check.py
reads the model's frozen drift reference (its fitted suite's per-stratum reference values), the
observed volume and the plan's windows and budget, and calls `assess`; `radwatch plan check`
prints the result and the plan document (monitor/reports/plan_document.py) renders it.

Method (every number is in `Detectability.as_dict`, so a reader can redo it):
- A stratum's part of each drift window is its reference share × the window's studies (a
  window closes at `window` studies or after `max_span_days`, whichever comes first). It is
  too small to watch when that expectation is below the suite's `min_window` (every window
  of it is `insufficient_data`) or when the suite fitted no detector for it (fewer than
  `min_reference` studies in the reference's fit part). The count per window is binomial;
  the check uses its expectation.
- Per signal, one leading numeric feature is shifted (monitor/plan/check.py picks it: the
  model score, the median intensity, KVP, or — for embeddings — the projection on the first
  principal component of the stratum's reference vectors, a conservative stand-in for the
  MMD test the suite runs: MMD sees every direction, the projection one). Only KS is
  modelled: the suite's Chi-square on the model's calls (the positive-call rate) also sees a
  score shift that crosses the threshold, sooner than stated. Categorical-only signals get no
  number; the row says what is checked instead.
- The shift is δ SDs on the feature's normal-score scale: each reference value is replaced
  by Φ⁻¹ of its mid-rank quantile, and the window's values move up by δ. For a normally
  distributed feature that is a mean shift of δ reference SDs; for any feature it reads
  "the reference median moves to the Φ(δ) quantile" (`median_to_percentile`). Why not a raw
  mean shift: KS is unchanged by a monotone transform of both samples, and a raw shift says
  little for skewed or bimodal features — the simulator's nodule score (85% near 0.003, 15%
  near 1, SD 0.37) would show 0.05 SD everywhere, a shift that moves every negative study
  above all the others.
- Power per window, by resampling the stratum's reference (seeded, `replicates` draws): each
  draw splits the reference values at random into a comparison part of
  max(m − n, m/2) and a pool; a pseudo-window of n studies is the pool (or n draws with
  replacement from it when the pool is smaller), shifted by δ, and tested with the suite's
  two-sample Kolmogorov–Smirnov test (statistic and Stephens' p as in drift/ks.py) against
  the comparison part. Disjoint parts keep the no-shift rejection rate at the level
  (tested); the comparison part is smaller than the detector's own reference,
  so the estimate errs toward a larger shift.
- The per-test level is the window's α (the budget's) × this test's share of the window's
  multiple-testing weight (drift/suite.py `family_weights`, over the watchable strata): the
  threshold weighted Benjamini–Hochberg applies when it is the only finding of the window.
  A real shift that moves several features or signals is found at looser thresholds, so
  this again errs toward a larger shift.
- Within the stated time there are W = ⌊windows a day × days⌋ windows; an alert opens after
  k (the budget's persistence) consecutive firing windows. With per-window power p and
  independent windows, P(a run of k within W) is computed exactly (a run-length Markov
  chain); the minimal detectable shift is the smallest δ on the grid whose power reaches the
  p that makes this probability `target` (0.8). Power is taken as non-decreasing in δ (one
  set of draws for every δ; bisection on the grid). None: not detectable within the time.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
from scipy import special, stats

from detectors.drift.contract import ALL
from detectors.drift.results import DriftResult, FeatureFinding, Status
from detectors.drift.suite import SuiteConfig, family_weights
from detectors.false_alarm_budget import FalseAlarmBudget, Volume

GRID = tuple(round(0.05 * i, 2) for i in range(1, 61))  # 0.05 … 3.0 SDs (normal scores)
TARGET = 0.8
REPLICATES = 200
MAX_REFERENCE = 4000  # larger references are subsampled: n_e = nm/(n+m) hardly moves beyond it


@dataclass(frozen=True)
class Setting:
    """The plan's windows, the budget's α and persistence, and the observed volume."""

    window: int  # studies per drift window (whole model)
    max_span_days: float  # a window also closes after this long
    studies_per_day: float
    alpha: float  # the window family's level (budget)
    persistence: int  # consecutive firing windows before an alert opens (budget)
    within_days: float = 7.0
    min_window: int = 30  # the suite's (reference config)
    min_reference: int = 50
    whole_model_share: float = 0.5
    target: float = TARGET
    replicates: int = REPLICATES
    grid: tuple[float, ...] = GRID

    @property
    def studies_per_window(self) -> float:
        return min(float(self.window), self.studies_per_day * self.max_span_days)

    @property
    def windows_per_day(self) -> float:
        return max(self.studies_per_day / self.window, 1.0 / self.max_span_days)

    @property
    def windows_within(self) -> int:
        return int(math.floor(self.windows_per_day * self.within_days + 1e-9))


@dataclass(frozen=True)
class FittedTest:
    """One fitted detector of a stratum: its name, signal and p-values per window."""

    detector: str  # "ks:scores", "mmd:model_embedding", "chi2:acquisition"
    signal: str
    p_values: int


@dataclass(frozen=True)
class Lead:
    """A signal's leading feature in one stratum's reference: what the check shifts."""

    signal: str
    detector: str  # the fitted test whose weight it takes
    feature: str  # "nodule", "KVP", "p50", "PC1 of model_embedding"
    values: np.ndarray | None  # the stratum's reference values; None: nothing numeric
    note: str = ""  # what is checked instead when `values` is None
    stand_in: bool = False  # the shift is tested by KS on a projection, not by the suite's test


@dataclass(frozen=True)
class Stratum:
    kind: str
    value: str
    share: float  # of the reference's studies
    n_reference: int  # studies of it in the reference (fit part when fitted)
    fitted: bool  # the suite has detectors for it
    tests: tuple[FittedTest, ...] = ()
    leads: Mapping[str, Lead] = field(default_factory=dict)  # signal -> lead
    unfitted_reason: str = ""


@dataclass(frozen=True)
class Row:
    signal: str
    stratum_kind: str
    stratum_value: str
    share: float
    per_window: float  # expected studies of the stratum per window
    per_day: float
    watchable: bool
    reason: str
    feature: str | None
    min_shift_sd: float | None  # None: too small, not numeric, or not detectable in time
    median_to_percentile: float | None  # where that shift moves the reference median: 100·Φ(δ)
    within_days: float
    alpha: float  # the window family's α
    test_alpha: float | None  # this test's level inside the family
    persistence: int
    power_needed: float | None  # per-window power that makes P(k in a row, in time) = target


@dataclass(frozen=True)
class Detectability:
    """What a model's plan can and cannot see at its observed volume."""

    model: str
    plan_version: str
    reference_id: int | None
    volume: Volume
    budget: FalseAlarmBudget
    setting: Setting
    rows: tuple[Row, ...]
    notes: tuple[str, ...] = ()

    def too_small(self) -> list[Row]:
        return [r for r in self.rows if not r.watchable]

    def as_dict(self) -> dict[str, Any]:
        s = self.setting
        return {"model": self.model, "plan_version": self.plan_version,
                "reference_id": self.reference_id, "volume": asdict(self.volume),
                "budget": asdict(self.budget),
                "setting": {**{k: v for k, v in asdict(s).items() if k != "grid"},
                            "grid": [s.grid[0], s.grid[-1]],
                            "studies_per_window": s.studies_per_window,
                            "windows_per_day": s.windows_per_day,
                            "windows_within": s.windows_within},
                "rows": [asdict(r) for r in self.rows], "notes": list(self.notes),
                "method": METHOD}  # fmt: skip

    def lines(self) -> list[str]:
        s, v = self.setting, self.volume
        out = [f"{self.model}: detectability under plan {self.plan_version} "
               f"(reference {self.reference_id})",
               f"volume: {v.studies_per_day:,.0f} studies/day ({v.basis})",
               f"windows: {s.studies_per_window:,.0f} studies, {s.windows_per_day:.3g}/day, "
               f"{s.windows_within} in {s.within_days:g} days; α {s.alpha:.3g} per window, "
               f"alert after {s.persistence} consecutive firing windows; budget "
               f"{self.budget.incidents:g} false incident(s) per {self.budget.days:g} days",
               f"minimal shift: SDs of the leading feature (normal scores: the reference "
               f"median moves to percentile Φ(δ)) detected within {s.within_days:g} days "
               f"with probability ≥ {s.target:.0%} (resampled)", ""]  # fmt: skip
        head = ("signal", "stratum", "share", "/window", "/day", "watch", "min shift", "note")
        table = [head]
        for r in self.rows:
            shift = (f"{r.min_shift_sd:.2f} SD (median→p{r.median_to_percentile:.0f})"
                     if r.min_shift_sd is not None and r.median_to_percentile is not None
                     else "-")  # fmt: skip
            table.append((r.signal, _stratum(r), f"{r.share:.1%}", f"{r.per_window:.1f}",
                          f"{r.per_day:,.0f}", "yes" if r.watchable else "NO", shift,
                          _note(r)))  # fmt: skip
        widths = [max(len(row[i]) for row in table) for i in range(len(head) - 1)]
        out += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1]
                for row in table]  # fmt: skip
        return out + [f"note: {n}" for n in self.notes]


METHOD = ("Per signal, the leading feature of the stratum's frozen reference is shifted by δ "
          "SDs on its normal-score scale (a mean shift of δ SDs for a normal feature; the "
          "reference median moves to percentile Φ(δ)) in resampled pseudo-windows (disjoint from their comparison part) and "
          "tested with two-sample KS at α × the test's share of the window's weighted-BH "
          "family; embeddings: KS on the first principal component, a conservative stand-in "
          "for MMD. Minimal δ: the smallest on the grid whose per-window power makes an alert "
          "(k consecutive firing windows, independent windows) within the stated time at "
          "least as likely as the target.")  # fmt: skip


def assess(strata: Sequence[Stratum], signals: Sequence[str], setting: Setting,
           *, seed: int = 0) -> tuple[Row, ...]:  # fmt: skip
    """One row per signal × stratum (signals in order, strata in the order given)."""
    per_window = setting.studies_per_window
    watched = [s for s in strata if s.fitted and s.share * per_window >= setting.min_window]
    weights = level_weights(watched, setting.whole_model_share)
    windows, k = setting.windows_within, setting.persistence
    needed = needed_power(k, windows, setting.target) if windows >= k else None
    rows = []
    for signal in signals:
        for s in strata:
            rows.append(_row(signal, s, setting, weights, needed, seed))
    return tuple(rows)


def _row(signal: str, s: Stratum, setting: Setting, weights: Mapping[tuple[Any, str], float],
         needed: float | None, seed: int) -> Row:  # fmt: skip
    n = s.share * setting.studies_per_window
    lead = s.leads.get(signal)
    row = Row(signal=signal, stratum_kind=s.kind, stratum_value=s.value, share=s.share,
              per_window=n, per_day=s.share * setting.studies_per_day, watchable=False,
              reason="", feature=lead.feature if lead else None, min_shift_sd=None,
              median_to_percentile=None,
              within_days=setting.within_days, alpha=setting.alpha, test_alpha=None,
              persistence=setting.persistence, power_needed=needed)  # fmt: skip
    if not s.fitted:
        return replace(row, feature=None, reason=s.unfitted_reason or (
            f"{s.n_reference} reference studies < minimum {setting.min_reference}: "
            "no detector fitted"))  # fmt: skip
    if n < setting.min_window:
        return replace(row, reason=f"{n:.1f} studies per window < minimum "
                       f"{setting.min_window}: every window is insufficient_data")  # fmt: skip
    if lead is None:
        return replace(row, reason=f"no {signal} data in the reference")
    level = setting.alpha * weights.get(((s.kind, s.value), lead.detector), 0.0)
    row = replace(row, watchable=True, reason=lead.note, test_alpha=level if level > 0 else None)
    if lead.values is None:
        return row
    if needed is None:
        return replace(row, reason=f"only {setting.windows_within} windows in "
                       f"{setting.within_days:g} days; an alert needs {setting.persistence} "
                       "consecutive firing windows")  # fmt: skip
    if level <= 0:
        return replace(row, reason="its test is not in the window's family")
    rng = np.random.default_rng([seed, zlib.crc32(f"{signal}|{s.kind}|{s.value}".encode())])
    shift, why = min_shift(lead.values, int(round(n)), level, needed, setting, rng)
    if lead.stand_in and not why:
        why = f"KS on {lead.feature}: a conservative stand-in for MMD"
    where = None if shift is None else round(100.0 * float(special.ndtr(shift)), 1)
    return replace(row, min_shift_sd=shift, median_to_percentile=where, reason=why)


def level_weights(strata: Sequence[Stratum], whole_model_share: float
                 ) -> dict[tuple[tuple[str, str], str], float]:  # fmt: skip
    """Each test's per-p-value share of one window's weight, as drift/suite.py's
    `family_weights` gives it for windows where exactly `strata` are tested."""
    layout = []
    for s in strata:
        results = [DriftResult(detector=t.detector, signal=t.signal, status=Status.OK,
                               p_value=0.5, features=tuple(_finding(i) for i in range(t.p_values)))
                   for t in s.tests if t.p_values > 0]  # fmt: skip
        layout.append(((s.kind, s.value), results))
    flat = family_weights(layout, SuiteConfig(whole_model_share=whole_model_share))
    total = sum(flat) or 1.0
    out, pos = {}, 0
    for key, results in layout:
        for r in results:
            out[(key, r.detector)] = flat[pos] / total  # one feature's weight
            pos += len(r.features)
    return out


def _finding(i: int) -> FeatureFinding:
    return FeatureFinding(f"f{i}", "ks", 0.5, 0.0, 0.0, "", "")


def run_probability(p: np.ndarray | float, k: int, windows: int) -> np.ndarray:
    """P(at least k consecutive successes in `windows` independent Bernoulli(p) trials),
    by the run-length Markov chain (exact); vectorised over p."""
    q = np.atleast_1d(np.asarray(p, dtype=float))
    state = np.zeros((k, len(q)))  # P(current run length = j, no run of k yet)
    state[0] = 1.0
    done = np.zeros(len(q))
    for _ in range(windows):
        done = done + q * state[k - 1]
        moved = q * state[:-1]
        state[0] = (1.0 - q) * state.sum(0)
        state[1:] = moved
    return done


def needed_power(k: int, windows: int, target: float) -> float:
    """The per-window power whose run probability (k in a row within `windows`) is `target`."""
    lo, hi = 0.0, 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if run_probability(mid, k, windows)[0] >= target else (mid, hi)
    return hi


class KSPower:
    """Per-window power of the two-sample KS test against shifts, from one set of resampled
    pseudo-windows of a stratum's reference (common draws for every shift)."""

    def __init__(self, values: np.ndarray, n: int, level: float, replicates: int,
                 rng: np.random.Generator, max_shift: float = 3.0) -> None:  # fmt: skip
        x = np.asarray(values, dtype=float)
        x = x[np.isfinite(x)]
        if len(x) > MAX_REFERENCE:
            x = x[rng.choice(len(x), MAX_REFERENCE, replace=False)]
        if len(x) < 2 or float(np.ptp(x)) == 0.0 or n < 1:
            raise ValueError("the feature is constant in the reference (or the window empty)")
        # Normal scores (mid-ranks for ties): see the module docstring.
        z = special.ndtri((stats.rankdata(x) - 0.5) / len(x))
        m, b = len(z), replicates
        r = max(m - n, m // 2)  # comparison part; the pool is the rest
        pool = m - r
        perm = np.argsort(rng.random((b, m)), axis=1)
        if n <= pool:
            take = perm[:, r : r + n]
        else:
            take = np.take_along_axis(perm[:, r:], rng.integers(pool, size=(b, n)), axis=1)
        ref, win = np.sort(z[perm[:, :r]], axis=1), np.sort(z[take], axis=1)
        # Rows laid end to end, each offset beyond the last one's range (shift included), so
        # one searchsorted answers every row's ECDF at once.
        span = float(z.max() - z.min()) + 2.0 * max_shift + 1.0
        offset = (np.arange(b) * span)[:, None]
        self.ref, self.win = (ref + offset).ravel(), (win + offset).ravel()
        self.r, self.n, self.b, self.span = r, n, b, span
        self.base_r, self.base_n = (np.arange(b) * r)[:, None], (np.arange(b) * n)[:, None]
        self.f_ref_at_ref = self._cdf(self.ref, self.ref, r)
        self.f_win_at_win = self._cdf(self.win, self.win, n)
        root = math.sqrt(n * r / (n + r))
        # KS rejects at p < level ⇔ D > this (Stephens' λ as in drift/ks.py ks_two_sample).
        self.critical = float(special.kolmogi(level)) / (root + 0.12 + 0.11 / root)

    def _cdf(self, sorted_rows: np.ndarray, at: np.ndarray, size: int) -> np.ndarray:
        base = self.base_r if size == self.r else self.base_n
        counts = np.searchsorted(sorted_rows, at, side="right").reshape(self.b, -1) - base
        return counts / size

    def statistics(self, shift: float) -> np.ndarray:
        """KS D of every pseudo-window shifted by `shift` (normal scores), one per draw."""
        f_win_at_ref = self._cdf(self.win, self.ref - shift, self.n)
        f_ref_at_win = self._cdf(self.ref, self.win + shift, self.r)
        return np.maximum(np.abs(self.f_ref_at_ref - f_win_at_ref).max(1),
                          np.abs(f_ref_at_win - self.f_win_at_win).max(1))  # fmt: skip

    def power(self, shift: float) -> float:
        return float(np.mean(self.statistics(shift) > self.critical))


def min_shift(values: np.ndarray, n: int, level: float, needed: float, setting: Setting,
              rng: np.random.Generator) -> tuple[float | None, str]:  # fmt: skip
    """The smallest grid shift whose per-window power reaches `needed`, and a reason when
    there is none."""
    grid = setting.grid
    try:
        power = KSPower(values, n, level, setting.replicates, rng, max(grid))
    except ValueError:
        return None, "constant in the reference: any other value gives KS D = 1 in one window"
    if power.power(grid[-1]) < needed:
        return None, (f"not detectable within {setting.within_days:g} days: "
                      f"{grid[-1]:g} SD is not enough")  # fmt: skip
    lo, hi = -1, len(grid) - 1  # power(grid[hi]) ≥ needed; lo: below the grid or failing
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if power.power(grid[mid]) >= needed else (mid, hi)
    return grid[hi], ""


def _stratum(r: Row) -> str:
    return "whole model" if (r.stratum_kind, r.stratum_value) == ALL else (
        f"{r.stratum_kind}={r.stratum_value}")  # fmt: skip


def _note(r: Row) -> str:
    if r.reason:
        return r.reason
    return f"{r.feature}, test α {r.test_alpha:.2g}" if r.test_alpha is not None else ""
