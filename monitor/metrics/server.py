"""The HTTP edge towards Prometheus and Alertmanager: /metrics, the alert webhook, /healthz.

Serves a prometheus-client registry (the in-process ingest instruments plus the
scrape-time DatabaseCollector) on RADWATCH_METRICS_ADDR, accepts Alertmanager's webhook
(monitor.alerts.webhook), and samples the consumer group's Kafka lag into a gauge on a
background thread (asking Kafka at every scrape would make scrapes slow and flaky).

The server is reachable by whoever can reach the port, so it is built to survive them:
connections are read by one asyncio loop (an idle or slow client costs a socket, not a
thread), each request must arrive whole within READ_TIMEOUT_S, bodies are capped without
trusting Content-Length, at most MAX_CONNECTIONS are held (the oldest one still sending
its request is dropped for a new one, so a flood of idle sockets cannot lock Prometheus
out), and the work itself (scrapes, webhook writes) runs on a pool of WORKERS threads.
`/metrics` can require basic auth and TLS (monitor.metrics.web_config); the webhook requires its
bearer token before its body is read.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

from collectors.kafka_io import KafkaOptions, consumer_lag
from monitor.alerts import webhook as alert_webhook
from monitor.errors import RadwatchError
from monitor.metrics import names
from monitor.metrics.scrape import DatabaseCollector
from monitor.metrics.web_config import BasicAuth, WebConfig

log = logging.getLogger(__name__)

READ_TIMEOUT_S = 10.0  # the whole request (line, headers, body) must arrive within this
WRITE_TIMEOUT_S = 30.0  # a reader that does not take the reply is dropped
MAX_CONNECTIONS = 256  # held at once; beyond, the oldest still-sending one is dropped
WORKERS = 4  # threads that scrape or record (the only threads requests ever use)
MAX_HEADER_BYTES = 16_384
TEXT = "text/plain; charset=utf-8"
WEBHOOK_OFF = (
    "the Alertmanager webhook is off here: radwatch metrics / radwatch run serve it "
    "when RADWATCH_WEBHOOK_TOKEN (or RADWATCH_WEBHOOK_TOKEN_FILE) is set"
)
_CONTENT_LENGTH = re.compile(r"^[0-9]{1,12}$")
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")  # RFC 9110 token (methods, names)


class MetricsServerError(RadwatchError, RuntimeError):
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


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: Mapping[str, str]  # names lower-cased
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, doc: Mapping[str, Any], **kw: Any) -> Response:
        return cls(status, json.dumps(doc).encode() + b"\n", "application/json", **kw)


class _Refused(Exception):
    """The request is answered (4xx) before any handler runs."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


@dataclass
class _Conn:
    writer: asyncio.StreamWriter
    reading: bool = True  # still sending its request: may be dropped for a newer connection
    opened: float = field(default_factory=time.monotonic)


