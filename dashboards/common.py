"""Shared pieces of the Grafana dashboards: datasource, variables, query and panel helpers.

Dashboards as code (grafana-foundation-sdk): every query is built from the metric names in
monitor.metrics.names, so a renamed metric breaks the build, not a dashboard in production.
`substitute` resolves the template variables the way Grafana would for a check against a
real Prometheus (tests/monitor/metrics/test_scrape_queries.py). The links between the
dashboards, to the alert runbook and the timeline annotations are built here too, so every
dashboard points to the same runbook and drills down the same way.
"""

from __future__ import annotations

import math
import re
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

from grafana_foundation_sdk.builders import table
from grafana_foundation_sdk.builders.common import GraphThresholdsStyleConfig
from grafana_foundation_sdk.builders.dashboard import (
    DashboardLink,
    DatasourceVariable,
    QueryVariable,
    ThresholdsConfig,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from monitor.metrics import names

DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["radwatch"]
REFRESH = "30s"

# What Grafana puts in place of a variable when "All" (or the default) is selected.
DEFAULTS: Mapping[str, str] = {
    "model": ".*",
    "signal": ".*",
    "stratum_kind": ".*",
    "stratum_value": ".*",
    "metric": ".*",
    "finding": ".*",
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1h",
}


# The alert runbook; the rules' runbook_url annotations point to the same file
# (tests/deploy/test_prometheus_rules.py checks they agree).
RUNBOOK_URL = "https://github.com/radwatch/radwatch/blob/main/deploy/prometheus/runbook.md"

# The drift tests' significance level: the default α of the drift suite and of the
# performance evaluation (detectors/drift/suite.py, monitor/performance/evaluation.py). A
# monitoring plan's false-alarm budget may derive a smaller α per model (`radwatch plan
# show`); it is not exposed as a metric, so the panels draw the default.
ALPHA = 0.05
# The unified drift score of a window whose every test sits exactly at p = α: the score
# standardises -log10 p with the no-shift moments mean = sd = 1/ln 10 (a uniform p-value;
# detectors/drift/score.py), so z = (-log10 α - 1/ln 10) · ln 10 = -ln α - 1 ≈ 2.0.
DRIFT_SCORE_AT_ALPHA = round(-math.log(ALPHA) - 1, 2)

# The pipeline rules' thresholds (deploy/prometheus/rules/radwatch.rules.yml; a test keeps
# them equal), drawn on the panels that show what the rule reads: the dead-letter share over
# 15 minutes, the consumer-lag floor, the seconds without a stored inference.
DEAD_LETTER_SHARE = 0.05
LAG_FLOOR = 1000
STALLED_S = 1800

# Dashboard uids and URL slugs, for links between dashboards (kept here so a link and its
# target cannot disagree).
OVERVIEW = ("radwatch-overview", "radwatch-overview")
DRIFT = ("radwatch-drift", "radwatch-drift-detail")
PERFORMANCE = ("radwatch-performance", "radwatch-performance")
OPERATIONS = ("radwatch-operations", "radwatch-operations")


def datasource_variable() -> DatasourceVariable:
    return DatasourceVariable("datasource").label("Prometheus").type("prometheus")


def label_variable(name: str, metric: str, label: str, *, filter_: str = "") -> QueryVariable:
    """A multi-value variable listing a label's values on a metric (All = `.*`)."""
    return (
        QueryVariable(name)
        .label(label.replace("_", " "))
        .datasource(DATASOURCE)
        .query(f"label_values({metric}{filter_}, {label})")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .include_all(True)
        .all_value(".*")
        .multi(True)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )


def model_variable() -> QueryVariable:
    return label_variable("model", names.INFERENCES_STORED + "_total", "model")


def query(expr: str, legend: str = "", *, ref: str = "A", table: bool = False) -> Dataquery:
    q = Dataquery().expr(expr).legend_format(legend or "__auto").ref_id(ref).datasource(DATASOURCE)
    if table:
        q = q.format(PromQueryFormat.TABLE).instant()
    return q


def runbook(*alerts: str) -> list[cogbuilder.Builder[dm.DashboardLink]]:
    """Panel links to the runbook sections of the alerts a panel shows (the rules'
    `runbook_url`; the anchor is the alert name lower-cased, GitHub's heading slug)."""
    return [
        DashboardLink(f"Runbook: {alert}").url(f"{RUNBOOK_URL}#{alert.lower()}").target_blank(True)
        for alert in alerts
    ]


def drill_down(title: str, target: tuple[str, str], variables: Mapping[str, str]) -> DashboardLink:
    """A data link to another dashboard with its variables set from the clicked series or
    row (`${__field.labels.x}` in a time series, `${__data.fields.x}` in a table), keeping
    the time range. Values are percent-encoded: strata such as `ACME X1` hold spaces."""
    uid, slug = target
    query_ = "&".join(f"var-{name}={value}" for name, value in variables.items())
    return DashboardLink(title).url(f"/d/{uid}/{slug}?{query_}&${{__url_time_range}}")


def field(name: str, *, table: bool = False) -> str:
    """A data-link reference to a label of the clicked series (or a column of a table row)."""
    ref = f"__data.fields.{name}" if table else f"__field.labels.{name}"
    return "${" + ref + ":percentencode}"


def dashboard_links() -> list[cogbuilder.Builder[dm.DashboardLink]]:
    """The radwatch dashboards as a drop-down in each one's header, carrying the variables
    and the time range across."""
    return [
        DashboardLink("radwatch")
        .type(dm.DashboardLinkType.DASHBOARDS)
        .tags(TAGS)
        .as_dropdown(True)
        .include_vars(True)
        .keep_time(True),
        DashboardLink("Runbook").url(RUNBOOK_URL).icon("doc").target_blank(True),
    ]


def thresholds(*steps: tuple[float | None, str]) -> ThresholdsConfig:
    return (
        ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


def threshold_line() -> GraphThresholdsStyleConfig:
    """Draw a time series panel's thresholds as dashed lines (Grafana draws none unless asked)."""
    return GraphThresholdsStyleConfig().mode(cm.GraphTresholdsStyleMode.DASHED)


class PrometheusAnnotation(dm.AnnotationQuery):
    """A Prometheus annotation query with the fields Grafana's Prometheus data source reads
    (title and text templates, tag labels, step, value-as-time) that the SDK's model lacks."""

    def __init__(self, *, title: str, text: str, tag_keys: str, step: str,
                 use_value_for_time: bool, **kwargs: Any) -> None:  # fmt: skip
        super().__init__(**kwargs)
        self.title_format, self.text_format, self.tag_keys = title, text, tag_keys
        self.step, self.use_value_for_time = step, use_value_for_time

    def to_json(self) -> dict[str, object]:
        return {**super().to_json(), "titleFormat": self.title_format,
                "textFormat": self.text_format, "tagKeys": self.tag_keys, "step": self.step,
                "useValueForTime": self.use_value_for_time}  # fmt: skip


class Annotation(cogbuilder.Builder[dm.AnnotationQuery]):
    def __init__(self, annotation: PrometheusAnnotation) -> None:
        self._annotation = annotation

    def build(self) -> dm.AnnotationQuery:
        return self._annotation


def incident_annotation() -> Annotation:
    """Each incident as a region from its opening to its resolution. Grafana marks the steps
    where a series is ≥ 1, and radwatch_incident_open is 1 exactly while the incident is
    open or acknowledged; incidents, not alerts, are what Alertmanager pages on."""
    expr = (f"max by (model, incident, shift_type, root_cause_kind, root_cause_value) "
            f'({names.INCIDENT_OPEN}{{model=~"$model"}})')  # fmt: skip
    return Annotation(PrometheusAnnotation(
        name="Incidents", datasource=DATASOURCE, enable=True, icon_color="red", expr=expr,
        title="{{model}}: incident {{incident}} ({{shift_type}})",
        text="root cause {{root_cause_kind}}={{root_cause_value}}",
        tag_keys="model,shift_type,root_cause_kind", step="1m", use_value_for_time=False,
    ))  # fmt: skip


def firing_alerts_annotation() -> Annotation:
    """radwatch's Prometheus alerts (Prometheus's own ALERTS series) while they fire:
    pipeline faults as well as incidents, on the platform engineer's timeline."""
    expr = 'ALERTS{alertname=~"Radwatch.*", alertstate="firing"}'
    return Annotation(PrometheusAnnotation(
        name="Firing alerts", datasource=DATASOURCE, enable=True, icon_color="orange",
        expr=expr, title="{{alertname}}", text="severity {{severity}}",
        tag_keys="alertname,severity", step="1m", use_value_for_time=False,
    ))  # fmt: skip


def reference_annotation() -> Annotation:
    """When each model's active drift reference was built: one mark at that time (the
    value is the time, in ms for Grafana), since a new reference moves every baseline."""
    expr = f'max by (model) ({names.REFERENCE_BUILT}{{model=~"$model"}}) * 1000'
    return Annotation(PrometheusAnnotation(
        name="Reference built", datasource=DATASOURCE, enable=True, icon_color="blue",
        expr=expr, title="{{model}}: drift reference built", text="new baseline",
        tag_keys="model", step="5m", use_value_for_time=True,
    ))  # fmt: skip


def substitute(expr: str, values: Mapping[str, str] | None = None) -> str:
    """Replace `$var`, `${var}` and `[[var]]` as Grafana does (defaults: All / `.*`)."""
    table = {**DEFAULTS, **(values or {})}

    def repl(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name not in table:
            raise KeyError(f"no value for dashboard variable ${name} in {expr!r}")
        return table[name]

    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", repl, expr)


def panel_queries(dashboard_json: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL expression) for every query target of every panel, then
    ("annotation: NAME", expression) for every Prometheus annotation."""

    def walk(panels: list[Mapping[str, Any]]) -> Iterator[tuple[str, str]]:
        for panel in panels:
            for target in panel.get("targets") or []:
                if target.get("expr"):
                    yield str(panel.get("title", "")), str(target["expr"])
            yield from walk(panel.get("panels") or [])

    yield from walk(list(dashboard_json.get("panels") or []))
    for annotation in (dashboard_json.get("annotations") or {}).get("list") or []:
        if annotation.get("expr"):
            yield f"annotation: {annotation['name']}", str(annotation["expr"])


def links_of(panel: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A panel's links and its fields' data links."""
    defaults = (panel.get("fieldConfig") or {}).get("defaults") or {}
    return [*(panel.get("links") or []), *(defaults.get("links") or [])]


def link_variables(url: str) -> dict[str, str]:
    """`var-NAME=value` pairs of a dashboard link."""
    query_ = urllib.parse.urlsplit(url).query
    return {k.removeprefix("var-"): v for k, v in urllib.parse.parse_qsl(query_)
            if k.startswith("var-")}  # fmt: skip


# -- tables shared by the dashboards -----------------------------------------------------

# Columns a table of label sets does not need (Grafana's "organize fields" transformation).
HIDDEN = {"Time": True, "__name__": True, "job": True, "instance": True}
# radwatch's acknowledgement states (the `state` label of radwatch_alerts_open and
# radwatch_incident_open; resolved ones are not exposed).
STATE_MAP: list[dm.ValueMap | dm.RangeMap | dm.RegexMap | dm.SpecialValueMap] = [
    dm.ValueMap(options={
        "open": dm.ValueMappingResult(text="open (not acknowledged)", color="red", index=0),
        "acknowledged": dm.ValueMappingResult(text="acknowledged", color="yellow", index=1),
    })
]  # fmt: skip


def organize(rename: dict[str, str]) -> dm.DataTransformerConfig:
    return dm.DataTransformerConfig(
        id_val="organize",
        options={"excludeByName": HIDDEN, "renameByName": rename, "indexByName": {}},
    )


def to_drift(*, table_: bool, stratum: tuple[str, str] = ("stratum_kind", "stratum_value"),
             signal: bool = True) -> DashboardLink:  # fmt: skip
    """Drill-down to the drift detail for the clicked model (and stratum, signal)."""
    variables = {"model": field("model", table=table_)}
    kind, value = stratum
    variables["stratum_kind"] = field(kind, table=table_)
    variables["stratum_value"] = field(value, table=table_)
    if signal:
        variables["signal"] = field("signal", table=table_)
    return drill_down("Drift detail for ${__data.fields.model}" if table_
                      else "Drift detail for ${__field.labels.model}", DRIFT, variables)  # fmt: skip


def open_alerts_table(selector: str = '{model=~"$model"}') -> table.Panel:
    """radwatch's open and acknowledged alerts by model, kind, signal and stratum (shared with
    the drift detail, which passes its own selector)."""
    return (
        table.Panel()
        .title("Open alerts with acknowledgement state")
        .description(
            "radwatch alerts not yet resolved, counted per model, kind, signal, stratum and "
            "state (open or acknowledged); an incident groups them for paging. Click a row "
            "for the drift detail (drift alerts) or the performance dashboard."
        )  # fmt: skip
        .with_target(
            query(
                f"sum by (model, kind, signal, stratum_kind, stratum_value, state) "
                f"({names.ALERTS_OPEN}{selector})",
                table=True,
            )
        )  # fmt: skip
        .with_transformation(
            organize(
                {
                    "model": "Model",
                    "kind": "Kind",
                    "signal": "Signal",
                    "stratum_kind": "Stratum kind",
                    "stratum_value": "Stratum",
                    "state": "State",
                    "Value": "Alerts",
                }
            )
        )  # fmt: skip
        .mappings(STATE_MAP)
        .links(runbook("RadwatchIncident", "RadwatchAlertsWithoutIncident"))
        .data_links(
            [
                to_drift(table_=True),
                drill_down(
                    "Performance of ${__data.fields.model}",
                    PERFORMANCE,
                    {"model": field("model", table=True)},
                ),
            ]
        )  # fmt: skip
        .height(9)
        .span(24)
    )
