"""Incidents, delays and false alarms under the false-alarm budget, beside the previous policy
and alibi-detect's online detector; the CUSUM's run lengths designed vs measured (prints
markdown tables; not a test).

Every stream is replayed through detection's pure steps as the scheduler decides
(monitor.drift.replay: windows of 200 judged by decisions.decide at the rule's α, the
persistence rule lifecycle.step, opened alerts grouped into incidents by grouping). Settings
come from detectors/false_alarm_budget.py's `derive` with the default budget (at most one
false incident per model per 90 days).

1. Every simulator scenario (collectors.simulator.scenarios, severity 0.5, starting at the
   first study of each run; hospital seeds 1..--seeds, --studies studies each, a study every
   30 s: 2,880 a day; reference: hospital seed 0's first 1,000 studies, default SuiteConfig,
   online off): alerts vs incidents opened, how many runs' incidents name the scenario's
   stratum and shift type (monitor.pilot.simulated_rows.names_scenario), and the median
   delay from the onset to the first incident (studies, hours), under the budget's settings
   at the simulator's 2,880 a day (α 0.05, 3 windows) and at a typical site's 200 a day
   (α 0.05, 2 windows; that rule's delay in hours would be at 200 a day: studies × 0.12 h).
2. False incidents per 10,000 no-shift studies: --runs seeded exchangeable streams
   (monitor.drift.replay.exchangeable_rows: seed r's 1,000-study reference and 6,000-study
   stream, 2,880 a day), under (a) radwatch's budget-derived policy, (b) the previous policy
   (α 0.05, 2 windows, and the online CVM at ERT 2,000 opening an alert at its first firing),
   (c) alibi-detect's CVMDriftOnline as its documentation initialises it (ert=150,
   window_sizes=[20, 40]; n_bootstraps at its default 10,000) on the two features radwatch's
   online detector reads (the score, the embedding's first principal component; 300
   reference studies, reset after each detection as alibi advises). For (c) every detection
   is an alarm to its user; its incidents are the same detections through radwatch's lifecycle.
3. The Bernoulli CUSUM (detectors/performance/cusum.py): ARL0 and ARL1 designed (exact Markov
   chain) vs measured (Monte Carlo, seed --seed, bench/cusum.py's runner), including the ARL0
   the budget derives for 40 labelled studies a day.

Run: python bench/incidents.py [--quick] [--seeds 4] [--studies 1200] [--runs 16] [--workers 2]
(default about 10 minutes on 2 idle cores, 15 under a load of 5; --quick about 3: 2 seeds ×
600 studies, 3 runs). Rendering the simulator's studies (~45 a second) is most of it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from statistics import median
from typing import Any

import numpy as np

os.environ.setdefault("DO_NOT_TRACK", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from bench.cusum import _mc  # noqa: E402  (the Monte Carlo runner, reused)
from collectors.simulator.scenarios import SCENARIOS  # noqa: E402
from detectors.drift import artifact, registry  # noqa: E402
from detectors.drift.fitting import fit_suite  # noqa: E402
from detectors.drift.suite import DetectorSuite, SuiteConfig  # noqa: E402
from detectors.false_alarm_budget import FalseAlarmBudget, Volume, derive  # noqa: E402
from detectors.performance.cusum import design_bernoulli  # noqa: E402
from monitor.alerts.lifecycle import AlertPolicy  # noqa: E402
from monitor.drift.replay import (  # noqa: E402
    JudgedWindow,
    Settings,
    exchangeable_rows,
    feed_online,
    judge,
    replay,
)
from monitor.drift.windows import CATEGORICAL_ATTRIBUTES, EventRow, to_sample  # noqa: E402
from monitor.pilot.simulated_rows import ScenarioStreams, names_scenario, rows_of  # noqa: E402

BUDGET = FalseAlarmBudget()
HOSPITAL = Volume(2880, 576, "the simulator: a study every 30 s, a fifth labelled")
TYPICAL = Volume(200, 40, "a typical site: 200 studies a day, a fifth labelled")
RULES = {"budget at 2,880/day": Settings.from_derivation(derive(BUDGET, HOSPITAL)),
         "budget at 200/day": Settings.from_derivation(derive(BUDGET, TYPICAL))}  # fmt: skip
HOURS_RULE = "budget at 2,880/day"
CONFIG = SuiteConfig(online=False)
PREVIOUS = Settings(0.05, AlertPolicy(open_after=2))
PREVIOUS_ONLINE = SuiteConfig(online=True, online_ert=2000)  # its ERT and windows then
# alibi-detect's docs (cd/methods/onlinecvmdrift): `ert = 150; window_sizes = [20, 40]`;
# n_bootstraps=10,000 is the constructor's default.
ALIBI_DOCS = SuiteConfig(online=True, online_ert=150, online_window_sizes=(20, 40),
                         online_bootstraps=10_000)  # fmt: skip
N_REFERENCE, N_NOSHIFT = 1000, 6000
EMBEDDING = "model_embedding"

# -- worker side ------------------------------------------------------------------------------

_SUITE: DetectorSuite | None = None


def _init(packed: tuple[bytes, bytes, str] | None) -> None:
    global _SUITE
    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # one process per core does the parallelism
    if packed is not None:
        _SUITE = artifact.unpack(*packed)  # the stored form: data, never a pickle


def _judged(suite: DetectorSuite, rows: list[EventRow]) -> dict[tuple, list[JudgedWindow]]:
    keys = {(s.alpha, s.window) for s in [*RULES.values(), PREVIOUS]}
    return {(a, w): judge(suite, rows, alpha=a, window=w) for a, w in keys}


def scenario_run(rows: list[EventRow]) -> dict[str, dict[str, Any]]:
    """One scenario run under each budget rule: alerts opened, and per incident its root
    cause, shift type and delay from the onset (the run's first study)."""
    assert _SUITE is not None
    onset = rows[0].occurred_at
    judged = _judged(_SUITE, rows)
    out = {}
    for name, settings in RULES.items():
        result = replay(_SUITE, judged[(settings.alpha, settings.window)], settings)
        out[name] = {"alerts": len(result.alerts),
                     "incidents": [(inc.root_cause, inc.shift_type, inc.studies,
                                    (inc.opened_at - onset).total_seconds() / 3600)
                                   for inc in result.incidents]}  # fmt: skip
    return out


def noshift_run(seed: int) -> dict[str, tuple[int, int, int]]:
    """One exchangeable no-shift stream: (alarms, incidents, online detections) per policy."""
    per_day = HOSPITAL.studies_per_day
    reference = exchangeable_rows(seed, N_REFERENCE, per_day=per_day, part=0)
    stream = exchangeable_rows(seed, N_NOSHIFT, per_day=per_day, part=1,
                               start=reference[-1].occurred_at)  # fmt: skip
    sample = to_sample(reference)
    suite = fit_suite(sample, CONFIG, categorical_attributes=CATEGORICAL_ATTRIBUTES)
    judged = _judged(suite, stream)
    budget = RULES["budget at 2,880/day"]
    out = {}
    for name, settings in RULES.items():
        r = replay(suite, judged[(settings.alpha, settings.window)], settings)
        out[name] = (len(r.alerts), len(r.incidents), 0)
    previous = registry.ONLINE(PREVIOUS_ONLINE, EMBEDDING).fit(sample)
    windows = feed_online(judged[(PREVIOUS.alpha, PREVIOUS.window)], previous)
    r = replay(suite, windows, PREVIOUS)
    out["previous"] = (len(r.alerts), len(r.incidents), _fired(windows))
    alibi = registry.ONLINE(ALIBI_DOCS, EMBEDDING).fit(sample)
    # Its detections alone (no windowed tests) through radwatch's lifecycle.
    windows = [replace(w, decisions=()) for w in feed_online(judged[(budget.alpha, 200)], alibi)]
    r = replay(suite, windows, budget)
    out["alibi"] = (_fired(windows), len(r.incidents), _fired(windows))
    return out


def _fired(windows: list[JudgedWindow]) -> int:
    return sum(len(w.online_fired or ()) for w in windows)


# -- tables -----------------------------------------------------------------------------------


def scenarios_table(seeds: list[int], n: int, workers: int) -> None:
    t0 = time.time()
    names = list(SCENARIOS)
    with ScenarioStreams(severity=0.5, workers=workers) as streams:
        reference = streams.baseline([0], N_REFERENCE)[0]
        runs = {name: streams.streams(name, seeds, n) for name in names}
    t_render = time.time() - t0
    suite = fit_suite(to_sample(rows_of(reference)), CONFIG,
                      categorical_attributes=CATEGORICAL_ATTRIBUTES)  # fmt: skip
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init,
                             initargs=(artifact.pack(suite),)) as pool:  # fmt: skip
        futures = {(name, s): pool.submit(scenario_run, rows_of(runs[name][s]))
                   for name in names for s in seeds}  # fmt: skip
        results = {k: f.result() for k, f in futures.items()}
    print(f"## 1. Scenarios: alerts vs incidents, delay to the incident\n\n"
          f"Reference: hospital seed 0, first {N_REFERENCE:,} studies. {len(seeds)} runs per "
          f"scenario (hospital seeds {seeds[0]}–{seeds[-1]}), severity 0.5 from the first "
          f"study, {n:,} studies each ({n // 200} windows of 200). Budget at 2,880/day: "
          f"{_rule('budget at 2,880/day')}; at 200/day: {_rule('budget at 200/day')}. "
          f"Medians over runs; delay: the onset to the first incident, over the runs that "
          f"opened one; 'names it': runs with at most 2 incidents, one rooted in the "
          f"scenario's stratum with its shift type.\n")  # fmt: skip
    print(
        "| scenario | rule | alerts | incidents | names it | runs with an incident | "
        "delay (studies) | delay (hours) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name in names:
        for rule in RULES:
            rs = [results[(name, s)][rule] for s in seeds]
            incs = [r["incidents"] for r in rs]
            first = [i[0] for i in incs if i]
            right = sum(1 for i in incs if 1 <= len(i) <= 2
                        and any(names_scenario(name, r, kind) for r, kind, *_ in i))  # fmt: skip
            studies = f"{median(f[2] for f in first):,.0f}" if first else "–"
            # The streams are dated at 2,880 a day: hours only for that rule.
            hours = f"{median(f[3] for f in first):.1f}" if first and rule == HOURS_RULE else "–"
            label = "none (false alarms)" if name == "none" else name
            named = "–" if name == "none" else f"{right}/{len(seeds)}"
            print(f"| {label} | {rule} | {median(r['alerts'] for r in rs):.0f} | "
                  f"{median(len(i) for i in incs):.0f} | {named} | {len(first)}/{len(seeds)} | "
                  f"{studies} | {hours} |")  # fmt: skip
    print(f"\n(render {t_render:.0f} s, judge {time.time() - t0 - t_render:.0f} s)\n")


def noshift_table(runs: int, workers: int) -> None:
    t0 = time.time()
    seeds = list(range(1, runs + 1))
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init,
                             initargs=(None,)) as pool:  # fmt: skip
        results = list(pool.map(noshift_run, seeds))
    studies = runs * N_NOSHIFT
    print(
        f"## 2. False incidents per 10,000 no-shift studies\n\n"
        f"{runs} exchangeable streams (seeds 1–{runs}) of {N_NOSHIFT:,} studies at 2,880 a "
        f"day, each judged against its own {N_REFERENCE:,}-study reference: {studies:,} "
        f"studies, {studies // 200:,} windows, {studies / 2880:.0f} days at 2,880 a day. "
        f"Alarms: alerts opened (for alibi: its detections, each an alarm to its user).\n"
    )
    print(
        "| policy | alarms | incidents | per 10,000 studies | streams of 6,000 with none | "
        "a false incident every … at 200 studies/day |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    labels = {
        "budget at 2,880/day": f"(a) radwatch, budget at 2,880/day: {_rule('budget at 2,880/day')}",
        "budget at 200/day": f"(a') radwatch, budget at 200/day: {_rule('budget at 200/day')}",
        "previous": "(b) previous: α 0.05, 2 windows + online CVM ERT 2,000 at once",
        "alibi": "(c) alibi CVMDriftOnline, docs' example (ERT 150, windows [20, 40])",
    }  # fmt: skip
    for key, label in labels.items():
        alarms = sum(r[key][0] for r in results)
        incidents = sum(r[key][1] for r in results)
        quiet = sum(1 for r in results if r[key][1] == 0)
        rate = incidents / studies * 10_000
        every = f"{10_000 / rate / 200:,.1f} days" if incidents else \
            f"none in {studies / 200:,.0f} days"  # fmt: skip
        print(f"| {label} | {alarms:,} | {incidents:,} | {rate:.2f} | {quiet}/{runs} | {every} |")
    detections = sum(r["previous"][2] for r in results)
    print(
        f"\nThe online CVM at ERT 2,000 fired {detections} times in {studies:,} studies "
        f"(one per {studies / max(detections, 1):,.0f}; designed: one per 2,000 after its "
        f"window fills). ({time.time() - t0:.0f} s)\n"
    )


