"""`radwatch metrics`: serve Prometheus /metrics (and the Alertmanager webhook) until stopped."""

from __future__ import annotations

import argparse
import signal
import threading

from monitor.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "metrics",
        help="serve Prometheus /metrics (and the Alertmanager webhook)",
        description="Serves /metrics on RADWATCH_METRICS_ADDR, with drift, performance and alert "
        "values read from PostgreSQL at scrape time, and POST /alertmanager/webhook when "
        "RADWATCH_WEBHOOK_TOKEN(_FILE) is set (callers send it as a bearer token). "
        "RADWATCH_METRICS_WEB_CONFIG adds basic auth and TLS (exporter-toolkit format). "
        "Example: RADWATCH_METRICS_ADDR=0.0.0.0:9108 radwatch metrics",
    )
    add_server_options(parser)
    parser.set_defaults(handler=_metrics)


def add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--addr", metavar="HOST:PORT",
                        help="listen address (default: RADWATCH_METRICS_ADDR)")  # fmt: skip
    parser.add_argument("--lag-interval", type=float, default=15.0, metavar="SECONDS",
                        help="how often to sample the consumer group's Kafka lag")  # fmt: skip
    parser.add_argument("--no-webhook", action="store_true",
                        help="do not accept Alertmanager's webhook")  # fmt: skip


def _metrics(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.pilot.serving import start_metrics, stop_all
    from monitor.services.runtime import resolve_endpoints

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    endpoints = resolve_endpoints(settings, prepare=False)
    running = start_metrics(settings, endpoints, addr=args.addr, lag_interval=args.lag_interval,
                            webhook=not args.no_webhook)  # fmt: skip
    stop.wait()
    stop_all(running)
    return 0
