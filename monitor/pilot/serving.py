"""The HTTP side of a running radwatch: what `radwatch metrics`, `run` and `collect` serve.

Assembles monitor/metrics/ (the server, the scrape-time database collector, the Kafka lag
sampler, the web config) and the Alertmanager webhook (monitor/alerts/webhook.py) from the
settings. The webhook is off unless a token is set: an open one would let anyone write the
audit trail.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from monitor.config import Settings
from monitor.errors import UsageError

if TYPE_CHECKING:  # the commands that call these register on every `radwatch` start
    from monitor.metrics.server import MetricsServer
    from monitor.metrics.web_config import WebConfig
    from monitor.services.runtime import Endpoints

log = logging.getLogger(__name__)


def start_metrics(settings: Settings, endpoints: Endpoints, *, addr: str | None = None,
                  lag_interval: float = 15.0, webhook: bool = True) -> list:  # fmt: skip
    """Serve /metrics (and the webhook) and sample the consumer lag; returns the things to
    stop, in order (each has `stop` or `close`). `addr` defaults to RADWATCH_METRICS_ADDR."""
    from monitor.alerts.webhook import PATH, AlertWebhook
    from monitor.metrics.server import LagSampler, MetricsServer, MetricsServerError, build_registry
    from monitor.services.runtime import kafka_options

    if lag_interval <= 0:
        raise UsageError("--lag-interval must be positive")
    web_config = _web_config(settings)
    alert_webhook = None
    if not webhook:
        log.info("Alertmanager webhook off (--no-webhook)")
    elif not settings.webhook_token:
        # Off rather than open: an unauthenticated webhook lets anyone write the audit trail.
        log.warning("Alertmanager webhook OFF: no RADWATCH_WEBHOOK_TOKEN or "
                    "RADWATCH_WEBHOOK_TOKEN_FILE set; POST %s answers 403", PATH)  # fmt: skip
    else:
        alert_webhook = AlertWebhook(endpoints.database_url, token=settings.webhook_token)
    registry, collector = build_registry(endpoints.database_url)
    try:
        server = MetricsServer(addr or settings.metrics_addr, registry, webhook=alert_webhook,
                               web_config=web_config)  # fmt: skip
    except MetricsServerError as exc:
        collector.close()
        raise UsageError(str(exc)) from exc
    server.start()
    print(f"metrics: {server.scheme}://{server.address}/metrics", flush=True)
    sampler = LagSampler(
        kafka_options(settings, endpoints, client_id="radwatch-metrics"),
        [settings.inference_topic, settings.label_topic],
        interval=lag_interval,
    ).start()
    return [sampler, server, collector]


def stop_all(running: list) -> None:
    """Stop what `start_metrics` started, in its order."""
    for thing in running:
        (thing.stop if hasattr(thing, "stop") else thing.close)()


def serve_process_metrics(settings: Settings, addr: str) -> MetricsServer:
    """Serve only this process's instruments (an ingest worker's events, batch latency, dead
    letters) on `addr`: state in PostgreSQL is `radwatch metrics`'s job. Returns the started
    server (call `stop`)."""
    from prometheus_client import REGISTRY

    from monitor.metrics.server import MetricsServer, MetricsServerError

    try:
        return MetricsServer(addr, REGISTRY, web_config=_web_config(settings)).start()
    except MetricsServerError as exc:
        raise UsageError(str(exc)) from exc


def _web_config(settings: Settings) -> WebConfig | None:
    """Basic auth and TLS from RADWATCH_METRICS_WEB_CONFIG, or None (plain HTTP)."""
    from monitor.metrics.web_config import load_web_config

    return load_web_config(settings.metrics_web_config) if settings.metrics_web_config else None
