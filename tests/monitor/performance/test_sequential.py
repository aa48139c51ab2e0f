"""monitor/performance/sequential.py on in-memory studies (no database): the charts' designs and
their ARL0 split, the label-arrival order, false alarms in control, the delay after a doubling,
and the per-window span decisions. Studies are Bernoulli: prevalence 0.2, a miss rate among
label-positive and a false-call rate among label-negative studies, each read 30 h after it was
acquired (studies 5 min apart) unless a test says otherwise. (The watch against PostgreSQL:
test_performance_watch.py.)"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from detectors.drift.results import Status
from monitor.alerts import grouping
from monitor.alerts.grouping import AlertFacts
from monitor.performance import sequential
from monitor.performance.evaluation import PerformanceConfig, Study, Window

T0 = datetime(2026, 11, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)
P_MISS, P_FALSE = 0.12, 0.10  # in-control rates; the discrepancy rate is then ~0.104


def _studies(rng: np.random.Generator, n: int, *, p_miss: float = P_MISS,
             p_false: float = P_FALSE, first: int = 0,
             latency_h: tuple[float, float] = (30.0, 30.0)) -> list[Study]:  # fmt: skip
    y = rng.random(n) < 0.2
    u = rng.random(n)
    calls = np.where(y, u >= p_miss, u < p_false)
    lat = rng.uniform(*latency_h, n) if latency_h[0] != latency_h[1] else np.full(n, latency_h[0])
    out = []
    for i in range(n):
        at = T0 + (first + i) * STEP
        out.append(Study(f"e{first + i}", f"s{first + i}", at, {}, {"nodule": 0.9 if calls[i]
                         else 0.1}, {"nodule": 0.5}, {"nodule": int(y[i])},
                         at + timedelta(hours=float(lat[i]))))  # fmt: skip
    return out


def _designs(reference: list[Study], **config) -> dict[str, sequential.ChartDesign]:
    found = sequential.design_charts(reference, ["nodule"], PerformanceConfig(**config))
    return {d.metric: d for d in found}


@pytest.fixture(scope="module")
def designs() -> dict[str, sequential.ChartDesign]:
    # A reference of 200,000 labelled studies (seed 2026): p0 and its 90% upper bound within
    # ~2% of the true rates, so the charts' real false-alarm rates are near the designed ones.
    return _designs(_studies(np.random.default_rng(2026), 200_000))


def test_each_chart_gets_its_share_of_the_channel_arl0(designs) -> None:
    # ARL0_i = ARL0 · s · (n_i / n_labelled): the channel then raises one false alarm per ARL0
    # labelled studies (each chart 1/(s·ARL0) per labelled study).
    assert sequential.chart_arl0(50_400, 3, 0.2) == pytest.approx(30_240)
    assert set(designs) == {"discrepancy", "false_negative", "false_positive"}
    for d in designs.values():
        assert d.status == Status.OK and d.design is not None, d.reason
        assert d.arl0 == pytest.approx(50_400 * 3 * d.share)
        assert d.design.arl0_achieved >= d.arl0  # at the guard rate, above p0
        assert d.p0 < d.guard < d.design.p1 == pytest.approx(2 * d.p0)  # type: ignore[operator]
    assert designs["discrepancy"].share == 1.0
    assert designs["false_negative"].share + designs["false_positive"].share == pytest.approx(1)
    per_labelled_study = sum(d.share / d.design.arl0_target for d in designs.values())  # type: ignore[union-attr]
    assert per_labelled_study == pytest.approx(1 / 50_400)


def test_a_chart_without_enough_reference_is_skipped_and_the_budget_split_over_the_rest() -> None:
    # Seed 3. 4,000 label-negative studies (of 6,000) and 25 label-positive ones (< 30): no miss chart,
    # the channel's ARL0 is split over the two others by their shares. No false call in the
    # reference: no false-call chart. 100 labelled studies: p0's 90% upper bound is past
    # halfway to the rate each chart cannot tell from p1, so none is designed.
    rng = np.random.default_rng(3)
    many = _studies(rng, 6_000)
    few_positive = [s for s in many if s.labels == {"nodule": 0}][:4_000] + \
        [s for s in many if s.labels == {"nodule": 1}][:25]  # fmt: skip
    skewed = _designs(few_positive)
    fn = skewed["false_negative"]
    assert fn.status == Status.INSUFFICIENT_DATA and fn.design is None
    assert "25 reference indicators" in (fn.reason or "")
    assert skewed["discrepancy"].arl0 == pytest.approx(50_400 * 2 * 1.0)
    assert skewed["false_positive"].arl0 == pytest.approx(50_400 * 2 * 4_000 / 4_025)
    perfect = _designs(_studies(rng, 2_000, p_false=0.0))
    assert perfect["false_positive"].status == Status.INSUFFICIENT_DATA
    assert "p0 = 0" in (perfect["false_positive"].reason or "")
    assert perfect["false_negative"].status == Status.OK
    small = _designs(_studies(rng, 100))
    assert all(d.status == Status.INSUFFICIENT_DATA for d in small.values())
    assert "past halfway" in (small["discrepancy"].reason or "")


def test_the_stream_is_read_in_label_arrival_order(designs) -> None:
    # 400 studies (seed 5) acquired with a false call every 10th (0.1, the in-control rate), but
    # the 40 false calls' reads all arrive together 2 days later, the others 30 h after. In label
    # order the chart sees 40 false calls in a row and alarms inside that burst; read in
    # acquisition order (every read 30 h later) it does not alarm. Shuffled input changes nothing.
    rng = np.random.default_rng(5)
    studies = []
    for i in range(400):
        at = T0 + i * STEP
        false_call = i % 10 == 0
        read_at = T0 + timedelta(days=2, seconds=i) if false_call else at + timedelta(hours=30)
        studies.append(Study(f"e{i}", f"s{i:03d}", at, {}, {"nodule": 0.9 if false_call else 0.1},
                             {"nodule": 0.5}, {"nodule": 0}, read_at))  # fmt: skip
    shuffled = [studies[i] for i in rng.permutation(len(studies))]
    stream = sequential.label_stream(shuffled, "nodule")
    times = [s.label_at for s in stream.studies]
    assert times == sorted(times) and stream.studies == sequential.label_stream(studies, "nodule").studies  # fmt: skip
    chart = sequential.run_chart(designs["false_positive"], stream)
    burst = {s.label_at for s in studies if s.scores["nodule"] > 0.5}
    assert chart.alarms and chart.alarms[0].at in burst
    in_acquisition_order = [Study(s.event_id, s.study, s.occurred_at, {}, s.scores, s.thresholds,
                                  s.labels, s.occurred_at + timedelta(hours=30)) for s in studies]  # fmt: skip
    quiet = sequential.run_chart(designs["false_positive"],
                                 sequential.label_stream(in_acquisition_order, "nodule"))  # fmt: skip
    assert quiet.alarms == ()


def test_in_control_streams_rarely_alarm(designs) -> None:
    # 30 seeds × 10,000 labelled in-control studies, default channel ARL0 = 50,400 labelled
    # studies: at most 300,000/50,400 = 5.95 false alarms expected over all charts and seeds
    # (a little fewer: the limits hold ARL0 at p0's upper bound); Poisson(5.95) exceeds 13
    # with probability 0.004. A seed alarms with probability ≤ 1 − exp(−10,000/50,400) =
    # 0.18: most seeds (≥ 20 of 30; Binomial(30, 0.18) has P(X > 10) = 0.01) stay quiet.
    # (ARL0 split as ARL0/s instead of ARL0·s·share: ~33 alarms, 18 seeds.)
    alarms, quiet = 0, 0
    for seed in range(30):
        stream = sequential.label_stream(_studies(np.random.default_rng(seed), 10_000), "nodule")
        found = sum(len(sequential.run_chart(d, stream).alarms) for d in designs.values())
        alarms, quiet = alarms + found, quiet + (found == 0)
    assert alarms <= 13 and quiet >= 20, (alarms, quiet)


def _delays(designs, seeds: int) -> dict[str, list[float]]:
    """Per chart, the indicators read from the first post-shift one to the first alarm after
    it: 3,000 in-control studies, then 3,000 at twice the true miss and false-call rates."""
    out: dict[str, list[float]] = {m: [] for m in designs}
    for seed in range(seeds):
        rng = np.random.default_rng(100 + seed)
        pre = _studies(rng, 3_000)
        post = _studies(rng, 3_000, p_miss=2 * P_MISS, p_false=2 * P_FALSE, first=3_000)
        stream = sequential.label_stream(pre + post, "nodule")
        shifted = np.array([s.occurred_at >= post[0].occurred_at for s in stream.studies])
        for metric, d in designs.items():
            chart = sequential.run_chart(d, stream)
            change = int(np.argmax(shifted[sequential._positions(metric, stream)]))
            after = [a.index for a in chart.alarms if a.index >= change]
            out[metric].append(after[0] - change + 1 if after else np.inf)
    return out


def test_the_delay_after_a_doubling_is_the_designed_arl1(designs) -> None:
    # 60 seeds (100…159); the rates double after 3,000 in-control studies (reads 30 h later,
    # so label order is acquisition order). The designed delay after a long quiet run is
    # arl1_steady (at 2·p0 estimated, within ~2% of 2·p0 true): the measured mean delay is
    # within 25% of it (its Monte Carlo standard error is ~7%) and the median between 0.6 and
    # 1.2 of it (a run length is right-skewed); every chart alarms within the 3,000 studies.
    delays = _delays(designs, 60)
    for metric, d in designs.items():
        x = np.array(delays[metric])
        assert np.isfinite(x).all(), metric
        arl1 = d.design.arl1_steady  # type: ignore[union-attr]
        assert abs(x.mean() / arl1 - 1) < 0.25, (metric, x.mean(), arl1)
        assert 0.6 * arl1 < np.median(x) < 1.2 * arl1, (metric, np.median(x), arl1)


def test_spans_fire_once_decided_with_the_alarm_and_its_onset(designs) -> None:
    # 1,200 in-control studies then 1,800 with the false-call rate doubled (seed 9), windows
    # of 500 acquired studies; reads 30 h later. Spans are cut at the windows' ends on the
    # label-time axis; only those that end before the latest read are decided.
    rng = np.random.default_rng(9)
    studies = _studies(rng, 1_200) + _studies(rng, 1_800, p_false=2 * P_FALSE, first=1_200)
    stream = sequential.label_stream(studies, "nodule")
    charts = tuple(sequential.run_chart(d, stream) for d in designs.values())
    seq = sequential.SequentialReport(50_400.0, 2.0, tuple(designs.values()), charts,
                                      max(s.label_at for s in studies))  # type: ignore[type-var]  # fmt: skip
    windows = [Window("count:500", k, studies[500 * k].occurred_at,
                      studies[500 * k + 499].occurred_at, tuple(studies[500 * k : 500 * k + 500]),
                      True) for k in range(6)]  # fmt: skip
    spans = sequential.decisions(seq, windows)
    assert [s.index for s in spans] == list(range(6))
    assert not spans[0].firing and not spans[1].firing  # reads of the in-control studies
    firing = [s for s in spans if s.firing]
    assert firing and firing[0].index >= 2
    d = firing[0].details
    assert d["method"] == "cusum" and d["window_kind"] == "cusum"
    assert d["metric"] in ("false_positive", "discrepancy")
    keys = "p0 p0_guard p1 arl0_target arl0_achieved arl1 arl1_steady alarm_at statistic"
    for key in (*keys.split(), "indicators", "window_end", "onset", "summary"):
        assert d[key] is not None, key
    assert d["statistic"] >= d["limit"]
    onset = datetime.fromisoformat(d["onset"])
    assert firing[0].onset == onset and onset <= datetime.fromisoformat(d["alarm_at"])
    # The change's first reads arrive at study 1,200's read time; the CUSUM's reset is within
    # 2 designed delays (in label-negative studies, ~4 min of reads each) of it.
    true_change = studies[1_200].label_at
    assert true_change is not None
    arl1 = designs["false_positive"].design.arl1_steady  # type: ignore[union-attr]
    assert abs(onset - true_change) < 2 * arl1 * STEP / 0.8
    assert "CUSUM crossed its limit" in d["summary"] and "doubled rate" in d["summary"]
    # Alone in an incident, the alarm is a performance shift read out by its own summary.
    facts = AlertFacts(1, "cxr-nodule", "all", "all", sequential.SIGNAL, onset, d)
    found = grouping.assess([facts], {})
    assert found.shift_type == "performance" and d["summary"] in found.summary
    # Still unread: a window whose end the reads have not passed is not decided.
    early = sequential.SequentialReport(50_400.0, 2.0, seq.designs, charts, windows[3].end)
    assert [s.index for s in sequential.decisions(early, windows)] == [0, 1, 2]
