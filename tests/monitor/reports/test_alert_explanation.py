"""Alert explanations list only significant contributors (issue 18, item 5).

`radwatch alerts list` (monitor/alerts/lifecycle.py `format_alert`) and the model report's cards
(monitor/reports/report_cards.py) read one rule: a feature is shown when its adjusted p is below
the α the alert used (stored in its details, else implied by its own tests: a test marked drift
had adjusted p < α). No database: alerts are built as the scheduler stores them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from monitor.alerts import lifecycle
from monitor.alerts.lifecycle import Alert
from monitor.reports.report_cards import evidence_lines

AT = datetime(2026, 11, 10, tzinfo=UTC)


def _feature(name: str, p: float) -> dict:
    return {"feature": name, "test": "ks", "adjusted_p": p, "effect_size": 0.31,
            "summary": f"{name}: median 0.4 vs 0.3 in reference (KS D=0.31)"}  # fmt: skip


def _alert(features: list[dict], tests: list[dict], **extra) -> Alert:
    details = {"top_features": features, "tests": tests, "drift_score": 4.2, **extra}
    return Alert(7, "cxr-nodule", "site", "south-clinic", "image_quality", "open", AT, AT, AT,
                 details, None, None, None, None, None, None)  # fmt: skip


FIRED = {"detector": "ks:image_quality", "status": "drift", "adjusted_p": 2e-4,
         "effect_size": 0.31}  # fmt: skip
QUIET = {"detector": "mmd:image_embedding", "status": "ok", "adjusted_p": 0.4, "effect_size": 0.2}


def test_only_features_below_the_alerts_alpha_are_listed() -> None:
    a = _alert([_feature("p50", 2e-4), _feature("p95", 0.03), _feature("rows", 1.0)],
               [FIRED, QUIET])  # fmt: skip
    text = lifecycle.format_alert(a)
    assert "p50:" in text and "adj. p=0.0002" in text
    # 0.03 is above every p its tests fired at, so not shown without a stored α; 1 never is.
    assert "p95:" not in text and "rows:" not in text and "adj. p=1" not in text
    # With the α stored (or given), the rule is exact: 0.03 < 0.05.
    stored = lifecycle.format_alert(_alert(a.details["top_features"], [FIRED, QUIET], alpha=0.05))
    assert "p95:" in stored and "rows:" not in stored
    assert "p95:" not in lifecycle.format_alert(a, alpha=0.01)
    cards = "\n".join(evidence_lines(a))
    assert "p50:" in cards and "p95:" not in cards and "rows:" not in cards


def test_no_significant_contributor_is_said_plainly() -> None:
    a = _alert([_feature("p50", 0.2), _feature("rows", 1.0)], [QUIET], alpha=0.05)
    text = lifecycle.format_alert(a)
    assert "no single contributor significant" in text
    assert "adj. p" not in text
    assert evidence_lines(a)[0] == "no single contributor significant"
