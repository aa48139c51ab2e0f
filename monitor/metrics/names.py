"""Prometheus metric names, the ingest instruments, and the rule that keeps labels bounded.

Sits at the output edge: the collector calls `record_batch` after each durable batch (this
process's own instruments), the scrape-time collector (monitor.metrics.scrape) exposes values
read from PostgreSQL, ingest counters included, and the
alert rules (deploy/prometheus) and dashboards (dashboards/) are built from these names.
Labels are bounded (model, model_version, site, stratum kind/value, signal, detector,
feature, topic, reason, incident id, shift type); never an identifier, a URL or anything from a patient. A label
value from an event (a model or site name) passes `bounded_label` (short, plain charset,
not identifier-shaped, not a URL) and a per-label budget (the first MAX_VALUES_PER_LABEL
distinct values keep their names, later ones are "other"), so a stream of odd events can
neither leak into /metrics nor grow the number of series without bound.
"""

from __future__ import annotations

import re
import threading

from prometheus_client import Counter, Gauge, Histogram

PREFIX = "radwatch"

# -- ingest, read from the counters of migration 0012 at scrape time (monitor.store.counters):
# every `radwatch metrics` process serves them, whichever worker stored the events.
EVENTS_INGESTED = f"{PREFIX}_events_ingested"  # counter (_total) by kind, model
DEAD_LETTERS = f"{PREFIX}_dead_letters"  # counter (_total) by topic, reason
INGEST_BATCH_SECONDS = f"{PREFIX}_ingest_batch_seconds"  # histogram: parse → write, per batch
INGEST_LAG_SECONDS = f"{PREFIX}_ingest_delay_seconds"  # histogram: occurred_at → stored
MODEL_LATENCY_SECONDS = f"{PREFIX}_model_latency_seconds"  # the inference service's own latency
CONSUMER_LAG = f"{PREFIX}_consumer_lag"  # gauge, sampled from Kafka (records behind)

# -- in-process instruments of one ingest worker (`radwatch collect --metrics-addr`, `run`):
# what this process did, apart from the database-backed families above (never the same name:
# one process serves both in `radwatch run`).
WORKER_EVENTS = f"{PREFIX}_worker_events_stored"  # counter (_total) by kind
WORKER_DEAD_LETTERS = f"{PREFIX}_worker_dead_letters"  # counter (_total) by reason
WORKER_BATCH_SECONDS = f"{PREFIX}_worker_batch_seconds"  # parse → durable write + offsets

# -- in-process instruments of a listener (`dicom-listen` / `hl7-listen --metrics-addr`):
LISTENER_EVENTS = f"{PREFIX}_listener_events"  # counter (_total) by listener, outcome, reason

# -- values read from PostgreSQL at scrape time (metrics_collector) --------------------------
BUILD_INFO = f"{PREFIX}_build_info"
SOURCE_UP = f"{PREFIX}_metrics_source_up"  # 1 when a section of the scrape-time read succeeded
INFERENCES_STORED = f"{PREFIX}_inferences_stored"  # counter (_total) by model, site
LABELS_STORED = f"{PREFIX}_labels_stored"
DEAD_LETTERS_STORED = f"{PREFIX}_dead_letters_stored"
LAST_INFERENCE_RECEIVED = f"{PREFIX}_last_inference_received_timestamp_seconds"
LABEL_COVERAGE = f"{PREFIX}_label_coverage_ratio"
DRIFT_SCORE = f"{PREFIX}_drift_score"  # the unified drift score of the latest window
DRIFT_P_VALUE = f"{PREFIX}_drift_p_value"
DRIFT_P_VALUE_ADJUSTED = f"{PREFIX}_drift_p_value_adjusted"
DRIFT_EFFECT_SIZE = f"{PREFIX}_drift_effect_size"
DRIFT_DETECTED = f"{PREFIX}_drift_detected"  # 1 when the latest window's test rejected
DRIFT_LAST_EVALUATED = f"{PREFIX}_drift_last_evaluated_timestamp_seconds"
# When each model's active drift reference was built (Unix seconds): dashboard annotations
REFERENCE_BUILT = f"{PREFIX}_reference_built_timestamp_seconds"
PERFORMANCE = f"{PREFIX}_performance"  # metric=auroc|sensitivity|…, source=realised|estimated
PERFORMANCE_LOWER = f"{PREFIX}_performance_ci_lower"
PERFORMANCE_UPPER = f"{PREFIX}_performance_ci_upper"
PERFORMANCE_DEGRADED = f"{PREFIX}_performance_degraded"  # 1 when the latest test flagged a drop
ALERTS_OPEN = f"{PREFIX}_alerts_open"  # open/acknowledged alerts by model, kind, stratum
# 1 per open or acknowledged incident (the notifying rules read this; resolved ones vanish)
INCIDENT_OPEN = f"{PREFIX}_incident_open"
ALERTS_WITHOUT_INCIDENT = f"{PREFIX}_alerts_without_incident"  # open alerts not yet grouped
# 1 per incident where a stop rule of the monitoring plan holds and nobody has decided yet
SUSPEND_RECOMMENDED = f"{PREFIX}_suspend_recommended"
MODEL_STATUS = f"{PREFIX}_model_status"  # 1 for the model's current status, 0 for the others
MODEL_PASS_ERRORS = f"{PREFIX}_model_pass_errors"  # counter (_total): failed passes per model
MODEL_PASS_FAILING = f"{PREFIX}_model_pass_failing"  # 1 while a model's latest pass failed
IMAGES_PARKED = f"{PREFIX}_images_parked"  # images waiting for the PACS (image_fetch_queue)
# Watching the report labeler (issue 17, monitor/labelwatch): reviewed derived labels of the
# last 30 days per model and finding, the share a radiologist confirmed, the queue's depth.
LABELER_AGREEMENT = f"{PREFIX}_labeler_agreement_ratio"
LABELER_REVIEWS = f"{PREFIX}_labeler_reviews"
LABELER_REVIEW_QUEUE = f"{PREFIX}_labeler_review_queue"
# Readers' interactions with AI results (issue 17, monitor/metrics/interaction_section.py):
# interactions by action, and AI-positive inferences no reader viewed (alert
# RadwatchPositiveNeverViewed).
INTERACTIONS = f"{PREFIX}_interactions"  # counter (_total) by model, action
POSITIVE_NEVER_VIEWED = f"{PREFIX}_positive_never_viewed"  # gauge by model
# AI call vs report label in each model's latest window, per finding and stratum.
DISCREPANCY_RATE = f"{PREFIX}_discrepancy_rate"
DISCREPANCY_FLAGGED = f"{PREFIX}_discrepancy_flagged"  # 1 when the window's test flagged a rise

