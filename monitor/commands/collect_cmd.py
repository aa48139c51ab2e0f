"""`radwatch collect`: run one collector worker of the consumer group."""

from __future__ import annotations

import argparse
import json

from collectors.pseudonym import Pseudonymiser
from monitor.collector import Collector, CollectorConfig
from monitor.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "collect",
        help="consume inferences and labels into PostgreSQL",
        description="One worker of the consumer group. Example: radwatch collect --until-idle 10",
    )
    parser.add_argument("--until-idle", type=float, metavar="SECONDS",
                        help="exit 0 after this many seconds without new records")  # fmt: skip
    parser.set_defaults(handler=_collect)


def build_collector(settings: Settings) -> Collector:
    from monitor.runtime import kafka_options, resolve_endpoints

    endpoints = resolve_endpoints(settings)
    config = CollectorConfig(
        kafka=kafka_options(settings, endpoints, client_id="radwatch-collect"),
        database_url=endpoints.database_url,
        inference_topic=settings.inference_topic,
        label_topic=settings.label_topic,
        deadletter_topic=settings.deadletter_topic,
        max_event_bytes=settings.max_event_bytes,
        batch_size=settings.batch_size,
        poll_timeout_ms=settings.poll_timeout_ms,
    )
    return Collector(config, Pseudonymiser(settings.key_bytes()))


def _collect(args: argparse.Namespace, settings: Settings) -> int:
    collector = build_collector(settings)
    collector.install_signal_handlers()
    stats = collector.run(until_idle=args.until_idle)
    print(json.dumps({"inferences": stats.inferences, "labels": stats.labels,
                      "dead_letters": stats.dead_letters, "batches": stats.batches}))  # fmt: skip
    return 0