class MetricsServer:
    """An HTTP server on its own thread; `start()` returns at once, `stop()` shuts it down."""

    def __init__(
        self,
        addr: str,
        registry: CollectorRegistry,
        *,
        webhook: alert_webhook.AlertWebhook | None = None,
        web_config: WebConfig | None = None,
        max_connections: int = MAX_CONNECTIONS,
        read_timeout: float = READ_TIMEOUT_S,
        workers: int = WORKERS,
    ) -> None:
        self.registry = registry
        self.webhook = webhook
        self.web_config = web_config
        self._auth: BasicAuth | None = web_config.checker() if web_config else None
        self._max_connections = max_connections
        self._read_timeout = read_timeout
        self._max_body = alert_webhook.MAX_BODY_BYTES
        host, port = parse_addr(addr)
        try:
            info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                      flags=socket.AI_PASSIVE)[0]  # fmt: skip
            self._sock = socket.create_server(info[4][:2], family=info[0], backlog=128)
        except OSError as exc:
            raise MetricsServerError(f"cannot listen on {addr}: "
                                     f"{exc.strerror or type(exc).__name__}") from exc  # fmt: skip
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="metrics")
        self._conns: dict[int, _Conn] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._last_full_warning = 0.0
        self._thread = threading.Thread(target=self._main, name="metrics-http", daemon=True)

    @property
    def address(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    @property
    def scheme(self) -> str:
        return "https" if self.web_config and self.web_config.tls else "http"

    @property
    def connections(self) -> int:
        return len(self._conns)

    def start(self) -> MetricsServer:
        self._thread.start()
        self._ready.wait(10)
        protected = []
        if self._auth:
            protected.append("basic auth")
        if self.web_config and self.web_config.tls:
            protected.append("TLS")
        log.info("serving /metrics%s on %s://%s%s", " and the Alertmanager webhook"
                 if self.webhook else "", self.scheme, self.address,
                 f" ({' and '.join(protected)})" if protected else "")  # fmt: skip
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout=10)
        self._sock.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the asyncio side: accept, read with limits, hand over, write ------------------------

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        context = self.web_config.ssl_context if self.web_config else None
        server = await asyncio.start_server(
            self._client, sock=self._sock, ssl=context, limit=MAX_HEADER_BYTES,
            ssl_handshake_timeout=self._read_timeout if context else None,
        )  # fmt: skip
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            for conn in list(self._conns.values()):
                conn.writer.transport.abort()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._admit():
            writer.transport.abort()
            return
        conn = _Conn(writer)
        self._conns[id(conn)] = conn
        early = False  # answered from the headers alone: the body may still be arriving
        try:
            try:
                async with asyncio.timeout(self._read_timeout):
                    request = await self._read(reader)
            except _Refused as refused:
                response, early = refused.response, True
            except TimeoutError:
                log.debug("dropped a client that did not send its request within %.0fs",
                          self._read_timeout)  # fmt: skip
                return
            except (asyncio.IncompleteReadError, ConnectionError, OSError):
                return  # went away (or was dropped for a newer connection)
            else:
                conn.reading = False
                assert self._loop is not None
                response = await self._loop.run_in_executor(self._pool, self.handle, request)
            conn.reading = False
            await self._write(writer, response)
            if early:
                await self._linger(reader, writer)
        except Exception:  # noqa: BLE001 (one connection's failure must not stop the server)
            log.exception("metrics HTTP connection failed")
        finally:
            self._conns.pop(id(conn), None)
            writer.close()

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Half-close, then discard a little of what the client still sends: closing a socket
        with unread input resets it, and the reset can destroy the answer just written."""
        if not writer.can_write_eof():
            return
        writer.write_eof()
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            async with asyncio.timeout(1.0):
                for _ in range(16):
                    if not await reader.read(MAX_HEADER_BYTES):
                        break

    def _admit(self) -> bool:
        if len(self._conns) < self._max_connections:
            return True
        # Full: drop the oldest connection still sending its request (an idle or trickling
        # client); a request being answered is never dropped.
        idle = [c for c in self._conns.values() if c.reading]
        now = time.monotonic()
        if now - self._last_full_warning > 60:
            self._last_full_warning = now
            log.warning("metrics server holds %d connections (the limit); dropping %s",
                        len(self._conns), "the oldest idle one" if idle else "new ones")  # fmt: skip
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.opened)
        oldest.writer.transport.abort()
        self._conns = {k: c for k, c in self._conns.items() if c is not oldest}
        return True

    async def _read(self, reader: asyncio.StreamReader) -> Request:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as exc:
            raise _Refused(Response(431, b"request headers too large\n")) from exc
        method, path, headers = _parse_head(head)
        early = self._before_body(method, path, headers)
        if early is not None:
            raise _Refused(early)
        if "transfer-encoding" in headers:
            # Chunked bodies have no length up front; Alertmanager and Prometheus never send them.
            raise _Refused(Response(411, b"a Content-Length is required (no chunked bodies)\n"))
        length_text = headers.get("content-length")
        if length_text is None:
            if method == "POST":
                raise _Refused(Response(411, b"a Content-Length is required\n"))
            return Request(method, path, headers)
        if not _CONTENT_LENGTH.match(length_text):
            raise _Refused(Response(400, b"malformed Content-Length\n"))
        length = int(length_text)
        if length > self._max_body:
            raise _Refused(Response.json(413, {"error": f"payload larger than {self._max_body} "
                                                        "bytes"}))  # fmt: skip
        body = await reader.readexactly(length) if length else b""
        return Request(method, path, headers, body)

    def _before_body(self, method: str, path: str, headers: Mapping[str, str]
                     ) -> Response | None:  # fmt: skip
        """Answers that need no body: wrong method, webhook off, webhook token wrong."""
        if method == "POST":
            if path != alert_webhook.PATH:
                return Response(404, b"not found\n")
            if self.webhook is None:
                return Response.json(403, {"error": WEBHOOK_OFF})
            if not self.webhook.authorized(headers.get("authorization")):
                # Refused before its body is read: an anonymous caller costs nothing.
                log.warning("refused an Alertmanager webhook call without a valid bearer token")
                return Response.json(401, {"error": "a valid bearer token is required"},
                                     headers=(("WWW-Authenticate", 'Bearer realm="radwatch"'),))  # fmt: skip
            return None
        if method != "GET":
            return Response(405, b"method not allowed\n", headers=(("Allow", "GET, POST"),))
        return None

    async def _write(self, writer: asyncio.StreamWriter, response: Response) -> None:
        phrase = HTTPStatus(response.status).phrase
        lines = [f"HTTP/1.1 {response.status} {phrase}",
                 f"Content-Type: {response.content_type}",
                 f"Content-Length: {len(response.body)}",
                 "Connection: close"]  # fmt: skip
        extra = dict(self.web_config.headers) if self.web_config else {}
        extra.update(response.headers)
        lines += [f"{k}: {v}" for k, v in extra.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body)
        try:
            async with asyncio.timeout(WRITE_TIMEOUT_S):
                await writer.drain()
        except (TimeoutError, ConnectionError, OSError):
            # The scraper gave up (its scrape_timeout passed): it shows as a failed scrape in
            # Prometheus (`up` 0); nothing to answer any more.
            log.warning("client went away before the reply was sent (scrape timeout shorter "
                        "than the scrape?)")  # fmt: skip

    # -- the worker side: one request in, one response out ------------------------------------

    def handle(self, request: Request) -> Response:
        try:
            return self._route(request)
        except Exception as exc:
            # Logged with its cause and answered 500: Alertmanager retries, Prometheus shows
            # a failed scrape.
            log.exception("answering %s %s failed", request.method, request.path)
            return Response.json(500, {"error": type(exc).__name__})

    def _route(self, request: Request) -> Response:
        if request.method == "POST":
            assert self.webhook is not None  # checked before the body was read
            status, reply = self.webhook.handle(request.body)
            return Response.json(status, reply)
        if request.path == "/metrics":
            if self._auth is not None and not self._auth.check(
                request.headers.get("authorization")
            ):
                return Response(401, b"unauthorized\n",
                                headers=(("WWW-Authenticate", 'Basic realm="radwatch"'),))  # fmt: skip
            encoder, content_type = choose_encoder(request.headers.get("accept", ""))
            return Response(200, encoder(self.registry), content_type)
        if request.path in ("/healthz", "/"):
            # Open with basic auth on, as exporters leave their health checks to probes.
            return Response(200, b"ok\n")
        return Response(404, b"not found\n")


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """Request line and headers (HTTP/1.0 or 1.1); anything odd is a 400."""
    bad = _Refused(Response(400, b"malformed request\n"))
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover (latin-1 decodes every byte)
        raise bad from None
    line, *header_lines = text[:-4].split("\r\n")
    parts = line.split(" ")
    if len(parts) != 3 or not _TOKEN.match(parts[0]) or parts[2] not in ("HTTP/1.0", "HTTP/1.1"):
        raise bad
    method, target = parts[0], parts[1]
    if not target.startswith("/"):
        raise bad
    headers: dict[str, str] = {}
    for raw in header_lines:
        name, sep, value = raw.partition(":")
        # No folded lines, no space before the colon (request smuggling shapes: RFC 9112 §5).
        if not sep or not _TOKEN.match(name):
            raise bad
        key = name.lower()
        if key in headers and key in ("content-length", "transfer-encoding", "authorization",
                                      "host"):  # fmt: skip
            raise bad
        headers[key] = value.strip(" \t")
    return method, target.split("?", 1)[0], headers


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
            names.consumer_lag.labels(names.label_budget("topic", topic)).set(total)

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