STATUSES = ("ok", "drift", "insufficient_data", "error", "no_reference")

# -- bounded labels ----------------------------------------------------------------------------
# Stratum kinds come from the allow-list of strata (DESIGN.md §6); anything else is "other".
STRATUM_KINDS = frozenset(
    {
        "all",
        "site",
        "scanner",
        "manufacturer",
        "view",
        "sex",
        "age_band",
        "modality",
        "model_version",
    }
)
MAX_VALUES_PER_LABEL = 50  # beyond this many distinct values a label collapses to "other"
OTHER = "other"

_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+/ -]{0,63}$")
# What an identifier looks like: DICOM UIDs (PS3.5 §9.1: dotted numeric), UUIDs, long hex
# (our HMAC pseudonyms are hex), and long digit runs (MRNs, accession numbers).
_LOOKS_LIKE_ID = (
    re.compile(r"^\d+(\.\d+){3,}$"),
    re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"),
    re.compile(r"[0-9a-fA-F]{16,}"),
    re.compile(r"\d{6,}"),
)


def looks_like_identifier(value: str) -> bool:
    """True for strings shaped like a UID, UUID, pseudonym or record number."""
    return any(p.search(value) for p in _LOOKS_LIKE_ID)


def bounded_label(value: object, *, missing: str = "unknown") -> str:
    """A label value that is short, printable and never an identifier or URL ("other" else)."""
    if value is None or value == "":
        return missing
    text = str(value)
    # "://" : a URL or DSN (which may carry a password) is never a label value.
    if not _SAFE.match(text) or looks_like_identifier(text) or "://" in text:
        return OTHER
    return text


class LabelBudget:
    """First-come label values per label name, up to a cap; later values are "other".

    Process-wide for the in-process instruments (a Counter's label sets live as long as the
    process), so a long run with many odd model names stays within the budget.
    """

    def __init__(self, limit: int = MAX_VALUES_PER_LABEL) -> None:
        self._limit = limit
        self._seen: dict[str, set[str]] = {}
        self._lock = threading.Lock()

    def __call__(self, label: str, value: object) -> str:
        text = bounded_label(value)
        with self._lock:
            seen = self._seen.setdefault(label, set())
            if text in seen:
                return text
            if len(seen) >= self._limit:
                return OTHER
            seen.add(text)
            return text


label_budget = LabelBudget()


def stratum_kind(value: object) -> str:
    text = str(value or "all").lower()
    return text if text in STRATUM_KINDS else OTHER


def incident_label(value: object) -> str:
    """An incident id as a label: radwatch's own integer key, never text from an event.

    Kept apart from `bounded_label`, whose record-number rule (six digits or more) would
    turn incident 100000 and later into "other" and merge them into one alert.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return OTHER
    return str(value)


# -- ingest instruments (this process's own) ------------------------------------------------------

worker_events = Counter(
    WORKER_EVENTS, "Events this process stored in PostgreSQL (new rows only).", ["kind"]
)
worker_dead_letters = Counter(
    WORKER_DEAD_LETTERS, "Records this process dead-lettered, by reason code.", ["reason"]
)
worker_batch_seconds = Histogram(
    WORKER_BATCH_SECONDS,
    "Seconds from a parsed batch to its durable write and offset commit, in this process.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# What a listener received and did with it. dicom: images kept, results published, SRs
# dead-lettered; reports (HL7 v2 and FHIR): accepted messages, final and corrected reports,
# label events published, preliminary or finding-less reports, refusals for a broker outage,
# and dead letters, with their reason code (a closed set) in `reason`.
listener_events = Counter(
    LISTENER_EVENTS,
    "What this listener received and did with it, by outcome (dead letters by reason code).",
    ["listener", "outcome", "reason"],
)


def count_listener(listener: str, what: str, n: int = 1) -> None:
    """Count `n` of a listener's outcome; "dead_letter:REASON" counts a dead letter by reason."""
    outcome, _, reason = what.partition(":")
    listener_events.labels(listener, outcome, label_budget("reason", reason) if reason else "").inc(
        n
    )


consumer_lag = Gauge(
    CONSUMER_LAG, "Records on the topic not yet committed by the consumer group.", ["topic"]
)
