"""`radwatch simulate`: the synthetic hospital writes DICOM files and publishes its events.

Input edge of a demo or test run (DESIGN.md §9): collectors.simulator.stream renders studies, runs
the deployed CNN and yields events; this command sends them to Kafka at a rate, with progress.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

from collectors.kafka_io import make_producer
from collectors.simulator.scenarios import SCENARIOS  # light: no torch at parser build
from monitor.commands.arguments import non_negative_int, positive_float, positive_int
from monitor.commands.output import add_json_flag, emit, key_values
from monitor.commands.progress import tracked
from monitor.config import Settings
from monitor.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "simulate",
        help="write synthetic DICOM studies and publish their inference and label events",
        description=(
            "The synthetic hospital: chest-radiograph phantoms from several sites and "
            "vendors, a deployed CNN's scores and embeddings, delayed radiologist labels. "
            "Scenarios: " + ", ".join(SCENARIOS) + ". "
            "Example: radwatch simulate --events 2000 --scenario inversion_bug --onset 1000 "
            "--seed 7 --rate 200"
        ),
    )
    parser.add_argument("--events", type=positive_int, required=True, help="number of studies")
    parser.add_argument("--rate", type=positive_float,
                        help="inference events per second (default: max)")  # fmt: skip
    parser.add_argument("--scenario", default="none", choices=list(SCENARIOS))
    parser.add_argument("--onset", type=non_negative_int, help="study index where the scenario starts "
                        "(default: half-way)")  # fmt: skip
    parser.add_argument("--severity", type=float, default=1.0, help="in (0, 1]; default 1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images-dir", type=Path,
                        help="where DICOM files are written (default: DATA_DIR/images)")  # fmt: skip
    parser.add_argument("--label-share", type=float, default=0.7,
                        help="share of studies that get a radiologist label (default 0.7)")  # fmt: skip
    parser.add_argument("--label-delay-hours", type=float, default=6.0,
                        help="labels arrive this much (+0–50%%) after the study")  # fmt: skip
    parser.add_argument("--no-tags", action="store_true",
                        help="omit the event's dicom block: the collector reads the files")  # fmt: skip
    add_json_flag(parser)
    parser.set_defaults(handler=_simulate)


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.services.runtime import kafka_options, resolve_endpoints

    # --events, --rate and --onset are checked by their argument types.
    if not 0.0 < args.severity <= 1.0:
        raise UsageError("--severity must be in (0, 1]")
    if not 0.0 <= args.label_share <= 1.0:
        raise UsageError("--label-share must be in [0, 1]")
    if not 0.0 <= args.label_delay_hours < float("inf"):
        raise UsageError("--label-delay-hours must be 0 or more")
    images_dir = args.images_dir or settings.data_dir / "images"
    # One-shot: an absent broker is one line and exit 2 within seconds, not a wait; checked
    # before torch is imported, which takes seconds of its own.
    endpoints = resolve_endpoints(settings, retry=False)
    from collectors.simulator import stream  # imports torch and pydicom: only when it runs

    producer = make_producer(
        kafka_options(settings, endpoints, client_id="radwatch-simulate", one_shot=True)
    )
    try:
        with tracked("simulate", total=args.events, unit="studies") as progress:
            studies = stream.generate(
                args.events, seed=args.seed, label_share=args.label_share,
                scenario=args.scenario, onset=args.onset, severity=args.severity,
                images_dir=images_dir, label_delay=timedelta(hours=args.label_delay_hours),
                include_tags=not args.no_tags,
            )  # fmt: skip
            n_inf, n_lab = stream.publish(
                producer, studies, settings.inference_topic, settings.label_topic,
                rate=args.rate, progress=lambda n, labels: progress.update(n, labels=labels),
            )  # fmt: skip
    finally:
        producer.close()
    onset = args.events // 2 if args.onset is None else args.onset
    doc = {
        "inferences_published": n_inf, "labels_published": n_lab, "scenario": args.scenario,
        "onset": onset if args.scenario != "none" else None, "severity": args.severity,
        "seed": args.seed,
        "images_dir": str(stream.image_dir_for(images_dir, args.seed, args.scenario)),
    }  # fmt: skip
    emit(doc, args.json, lambda d: key_values(d.items(), title="published"))
    return 0
