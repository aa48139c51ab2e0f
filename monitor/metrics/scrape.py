"""Scrape-time Prometheus collector: radwatch's state in PostgreSQL as metrics.

Sits between the store and Prometheus: on every scrape it reads the ingest counters (kept by
migration 0012 in the write transaction: a scrape never scans the event tables), the
latest drift and performance results, the open alerts and incidents, and yields metric families
named in monitor.metrics.names. Each section is read on its own; a section whose table does not
exist yet (an older schema) or whose read fails yields nothing but `radwatch_metrics_source_up
{source} 0`, so one bad section never fails the scrape (prometheus/client_python custom
collector pattern, DESIGN.md §10).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from importlib import metadata

import psycopg
from prometheus_client.core import (
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from monitor.errors import RadwatchError
from monitor.metrics import names
from monitor.metrics.families import Family, Histogram
from monitor.metrics.interaction_section import interaction_section
from monitor.metrics.labeler_section import labeler_section
from monitor.metrics.names import OTHER
from monitor.store import counters, db

log = logging.getLogger(__name__)

STATEMENT_TIMEOUT_MS = 5000  # a slow query fails its section, not the whole scrape
DRIFT_LABELS = ("model", "model_version", "stratum_kind", "stratum_value", "signal", "detector",
                "feature")  # fmt: skip
PERF_LABELS = ("model", "finding", "stratum_kind", "stratum_value", "metric", "source")
ALERT_LABELS = ("model", "kind", "signal", "stratum_kind", "stratum_value", "state")
INCIDENT_LABELS = ("model", "incident", "shift_type", "root_cause_kind", "root_cause_value",
                   "state")  # fmt: skip


Section = Callable[[psycopg.Connection], Sequence[Family | Histogram]]


class MetricsSourceError(RadwatchError, RuntimeError):
    """A section of the scrape-time read failed (reported as source_up 0, logged once)."""


class DatabaseCollector(Collector):
    """Reads radwatch's PostgreSQL state at scrape time (register on a CollectorRegistry)."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._conn: psycopg.Connection | None = None
        self._lock = threading.Lock()  # the HTTP server scrapes from several threads
        self._failing: dict[str, str] = {}
        self.sections: dict[str, Section] = {
            "ingest": ingest_section,
            "drift": drift_section,
            "references": reference_section,
            "performance": performance_section,
            "alerts": alerts_section,
            "incidents": incidents_section,
            "health": health_section,
            "labeler": labeler_section,
            "interactions": interaction_section,
        }

    def describe(self) -> Iterable[Metric]:
        # Nothing up front: registering must not query the database.
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            up = GaugeMetricFamily(names.SOURCE_UP, "1 when the scrape-time read of a "
                                   "section of radwatch's state succeeded.", labels=["source"])  # fmt: skip
            families: list[Family | Histogram] = []
            for name, section in self.sections.items():
                try:
                    families.extend(self._read(name, section))
                    up.add_metric([name], 1)
                except MetricsSourceError:
                    up.add_metric([name], 0)
            info = GaugeMetricFamily(names.BUILD_INFO, "radwatch version (always 1).",
                                     labels=["version"])  # fmt: skip
            info.add_metric([_version()], 1)
        yield info
        yield up
        yield from (f.metric() for f in families)
        yield from model_status(families)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _read(self, name: str, section: Section) -> Sequence[Family | Histogram]:
        try:
            conn = self._connection()
            result = section(conn)
        except psycopg.errors.UndefinedTable as exc:
            # An older schema, or another component's migration not applied yet: expected,
            # visible as source_up 0, logged once at INFO.
            self._note(name, f"table missing: {exc.diag.message_primary}", logging.INFO)
            raise MetricsSourceError(name) from exc
        except psycopg.Error as exc:
            self._note(name, f"{type(exc).__name__}: {exc}", logging.WARNING)
            if isinstance(exc, psycopg.OperationalError) and self._conn is not None:
                self._conn.close()
                self._conn = None
            raise MetricsSourceError(name) from exc
        if name in self._failing:
            log.info("metrics section %s readable again", name)
            del self._failing[name]
        return result

    def _note(self, name: str, message: str, level: int) -> None:
        # Logged when the failure starts or changes, not on every scrape.
        if self._failing.get(name) != message:
            log.log(level, "metrics section %s unavailable: %s", name, message)
            self._failing[name] = message

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            self._conn = db.connect(self._url, autocommit=True)
            self._conn.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            self._conn.execute("SET default_transaction_read_only = on")
        return self._conn


