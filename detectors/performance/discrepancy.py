"""AI-vs-report discrepancy: how often the AI's call disagrees with the radiologist's report.

Pure computation between the label join (monitor/labelwatch/discrepancy.py, which reads the
inferences and the report-derived labels from PostgreSQL) and storage/metrics: per study and
finding, the AI's call (score ≥ the event's threshold for that finding) and the report's label
go in; frozen per-window, per-stratum `DiscrepancyTest`s come out. No I/O.

Why this signal: published post-deployment monitors compare the AI's call with the report
rather than waiting for curated ground truth. Mayo's PE-AI monitor (JACR 2025: 11,999 CT
pulmonary angiograms, 3.1% discrepant) found that a 2–3% drop in specificity gave a 2–3-fold
rise in discrepancies, so the discrepancy rate moves long before a specificity estimate
becomes significant; the Radiology Partners intracranial-haemorrhage study (Acad Radiol
2025: 332,809 head CTs) tied the AI's false positives to one scanner vendor (OR 6.97), so the
rate is tested per site, scanner and model version, not only for the whole model.

The test: the window's rate in a stratum against the same stratum's rate in the reference
period, H1: the window's rate is higher. The p-value is the one-sided Fisher exact
(conditional, hypergeometric) test of the 2×2 table (Agresti, *Categorical Data Analysis*,
3rd ed., §3.5.1): exact at any count and never above its level under H0, where the pooled
two-proportion z-test (reported beside it as the effect's size in standard errors; Fleiss,
Levin & Paik, 3rd ed., §2.6) over-rejects at the small per-scanner counts and Bonferroni
levels this signal works at (measured: 10% of windows flagged at a nominal 5% over twenty
scanners). Strata with fewer than `min_expected` expected discrepant or concordant studies in
either sample are insufficient_data, not tests (they could not reach significance and would
only dilute the others' level). Within a window the strata tested share `alpha`
(Bonferroni), so the per-window false-alarm rate stays ≤ alpha under H0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from scipy.stats import hypergeom

from detectors.drift.results import Status
from detectors.errors import DetectorError


class DiscrepancyError(DetectorError, ValueError):
    """Inputs the discrepancy signal cannot be computed from (sizes, alpha)."""


# The strata the signal is computed over; "all" is the whole model.
STRATUM_KINDS = ("all", "site", "scanner", "model_version")


@dataclass(frozen=True)
class Call:
    """One study and finding: the AI's call at its operating point and the report's label."""

    ai_positive: bool
    report_positive: bool
    strata: Mapping[str, str]  # stratum kind -> value ("site": "north", "scanner": ...)
    finding: str = "*"

    @property
    def discrepant(self) -> bool:
        return self.ai_positive != self.report_positive


@dataclass(frozen=True)
class Counts:
    """Studies and discrepancies in one sample (a window or the reference, one stratum)."""

    n: int = 0
    discrepant: int = 0
    ai_only: int = 0  # AI positive, report negative: the AI's false positives by the report
    report_only: int = 0  # report positive, AI negative: the AI's misses by the report

    @property
    def rate(self) -> float | None:
        return self.discrepant / self.n if self.n else None

    def plus(self, call: Call) -> Counts:
        return Counts(self.n + 1, self.discrepant + call.discrepant,
                      self.ai_only + (call.ai_positive and not call.report_positive),
                      self.report_only + (call.report_positive and not call.ai_positive))  # fmt: skip


@dataclass(frozen=True)
class ProportionTest:
    """One-sided test of H0: p_window ≤ p_reference (Fisher's exact p; the pooled z)."""

    z: float
    p_value: float


@dataclass(frozen=True)
class DiscrepancyTest:
    """A window's discrepancy rate in one stratum against the reference's, and the verdict."""

    window_index: int  # 0: the reference itself
    finding: str
    stratum_kind: str
    stratum_value: str
    status: Status  # drift: flagged; ok; insufficient_data: too few studies to test
    window: Counts
    reference: Counts
    z: float | None
    p_value: float | None
    flagged: bool
    level: float | None  # the per-test level after Bonferroni within the window


@dataclass(frozen=True)
class DiscrepancyWindow:
    index: int  # 1, 2, ... in time order (0 is the reference)
    first: int  # position of the window's first call in the input
    size: int
    tests: tuple[DiscrepancyTest, ...]

    @property
    def flagged(self) -> tuple[DiscrepancyTest, ...]:
        return tuple(t for t in self.tests if t.flagged)


@dataclass(frozen=True)
class DiscrepancyReport:
    reference: tuple[DiscrepancyTest, ...]  # the reference's own rates (no test)
    windows: tuple[DiscrepancyWindow, ...]
    alpha: float
    reference_size: int
    window_size: int


def two_proportion_test(x_ref: int, n_ref: int, x_win: int, n_win: int) -> ProportionTest:
    """One-sided test that the window's proportion exceeds the reference's: Fisher's exact
    p-value, P(X ≥ x_win) for X hypergeometric given the margins, and the pooled z."""
    if min(n_ref, n_win) <= 0 or not (0 <= x_ref <= n_ref and 0 <= x_win <= n_win):
        raise DiscrepancyError("counts must satisfy 0 ≤ x ≤ n and n > 0")
    total, hits = n_ref + n_win, x_ref + x_win
    p = float(hypergeom.sf(x_win - 1, total, hits, n_win))
    pooled = hits / total
    var = pooled * (1 - pooled) * (1 / n_ref + 1 / n_win)
    diff = x_win / n_win - x_ref / n_ref
    z = diff / math.sqrt(var) if var > 0 else 0.0
    return ProportionTest(float(z), min(max(p, 0.0), 1.0))


def testable(ref: Counts, win: Counts, min_expected: float) -> bool:
    """The normal approximation's rule of thumb: expected discrepant and concordant counts
    under the pooled rate of at least `min_expected` in both samples."""
    if ref.n == 0 or win.n == 0:
        return False
    pooled = (ref.discrepant + win.discrepant) / (ref.n + win.n)
    low = min(pooled, 1 - pooled)
    return low * min(ref.n, win.n) >= min_expected


def tally(calls: Iterable[Call]) -> dict[tuple[str, str, str], Counts]:
    """Counts per (finding, stratum kind, stratum value); "all" always, finding "*" too."""
    out: dict[tuple[str, str, str], Counts] = {}
    for call in calls:
        strata = {"all": "all", **{k: v for k, v in call.strata.items() if k in STRATUM_KINDS}}
        for finding in dict.fromkeys((call.finding, "*")):
            for kind, value in strata.items():
                key = (finding, kind, value)
                out[key] = out.get(key, Counts()).plus(call)
    return out


def compare(
    reference: Mapping[tuple[str, str, str], Counts],
    window: Mapping[tuple[str, str, str], Counts],
    *,
    index: int,
    alpha: float,
    min_expected: float = 5.0,
) -> tuple[DiscrepancyTest, ...]:
    """Each stratum of the window against the same stratum of the reference; the strata
    tested share `alpha` (Bonferroni), so one window raises a false alarm with probability
    ≤ alpha under H0 whatever the number of sites and scanners."""
    keys = sorted(window)
    tested = [k for k in keys if testable(reference.get(k, Counts()), window[k], min_expected)]
    level = alpha / len(tested) if tested else None
    out = []
    for key in keys:
        ref, win = reference.get(key, Counts()), window[key]
        if key in tested and level is not None:
            t = two_proportion_test(ref.discrepant, ref.n, win.discrepant, win.n)
            flagged = t.p_value < level
            out.append(DiscrepancyTest(index, *key, Status.DRIFT if flagged else Status.OK,
                                       win, ref, t.z, t.p_value, flagged, level))  # fmt: skip
        else:
            out.append(DiscrepancyTest(index, *key, Status.INSUFFICIENT_DATA, win, ref,
                                       None, None, False, None))  # fmt: skip
    return tuple(out)


def evaluate(
    calls: Sequence[Call],
    *,
    reference_size: int,
    window_size: int,
    alpha: float = 0.01,
    min_expected: float = 5.0,
    partial: bool = True,
) -> DiscrepancyReport:
    """Calls in time order → the first `reference_size` as the reference, then consecutive
    windows of `window_size` calls (the last, shorter one too when `partial`), each tested
    per finding and stratum against the reference."""
    if reference_size <= 0 or window_size <= 0:
        raise DiscrepancyError("reference_size and window_size must be positive")
    if not 0 < alpha < 1:
        raise DiscrepancyError(f"alpha must be in (0, 1), got {alpha}")
    if len(calls) < reference_size:
        raise DiscrepancyError(f"{len(calls)} labelled calls, fewer than the reference's "
                               f"{reference_size}")  # fmt: skip
    ref = tally(calls[:reference_size])
    own = tuple(DiscrepancyTest(0, *k, Status.OK, c, c, None, None, False, None)
                for k, c in sorted(ref.items()))  # fmt: skip
    windows = []
    for index, start in enumerate(range(reference_size, len(calls), window_size), start=1):
        chunk = calls[start : start + window_size]
        if len(chunk) < window_size and not partial:
            break
        tests = compare(ref, tally(chunk), index=index, alpha=alpha, min_expected=min_expected)
        windows.append(DiscrepancyWindow(index, start, len(chunk), tests))
    return DiscrepancyReport(own, tuple(windows), alpha, reference_size, window_size)
