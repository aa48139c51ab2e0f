"""`radwatch demo`: the whole data flow on embedded services with a synthetic hospital.

Read `run_demo` top to bottom: services → the synthetic hospital publishes (collectors/
simulator) → one ingest worker stores the events (monitor/ingest) → the performance watch
(monitor/performance) → a drift reference, detection and alerts (monitor/drift,
monitor/alerts) → the HTML report (monitor/reports) → the demo's own audit trail sealed,
verified and exported (monitor/audit) → its incidents, last. Each step prints what it did;
summary.json, report.html and audit.ndjson go to one folder.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from detectors.false_alarm_budget import FalseAlarmBudget
from monitor.config import Settings
from monitor.safeguards import mask_secrets
from monitor.store import db

if TYPE_CHECKING:
    from monitor.services.runtime import Endpoints

EXIT_OK, EXIT_FINDING = 0, 1


def run_demo(settings: Settings, *, events: int, scenario: str, seed: int, out: Path) -> int:
    """The demo, end to end; 0, or 1 when its audit trail does not verify."""
    from collectors.kafka_io import make_producer
    from monitor.ingest.wiring import build_worker
    from monitor.services.runtime import kafka_options
    from monitor.status import database_counts

    use_embedded = settings.kafka_bootstrap is None or settings.database_url is None
    settings, endpoints = isolated_run(settings)
    url = endpoints.database_url
    from collectors.simulator import stream  # imports torch: after the servers answered

    print(f"services: broker {endpoints.bootstrap}, PostgreSQL {mask_secrets(url)}")
    # The synthetic hospital (issue 3): the scenario's studies as DICOM files under the data
    # dir, their inference and (delayed) label events published to the run's topics.
    producer = make_producer(
        kafka_options(settings, endpoints, client_id="radwatch-demo", one_shot=True)
    )
    n_inf, n_lab = stream.publish(
        producer, stream.generate(events, seed=seed, scenario=scenario,
                                  images_dir=settings.data_dir / "images"),
        settings.inference_topic, settings.label_topic,
    )  # fmt: skip
    producer.close()
    print(f"published {n_inf} inferences and {n_lab} labels")
    # One ingest worker stores them, until the topics have been idle for 5 s.
    stats = build_worker(settings).run(until_idle=5)
    print(f"collected {stats.inferences} inferences, {stats.labels} labels, "
          f"{stats.dead_letters} dead letters")  # fmt: skip
    stored = database_counts(url)
    summary: dict[str, Any] = {"published": {"inferences": n_inf, "labels": n_lab},
                               "stored": stored}  # fmt: skip
    # Estimated beside realised performance; a performance alert if harmful (issue 6).
    summary["performance"] = performance_step(url, events=events)
    # A reference on the first part, drift detection, the timeline and alerts (issue 5).
    summary["drift"] = drift_step(
        url, list(stored["models"]), events=events, budget=settings.false_alarm_budget()
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"summary: {out / 'summary.json'}")
    # DIR/report.html for the model with most inferences, and where /metrics would be served
    # (issue 7).
    by_volume = sorted(stored["models"], key=lambda m: -stored["models"][m]["inferences"])
    report_step(settings, url, by_volume, out)
    # The plan it ran under (issue 16): written out as a file and a document, and printed.
    plan_step(settings, url, by_volume[:1], out)
    # LAST (issue 8): seal, verify and export the demo's own audit trail (audit.ndjson), so
    # that it covers every step above.
    verdict = audit_step(settings, url, out)
    if use_embedded:
        from monitor.services import embedded

        data_dir = settings.data_dir.resolve()
        # This run's database is its own (see isolated_run): name it for the follow-up commands.
        print("the embedded broker and PostgreSQL keep running for a look around: "
              f"RADWATCH_DATABASE_URL={mask_secrets(url)} radwatch incidents "
              f"list (*** = the password in {embedded.password_path(data_dir, embedded.APP_USER)}); "
              "`radwatch services down` stops them")  # fmt: skip
    # The last word (issue 15): what to act on, one incident per root cause, not each alert.
    incidents_step(url)
    return verdict


def isolated_run(settings: Settings) -> tuple[Settings, Endpoints]:
    """Each demo run gets its own topics and database, so runs never mix scenarios or data.

    On the embedded server the database is created here; with an external PostgreSQL the
    configured database is used as it is (we do not create databases on a hospital's server).
    """
    from monitor.services import runtime

    run_id = time.strftime("%Y%m%d%H%M%S")
    base = runtime.resolve_endpoints(settings, prepare=False, retry=False)
    changes: dict[str, object] = {
        "inference_topic": f"{settings.inference_topic}.demo{run_id}",
        "label_topic": f"{settings.label_topic}.demo{run_id}",
        "deadletter_topic": f"{settings.deadletter_topic}.demo{run_id}",
        "group_id": f"{settings.group_id}-demo{run_id}",
        "kafka_bootstrap": base.bootstrap,
        "database_url": base.database_url,
    }
    if settings.database_url is None:
        from monitor.services import embedded

        name = f"demo_{run_id}"

        def on(url: str) -> str:
            return url.rsplit("/", 1)[0] + "/" + name

        # The owner login creates and migrates the demo's database (the services' login may
        # do neither); the demo then runs as the services' login, like `radwatch run`.
        owner = embedded.load_state(settings.data_dir.resolve()).owner_database_url
        owner = owner or base.database_url
        with db.connect(owner, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        runtime.migrate_schema(on(owner))
        changes["database_url"] = on(base.database_url)
        # A new database has a new audit trail: its signed checkpoints go to a file of its own,
        # or verification would compare this run's trail with an earlier run's checkpoints.
        if settings.audit.checkpoint_file is None:
            checkpoints = settings.data_dir / f"demo-{run_id}-audit-checkpoints.jsonl"
            changes["audit"] = dataclasses.replace(settings.audit, checkpoint_file=checkpoints)
    isolated = settings.replace(**changes)
    return isolated, runtime.resolve_endpoints(isolated, retry=False)


def performance_step(database_url: str, *, events: int) -> dict[str, Any]:
    """The performance watch with the reference on the first half of the stream (the
    simulator's scenarios start half-way) and windows of an eighth; prints estimated beside
    realised performance and any performance alert; returns a summary."""
    from monitor.performance.evaluation import PerformanceConfig, PerformanceWatchError
    from monitor.performance.summary import format_report
    from monitor.performance.watch import run

    config = PerformanceConfig(window=max(50, events // 8), reference_size=max(100, events // 2))
    print(f"performance: reference = first {config.reference_size} inferences, windows of "
          f"{config.window}")  # fmt: skip
    with db.connect(database_url) as conn:
        try:
            reports = run(conn, config=config)
        except PerformanceWatchError as exc:
            print(f"performance: not evaluated: {exc}")
            return {"error": str(exc)}
    for report in reports:
        print(format_report(report))
    return {
        r.model: {
            "windows": len(r.windows),
            "degraded_windows": [
                w.window.index for w in r.windows
                if any(c.degradation.degraded for c in w.cells)],
            "alert_changes": [c.__dict__ for c in r.alert_changes],
        }
        for r in reports
    }  # fmt: skip


def drift_step(
    database_url: str, models: list[str], *, events: int, budget: FalseAlarmBudget | None = None
) -> dict[str, Any]:
    """A drift reference per model on the first 40% of the stream (the simulator's scenarios
    start half-way), then detection in windows of a tenth; prints a timeline and the alerts.

    The α and persistence are the false-alarm budget's at the stream's volume (the
    simulator's 2,880 studies a day); the online detector is off, as by default.
    """
    from detectors.drift.suite import SuiteConfig
    from monitor.alerts import incidents, lifecycle
    from monitor.drift import reference
    from monitor.drift.scheduler import DetectionConfig, Scheduler

    window = max(50, events // 10)
    first = max(100, int(events * 0.4))
    config = SuiteConfig(calibration_window=window, online=False, min_window=20)
    print(f"drift: reference = first {first} inferences, windows of {window}")
    with db.connect(database_url) as conn:
        for model in models:
            try:
                info = reference.build(conn, model=model, first=first, config=config,
                                       actor="radwatch-demo")  # fmt: skip
            except reference.ReferenceError as exc:
                print(f"drift: {model}: no reference: {exc}")
                continue
            rates = info.calibration.get("false_alarm", {})
            print(f"drift: reference {info.id} for {model}: {info.n_events} events, "
                  f"held-out false-alarm rates {rates}")  # fmt: skip
    detection = DetectionConfig(budget=budget or FalseAlarmBudget())
    with Scheduler(database_url, detection, actor="radwatch-demo") as scheduler:
        run = scheduler.run_once()
    onset_index = events // 2
    for w in run.windows:
        first_idx = first + (w.seq - 1) * window
        marker = "  <- scenario onset" if first_idx <= onset_index < first_idx + w.n_events else ""
        fired = ", ".join(f"{s}@{k}={v}" for k, v, s in w.firing) or "-"
        opened = ", ".join(f"#{c.alert_id} {c.action}" for c in w.changes
                           if c.action != "updated") or ""  # fmt: skip
        print(f"  window {w.seq:>2} events {first_idx:>5}-{first_idx + w.n_events - 1:<5} "
              f"{w.start:%Y-%m-%d %H:%M} drift score {w.drift_score:5.2f}  firing: {fired}"
              f"{'  ALERT ' + opened if opened else ''}{marker}")  # fmt: skip
    with db.connect(database_url) as conn:
        found = lifecycle.list_alerts(conn)
        grouped = incidents.list_incidents(conn, all=True)
    drift_alerts = [a for a in found if not a.signal.startswith("performance")]
    # One line per alert: the incidents, listed last, are what a QA team acts on;
    # `radwatch alerts list` has each alert's full explanation.
    print(f"drift alerts: {len(drift_alerts)} (all alerts: {len(grouped)} incidents, listed last;"
          " details: radwatch alerts list)")  # fmt: skip
    for a in drift_alerts:
        print(f"  #{a.id} {a.signal} at {a.stratum_kind}={a.stratum_value}")
    return {
        "windows": [{"seq": w.seq, "start": w.start, "end": w.end, "n": w.n_events,
                     "drift_score": w.drift_score, "firing": [list(f) for f in w.firing]}
                    for w in run.windows],
        "alerts": [a.as_dict() for a in drift_alerts],
        "incidents": [i.as_dict() for i in grouped],
    }  # fmt: skip


def incidents_step(database_url: str) -> None:
    """The demo's closing lines: its incidents (id, root cause, shift type, statement,
    recommended action), drift and performance alerts grouped by root cause."""
    from monitor.alerts import incidents

    with db.connect(database_url) as conn:
        found = incidents.list_incidents(conn, all=True)
        n_alerts = sum(len(i.alerts) for i in found)
    print(f"incidents: {len(found)} (from {n_alerts} alerts)")
    for i in found:
        print(incidents.format_incident(i))


def plan_step(settings: Settings, database_url: str, models: list[str], out_dir: Path) -> None:
    """The monitoring plan each model ran under (the default plan: none is approved in a
    demo) as DIR/plan.yaml, the file to edit and approve, and DIR/plan.html, the document with
    what it derived and what it cannot see; its summary printed."""
    from monitor.plan.document import dump
    from monitor.reports import plan_document

    with db.connect(database_url) as conn:
        for model in models:
            doc = plan_document.load(conn, model, settings)
            (out_dir / "plan.yaml").write_text(dump(doc.shown.plan))
            plan_document.write(doc, out_dir / "plan.html")
            print("\n".join(doc.shown.lines()))
            print(f"plan: {out_dir / 'plan.yaml'} (edit, then radwatch plan approve --model "
                  f"{model} FILE --by WHO), {out_dir / 'plan.html'}")  # fmt: skip


def report_step(settings: Settings, database_url: str, models: list[str], out_dir: Path) -> None:
    """DIR/report.html for the first model (report-MODEL.html for the others), and where
    /metrics would be served: the demo is non-interactive, so it is not served here."""
    from monitor.reports.model_report import ReportError
    from monitor.reports.writing import write_report

    for i, model in enumerate(models):
        out = out_dir / ("report.html" if i == 0 else f"report-{model}.html")
        try:
            write_report(database_url, settings, model, out)
            print(f"report: {out}")
        except ReportError as exc:
            print(f"report: not written for {model} ({exc})")
    # The password stays in its file, off the screen.
    print(
        f"metrics: RADWATCH_DATABASE_URL={mask_secrets(database_url)} radwatch metrics "
        f"→ http://{settings.metrics_addr}/metrics (radwatch run serves it while collecting)"
    )


def audit_step(settings: Settings, database_url: str, out_dir: Path) -> int:
    """Seal, verify and export the demo's own trail to DIR/audit.ndjson (FHIR AuditEvents);
    EXIT_FINDING when the trail does not verify."""
    from monitor.audit.checkpoint import create_checkpoint
    from monitor.audit.export import export
    from monitor.audit.verify import verify_configured

    with db.connect(database_url) as conn:
        create_checkpoint(conn, settings)
    with db.connect(database_url) as conn:
        result = verify_configured(conn, settings)
    print(result.summary())
    with db.connect(database_url) as conn:
        exported = export(conn, out_dir / "audit.ndjson", fmt="fhir", actor=settings.actor)
    print(f"audit: {exported.rows} FHIR AuditEvents in {exported.path}")
    return EXIT_OK if result.ok else EXIT_FINDING
