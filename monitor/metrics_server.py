"""The HTTP edge towards Prometheus and Alertmanager: /metrics, the alert webhook, /healthz.

Serves a prometheus-client registry (the in-process ingest instruments plus the
scrape-time DatabaseCollector) on RADWATCH_METRICS_ADDR, accepts Alertmanager's webhook
(monitor.alert_webhook), and samples the consumer group's Kafka lag into a gauge on a
background thread (asking Kafka at every scrape would make scrapes slow and flaky).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

from collectors.kafka_io import KafkaOptions, consumer_lag
from monitor import alert_webhook, metrics
from monitor.metrics_collector import DatabaseCollector

log = logging.getLogger(__name__)


class MetricsServerError(RuntimeError):
    """The metrics address is malformed or cannot be bound."""


def parse_addr(addr: str) -> tuple[str, int]:
    """`host:port` (or `:port`, or `[::1]:port`) → (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise MetricsServerError(f"metrics address must be HOST:PORT, got {addr!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def build_registry(database_url: str, *, registry: CollectorRegistry | None = None
                   ) -> tuple[CollectorRegistry, DatabaseCollector]:  # fmt: skip
    """The registry to serve: the process's instruments (default) plus the database reader."""
    target = REGISTRY if registry is None else registry
    collector = DatabaseCollector(database_url)
    target.register(collector)
    return target, collector


class MetricsServer:
    """A threaded HTTP server; `start()` returns at once, `stop()` shuts it down."""

    def __init__(
        self,
        addr: str,
        registry: CollectorRegistry,
        *,
        webhook: alert_webhook.AlertWebhook | None = None,
    ) -> None:
        self.registry = registry
        self.webhook = webhook
        host, port = parse_addr(addr)
        try:
            self._httpd = ThreadingHTTPServer((host, port), _handler_for(self))
        except OSError as exc:
            raise MetricsServerError(f"cannot listen on {addr}: {exc.strerror}") from exc
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="metrics-http",
                                        daemon=True)  # fmt: skip

    @property
    def address(self) -> str:
        host, port = self._httpd.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        return f"{host}:{port}"

    def start(self) -> MetricsServer:
        self._thread.start()
        log.info("serving /metrics%s on http://%s", " and the Alertmanager webhook"
                 if self.webhook else "", self.address)  # fmt: skip
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)


def _handler_for(server: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._reply(200, encoder(server.registry), content_type)
            elif path in ("/healthz", "/"):
                self._reply(200, b"ok\n", "text/plain; charset=utf-8")
            else:
                self._reply(404, b"not found\n", "text/plain; charset=utf-8")

        def do_POST(self) -> None:  # noqa: N802
            if self.path.split("?", 1)[0] != alert_webhook.PATH or server.webhook is None:
                self._reply(404, b"not found\n", "text/plain; charset=utf-8")
                return
            length = int(self.headers.get("Content-Length") or 0)
            if length > alert_webhook.MAX_BODY_BYTES:
                self._json(413, {"error": "payload too large"})
                return
            try:
                status, reply = server.webhook.handle(self.rfile.read(length))
            except Exception as exc:
                # Logged with its cause and answered 500, so Alertmanager retries the call.
                log.exception("recording an Alertmanager notification failed")
                status, reply = 500, {"error": type(exc).__name__}
            self._json(status, reply)

        def _json(self, status: int, body: dict[str, Any]) -> None:
            self._reply(status, json.dumps(body).encode() + b"\n", "application/json")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                # The scraper gave up (its scrape_timeout passed): it shows as a failed
                # scrape in Prometheus (`up` 0); nothing to answer any more.
                log.warning("client went away before the %s reply was sent (scrape timeout "
                            "shorter than the scrape?)", self.path)  # fmt: skip

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


class LagSampler:
    """Samples the consumer group's lag per topic into `radwatch_consumer_lag` periodically."""

    def __init__(self, kafka: KafkaOptions, topics: Sequence[str], *, interval: float = 15.0,
                 sample: Callable[..., Any] = consumer_lag) -> None:  # fmt: skip
        self._kafka = kafka
        self._topics = list(topics)
        self._interval = interval
        self._sample = sample
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lag-sampler", daemon=True)
        self._failing = False

    def start(self) -> LagSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def sample_once(self) -> None:
        lag = self._sample(self._kafka, self._topics)
        for topic in self._topics:
            parts = lag.get(topic, {})
            total = sum(int(v.get("lag") or 0) for v in parts.values())
            metrics.consumer_lag.labels(metrics.bounded_label(topic)).set(total)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample_once()
                if self._failing:
                    log.info("consumer lag readable again")
                self._failing = False
            except Exception as exc:
                # Kafka briefly unreachable: keep the last value, say so once, try again.
                if not self._failing:
                    log.warning("cannot read consumer lag (%s: %s); retrying every %.0fs",
                                type(exc).__name__, exc, self._interval)  # fmt: skip
                self._failing = True
            self._stop.wait(self._interval)
