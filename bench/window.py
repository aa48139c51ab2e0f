"""Cost of one drift window: radwatch's fitted suite vs a naive alibi-detect use, on CPU.

Prints, for reference 1,000/5,000 × window 200/500 × embedding dimension 32/64/128, the
time to run every whole-model test of one window (MMD on the embedding, KS per scalar,
Chi-square + never-seen values per DICOM attribute) with radwatch's suite fitted once,
beside a naive use of alibi-detect that builds MMDDrift + KSDrift + ChiSquareDrift on the
reference for every window (alibi's MMDDrift with the same reference size and 100
permutations; where that would take minutes it is timed with 5 permutations and scaled
×20, marked "~"). Target: ≤ 1 s at reference 5,000, window 500, dimension 64.

Run: python bench/window.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from detectors.alibi_backend import fit_suite  # noqa: E402
from detectors.drift import ALL, Sample, SuiteConfig  # noqa: E402

ATTRS = ("Manufacturer", "PhotometricInterpretation", "PatientSex")


def make(n: int, d: int, rng: np.random.Generator) -> Sample:
    return Sample(
        ids=tuple(f"s{i}" for i in range(n)),
        vectors={"model_embedding": rng.normal(size=(n, d)).astype(np.float32)},
        scalars={"scores": {"nodule": rng.beta(2, 5, n)},
                 "acquisition": {"KVP": rng.normal(110, 5, n), "Exposure": rng.gamma(4, 2, n)}},
        categories={"Manufacturer": rng.choice(np.array(["ACME", "Borealis"], dtype=object), n),
                    "PhotometricInterpretation": np.array(["MONOCHROME2"] * n, dtype=object),
                    "PatientSex": rng.choice(np.array(["F", "M"], dtype=object), n)},
        strata={},
    )  # fmt: skip


def naive(ref: Sample, win: Sample, perms: int) -> float:
    from alibi_detect.cd import ChiSquareDrift, KSDrift, MMDDrift

    t = time.perf_counter()
    x_ref = ref.vectors["model_embedding"]
    mmd = MMDDrift(x_ref, backend="pytorch", n_permutations=perms, device="cpu")
    mmd.predict(win.vectors["model_embedding"])
    sc = np.column_stack([ref.scalars[s][f] for s in ("scores", "acquisition")
                          for f in ref.scalars[s]])  # fmt: skip
    wc = np.column_stack([win.scalars[s][f] for s in ("scores", "acquisition")
                          for f in win.scalars[s]])  # fmt: skip
    KSDrift(sc).predict(wc)
    codes = {a: {v: i for i, v in enumerate(sorted(set(ref.categories[a])))} for a in ATTRS}
    enc = lambda s: np.column_stack([[codes[a].get(v, -1) for v in s.categories[a]]  # noqa: E731
                                     for a in ATTRS])  # fmt: skip
    ChiSquareDrift(enc(ref)).predict(enc(win))
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="dimension 64 only")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    # One intra-op thread for both sides: fair, and on a shared CI CPU spinning OpenMP
    # workers make every small torch op 10-25x slower (measured).
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    config = SuiteConfig(online=False, strata_kinds=(), calibration_windows=0)
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    print(
        "| reference | window | dim | radwatch fit (once) | radwatch window | naive alibi window | ratio |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    dims = (64,) if args.quick else (32, 64, 128)
    for n_ref in (1000, 5000):
        for n_win in (200, 500):
            for d in dims:
                ref, win = make(n_ref, d, rng), make(n_win, d, rng)
                t = time.perf_counter()
                suite = fit_suite(ref, config, categorical_attributes=ATTRS)
                fit_s = time.perf_counter() - t
                suite.score(win, seed=0)  # warm-up
                reps = []
                for r in range(3):
                    t = time.perf_counter()
                    verdicts = suite.score(win, seed=r + 1)
                    reps.append(time.perf_counter() - t)
                    assert any((v.kind, v.value) == ALL for v in verdicts)
                ours = float(np.median(reps))
                big = n_ref + n_win > 2000
                perms = 5 if big else 100
                theirs = naive(ref, win, perms) * (100 / perms if big else 1)
                mark = "~" if big else ""
                print(f"| {n_ref} | {n_win} | {d} | {fit_s:.2f} s | {ours:.3f} s | "
                      f"{mark}{theirs:.2f} s | {theirs / ours:.0f}× |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