def _version() -> str:
    try:
        return metadata.version("radwatch")
    except metadata.PackageNotFoundError:
        return "unknown"


# -- sections: one query each (or a few), returning bounded families -------------------------


def ingest_section(conn: psycopg.Connection) -> list[Family | Histogram]:
    """Ingest from the counter tables of migration 0012 (monitor.store.counters): a few
    hundred rows whatever the number of stored events; the event tables are never read."""
    read = counters.read(conn)
    stored = Family(names.INFERENCES_STORED, "Inferences stored in PostgreSQL.",
                     ("model", "site"), counter=True)  # fmt: skip
    last = Family(names.LAST_INFERENCE_RECEIVED, "When the latest inference of a model was "
                   "stored (Unix seconds).", ("model",))  # fmt: skip
    labels = Family(names.LABELS_STORED, "Radiologist labels stored in PostgreSQL.",
                     ("model",), counter=True)  # fmt: skip
    ingested = Family(names.EVENTS_INGESTED, "Events stored in PostgreSQL by kind (a replay "
                       "of stored events adds nothing).", ("kind", "model"),
                       counter=True)  # fmt: skip
    inferences: dict[str, int] = {}
    # Busiest first (read orders them so): when a label's budget runs out, the small sites
    # are the ones that collapse into "other", and the same ones on every scrape.
    for row in read.events:
        ingested.add((row.kind, row.model), row.events)
        if row.kind == "inference":
            stored.add((row.model, row.site or None), row.events)
            last.add((row.model,), row.newest_received)
            inferences[row.model] = inferences.get(row.model, 0) + row.events
        elif row.kind == "label":  # interactions have their own section
            labels.add((row.model,), row.events)
    coverage = Family(names.LABEL_COVERAGE, "Share of stored inferences with a label.",
                       ("model",))  # fmt: skip
    for share in read.coverage:
        if inferences.get(share.model):
            coverage.add((share.model,), share.labelled_inferences / inferences[share.model])
    dead = Family(names.DEAD_LETTERS_STORED, "Records dead-lettered, stored by reason.",
                   ("reason",), counter=True)  # fmt: skip
    dead_by_topic = Family(names.DEAD_LETTERS, "Records dead-lettered, stored by topic and "
                            "reason code.", ("topic", "reason"), counter=True)  # fmt: skip
    for letter in read.dead_letters:
        dead.add((letter.reason,), letter.letters)
        dead_by_topic.add((letter.topic, letter.reason), letter.letters)
    histograms = {
        counters.MODEL_LATENCY_SERIES: Histogram(
            names.MODEL_LATENCY_SECONDS, "The deployed model's own inference latency, as "
            "reported in its events.", ("model",)),
        counters.INGEST_DELAY_SERIES: Histogram(
            names.INGEST_LAG_SECONDS, "Seconds from an inference's occurred_at to its "
            "storage.", ("model",)),
        counters.BATCH_SERIES: Histogram(
            names.INGEST_BATCH_SECONDS, "Seconds from a parsed batch to the last statement "
            "of its write transaction.", ()),
    }  # fmt: skip
    for h in read.histograms:
        if (family := histograms.get(h.series)) is not None:
            family.add((h.model,) if family.labels else (), h)
    return [stored, last, labels, coverage, dead, ingested, dead_by_topic, *histograms.values()]


