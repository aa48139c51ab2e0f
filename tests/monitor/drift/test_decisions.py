"""monitor/drift/decisions.py on hand-made results (no database, no fitting): which stratum ×
signal fires, the localisation that keeps a firing only where the shift is concentrated, and
what an alert leads with. (The same decisions on scored windows: test_drift_power.py; stored
and alerted by the scheduler: test_scheduler.py.)"""

from __future__ import annotations

from datetime import UTC, datetime

from detectors.drift.results import DriftResult, FeatureFinding, Status
from detectors.drift.suite import StratumVerdict
from monitor.drift import decisions
from monitor.drift.reference import ReferenceInfo


def _result(signal: str, status: Status, effect: float, p: float = 0.5) -> DriftResult:
    feature = FeatureFinding(f"{signal}-feature", "ks", p, effect, effect, "median 0.3",
                             "median 0.5", adjusted_p=p)  # fmt: skip
    return DriftResult(f"ks:{signal}", signal, status, p_value=p, statistic=effect,
                       effect_size=effect, features=(feature,), adjusted_p=p,
                       atypical_ids=(f"{signal}-study",))  # fmt: skip


def _verdict(kind: str, value: str, score: float, *results: DriftResult) -> StratumVerdict:
    return StratumVerdict(kind, value, 100, tuple(results), score)


def test_a_signal_fires_when_one_test_drifts_and_untested_signals_are_left_out():
    verdict = _verdict("all", "all", 2.0, _result("scores", Status.DRIFT, 0.4, 0.001),
                       _result("scores", Status.OK, 0.1), _result("dicom", Status.OK, 0.1),
                       _result("embedding", Status.INSUFFICIENT_DATA, 0.0))  # fmt: skip
    found = {(k, v, s): fire for k, v, s, fire, _ in decisions.stratum_decisions([verdict])}
    # embedding: insufficient data neither fires nor counts as quiet.
    assert found == {("all", "all", "dicom"): False, ("all", "all", "scores"): True}


def test_a_stratum_keeps_its_firing_only_where_the_shift_is_concentrated():
    whole = _verdict("all", "all", 2.0, _result("scores", Status.DRIFT, 0.30, 0.001))
    # The shifted site: higher score than the whole model, effect 0.5 > 1.25 × 0.30.
    site = _verdict("site", "south", 5.0, _result("scores", Status.DRIFT, 0.50, 0.001))
    # A stratum that merely contains the site's studies: effect 0.33 < 1.25 × 0.30.
    sex = _verdict("sex", "F", 2.5, _result("scores", Status.DRIFT, 0.33, 0.001))
    # A stratum whose drift score is below the whole model's.
    band = _verdict("age_band", "60-79", 1.0, _result("scores", Status.DRIFT, 0.9, 0.001))
    verdicts = [whole, site, sex, band]
    fired = {(k, v) for k, v, _, fire, _ in
             decisions.localise(decisions.stratum_decisions(verdicts), verdicts) if fire}  # fmt: skip
    assert fired == {("all", "all"), ("site", "south")}
    assert decisions.strength(list(site.results)) == 0.5


def test_alert_details_lead_with_the_strongest_features():
    results = [_result("dicom", Status.DRIFT, 0.2, 0.01), _result("scores", Status.DRIFT, 0.6,
                                                                     0.001)]  # fmt: skip
    top = decisions.top_features(results, 1)
    assert [f.feature for f in top] == ["scores-feature"]
    info = ReferenceInfo(7, "m", 600, "h", "f", None, {}, {})
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    verdict = _verdict("site", "south", 3.0, *results)
    details = decisions.alert_details("site", "south", "scores", results, verdict, info, start,
                                      end, 3, {"ks:scores": "scores moved"})  # fmt: skip
    assert details["stratum"] == "site=south" and details["drift_score"] == 3.0
    assert [f["feature"] for f in details["top_features"]] == ["scores-feature",
                                                               "dicom-feature"]  # fmt: skip
    # Most significant test's examples first.
    assert details["atypical_ids"] == ["scores-study", "dicom-study"]
    assert [t["summary"] for t in details["tests"]] == [None, "scores moved"]
    assert details["reference_id"] == 7
