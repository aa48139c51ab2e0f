"""FHIR R4 DiagnosticReports POSTed over HTTP → label events (`radwatch hl7-listen --fhir-port P`).

The HTTP door of the FHIR path (DESIGN.md §5b), the same path as `labels import --fhir` after
the body: a DiagnosticReport or a Bundle of them is parsed by collectors.reports_in, labelled
and published by monitor/ingest/report_labels.py; what cannot be used is dead-lettered.

Fenced like the Alertmanager webhook (DESIGN.md §5a): `Authorization: Bearer
<RADWATCH_FHIR_TOKEN>` is checked before the body is read (no token configured: no endpoint),
the body is capped, a slow client is timed out. Answers are FHIR OperationOutcome resources:
200 when every report in the body was published (or ignored as preliminary / saying nothing
of the models' findings), 422 when some or all were refused (each one dead-lettered), 503
with Retry-After when the broker did not acknowledge (nothing dead-lettered; POST again).
Request lines are logged by path only, never a body. With a TLS context
(monitor/ingest/listener_tls.py) it serves HTTPS only: the token and the reports are never
in clear; each connection's handshake runs in its own thread.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kafka.errors import KafkaError

from collectors.reports_in import FhirLimits, ReportError, parse_fhir
from monitor.alerts.webhook import bearer_matches
from monitor.ingest.listener_tls import handshake
from monitor.ingest.report_labels import ReportLabelSink

log = logging.getLogger(__name__)
SOURCE = "fhir-http"
PATHS = frozenset({"/fhir", "/fhir/", "/fhir/DiagnosticReport", "/fhir/Bundle"})
CLIENT_TIMEOUT_S = 30.0
LINGER_S = 2.0  # how long a closed TLS connection waits for the client to stop sending


def outcome(severity: str, code: str, text: str) -> dict[str, Any]:
    """A FHIR R4 OperationOutcome with one issue (hl7.org/fhir/R4/operationoutcome.html)."""
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": severity, "code": code, "diagnostics": text}]}  # fmt: skip


class FhirEndpoint:
    """A threaded HTTP server; `serve_forever()` in one thread, `shutdown()` from another."""

    def __init__(self, sink: ReportLabelSink, token: str, host: str, port: int,
                 limits: FhirLimits, tls: ssl.SSLContext | None = None) -> None:  # fmt: skip
        self.sink, self.token, self.limits, self.tls = sink, token, limits, tls
        self._seq = 0
        self._lock = threading.Lock()
        self._server = _Server((host, port), _Handler)
        self._server.endpoint = self

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"{'https' if self.tls else 'http'}://{host}:{port}/fhir"

    def serve_forever(self) -> None:
        log.info("hl7-listen: FHIR endpoint on %s", self.url)
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self._server.server_close()

    def shutdown(self) -> None:
        self._server.shutdown()

    def accept(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """One POST body → (HTTP status, OperationOutcome). Never raises."""
        with self._lock:
            self._seq += 1
            position = self._seq
        try:
            results = parse_fhir(body, self.limits)
        except ReportError as exc:
            self.sink.dead_letter(SOURCE, body, exc, position=position)
            return 422, outcome("error", "invalid", f"{exc.reason}: {exc.message}")
        published = refused = 0
        try:
            for result in results:
                if isinstance(result, ReportError):
                    self.sink.dead_letter(SOURCE, body, result, position=position)
                    refused += 1
                else:
                    published += self.sink.handle(result).published
        except KafkaError as exc:
            log.warning("hl7-listen: FHIR POST #%d not acknowledged by Kafka (%s)", position,
                        type(exc).__name__)  # fmt: skip
            return 503, outcome("error", "transient", "label store unavailable, POST again")
        if refused:
            return 422, outcome("error", "invalid", f"{refused} of {len(results)} reports refused "
                                "(dead-lettered with their reasons)")  # fmt: skip
        return 200, outcome("information", "informational",
                            f"{len(results)} reports accepted, {published} label events")  # fmt: skip


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    endpoint: FhirEndpoint

    def finish_request(self, request: Any, client_address: Any) -> None:
        """In the connection's thread: the TLS handshake first, when configured."""
        context = self.endpoint.tls
        if context is None:
            return super().finish_request(request, client_address)
        secured = handshake(request, context, self.endpoint.sink.count, "FHIR")
        if secured is None:
            return None
        try:
            return super().finish_request(secured, client_address)
        finally:
            # socketserver then closes the plain socket it accepted, which this one replaced.
            _close_after_answer(secured)


def _close_after_answer(sock: ssl.SSLSocket) -> None:
    """Close once the client has had our answer (a lingering close).

    An answer given before the body was read (401, 413) leaves the body's TLS record unread
    in the kernel (http.client sends headers and body apart; one TLS read takes one record):
    closing then resets the connection, and the reset destroys the answer on its way. So
    the write side is shut (the client reads the answer, then EOF), what the client still
    sends is read and dropped for a moment, then the socket is closed.
    """
    deadline = time.monotonic() + LINGER_S
    try:
        sock.shutdown(socket.SHUT_WR)  # drops TLS: what follows reads the raw socket
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            if not sock.recv(65_536):
                break
    except OSError:
        pass  # gone or timed out: nothing more to wait for
    finally:
        sock.close()


class _Handler(BaseHTTPRequestHandler):
    server_version = "radwatch-fhir"
    timeout = CLIENT_TIMEOUT_S  # socket timeout: a slow client cannot hold a thread for ever

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        endpoint: FhirEndpoint = self.server.endpoint  # type: ignore[attr-defined]
        if self.path.split("?", 1)[0] not in PATHS:
            return self._send(404, outcome("error", "not-found", "POST to /fhir"))
        if not bearer_matches(self.headers.get("Authorization"), endpoint.token):
            return self._send(401, outcome("error", "login", "bearer token required"),
                              {"WWW-Authenticate": "Bearer"})  # fmt: skip
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            return self._send(411, outcome("error", "structure", "Content-Length required"))
        if not 0 <= length <= endpoint.limits.max_line_bytes:
            return self._send(413, outcome("error", "too-costly",
                                           f"body over {endpoint.limits.max_line_bytes} bytes"))  # fmt: skip
        try:
            body = self.rfile.read(length)
        except OSError:
            return None  # timed out or gone: nothing to answer
        if len(body) != length:
            return self._send(400, outcome("error", "structure", "body shorter than declared"))
        try:
            status, doc = endpoint.accept(body)
        except Exception as exc:  # noqa: BLE001 - one request's failure never stops the server
            log.error("hl7-listen: FHIR POST failed (%s)", type(exc).__name__)
            status, doc = 500, outcome("fatal", "exception", "internal error")
        return self._send(status, doc)

    def do_GET(self) -> None:  # noqa: N802
        self._send(405, outcome("error", "not-supported", "POST a DiagnosticReport or Bundle"),
                   {"Allow": "POST"})  # fmt: skip

    def _send(
        self, status: int, doc: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        payload = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json")
        self.send_header("Content-Length", str(len(payload)))
        if status == 503:
            self.send_header("Retry-After", "30")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's signature
        # Not the request line (a query string could carry anything) and never a body.
        log.debug("fhir-http: request from %s", self.address_string())
