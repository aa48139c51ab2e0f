"""monitor/performance/evaluation.py on in-memory studies (no database): windows, the reference,
and which completed windows fire. A numpy hospital of binormal scores (AUROC ~0.94), 20%
prevalence, 70% of studies read 30 h later; from `harmful_from` on the model fails at scanner
ACME X2. (Reading, storing and alerting against PostgreSQL: test_performance_watch.py.)"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from scipy import stats

from monitor.performance import evaluation
from monitor.performance.evaluation import PerformanceConfig, PerformanceWatchError, Study

START = datetime(2026, 11, 1, tzinfo=UTC)
SCANNERS = (("north", "ACME", "X1"), ("south", "Borealis", "B-200"), ("east", "ACME", "X2"))


def _studies(n: int, seed: int, harmful_from: int | None) -> list[Study]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        site, vendor, scanner = SCANNERS[int(rng.integers(3))]
        y = int(rng.random() < 0.2)
        d = 0.2 if harmful_from is not None and i >= harmful_from and scanner == "X2" else 2.2
        score = float(stats.norm.cdf(rng.normal() + d * y - 0.5 * d))
        at = START + timedelta(minutes=10 * i)
        strata = {"site": site, "scanner": f"{vendor} {scanner}",
                  "sex": "F" if rng.random() < 0.5 else "M",
                  "age_band": ("18-39", "40-59", "60-79")[int(rng.integers(3))]}  # fmt: skip
        read = {"nodule": y} if rng.random() < 0.7 else None
        out.append(Study(f"e{i}", f"s{i}", at, strata, {"nodule": score}, {"nodule": 0.5},
                         read, at + timedelta(hours=30)))  # fmt: skip
    return out


def test_count_windows_reference_and_unread_windows_decide_nothing() -> None:
    # Seed 1, 650 studies: reference = first 400, windows of 100 (the last one partial).
    # The reference is judged against itself; without reads a window is neither firing nor
    # quiet (insufficient data), and the partial window is never decided.
    config = PerformanceConfig(window=100, reference_size=400, cbpe_draws=50,
                               strata=("site",))  # fmt: skip
    studies = _studies(650, 1, None)
    unread = [replace(s, labels=None, label_at=None) if i >= 500 else s
              for i, s in enumerate(studies)]  # fmt: skip
    report = evaluation.evaluate_model(unread, "m", config)
    assert report.findings == ("nodule",)
    assert report.reference.window.kind == "reference"
    assert len(report.reference.window.studies) == 400
    assert [len(w.window.studies) for w in report.windows] == [100, 100, 50]
    assert [w.window.complete for w in report.windows] == [True, True, False]
    assert [w.window.kind for w in report.windows] == ["count:100"] * 3
    ref_cell = report.reference.cell(evaluation.ALL, "nodule")
    assert ref_cell is not None and ref_cell.realised.auroc.value is not None
    assert ref_cell.realised.auroc.value > 0.85  # binormal, d = 2.2
    assert report.windows[1].coverage == 0.0 and report.windows[1].latency_median_h is None
    decided = {wr.window.index for wr, *_ in evaluation.window_decisions(report)}
    assert decided == {0}  # window 1 unread, window 2 partial
    assert abs((report.windows[0].latency_median_h or 0) - 30.0) < 1e-9
    # The content hash follows the reference's ids and reads, nothing else.
    ref = report.reference.window.studies
    assert evaluation.reference_hash(ref) == evaluation.reference_hash(list(ref))
    changed = [replace(ref[0], labels={"nodule": 1 - ref[0].labels["nodule"]})
               if ref[0].labels else replace(ref[0], labels={"nodule": 1}), *ref[1:]]  # fmt: skip
    assert evaluation.reference_hash(changed) != evaluation.reference_hash(ref)


def test_too_short_a_stream_or_an_unknown_period_is_refused() -> None:
    with pytest.raises(PerformanceWatchError, match="needs the first 1000"):
        evaluation.evaluate_model(_studies(50, 2, None), "m", PerformanceConfig())
    with pytest.raises(PerformanceWatchError, match="period must be 'day' or 'week'"):
        evaluation.make_windows(_studies(5, 2, None), PerformanceConfig(period="month"))
    assert evaluation.make_windows([], PerformanceConfig()) == []


def test_window_decisions_fire_where_the_model_fails_and_not_without_shift() -> None:
    # Seeds 10, 11; 3000 studies, reference 1000, 4 windows of 500, alpha 0.05 family-wise
    # per window. Harmful: the ACME X2 stratum fires in ≥ 3 of 4 windows (so an alert that
    # needs two consecutive windows opens). Benign: no stratum fires in two consecutive
    # windows (the persistence rule's false alarm), and at most one stratum-window fires.
    config = PerformanceConfig(window=500, reference_size=1000)
    for seed in (10, 11):
        harmful = evaluation.evaluate_model(_studies(3000, seed, 1000), "m", config)
        fired = [(wr.window.index, s) for wr, s, firing, _ in
                 evaluation.window_decisions(harmful) if firing]  # fmt: skip
        assert sum(1 for _, s in fired if s == ("scanner", "ACME X2")) >= 3, fired
        benign = evaluation.evaluate_model(_studies(3000, seed, None), "m", config)
        fired = [(wr.window.index, s) for wr, s, firing, _ in
                 evaluation.window_decisions(benign) if firing]  # fmt: skip
        assert len(fired) <= 1, fired


def test_a_frozen_reference_is_its_members_and_monitoring_starts_after_it() -> None:
    # Seed 4, 1200 studies; a frozen drift reference over a period (studies 100-699): those
    # 600 are the reference, windows start at study 700, studies 0-99 are in neither (drift
    # detection's cursor also starts after the reference). A size asked for wins.
    studies = _studies(1200, 4, None)
    ids = frozenset(s.event_id for s in studies[100:700])
    frozen = evaluation.ReferenceChoice("frozen", 600, 3, ids)
    config = PerformanceConfig(window=250, cbpe_draws=50, strata=("site",), reference=frozen)
    report = evaluation.evaluate_model(studies, "m", config)
    assert report.reference.window.studies == tuple(studies[100:700])
    assert [w.window.studies[0].event_id for w in report.windows] == ["e700", "e950"]
    assert report.reference_choice == frozen
    asked = evaluation.evaluate_model(studies, "m", replace(config, reference_size=400))
    assert asked.reference.window.studies == tuple(studies[:400])
    gone = evaluation.ReferenceChoice("frozen", 600, 3, frozenset({"missing"}))
    with pytest.raises(PerformanceWatchError, match="none of the 600 events of frozen drift "
                       "reference #3 is stored"):  # fmt: skip
        evaluation.evaluate_model(studies, "m", replace(config, reference=gone))


def test_calendar_windows() -> None:
    studies = _studies(600, 3, None)  # 10 minutes apart: 100 hours
    windows = evaluation.make_windows(studies, PerformanceConfig(period="day"))
    assert [len(w.studies) for w in windows] == [144, 144, 144, 144, 24]
    assert [w.complete for w in windows] == [True, True, True, True, False]
    assert all(w.end - w.start == timedelta(days=1) for w in windows)
