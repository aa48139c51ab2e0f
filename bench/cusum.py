"""Benchmark of the sequential performance watch's CUSUM designs (prints tables; not a test).

1. The Bernoulli CUSUM (detectors/performance/cusum.py): for a few (p0, shift, ARL0) settings,
   including a hospital's (ARL0 = 90 days × 200 studies/day = 18,000 studies), the designed
   limit, the exact in-control and out-of-control ARL (Brook & Evans Markov chain) beside a
   seeded Monte Carlo check, the steady-state delay (shift after a long quiet run), and
   runtimes.
3. What an estimated p0 does to the false-alarm rate (a reference of 1,000 labelled studies),
   and the guarded design (limit set at the 90% Clopper–Pearson upper bound of p0).
2. AIM-CU's approach on the same streams: a normal CUSUM of standardised indicators
   z = (x − p0)/√(p0(1−p0)), k = δ/2, h from ARL0 by normal theory, and what that chart's
   ARL0/ARL1 really are on 0/1 data (its two-step Markov chain). AIM-CU itself calls R's spc
   (xcusum.crit.L0h with h = 4 fixed, k from ARL0, two-sided); R is not run here, its
   formula is computed (Page's integral equation, Gauss–Legendre Nyström).

Run: python bench/cusum.py [--quick] [--seed N]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from detectors.performance.cusum import (
    design_bernoulli,
    design_normal,
    integer_cusum_arl,
    integer_limit,
    normal_cusum_arl,
    normal_on_bernoulli,
    simulate_run_lengths,
    upper_rate,
)

HOSPITAL_ARL0 = 90 * 200  # one false alarm per 90 days at 200 studies a day

# (p0, p1, ARL0, what it stands for)
SETTINGS = [
    (0.10, 0.15, 300, "discrepancy 10%, ×1.5, test size"),
    (0.05, 0.10, 500, "discrepancy 5%, +0.05"),
    (0.05, 0.075, HOSPITAL_ARL0, "discrepancy 5%, ×1.5, hospital"),
    (0.05, 0.10, HOSPITAL_ARL0, "discrepancy 5%, +0.05, hospital"),
    (0.10, 0.15, HOSPITAL_ARL0, "discrepancy 10%, ×1.5, hospital"),
    (0.02, 0.04, HOSPITAL_ARL0, "discrepancy 2%, ×2, hospital"),
    # Sensitivity 0.90 → 0.85 at prevalence 20%: misses among positives, 40 positives a day.
    (0.10, 0.15, 90 * 40, "sensitivity .90→.85, positives"),
]


def _mc(design, p: float, runs: int, rng: np.random.Generator) -> tuple[float, float, float]:
    start = time.perf_counter()
    lengths = simulate_run_lengths(design, p, runs, rng, max_studies=int(20 * design.arl(p)))
    return (
        float(lengths.mean()),
        float(lengths.std(ddof=1) / math.sqrt(runs)),
        time.perf_counter() - start,
    )


def bernoulli_table(runs_small: int, runs_large: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    print(
        f"1. Bernoulli CUSUM: designed (exact Markov chain) vs measured (Monte Carlo, seed {seed})"
    )
    print(f"{'setting':34} {'p0':>5} {'p1':>6} {'ARL0 tgt':>8} {'h(LLR)':>6} {'limit':>5} "
          f"{'ARL0 exact':>10} {'ARL0 MC ± se':>16} {'ARL1 exact':>10} {'ARL1 MC ± se':>14} "
          f"{'ARL1 steady':>11} {'runs':>4} {'design s':>8} {'MC s':>5}")  # fmt: skip
    for p0, p1, arl0, label in SETTINGS:
        start = time.perf_counter()
        d = design_bernoulli(p0, p1, arl0)
        t_design = time.perf_counter() - start
        runs = runs_small if arl0 <= 1000 else runs_large
        m0, se0, t0 = _mc(d, p0, runs, rng)
        m1, se1, t1 = _mc(d, p1, runs, rng)
        print(f"{label:34} {p0:5.2f} {p1:6.3f} {arl0:8,} {d.h:6.2f} {d.limit:5} "
              f"{d.arl0_achieved:10,.0f} {m0:9,.0f} ± {se0:4,.0f} {d.arl1:10,.1f} "
              f"{m1:7,.1f} ± {se1:4.1f} {d.arl1_steady:11,.1f} {runs:4} {t_design:8.3f} "
              f"{t0 + t1:5.1f}")  # fmt: skip


def aimcu_table() -> None:
    print("\n2. AIM-CU's approach on the same 0/1 streams (normal CUSUM of z = (x - p0)/sd0)")
    print("   k = δ/2, h from ARL0 by normal theory; 'true' = that chart's exact ARL on Bernoulli")
    print("   data (two-step Markov chain); 'recal.' = its h re-chosen on that chain so that its")
    print("   true ARL0 meets the target, and its ARL1 then (beside the Bernoulli CUSUM's).")
    print("   Right: AIM-CU's default h = 4 with k from ARL0, two-sided (1/ARL = 1/ARL+ + 1/ARL-,")
    print("   so one-sided ARL0 = 2 × target); R spc is not run here, its equation is solved.")
    print(f"{'setting':34} {'δ(σ)':>5} {'k':>5} {'h':>6} {'ARL0 normal':>11} {'ARL0 true':>10} "
          f"{'ARL1 normal':>11} {'ARL1 true':>9} {'recal. ARL1':>11} {'Bern ARL1':>9} | {'h=4: k':>6} "
          f"{'ARL1':>8}")  # fmt: skip
    for p0, p1, arl0, label in SETTINGS:
        d = design_bernoulli(p0, p1, arl0)
        delta = (p1 - p0) / math.sqrt(p0 * (1 - p0))
        n = design_normal(delta, arl0)
        up, down, limit = normal_on_bernoulli(n, p0)
        true0 = integer_cusum_arl(up, down, limit, p0)
        true1 = integer_cusum_arl(up, down, limit, p1)
        recal = integer_cusum_arl(up, down, integer_limit(up, down, p0, arl0), p1)
        k4 = _k_for(4.0, 2 * arl0)
        arl1_k4 = normal_cusum_arl(k4, 4.0, delta)
        print(f"{label:34} {delta:5.3f} {n.k:5.3f} {n.h:6.2f} {n.arl0_achieved:11,.0f} "
              f"{true0:10,.0f} {n.arl1:11,.1f} {true1:9,.1f} {recal:11,.1f} {d.arl1:9,.1f} | {k4:6.3f} "
              f"{arl1_k4:8,.1f}")  # fmt: skip


def estimation_table(reference: int) -> None:
    print(
        "\n3. p0 is estimated on the reference: the true ARL0 when the rate is one standard error"
    )
    print(f"   (n = {reference:,} labelled reference studies) below or above the estimate")
    print(f"{'setting':34} {'p0':>5} {'se':>6} {'ARL0 at p0-se':>13} {'ARL0 exact':>10} "
          f"{'ARL0 at p0+se':>13} {'ARL1':>7} | {'guard':>6} {'ARL0 at p0':>10} "
          f"{'at p0+se':>9} {'ARL1':>7}")  # fmt: skip
    for p0, p1, arl0, label in SETTINGS:
        if arl0 < HOSPITAL_ARL0:
            continue
        d = design_bernoulli(p0, p1, arl0)
        se = math.sqrt(p0 * (1 - p0) / reference)
        guard = upper_rate(p0, reference, 0.9)
        g = design_bernoulli(p0, p1, arl0, guard=guard)
        print(f"{label:34} {p0:5.2f} {se:6.4f} {d.arl(p0 - se):13,.0f} {d.arl0_achieved:10,.0f} "
              f"{d.arl(p0 + se):13,.0f} {d.arl1:7,.1f} | {guard:6.4f} {g.arl(p0):10,.0f} "
              f"{g.arl(p0 + se):9,.0f} {g.arl1:7,.1f}")  # fmt: skip


def _k_for(h: float, arl0: float) -> float:
    """AIM-CU's design direction: the k whose one-sided in-control ARL at h is arl0."""
    lo, hi = 0.0, 5.0  # ARL rises with k
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if normal_cusum_arl(mid, h) < arl0 else (lo, mid)
    return hi


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer Monte Carlo runs")
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args()
    start = time.perf_counter()
    bernoulli_table(100 if args.quick else 1000, 50 if args.quick else 200, args.seed)
    aimcu_table()
    estimation_table(1000)
    print(f"\ntotal {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