def drift_section(conn: psycopg.Connection) -> list[Family]:
    p = Family(names.DRIFT_P_VALUE, "Raw p-value of the latest window's test.", DRIFT_LABELS)
    adj = Family(names.DRIFT_P_VALUE_ADJUSTED, "Multiplicity-adjusted p-value (BH) of the "
                  "latest window's test.", DRIFT_LABELS)  # fmt: skip
    effect = Family(names.DRIFT_EFFECT_SIZE, "Effect size of the latest window's test.",
                     DRIFT_LABELS)  # fmt: skip
    detected = Family(names.DRIFT_DETECTED, "1 when the latest window's test rejected.",
                       DRIFT_LABELS)  # fmt: skip
    score = Family(names.DRIFT_SCORE, "Unified drift score of the latest window (standardised "
                    "signals combined).", ("model", "model_version", "stratum_kind",
                                           "stratum_value"))  # fmt: skip
    evaluated = Family(names.DRIFT_LAST_EVALUATED, "When the latest window was evaluated "
                        "(Unix seconds).", ("model",))  # fmt: skip
    for row in conn.execute(DRIFT_LATEST_SQL).fetchall():
        (model, version, kind, value, signal, detector, feature, p_raw, p_adj, eff, drifted,
         unified, at) = row  # fmt: skip
        labels = (model, version, kind, value, signal, detector, feature)
        p.add(labels, p_raw)
        adj.add(labels, p_adj)
        effect.add(labels, eff)
        if drifted is not None:
            detected.add(labels, 1.0 if drifted else 0.0)
        score.add((model, version, kind, value), unified)
        evaluated.add((model,), at)
    return [p, adj, effect, detected, score, evaluated]


# Every row of each model's latest evaluated window (a window holds one row per stratum,
# detector and feature, insufficient_data included), so the read stays small however long
# the history. Column names follow monitor/store/migrations/0004_drift.sql.
DRIFT_LATEST_SQL = """
SELECT r.model_name, r.model_version, r.stratum_kind, r.stratum_value, r.signal, r.detector,
       CASE WHEN r.feature = '' THEN 'all' ELSE r.feature END,
       r.p_value, r.p_adjusted, r.effect_size, r.drift, r.unified_score,
       extract(epoch FROM w.computed_at)
FROM drift_results r
JOIN (SELECT DISTINCT ON (model_name) id, computed_at FROM drift_windows
      ORDER BY model_name, window_end DESC, id DESC) w ON r.window_id = w.id
"""


def reference_section(conn: psycopg.Connection) -> list[Family]:
    """When each model's active drift reference was built: the dashboards' "reference
    built" annotation (a new reference moves every drift baseline, so it belongs on the
    timeline beside the alerts)."""
    built = Family(names.REFERENCE_BUILT, "When the model's active drift reference was "
                    "built (Unix seconds).", ("model",))  # fmt: skip
    for model, at in conn.execute(
        """SELECT model_name, extract(epoch FROM created_at) FROM drift_references
           WHERE active"""
    ).fetchall():
        built.add((model,), float(at))
    return [built]


