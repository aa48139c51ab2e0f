"""Performance watch on the synthetic hospital's scenarios (issue 3's simulator + CNN).

Prints one row per scenario: realised AUROC / specificity on the reference and after the
onset (whole hospital and the worst stratum), how many windows the degradation test fired
in, whether a `performance` alert would open (the alert lifecycle's own persistence rule,
`monitor.alerts.lifecycle.step`), and how the label-free CBPE estimate compared with realised.
No broker or database: studies go straight from the simulator into the evaluation.

Run: python bench/performance_scenarios.py [--events 1600] [--scenarios none,inversion_bug]
(the simulator renders and scores every image on CPU: ~10–30 studies/s on 2 cores).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime

import numpy as np

from collectors.dicom_tags import age_band
from collectors.simulator import stream
from collectors.simulator.scenarios import SCENARIOS
from monitor.alerts.lifecycle import AlertPolicy, Streak, step
from monitor.performance.evaluation import (
    ALL,
    PerformanceConfig,
    Study,
    evaluate_model,
    window_decisions,
)


def _studies(n: int, seed: int, scenario: str, onset: int, images: str) -> list[Study]:
    out = []
    for sim in stream.generate(n, seed=seed, scenario=scenario, onset=onset,
                                  images_dir=images):  # fmt: skip
        inf, tags = sim.inference, sim.inference["dicom"]
        at = datetime.fromisoformat(inf["occurred_at"].replace("Z", "+00:00"))
        strata = {"site": inf["site"],
                  "scanner": f"{tags['Manufacturer']} {tags['ManufacturerModelName']}",
                  "sex": str(tags.get("PatientSex", "unknown")),
                  "age_band": age_band(str(tags.get("PatientAge", ""))) or "unknown"}  # fmt: skip
        read = sim.label["labels"] if sim.label else None
        out.append(Study(inf["event_id"], inf["study"]["study_uid"], at, strata,
                         inf["prediction"]["scores"], inf["prediction"]["threshold"], read,
                         sim.label_at))  # fmt: skip
    return out


def _alert_opens(report) -> list[str]:
    streaks: dict[tuple[str, str], Streak] = {}
    opened = []
    for _, stratum, firing, _ in window_decisions(report):
        new, action = step(streaks.get(stratum, Streak()), firing=firing, immediate=False,
                           active=False, policy=AlertPolicy())  # fmt: skip
        streaks[stratum] = new
        if action == "open" and f"{stratum[0]}={stratum[1]}" not in opened:
            opened.append(f"{stratum[0]}={stratum[1]}")
    return opened


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1600)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args()
    onset = args.events // 2
    config = PerformanceConfig(window=max(50, args.events // 8), reference_size=onset)
    print(
        f"{args.events} studies per scenario, onset {onset}, reference = first {onset}, "
        f"windows of {config.window}; seed {args.seed}"
    )
    head = (f"{'scenario':<18} {'harmful':>7} {'AUROC ref':>9} {'after':>6} {'spec ref':>8} "
            f"{'after':>6} {'worst stratum (AUROC/spec after)':<42} {'fired':>5} "
            f"{'alert opens':<30} {'CBPE |ΔAUROC|':>13} {'unreliable':>10} {'s':>5}")  # fmt: skip
    print(head)
    with tempfile.TemporaryDirectory() as images:
        for name in args.scenarios.split(","):
            t0 = time.perf_counter()
            studies = _studies(args.events, args.seed, name, onset, images)
            report = evaluate_model(studies, "cxr-nodule", config)
            ref = report.reference.cell(ALL, "nodule")
            assert ref is not None
            cells = [w.cell(ALL, "nodule") for w in report.windows if w.window.complete]
            post_auc = np.nanmean([c.realised.auroc.value or np.nan for c in cells if c])
            post_spec = np.nanmean([c.realised.specificity.value or np.nan for c in cells if c])
            worst = None
            for w in report.windows:
                for c in w.cells:
                    if (
                        c.stratum != ALL
                        and c.realised.auroc.value is not None
                        and (worst is None or c.realised.auroc.value < worst.realised.auroc.value)
                    ):
                        worst = c  # fmt: skip
            worst_txt = "–" if worst is None else (
                f"{worst.stratum[0]}={worst.stratum[1]} {worst.realised.auroc.value:.3f}/"
                f"{worst.realised.specificity.value or float('nan'):.3f}")  # fmt: skip
            fired = sum(1 for *_, firing, _ in window_decisions(report) if firing)
            errs = [abs(c.estimated.auroc.value - c.realised.auroc.value) for c in cells
                    if c and c.estimated.auroc.value is not None
                    and c.realised.auroc.value is not None]  # fmt: skip
            unreliable = sum(1 for c in cells if c and c.estimated.reliability
                             and not c.estimated.reliability.reliable)  # fmt: skip
            opens = ", ".join(_alert_opens(report)) or "none"
            print(f"{name:<18} {SCENARIOS[name].harmful!s:>7} "
                  f"{ref.realised.auroc.value or float('nan'):>9.3f} {post_auc:>6.3f} "
                  f"{ref.realised.specificity.value or float('nan'):>8.3f} {post_spec:>6.3f} "
                  f"{worst_txt:<42} {fired:>5} {opens:<30} "
                  f"{np.mean(errs) if errs else float('nan'):>13.3f} "
                  f"{unreliable:>4}/{len(cells):<5} {time.perf_counter() - t0:>5.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
