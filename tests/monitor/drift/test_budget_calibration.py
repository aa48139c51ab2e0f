"""The false-alarm budget, measured: no-shift streams open false incidents within the budget.

Streams with no shift go through detection's pure steps (monitor.drift.replay: windows of
200 judged by monitor.drift.decisions.decide at the derived α, the persistence rule
monitor.alerts.lifecycle.step, alerts grouped into incidents by monitor.alerts.grouping), with
the settings detectors/false_alarm_budget.py derives from the default budget (at most one false
incident per 90 days). PostgreSQL is left out; tests/monitor/drift/test_scheduler.py is the
end-to-end path.

Design (seeds, sizes and tolerances are stated, nothing is tuned):
- streams: monitor.drift.replay.exchangeable_rows, independent and identically distributed
  studies (three sites with one scanner each, sex, age band, KVP, a 16-dimensional model
  embedding, the score and its call), dated at the synthetic hospital's 2,880 studies a day;
- runs: seeds 1–44. Each has its own reference (1,000 studies, stream part 0) fitted with the
  default SuiteConfig, online detector off, and a monitored stream of 6,000 studies (part 1,
  30 windows). 44 × 6,000 = 264,000 studies = 91.7 days at 2,880 a day: one budget period of
  windows (1,320), each judged against its own run's reference as a model's are;
- settings: derive(FalseAlarmBudget(), 2,880 a day) → α = 0.05, an alert after 3
  consecutive firing windows. Each run's windows are judged once and replayed under every rule
  compared here (the rules differ only in persistence, all at α = 0.05);
- (a) at most 4 false incidents over all runs: the budget over 91.7 days is 1.02 incidents, and
  a Poisson count with that mean reaches 5 with probability 0.004, so the test fails only on
  evidence that the rate is above the budget;
- (b) at least 95% of runs (42 of 44) open no alert at all, at 2,880 a day and at a typical
  site's 200 a day (derive gives α = 0.05, 2 windows there; its alerts are counted, which
  bound its incidents whatever the time between studies);
- negative control: the same windows under a naive rule (α = 0.05, an alert at the first
  firing window, as a per-window drift test alarms) break both (a) and (b), so the harness
  can see a rule that spends more than the budget.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from multiprocessing import get_context

import pytest

from detectors.drift.fitting import fit_suite
from detectors.drift.suite import SuiteConfig
from detectors.false_alarm_budget import FalseAlarmBudget, Volume, derive
from monitor.alerts.lifecycle import AlertPolicy
from monitor.drift.replay import Settings, exchangeable_rows, judge, reference_info, replay
from monitor.drift.windows import CATEGORICAL_ATTRIBUTES, to_sample

BUDGET = FalseAlarmBudget()
HOSPITAL = Volume(2880, 0, "the synthetic hospital's rate (collectors.simulator)")
TYPICAL = Volume(200, 0, "a typical site")
SEEDS = tuple(range(1, 45))
N_REFERENCE, N_STREAM = 1000, 6000
CONFIG = SuiteConfig(online=False)
MAX_FALSE_INCIDENTS = 4  # see (a) in the module docstring
QUIET_SHARE = 0.95
RULES = {
    "budget at 2,880/day": Settings.from_derivation(derive(BUDGET, HOSPITAL)),
    "budget at 200/day": Settings.from_derivation(derive(BUDGET, TYPICAL)),
    "naive (α 0.05, first window)": Settings(0.05, AlertPolicy(open_after=1)),
}


def run(seed: int) -> dict[str, tuple[int, int]]:
    """One seeded run: (alerts opened, incidents opened) under each rule, and its firing
    windows under ("firing windows", (firing, windows))."""
    import torch

    torch.set_num_threads(1)  # one process per core does the parallelism
    per_day = HOSPITAL.studies_per_day
    reference = exchangeable_rows(seed, N_REFERENCE, per_day=per_day, part=0)
    start = reference[-1].occurred_at + timedelta(days=1) / per_day
    stream = exchangeable_rows(seed, N_STREAM, per_day=per_day, part=1, start=start)
    suite = fit_suite(to_sample(reference), CONFIG, categorical_attributes=CATEGORICAL_ATTRIBUTES)
    info = reference_info(suite, N_REFERENCE)
    judged = {}
    out: dict[str, tuple[int, int]] = {}
    for name, settings in RULES.items():
        key = (settings.alpha, settings.window)
        if key not in judged:
            judged[key] = judge(suite, stream, alpha=settings.alpha, window=settings.window)
        result = replay(suite, judged[key], settings, info=info)
        out[name] = (len(result.alerts), len(result.incidents))
    windows = judged[(RULES["naive (α 0.05, first window)"].alpha, 200)]
    out["firing windows"] = (sum(any(d[3] for d in w.decisions) for w in windows), len(windows))
    return out


@pytest.fixture(scope="module")
def runs() -> dict[int, dict[str, tuple[int, int]]]:
    workers = min(4, os.cpu_count() or 1)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return dict(zip(SEEDS, pool.map(run, SEEDS), strict=True))


def _days() -> float:
    return len(SEEDS) * N_STREAM / HOSPITAL.studies_per_day


def test_the_design_spans_one_budget_period_at_the_derived_settings():
    derivation = derive(BUDGET, HOSPITAL)
    assert (derivation.drift.alpha, derivation.drift.open_after) == (0.05, 3)
    assert 90 <= _days() <= 92
    # (a)'s tolerance: P(Poisson(budget over these days) ≥ MAX + 1) < 0.005.
    mean = BUDGET.per_day * _days()
    below = sum(math.exp(-mean) * mean**k / math.factorial(k)
                for k in range(MAX_FALSE_INCIDENTS + 1))  # fmt: skip
    assert 1 - below < 0.005


def test_budget_derived_rule_opens_false_incidents_within_the_budget(runs):
    incidents = {seed: r["budget at 2,880/day"][1] for seed, r in runs.items()}
    firing = sum(r["firing windows"][0] for r in runs.values())
    assert sum(incidents.values()) <= MAX_FALSE_INCIDENTS, (
        {s: n for s, n in incidents.items() if n},
        f"{firing} firing windows of {len(SEEDS) * 30}",
    )


@pytest.mark.parametrize("rule", ["budget at 2,880/day", "budget at 200/day"])
def test_most_no_shift_streams_of_6000_studies_open_nothing(runs, rule):
    quiet = [seed for seed, r in runs.items() if r[rule][0] == 0]
    loud = {seed: r[rule] for seed, r in runs.items() if r[rule][0]}
    assert len(quiet) >= QUIET_SHARE * len(SEEDS), loud


def test_a_naive_rule_on_the_same_streams_breaks_the_budget(runs):
    naive = "naive (α 0.05, first window)"
    incidents = sum(r[naive][1] for r in runs.values())
    quiet = [seed for seed, r in runs.items() if r[naive][0] == 0]
    assert incidents > MAX_FALSE_INCIDENTS, incidents
    assert len(quiet) < QUIET_SHARE * len(SEEDS), quiet