def performance_section(conn: psycopg.Connection) -> list[Family]:
    value = Family(names.PERFORMANCE, "Latest performance per metric: realised (from labels) "
                    "or estimated (label-free).", PERF_LABELS)  # fmt: skip
    lower = Family(names.PERFORMANCE_LOWER, "Lower bound of the performance interval.",
                    PERF_LABELS)  # fmt: skip
    upper = Family(names.PERFORMANCE_UPPER, "Upper bound of the performance interval.",
                    PERF_LABELS)  # fmt: skip
    degraded = Family(names.PERFORMANCE_DEGRADED, "1 when the latest window's degradation "
                       "test flagged a drop.", PERF_LABELS[:5])  # fmt: skip
    rows = conn.execute(
        """SELECT DISTINCT ON (model_name, finding, stratum_kind, stratum_value, metric)
                  model_name, CASE WHEN finding = '*' THEN 'all' ELSE finding END,
                  stratum_kind, stratum_value, metric,
                  realised, realised_lower, realised_upper,
                  estimated, estimated_lower, estimated_upper, degraded
           FROM performance_results
           WHERE window_kind <> 'reference'
           ORDER BY model_name, finding, stratum_kind, stratum_value, metric,
                    window_end DESC, window_index DESC"""
    ).fetchall()
    for model, finding, kind, stratum, metric, r, r_lo, r_hi, e, e_lo, e_hi, worse in rows:
        for source, v, lo, hi in (("realised", r, r_lo, r_hi), ("estimated", e, e_lo, e_hi)):
            labels = (model, finding, kind, stratum, metric, source)
            value.add(labels, v)
            lower.add(labels, lo)
            upper.add(labels, hi)
        degraded.add((model, finding, kind, stratum, metric), 1.0 if worse else 0.0)
    return [value, lower, upper, degraded]


def alerts_section(conn: psycopg.Connection) -> list[Family]:
    # Summed: two alerts collapsing into one label set are still two alerts.
    open_ = Family(names.ALERTS_OPEN, "Alerts not yet resolved, by model, kind and stratum.",
                    ALERT_LABELS, summed=True)  # fmt: skip
    for model, kind, signal, s_kind, s_value, state, n in conn.execute(ALERTS_OPEN_SQL):
        open_.add((model, kind, signal, s_kind, s_value, state), n)
    return [open_]


# Column names follow monitor/store/migrations/0004_drift.sql (alerts table).
ALERTS_OPEN_SQL = """
SELECT model_name,
       CASE WHEN signal LIKE 'performance%%' THEN 'performance' ELSE 'drift' END,
       signal, stratum_kind, stratum_value, state, count(*)
FROM alerts WHERE state <> 'resolved'
GROUP BY 1, 2, 3, 4, 5, 6
"""


def incidents_section(conn: psycopg.Connection) -> list[Family]:
    """One series per incident not yet resolved (migration 0009): what the notifying rule
    RadwatchIncident reads, so Alertmanager hears of incidents, not of their alerts.

    Oldest first: past the label budget the newest incidents share one `incident="other"`
    series (its value counts them), and the older ones keep their ids on every scrape.
    """
    open_ = Family(names.INCIDENT_OPEN, "1 per open or acknowledged incident (root cause, "
                    "shift type); resolved incidents are not exposed.", INCIDENT_LABELS,
                    summed=True)  # fmt: skip
    rows = conn.execute(
        """SELECT model_name, id, shift_type, root_cause_kind, root_cause_value, state
           FROM incidents WHERE state <> 'resolved' ORDER BY opened_at, id"""
    ).fetchall()
    for n, (model, incident, shift, kind, value, state) in enumerate(rows):
        if n >= names.MAX_VALUES_PER_LABEL:
            incident, shift, kind, value = OTHER, OTHER, OTHER, OTHER
        open_.add((model, incident, shift, kind, value, state), 1)
    # Alerts that belong to no incident would notify no one: counted, and paged on by
    # RadwatchAlertsWithoutIncident if they stay so.
    ungrouped = Family(names.ALERTS_WITHOUT_INCIDENT, "Open or acknowledged alerts not yet "
                        "part of an incident.", ("model",), summed=True)  # fmt: skip
    for model, n in conn.execute(
        """SELECT model_name, count(*) FROM alerts
           WHERE state <> 'resolved' AND incident_id IS NULL GROUP BY model_name"""
    ).fetchall():
        ungrouped.add((model,), n)
    # A stop rule held and nobody decided yet: RadwatchSuspendRecommended pages the
    # governance group (the rule id is a plan slug, `[a-z0-9-]`, bounded like the rest).
    suspend = Family(names.SUSPEND_RECOMMENDED, "1 per incident whose plan stop rule holds "
                      "and awaits a decision (suspend or continue).",
                      ("model", "incident", "stop_rule"), summed=True)  # fmt: skip
    for n, (model, incident, rule) in enumerate(conn.execute(
        """SELECT model_name, id, stop_rule FROM incidents WHERE state <> 'resolved'
             AND stop_rule IS NOT NULL AND decision IS NULL ORDER BY opened_at, id"""
    ).fetchall()):  # fmt: skip
        if n >= names.MAX_VALUES_PER_LABEL:
            incident, rule = OTHER, OTHER
        suspend.add((model, incident, rule), 1)
    return [open_, ungrouped, suspend]


