"""Detection power per scenario of the synthetic hospital, radwatch beside its peers.

Every scenario (collectors.simulator.scenarios) at medium severity (0.5). The reference is
hospital seed 0's first --ref studies with no shift; each seeded run (hospital seeds 1..
--seeds) starts the scenario at its first study, and the first w studies after the onset
form the window judged at size w (w = 50, 100, 200, 500). The studies go through the
collector's path in memory (monitor.pilot.simulated_rows). For each method the table gives the
share of runs flagged; the "none" rows are the same methods on no-shift runs, i.e. each
method's false-alarm rate at its nominal level (α = 0.05 everywhere):

- radwatch: the fitted suite over every stratum (MMD on both embeddings, KS on scores,
  image-quality and numeric DICOM features, Chi-square + never-seen values on categorical
  DICOM attributes and the model's calls), weighted BH at α = 0.05, localised as the
  scheduler does; "radwatch (right place)" counts only firings in a stratum, signal and
  leading feature the scenario names (monitor.pilot.simulated_rows.expected_finding, the rule
  of tests/monitor/drift/test_drift_power.py);
- Evidently DataDriftPreset on the same scalar features (dataset drift when ≥ 50% of the
  columns drift, its default), on the first --evidently-seeds runs (~5 s a report);
- alibi-detect MMDDrift on raw pixels (stored values ÷ bit range, 32×32 area-downsampled,
  no other reduction), 100 permutations;
- KS on the model's score alone.

Then the median delay (studies after the onset until it fires) of radwatch's online
detector (CVMDriftOnline on the score and the embedding's first principal component,
expected run time --ert) over the seeded runs, with how many runs it fired within the
stream, and the no-shift runs' firings for comparison.

Run: python bench/detection.py [--seeds 12] [--evidently-seeds 6] [--ref 1000] [--ert 2000]
[--workers 2]  (about 25 minutes on the 2-core CI machine with the defaults)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

os.environ.setdefault("DO_NOT_TRACK", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from collectors.simulator.scenarios import SCENARIOS  # noqa: E402
from detectors.drift import artifact  # noqa: E402
from detectors.drift.contract import Sample  # noqa: E402
from detectors.drift.fitting import fit_suite  # noqa: E402
from detectors.drift.suite import SuiteConfig  # noqa: E402
from monitor.drift.decisions import decide, top_features  # noqa: E402
from monitor.drift.windows import CATEGORICAL_ATTRIBUTES, to_sample  # noqa: E402
from monitor.pilot.simulated_rows import (  # noqa: E402
    ScenarioStreams,
    SimulatedRow,
    expected_finding,
    rows_of,
)

WINDOWS = (50, 100, 200, 500)
ALPHA = 0.05
METHODS = ("radwatch", "radwatch (right place)", "Evidently DataDriftPreset",
           "alibi MMDDrift raw pixels", "KS on scores")  # fmt: skip


def scalar_frame(sample: Sample):
    import pandas as pd

    return pd.DataFrame({f"{s}:{f}": v for s, fs in sample.scalars.items() for f, v in fs.items()})


# -- worker side ------------------------------------------------------------------------------

_STATE: dict = {}


def _init(packed: tuple[bytes, bytes, str], ref_items: list[SimulatedRow]) -> None:
    import torch
    from alibi_detect.cd import MMDDrift

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    ref_sample = to_sample(rows_of(ref_items))
    _STATE["suite"] = artifact.unpack(*packed)  # the stored form: data, never a pickle
    _STATE["frame"] = scalar_frame(ref_sample)
    _STATE["scores"] = ref_sample.scalars["scores"]
    pixels = np.stack([it.thumbnail.reshape(-1) for it in ref_items]).astype(np.float32)
    _STATE["mmd"] = MMDDrift(pixels, backend="pytorch", n_permutations=100, device="cpu",
                             p_val=ALPHA)  # fmt: skip


def _radwatch(items: list[SimulatedRow], scenario: str, seed: int) -> tuple[bool, bool]:
    _, decisions = decide(_STATE["suite"], rows_of(items), seed)
    want = expected_finding(scenario)
    fired = [(k, v, s, rs) for k, v, s, fire, rs in decisions if fire]
    right = any((k, v) in want.strata and s == want.signal
                and want.features & {f.feature for f in top_features(rs, 3)}
                for k, v, s, rs in fired)  # fmt: skip
    return bool(fired), right


def _evidently(items: list[SimulatedRow]) -> bool:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    ref = _STATE["frame"]
    cur = scalar_frame(to_sample(rows_of(items))).reindex(columns=ref.columns)
    doc = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref).dict()
    share = next(m["value"]["share"] for m in doc["metrics"]
                 if m["metric_name"].startswith("DriftedColumnsCount"))  # fmt: skip
    return bool(share >= 0.5)


def _pixels(items: list[SimulatedRow], seed: int) -> bool:
    import torch

    torch.manual_seed(seed)
    x = np.stack([it.thumbnail.reshape(-1) for it in items]).astype(np.float32)
    return bool(_STATE["mmd"].predict(x)["data"]["is_drift"])


def _ks_scores(items: list[SimulatedRow]) -> bool:
    from scipy import stats

    cur = to_sample(rows_of(items)).scalars["scores"]
    ref = _STATE["scores"]
    ps = [stats.ks_2samp(ref[k], cur[k]).pvalue for k in ref]
    return bool(min(ps) * len(ps) < ALPHA)


def judge(scenario: str, seed: int, items: list[SimulatedRow],
          evidently: bool) -> dict[str, list[bool]]:  # fmt: skip
    out: dict[str, list[bool]] = defaultdict(list)
    for w in WINDOWS:
        part = items[:w]
        fired, right = _radwatch(part, scenario, seed)
        out["radwatch"].append(fired)
        out["radwatch (right place)"].append(right)
        if evidently:
            out["Evidently DataDriftPreset"].append(_evidently(part))
        out["alibi MMDDrift raw pixels"].append(_pixels(part, seed))
        out["KS on scores"].append(_ks_scores(part))
    return out


def online_delay(packed: tuple[bytes, bytes, str], items: list[SimulatedRow]) -> int | None:
    online = artifact.unpack(*packed).online  # a fresh online state per run
    for i, update in enumerate(online.update(to_sample(rows_of(items)))):
        if update.fired:
            return i + 1
    return None


# -- driver -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=12)
    parser.add_argument(
        "--evidently-seeds",
        type=int,
        default=6,
        help="Evidently's report takes ~5 s: judged on the first K runs only",
    )
    parser.add_argument("--ref", type=int, default=1000)
    parser.add_argument("--ert", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    names = args.scenarios.split(",")
    seeds = list(range(1, args.seeds + 1))
    n = max(WINDOWS)
    t0 = time.time()
    with ScenarioStreams(severity=0.5, workers=args.workers) as streams:
        ref_items = streams.baseline([0], args.ref)[0]
        runs = {name: streams.streams(name, seeds, n) for name in names}
    t_render = time.time() - t0
    config = SuiteConfig(online=True, online_ert=args.ert)
    t1 = time.time()
    suite = fit_suite(to_sample(rows_of(ref_items)), config,
                      categorical_attributes=CATEGORICAL_ATTRIBUTES)  # fmt: skip
    t_fit = time.time() - t1
    with_online = artifact.pack(suite)
    suite.online = None  # windows only in the power table
    ctx = get_context("spawn")
    with ProcessPoolExecutor(args.workers, mp_context=ctx, initializer=_init,
                             initargs=(artifact.pack(suite), ref_items)) as pool:  # fmt: skip
        judged = {(name, seed): pool.submit(judge, name, seed, runs[name][seed],
                                            seed <= args.evidently_seeds)
                  for name in names for seed in seeds}  # fmt: skip
        delays = {(name, seed): pool.submit(online_delay, with_online, runs[name][seed])
                  for name in names for seed in seeds}  # fmt: skip
        results = {k: f.result() for k, f in judged.items()}
        delay = {k: f.result() for k, f in delays.items()}
    print(f"reference: hospital seed 0, first {args.ref} studies; {len(seeds)} seeded runs per "
          f"scenario (hospital seeds 1–{len(seeds)}), severity 0.5, α = {ALPHA}; "
          f"share of runs flagged at window w (the first w studies after the onset)\n")  # fmt: skip
    print("| scenario | method | " + " | ".join(f"w={w}" for w in WINDOWS) + " |")
    print("|---|---|" + "---:|" * len(WINDOWS))
    for name in names:
        for method in METHODS:
            if name == "none" and method == "radwatch (right place)":
                continue
            judged_by = [s for s in seeds if results[(name, s)].get(method)]
            cells = [np.mean([results[(name, s)][method][i] for s in judged_by])
                     for i in range(len(WINDOWS))]  # fmt: skip
            label = "none (false alarms)" if name == "none" else name
            print(f"| {label} | {method} ({len(judged_by)} runs) | "
                  + " | ".join(f"{c:.2f}" for c in cells) + " |")  # fmt: skip
    print(f"\nonline detector (CVMDriftOnline, ERT {args.ert}, windows "
          f"{list(config.online_window_sizes)}), {n} studies after the onset per run:\n")  # fmt: skip
    print("| scenario | fired within the run | median delay (studies) |")
    print("|---|---:|---:|")
    for name in names:
        ds = [delay[(name, s)] for s in seeds]
        fired = [d for d in ds if d is not None]
        med = f"{int(np.median(fired))}" if fired else "–"
        label = "none (false alarms)" if name == "none" else name
        print(f"| {label} | {len(fired)}/{len(seeds)} | {med} |")
    print(
        f"\n(render {t_render:.0f} s, fit {t_fit:.0f} s, total {time.time() - t0:.0f} s, "
        f"{args.workers} workers)"
    )


if __name__ == "__main__":
    main()
