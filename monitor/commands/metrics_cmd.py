"""`radwatch metrics`: serve Prometheus /metrics (and the Alertmanager webhook) until stopped."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from monitor.config import Settings

log = logging.getLogger(__name__)


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


def start_metrics(args: argparse.Namespace, settings: Settings, endpoints) -> list:
    """Start the HTTP server and the lag sampler; returns the things to stop, in order."""
    from monitor.alerts.webhook import PATH, AlertWebhook
    from monitor.errors import UsageError
    from monitor.metrics.server import LagSampler, MetricsServer, MetricsServerError, build_registry
    from monitor.metrics.web_config import load_web_config
    from monitor.services.runtime import kafka_options

    if args.lag_interval <= 0:
        raise UsageError("--lag-interval must be positive")
    web_config = load_web_config(settings.metrics_web_config) if settings.metrics_web_config \
        else None  # fmt: skip
    webhook = None
    if args.no_webhook:
        log.info("Alertmanager webhook off (--no-webhook)")
    elif not settings.webhook_token:
        # Off rather than open: an unauthenticated webhook lets anyone write the audit trail.
        log.warning("Alertmanager webhook OFF: no RADWATCH_WEBHOOK_TOKEN or "
                    "RADWATCH_WEBHOOK_TOKEN_FILE set; POST %s answers 403", PATH)  # fmt: skip
    else:
        webhook = AlertWebhook(endpoints.database_url, token=settings.webhook_token)
    registry, collector = build_registry(endpoints.database_url)
    try:
        server = MetricsServer(args.addr or settings.metrics_addr, registry, webhook=webhook,
                               web_config=web_config)  # fmt: skip
    except MetricsServerError as exc:
        collector.close()
        raise UsageError(str(exc)) from exc
    server.start()
    print(f"metrics: {server.scheme}://{server.address}/metrics", flush=True)
    sampler = LagSampler(
        kafka_options(settings, endpoints, client_id="radwatch-metrics"),
        [settings.inference_topic, settings.label_topic],
        interval=args.lag_interval,
    ).start()
    return [sampler, server, collector]


def _metrics(args: argparse.Namespace, settings: Settings) -> int:
    from monitor.services.runtime import resolve_endpoints

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    endpoints = resolve_endpoints(settings, prepare=False)
    running = start_metrics(args, settings, endpoints)
    stop.wait()
    for thing in running:
        (thing.stop if hasattr(thing, "stop") else thing.close)()
    return 0
