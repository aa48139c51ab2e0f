"""Benchmark of the performance watch's statistics (prints tables; not a timed test).

1. AUROC interval cost: radwatch's DeLong (Sun & Xu 2014 midranks) beside the O(m·n)
   placement-value DeLong and a 1000-resample bootstrap with scikit-learn's roc_auc_score.
2. Interval agreement: DeLong (logit) vs bootstrap percentile interval widths.
3. CBPE accuracy: |estimated − realised| under covariate shift vs label shift, and how often
   the reliability flag is raised.

Run: python bench/performance.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.metrics import roc_auc_score

from detectors.performance.cbpe import estimate, fit_calibrator
from detectors.performance.realised import auroc_interval, delong_auroc, evaluate


def _naive_delong(y: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    return float(psi.mean()), float(np.var(v10, ddof=1) / pos.size + np.var(v01, ddof=1) / neg.size)


def _bootstrap(y: np.ndarray, s: np.ndarray, rng: np.random.Generator, b: int = 1000):
    n = y.size
    values = []
    for _ in range(b):
        i = rng.integers(0, n, n)
        if 0 < y[i].sum() < n:
            values.append(roc_auc_score(y[i], s[i]))
    return np.percentile(values, [2.5, 97.5])


def _timeit(fn, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def cost_table(sizes: list[int]) -> None:
    rng = np.random.default_rng(0)
    print("\nAUROC + interval, seconds per window (prevalence 0.2)")
    print(
        f"{'n':>7} {'radwatch':>10} {'naive DeLong':>13} {'ratio':>7} {'bootstrap':>10} {'ratio':>8}"
    )
    for n in sizes:
        y = (rng.random(n) < 0.2).astype(int)
        s = rng.normal(size=n) + 1.5 * y
        ours = _timeit(lambda y=y, s=s: auroc_interval(*delong_auroc(y, s)), 20)
        naive = _timeit(lambda y=y, s=s: _naive_delong(y, s), 3)
        boot = _timeit(lambda y=y, s=s: _bootstrap(y, s, rng), 1)
        print(
            f"{n:>7} {ours:>10.5f} {naive:>13.5f} {naive / ours:>6.0f}× {boot:>10.3f} "
            f"{boot / ours:>7.0f}×"
        )


def width_table() -> None:
    rng = np.random.default_rng(1)
    print("\nAUROC 95% interval: DeLong (logit) vs bootstrap percentile (1000 resamples)")
    print(f"{'n':>6} {'AUROC':>6} {'DeLong lo':>10} {'hi':>7} {'boot lo':>8} {'hi':>7}")
    for n, d in ((200, 1.0), (200, 2.5), (1000, 1.0), (1000, 2.5)):
        y = (rng.random(n) < 0.2).astype(int)
        s = rng.normal(size=n) + d * y
        auc, var = delong_auroc(y, s)
        lo, hi = auroc_interval(auc, var)
        blo, bhi = _bootstrap(y, s, rng)
        print(f"{n:>6} {auc:>6.3f} {lo:>10.3f} {hi:>7.3f} {blo:>8.3f} {bhi:>7.3f}")


def cbpe_table(seeds: int) -> None:
    print("\nCBPE: mean |estimated − realised| over seeds (window 2000; isotonic calibration)")
    print(f"{'world':<26} {'sens':>6} {'spec':>6} {'AUROC':>6} {'flagged unreliable':>19}")

    def covariate(rng, n, mu):
        x = rng.normal(mu, 1.0, n)
        y = (rng.random(n) < 1 / (1 + np.exp(-(2.2 * x - 2.0)))).astype(int)
        return y, 1 / (1 + np.exp(-(1.3 * x - 0.4)))

    def label_shift(rng, n, prev):
        y = (rng.random(n) < prev).astype(int)
        return y, np.where(y == 1, rng.beta(5, 2, n), rng.beta(2, 5, n))

    worlds = (("no shift", covariate, 0.0, 0.0), ("covariate shift mu+0.8", covariate, 0.0, 0.8),
              ("prevalence 0.2→0.45", label_shift, 0.2, 0.45))  # fmt: skip
    for name, world, ref_param, win_param in worlds:
        errs = {"sensitivity": [], "specificity": [], "auroc": []}
        flagged = 0
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            cal = fit_calibrator(*world(rng, 4000, ref_param))
            y, s = world(rng, 2000, win_param)
            est = estimate(cal, s, 0.5, labelled=(y[:300], s[:300]), seed=seed)
            real = evaluate(y, s, 0.5)
            for k in errs:
                errs[k].append(abs(est.metrics()[k].value - real.metrics()[k].value))
            flagged += not est.reliability.reliable
        print(
            f"{name:<26} {np.mean(errs['sensitivity']):>6.3f} "
            f"{np.mean(errs['specificity']):>6.3f} {np.mean(errs['auroc']):>6.3f} "
            f"{flagged:>12}/{seeds}"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    cost_table([500, 2000] if args.quick else [500, 2000, 10000])
    width_table()
    cbpe_table(5 if args.quick else 20)


if __name__ == "__main__":
    main()