def cusum_table(quick: bool, seed: int) -> None:
    t0 = time.time()
    rng = np.random.default_rng(seed)
    budget_arl0 = derive(BUDGET, TYPICAL).cusum_arl0
    settings = [(0.10, 1.5, 300.0, "discrepancy 10%, ×1.5, test size"),
                (0.05, 2.0, 500.0, "discrepancy 5%, ×2"),
                (0.05, 1.5, budget_arl0, "discrepancy 5%, ×1.5, budget"),
                (0.10, 1.5, budget_arl0, "discrepancy 10%, ×1.5, budget"),
                (0.02, 2.0, budget_arl0, "discrepancy 2%, ×2, budget")]  # fmt: skip
    print(
        f"## 3. Bernoulli CUSUM: run lengths designed vs measured\n\n"
        f"Designed: the exact Markov chain (design_bernoulli); measured: Monte Carlo from a "
        f"fresh chart (simulate_run_lengths, seed {seed}), mean ± standard error. 'budget': "
        f"ARL0 = {budget_arl0:,.0f} labelled studies, what the default budget derives for 40 "
        f"labelled studies a day.\n"
    )
    print(
        "| setting | p0 | p1 | ARL0 target | limit | ARL0 designed | ARL0 measured | "
        "ARL1 designed | ARL1 measured | runs |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p0, ratio, arl0, label in settings:
        d = design_bernoulli(p0, p0 * ratio, arl0)
        runs = (100 if quick else 400) if arl0 <= 1000 else (50 if quick else 200)
        m0, se0, _ = _mc(d, p0, runs, rng)
        m1, se1, _ = _mc(d, p0 * ratio, runs, rng)
        print(f"| {label} | {p0:.2f} | {p0 * ratio:.3f} | {arl0:,.0f} | {d.limit} | "
              f"{d.arl0_achieved:,.0f} | {m0:,.0f} ± {se0:,.0f} | {d.arl1:,.1f} | "
              f"{m1:,.1f} ± {se1:,.1f} | {runs} |")  # fmt: skip
    print(f"\n({time.time() - t0:.1f} s)\n")


def _rule(name: str) -> str:
    s = RULES[name]
    return f"α {s.alpha:g}, {s.policy.open_after} windows"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds × 600 studies; 3 runs")
    parser.add_argument("--seeds", type=int, default=4, help="scenario runs per scenario")
    parser.add_argument("--studies", type=int, default=1200, help="studies per scenario run")
    parser.add_argument("--runs", type=int, default=16, help="no-shift streams of 6,000")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--seed", type=int, default=15, help="the CUSUM's Monte Carlo seed")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    if args.quick:
        args.seeds, args.studies, args.runs = 2, 600, 3
    start = time.time()
    print("Derivations (detectors/false_alarm_budget.py):\n")
    for volume in (HOSPITAL, TYPICAL):
        print("\n".join(f"    {line}" for line in derive(BUDGET, volume).lines()) + "\n")
    scenarios_table(list(range(1, args.seeds + 1)), args.studies, args.workers)
    noshift_table(args.runs, args.workers)
    cusum_table(args.quick, args.seed)
    print(f"total {time.time() - start:.0f} s ({args.workers} workers)")


if __name__ == "__main__":
    main()
