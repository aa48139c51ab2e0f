"""Dashboards as code: the committed JSON is what the code builds, and queries use known names.

Fails when someone edits a dashboard module without rebuilding
(`radwatch dashboards build --out deploy/grafana/dashboards`) or edits the JSON by hand.
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
import yaml
from conftest import REPO, radwatch_cmd

from dashboards import build, common, drift, performance
from monitor.metrics import names


def test_committed_json_is_up_to_date() -> None:
    built = build.build_all()
    committed = {p.name: p.read_text() for p in build.COMMITTED.glob("*.json")}
    assert set(committed) == set(built), "committed dashboards differ from the built set"
    stale = [name for name, text in built.items() if committed[name] != text]
    assert not stale, f"stale: {stale}; run `radwatch dashboards build --out {build.COMMITTED}`"


def test_each_dashboard_has_panels_queries_and_a_unique_uid() -> None:
    uids = set()
    for name, doc in build.as_dicts().items():
        uids.add(doc["uid"])
        queries = list(common.panel_queries(doc))
        assert len(queries) >= 5, name
        for title, expr in queries:
            assert title, f"{name}: a panel without a title"
            common.substitute(expr)  # every variable has a value
    assert len(uids) == len(build.DASHBOARDS)


def test_queries_only_use_metric_names_from_monitor_metrics() -> None:
    defined = {v for k, v in vars(names).items() if k.isupper() and isinstance(v, str)}
    for name, doc in build.as_dicts().items():
        for title, expr in common.panel_queries(doc):
            for used in re.findall(r"radwatch_[a-z_]+", expr):
                base = re.sub(r"_(total|bucket|count|sum)$", "", used)
                assert used in defined or base in defined, f"{name} / {title}: {used}"


def test_build_command_writes_the_same_json(tmp_path) -> None:
    # Building needs no broker or database.
    subprocess.run(radwatch_cmd("dashboards", "build", "--out", str(tmp_path)), check=True,
                   cwd=REPO, timeout=120, capture_output=True)  # fmt: skip
    for name, text in build.build_all().items():
        assert json.loads((tmp_path / name).read_text()) == json.loads(text)


# -- links, units, thresholds, annotations (issue 18, item 4) ----------------------------------

RULES_FILE = REPO / "deploy" / "prometheus" / "rules" / "radwatch.rules.yml"
RUNBOOK_FILE = REPO / "deploy" / "prometheus" / "runbook.md"


def _panels(doc: dict) -> list[dict]:
    return [p for p in doc["panels"] if p.get("type") != "row"]


def _rules() -> dict[str, dict]:
    doc = yaml.safe_load(RULES_FILE.read_text())
    return {r["alert"]: r for g in doc["groups"] for r in g["rules"] if "alert" in r}


def _runbook_anchors(panel: dict) -> set[str]:
    return {link["url"].split("#", 1)[1] for link in common.links_of(panel)
            if link["url"].startswith(common.RUNBOOK_URL + "#")}  # fmt: skip


def _threshold_values(panel: dict) -> list[float]:
    steps = ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("thresholds") or {}
    return [s["value"] for s in steps.get("steps") or [] if s.get("value") is not None]


def test_every_alerting_panel_links_to_its_runbook_section() -> None:
    """A panel is alerting when it draws a threshold, or shows what an alert rule reads (the
    first metric of the rule's expression); it links to a runbook section that exists, and
    for a rule's metric, to that rule's section."""
    headings = {line[3:].strip().lower() for line in RUNBOOK_FILE.read_text().splitlines()
                if line.startswith("## ")}  # fmt: skip
    rule_metric = {}
    for alert, rule in _rules().items():
        first = re.search(r"radwatch_[a-z_]+|\bup\{", rule["expr"])
        assert first, alert
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        rule_metric.setdefault(first.group(0).rstrip("{"), set()).add(anchor)
    alerting = 0
    for name, doc in build.as_dicts().items():
        for panel in _panels(doc):
            anchors = _runbook_anchors(panel)
            assert anchors <= headings, f"{name} / {panel['title']}: {anchors - headings}"
            exprs = " ".join(t.get("expr", "") for t in panel.get("targets") or [])
            used = set(re.findall(r"radwatch_[a-z_]+|\bup(?=\{)", exprs))
            needed = set().union(*(rule_metric.get(u, set()) for u in used))
            if _threshold_values(panel) or needed:
                alerting += 1
                assert anchors, f"{name} / {panel['title']}: alerting panel without a runbook"
                assert needed <= anchors, f"{name} / {panel['title']}: no link to {needed}"
    assert alerting >= 15


def test_panel_thresholds_are_the_rules_and_the_plans() -> None:
    """The dashed lines are the numbers the rules and the plan use, not copies that drift."""
    from monitor.plan.document import default_plan

    rules = _rules()

    def bound(alert: str) -> float:
        return float(re.findall(r">\s*([0-9.]+)", rules[alert]["expr"])[0])

    assert bound("RadwatchConsumerLagGrowing") == common.LAG_FLOOR
    assert bound("RadwatchDeadLetterRate") == common.DEAD_LETTER_SHARE
    assert bound("RadwatchIngestStalled") == common.STALLED_S
    floor = next(r.below for r in default_plan("m").stop_rules if r.metric == "specificity")
    assert floor == performance.SPECIFICITY_FLOOR
    # The drift score of a window whose every test sits at p = α, by the score's own code.
    from detectors.drift.score import standardise

    assert pytest.approx(standardise(common.ALPHA, None), abs=0.01) == common.DRIFT_SCORE_AT_ALPHA
    docs = build.as_dicts()
    drawn = {(n, p["title"]): _threshold_values(p) for n, d in docs.items() for p in _panels(d)}
    assert drawn["radwatch-drift.json", "Adjusted p-value (Benjamini–Hochberg)"] == [common.ALPHA]
    assert drawn["radwatch-operations.json", "Consumer lag by topic"] == [common.LAG_FLOOR]
    assert drawn["radwatch-overview.json", "Unified drift score"] == [common.DRIFT_SCORE_AT_ALPHA]
    spec = "Specificity (realised vs estimated, 95% interval)"
    assert drawn["radwatch-performance.json", spec] == [performance.SPECIFICITY_FLOOR]


def test_drill_down_links_name_variables_of_their_target() -> None:
    """Every link to a radwatch dashboard sets only variables that dashboard has; the overview
    reaches the drift detail with model, stratum kind and value, and signal."""
    docs = build.as_dicts()
    by_uid = {d["uid"]: d for d in docs.values()}
    variables = {uid: {v["name"] for v in d["templating"]["list"]} for uid, d in by_uid.items()}
    carried: set[str] = set()
    for name, doc in docs.items():
        for panel in _panels(doc):
            for link in common.links_of(panel):
                match = re.match(r"/d/([\w-]+)/", link["url"])
                if not match:
                    continue
                uid = match.group(1)
                assert uid in by_uid, f"{name} / {panel['title']}: no dashboard {uid}"
                named = common.link_variables(link["url"])
                assert named, link["url"]
                assert set(named) <= variables[uid], f"{name} / {panel['title']}: {named}"
                assert "${__url_time_range}" in link["url"]
                if name == "radwatch-overview.json" and uid == drift.UID:
                    carried |= set(named)
    assert carried >= {"model", "stratum_kind", "stratum_value", "signal"}
    assert "stratum_value" in variables[drift.UID]


def test_units_are_consistent() -> None:
    """AUROC is unitless on 0–1 everywhere; p-values are unitless with max 1; durations are s."""
    auroc = p_values = 0
    for name, doc in build.as_dicts().items():
        for panel in _panels(doc):
            defaults = (panel.get("fieldConfig") or {}).get("defaults") or {}
            exprs = " ".join(t.get("expr", "") for t in panel.get("targets") or [])
            where = f"{name} / {panel['title']}"
            if 'metric="auroc"' in exprs or "AUROC" in panel["title"]:
                auroc += 1
                assert defaults.get("unit") == "none", where
                assert (defaults.get("min"), defaults.get("max")) == (0, 1), where
            if re.search(rf"{names.DRIFT_P_VALUE}(_adjusted)?\{{", exprs) and (
                panel["type"] == "timeseries"
            ):
                p_values += 1
                assert defaults.get("unit") == "none" and defaults.get("max") == 1, where
            if "time()" in exprs or "seconds" in exprs:
                assert defaults.get("unit") == "s", where
            assert defaults.get("unit") not in ("m", "ms", "percent"), where
    assert auroc >= 2 and p_values == 2


def test_no_panel_mixes_statistics_on_different_scales() -> None:
    """Effect sizes are per detector family: KS D and Cramér's V (0–1) never share an axis
    with the MMD² z-score."""
    families = {family for family, *_ in drift.EFFECTS}
    assert families >= {"ks", "mmd", "chi2"}
    seen = set()
    for name, doc in build.as_dicts().items():
        for panel in _panels(doc):
            exprs = [t.get("expr", "") for t in panel.get("targets") or []]
            if not any(names.DRIFT_EFFECT_SIZE in e for e in exprs):
                continue
            chosen = {f for e in exprs for f in re.findall(r'detector=~"(\w+):\.\*"', e)}
            assert len(chosen) == 1, f"{name} / {panel['title']}: {chosen or 'all detectors'}"
            seen |= chosen
    assert seen == families


def test_annotations_mark_incidents_alerts_and_reference_builds() -> None:
    docs = build.as_dicts()
    for name, doc in docs.items():
        annotations = {a["name"]: a for a in doc["annotations"]["list"]}
        assert "Incidents" in annotations, name
        assert names.INCIDENT_OPEN in annotations["Incidents"]["expr"]
        assert annotations["Incidents"]["titleFormat"]
    for name in ("radwatch-overview.json", "radwatch-drift.json", "radwatch-performance.json"):
        ref = {a["name"]: a for a in docs[name]["annotations"]["list"]}["Reference built"]
        # The value is the build time: Grafana reads it in milliseconds.
        assert names.REFERENCE_BUILT in ref["expr"] and ref["expr"].endswith("* 1000")
        assert ref["useValueForTime"] is True
    ops = {a["name"]: a for a in docs["radwatch-operations.json"]["annotations"]["list"]}
    assert ops["Firing alerts"]["expr"] == 'ALERTS{alertname=~"Radwatch.*", alertstate="firing"}'


def test_open_alerts_and_incidents_tables_show_the_acknowledgement_state() -> None:
    """The state label (open / acknowledged) is a column of both tables, mapped to words."""
    overview = build.as_dicts()["radwatch-overview.json"]
    tables = {p["title"]: p for p in _panels(overview) if p["type"] == "table"}
    for title, metric in (("Open incidents", names.INCIDENT_OPEN),
                          ("Open alerts with acknowledgement state", names.ALERTS_OPEN)):  # fmt: skip
        panel = tables[title]
        (target,) = panel["targets"]
        assert metric in target["expr"] and "state" in target["expr"].split(")")[0]
        assert target["format"] == "table" and target["instant"] is True
        mapped = panel["fieldConfig"]["defaults"]["mappings"][0]["options"]
        assert set(mapped) == {"open", "acknowledged"}
    from monitor.metrics import scrape

    assert "state" in scrape.ALERT_LABELS and "state" in scrape.INCIDENT_LABELS


def test_substitute_resolves_the_stratum_value_variable() -> None:
    expr = next(e for t, e in common.panel_queries(build.as_dicts()["radwatch-drift.json"])
                if t == "Raw p-value")  # fmt: skip
    assert 'stratum_value=~"ACME X1"' in common.substitute(expr, {"stratum_value": "ACME X1"})