def health_section(conn: psycopg.Connection) -> list[Family]:
    """Each model's pass status (monitor/model_status.py, migration 0007) and the images
    parked while the PACS was unreachable (migration 0006)."""
    errors = Family(names.MODEL_PASS_ERRORS, "Detection or performance passes of a model "
                     "that failed (the other models went on).", ("model", "component"),
                     counter=True)  # fmt: skip
    failing = Family(names.MODEL_PASS_FAILING, "1 while the model's latest pass of this "
                      "component failed.", ("model", "component"))  # fmt: skip
    for model, component, status, n in conn.execute(
        "SELECT model_name, component, status, errors_total FROM model_pass_status"
    ).fetchall():
        errors.add((model, component), n)
        failing.add((model, component), 1.0 if status == "error" else 0.0)
    parked = Family(names.IMAGES_PARKED, "Images waiting for the PACS to answer again "
                     "(radwatch embed --parked fetches them).", ("model",), summed=True)  # fmt: skip
    for model, n in conn.execute(
        "SELECT model_name, count(*) FROM image_fetch_queue GROUP BY model_name"
    ).fetchall():
        parked.add((model,), n)
    return [errors, failing, parked]


def model_status(families: Sequence[Family | Histogram]) -> Iterator[Metric]:
    """One series per model and status: 1 for the model's current status, 0 for the others.

    error: the model's latest detection or performance pass failed; drift: an open alert;
    no_reference: stored inferences but no drift result yet; insufficient_data: drift
    results exist but none has a p-value; ok otherwise.
    """
    by_name = {f.name: f for f in families if isinstance(f, Family)}
    models: set[str] = set()
    if stored := by_name.get(names.INFERENCES_STORED):
        models |= {k[0] for k in stored.rows}
    alerting = {k[0] for k, v in by_name[names.ALERTS_OPEN].rows.items() if v > 0} if (
        names.ALERTS_OPEN in by_name) else set()  # fmt: skip
    tested = {k[0] for k in by_name[names.DRIFT_P_VALUE].rows} if (
        names.DRIFT_P_VALUE in by_name) else set()  # fmt: skip
    evaluated = {k[0] for k in by_name[names.DRIFT_LAST_EVALUATED].rows} if (
        names.DRIFT_LAST_EVALUATED in by_name) else set()  # fmt: skip
    failing = {k[0] for k, v in by_name[names.MODEL_PASS_FAILING].rows.items() if v > 0} if (
        names.MODEL_PASS_FAILING in by_name) else set()  # fmt: skip
    models |= alerting | evaluated | failing
    if not models:
        return
    family = GaugeMetricFamily(names.MODEL_STATUS, "1 for the model's current status.",
                               labels=["model", "status"])  # fmt: skip
    for model in sorted(models):
        if model in failing:
            status = "error"
        elif model in alerting:
            status = "drift"
        elif model in tested:
            status = "ok"
        elif model in evaluated:
            status = "insufficient_data"
        else:
            status = "no_reference"
        for name in names.STATUSES:
            family.add_metric([model, name], 1.0 if name == status else 0.0)
    yield family
