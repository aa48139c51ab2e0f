"""`radwatch status [--json]`: counts, consumer lag, open alerts, references."""

from __future__ import annotations

import argparse
import json

from monitor.config import Settings
from monitor.status import collect_status


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "status", help="counts, consumer lag, alerts", description="Example: radwatch status --json"
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=_status)


def _status(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.services.runtime import kafka_options, resolve_endpoints

    # Read-only: nothing is started or migrated; a stopped service is one line, exit 2.
    endpoints = resolve_endpoints(settings, read_only=True)
    status = collect_status(
        endpoints.database_url,
        kafka_options(settings, endpoints, client_id="radwatch-status", one_shot=True),
        [settings.inference_topic, settings.label_topic],
    )
    if args.json:
        print(json.dumps(status, indent=2, default=str))
        return 0
    print(f"inferences stored: {status['inferences_stored']}")
    print(f"labels stored:     {status['labels_stored']}")
    print(f"dead-lettered:     {status['dead_lettered']}  {status['dead_letter_reasons'] or ''}")
    print(f"consumer lag:      {status['consumer_lag_total']}")
    for name, info in status["models"].items():
        print(f"model {name}: {info['inferences']} inferences, {info['first']} .. {info['last']}")
        ref = info["reference"]
        print(f"  reference: {ref['id']} ({ref['events']} events, {ref['content_hash'][:12]})"
              if ref else "  reference: none (collected, not tested for drift)")  # fmt: skip
        if info.get("images_parked"):
            print(f"  images parked:  {info['images_parked']} (PACS unreachable; run "
                  "`radwatch embed --parked` once it answers)")  # fmt: skip
        for component, error_class in info.get("failing", {}).items():
            print(f"  {component} pass FAILING ({error_class}); the other models go on")
    print(f"open alerts:       {len(status['open_alerts'])}")
    for alert in status["open_alerts"]:
        print(f"  #{alert['id']} {alert['model']} {alert['signal']} at {alert['stratum']} "
              f"({alert['state']} since {alert['opened_at']})")  # fmt: skip
    return 0
