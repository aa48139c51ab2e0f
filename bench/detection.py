"""Detection power per scenario of the synthetic hospital, radwatch beside its peers.

For each scenario (collectors.hospital.scenarios) at medium severity (0.5): a reference of
N_REF studies before the onset, then a pool of post-onset studies; windows of 50/100/200
are drawn (seeded) from the pool and from a no-shift stream ('none'), so power and the
false-alarm rate are measured on the same windows for every method:
- radwatch: the fitted suite (MMD on the model's embedding, KS on scores and numeric
  DICOM, Chi-square + never-seen values on categorical DICOM, all strata, BH at α = 0.05);
- Evidently DataDriftPreset on the same scalar features (dataset drift at its default
  drift share 0.5);
- alibi-detect MMDDrift on raw pixels downsampled to 32×32 (no other reduction);
- KS on the model's score alone.
And the median delay (studies after onset) of radwatch's online detector (CVMDriftOnline,
ERT 500 here for speed).

The hospital renders and scores every image (~0.1–0.2 s a study on the shared 2-core CI
box), so studies are cached under --cache. Run: python bench/detection.py
[--scenarios inversion_bug,new_vendor] [--ref 400] [--pool 400] [--draws 20]
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("DO_NOT_TRACK", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from collectors.dicom_tags import normalise_tags  # noqa: E402
from detectors.alibi_backend import fit_suite  # noqa: E402
from detectors.drift import Sample, SuiteConfig  # noqa: E402
from detectors.results import Status  # noqa: E402
from monitor.windows import CATEGORICAL_ATTRIBUTES, EventRow, to_sample  # noqa: E402

WINDOWS = (50, 100, 200)
ALPHA = 0.05


def studies(scenario: str, n: int, onset: int, seed: int, cache: Path) -> list[dict]:
    path = cache / f"{scenario}-{n}-{onset}-{seed}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    import pydicom

    from collectors import simulator

    out = []
    for s in simulator.generate(n, seed=seed, scenario=scenario, onset=onset, severity=0.5,
                                images_dir=cache / "images", label_share=0.0):  # fmt: skip
        inf = s.inference
        ds = pydicom.dcmread(inf["image"]["uri"].removeprefix("file://"))
        px = torch.as_tensor(ds.pixel_array.astype(np.float32))[None, None]
        px = torch.nn.functional.interpolate(px, size=(32, 32), mode="area")[0, 0].numpy()
        out.append({"inference": inf, "pixels": px.reshape(-1) / float(2**ds.BitsStored)})
    cache.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(out))
    return out


def to_rows(items: list[dict]) -> list[EventRow]:
    rows = []
    for i, it in enumerate(items):
        inf = it["inference"]
        tags = normalise_tags(inf.get("dicom", {}), lambda kind, v: "x")
        rows.append(EventRow(inf["event_id"], inf["occurred_at"], f"study-{i}", inf.get("site"),
                             None, tags, inf["prediction"]["scores"], inf.get("embedding"),
                             None, None))  # fmt: skip
    return rows


def methods(ref_items: list[dict], suite) -> dict:
    from alibi_detect.cd import MMDDrift
    from evidently import Report
    from evidently.presets import DataDriftPreset
    from scipy import stats

    ref_sample = to_sample(to_rows(ref_items))
    scal = _scalar_frame(ref_sample)
    ref_px = np.stack([it["pixels"] for it in ref_items]).astype(np.float32)
    mmd_px = MMDDrift(ref_px, backend="pytorch", n_permutations=100, device="cpu")
    ref_scores = ref_sample.scalars["scores"]

    def radwatch(items: list[dict], seed: int) -> bool:
        verdicts = suite.score(to_sample(to_rows(items)), seed=seed)
        return any(r.status == Status.DRIFT for v in verdicts for r in v.results)

    def evidently(items: list[dict], seed: int) -> bool:
        cur = _scalar_frame(to_sample(to_rows(items)))[scal.columns]
        d = Report([DataDriftPreset()]).run(current_data=cur, reference_data=scal).dict()
        share = next(m["value"]["share"] for m in d["metrics"]
                     if m["metric_name"].startswith("DriftedColumnsCount"))  # fmt: skip
        return share >= 0.5

    def pixels(items: list[dict], seed: int) -> bool:
        torch.manual_seed(seed)
        x = np.stack([it["pixels"] for it in items]).astype(np.float32)
        return bool(mmd_px.predict(x)["data"]["is_drift"])

    def ks_scores(items: list[dict], seed: int) -> bool:
        cur = to_sample(to_rows(items)).scalars["scores"]
        ps = [stats.ks_2samp(ref_scores[k], cur[k]).pvalue for k in ref_scores]
        return min(ps) * len(ps) < ALPHA

    return {"radwatch": radwatch, "Evidently DataDriftPreset": evidently,
            "alibi MMD raw pixels": pixels, "KS on scores": ks_scores}  # fmt: skip


def _scalar_frame(sample: Sample):
    import pandas as pd

    cols = {f"{s}:{f}": v for s, fs in sample.scalars.items() for f, v in fs.items()}
    return pd.DataFrame(cols)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenarios", default="inversion_bug,new_vendor,dose_change")
    parser.add_argument("--ref", type=int, default=400)
    parser.add_argument("--pool", type=int, default=400)
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--cache", type=Path, default=Path(".radwatch/bench-detection"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    n = args.ref + args.pool
    t0 = time.time()
    base = studies("none", n, n, 1, args.cache)
    ref_items, null_pool = base[: args.ref], base[args.ref :]
    config = SuiteConfig(alpha=ALPHA, calibration_window=100, calibration_windows=10,
                         min_window=20, online_ert=500, online_bootstraps=1500,
                         online_window_sizes=(10, 30))  # fmt: skip
    suite = fit_suite(to_sample(to_rows(ref_items)), config,
                      categorical_attributes=CATEGORICAL_ATTRIBUTES)  # fmt: skip
    ms = methods(ref_items, suite)
    rng = np.random.default_rng(0)
    print(f"reference {args.ref} studies, pool {args.pool}, {args.draws} windows per cell, "
          f"α = {ALPHA}, severity 0.5")  # fmt: skip
    header = "| scenario | method | " + " | ".join(f"w={w}" for w in WINDOWS) + " |"
    print(header)
    print("|---|---|" + "---:|" * len(WINDOWS))
    pools = {"none (false-alarm rate)": null_pool}
    for name in args.scenarios.split(","):
        # Same hospital and seed as the reference; the scenario starts at the pool.
        items = studies(name, n, args.ref, 1, args.cache)
        pools[name] = items[args.ref :]
    delays: dict[str, float] = {}
    for name, pool in pools.items():
        for label, fn in ms.items():
            cells = []
            for w in WINDOWS:
                hits = 0
                for k in range(args.draws):
                    idx = np.sort(rng.choice(len(pool), size=min(w, len(pool)), replace=False))
                    hits += fn([pool[i] for i in idx], k)
                cells.append(f"{hits / args.draws:.2f}")
            print(f"| {name} | {label} | " + " | ".join(cells) + " |", flush=True)
        if suite.online is not None and not name.startswith("none"):
            online = pickle.loads(pickle.dumps(suite.online))
            ups = online.update(to_sample(to_rows(pool)))
            fired = [i for i, u in enumerate(ups) if u.fired]
            delays[name] = float(fired[0]) if fired else float("nan")
    print()
    print("| scenario | online CVM delay (studies after onset, ERT 500) |")
    print("|---|---:|")
    for name, d in delays.items():
        print(f"| {name} | {'not within pool' if d != d else int(d)} |")
    print(f"\n(total {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
