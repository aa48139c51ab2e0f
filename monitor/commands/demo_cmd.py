"""`radwatch demo`: the whole system on embedded services with a synthetic hospital."""

from __future__ import annotations

import argparse
import json

from collectors.kafka_io import make_producer
from collectors.simulator.scenarios import SCENARIOS
from monitor.commands.arguments import out_dir, positive_int
from monitor.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo",
        help="run everything end to end on a synthetic hospital",
        description="Example: radwatch demo --events 2000 --scenario new_vendor --out demo-out. "
        "The default scenario, a PACS inverting one scanner's images halfway through, shows "
        "a drift alert and a performance alert after the onset and none before it.",
    )
    parser.add_argument("--events", type=positive_int, default=2000)
    parser.add_argument("--scenario", default="inversion_bug", choices=sorted(SCENARIOS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=out_dir, default="demo-out",
                        help="folder for the outputs, created if missing")  # fmt: skip
    parser.set_defaults(handler=_demo)


def _isolated_run(settings: Settings, resolve_endpoints):
    """Each demo run gets its own topics and database, so runs never mix scenarios or data.

    On the embedded server the database is created here; with an external PostgreSQL the
    configured database is used as it is (we do not create databases on a hospital's server).
    """
    import dataclasses
    import time

    from monitor.services import runtime
    from monitor.store import db

    run_id = time.strftime("%Y%m%d%H%M%S")
    base = resolve_endpoints(settings, prepare=False, retry=False)
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
    return isolated, resolve_endpoints(isolated, retry=False)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.commands.collect_cmd import build_collector
    from monitor.config import mask_secrets
    from monitor.services.runtime import kafka_options, resolve_endpoints
    from monitor.status import database_counts

    use_embedded = settings.kafka_bootstrap is None or settings.database_url is None
    settings, endpoints = _isolated_run(settings, resolve_endpoints)
    from collectors.simulator import stream  # imports torch: after the servers answered

    print(f"services: broker {endpoints.bootstrap}, "
          f"PostgreSQL {mask_secrets(endpoints.database_url)}")  # fmt: skip
    producer = make_producer(
        kafka_options(settings, endpoints, client_id="radwatch-demo", one_shot=True)
    )
    n_inf, n_lab = stream.publish(
        # Step (issue 3): the scenario, and DICOM files under the data dir.
        producer, stream.generate(args.events, seed=args.seed, scenario=args.scenario,
                                     images_dir=settings.data_dir / "images"),
        settings.inference_topic, settings.label_topic,
    )  # fmt: skip
    producer.close()
    print(f"published {n_inf} inferences and {n_lab} labels")
    stats = build_collector(settings).run(until_idle=5)
    print(f"collected {stats.inferences} inferences, {stats.labels} labels, "
          f"{stats.dead_letters} dead letters")  # fmt: skip
    summary = {"published": {"inferences": n_inf, "labels": n_lab},
               "stored": database_counts(endpoints.database_url)}  # fmt: skip
    # Step (issue 6): estimated beside realised performance; a performance alert if harmful.
    from monitor.commands.performance_cmd import demo_step as performance_step

    summary["performance"] = performance_step(endpoints.database_url, events=args.events)
    # Step (issue 5): reference on the first part, drift detection, timeline and alerts.
    from monitor.commands.detect_cmd import demo_step as drift_step

    summary["drift"] = drift_step(endpoints.database_url, events=args.events)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"summary: {args.out / 'summary.json'}")
    # Step (issue 7): DIR/report.html, and where /metrics would be served.
    from monitor.commands.report_cmd import demo_step as report_step

    report_step(settings, endpoints.database_url, args.out)
    # LAST step (issue 8): seal, verify and export the demo's own audit trail (audit.ndjson).
    from monitor.commands.audit_cmd import demo_step

    verdict = demo_step(settings, endpoints.database_url, args.out)
    if use_embedded:
        from monitor.services import embedded

        data_dir = settings.data_dir.resolve()
        # This run's database is its own (see _isolated_run): name it for the follow-up commands.
        print("the embedded broker and PostgreSQL keep running for a look around: "
              f"RADWATCH_DATABASE_URL={mask_secrets(endpoints.database_url)} radwatch alerts "
              f"list (*** = the password in {embedded.password_path(data_dir, embedded.APP_USER)}); "
              "`radwatch services down` stops them")  # fmt: skip
    return verdict
