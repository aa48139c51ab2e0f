"""`radwatch simulate`: publish the synthetic hospital's events to Kafka."""

from __future__ import annotations

import argparse
import json

from collectors import simulator
from collectors.kafka_io import make_producer
from monitor.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "simulate",
        help="publish synthetic hospital events",
        description="Example: radwatch simulate --events 1000 --seed 7",
    )
    parser.add_argument("--events", type=int, required=True, help="number of studies")
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=_simulate)


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.runtime import kafka_options, resolve_endpoints

    endpoints = resolve_endpoints(settings)
    producer = make_producer(kafka_options(settings, endpoints, client_id="radwatch-simulate"))
    try:
        n_inf, n_lab = simulator.publish(
            producer, simulator.generate(args.events, seed=args.seed),
            settings.inference_topic, settings.label_topic,
        )  # fmt: skip
    finally:
        producer.close()
    print(json.dumps({"inferences_published": n_inf, "labels_published": n_lab}))
    return 0
