"""`radwatch hl7-listen`'s server: HL7 v2 ORU^R01 over MLLP → label events, one ACK each.

The hospital edge for radiologists' reports (DESIGN.md §5b): the interface engine connects
over TCP and sends MLLP blocks (HL7 v2.5 Appendix C); each message is parsed
(collectors.reports_in), labelled and published by monitor/ingest/report_labels.py, and
answered with an original-mode ACK (§2.9.2):
- AA only after every derived label event is acknowledged by the broker (or the report is
  preliminary, or says nothing about the models' findings: both counted, nothing published);
- AE with an ERR segment when the content cannot be used, AR when the message is refused as a
  whole; both dead-lettered with their reason (hash and size only);
- AR with ERR 207 (application internal error) when the broker does not acknowledge: the
  sender keeps the message and resends, nothing is dead-lettered (not the message's fault).
A threaded socketserver: one thread per connection (interface engines keep one or a few
long-lived connections), bounded in number, each with an idle timeout and MLLP's size cap.
Binds to loopback unless told otherwise; `shutdown()` (SIGTERM in the command) stops cleanly.
With a TLS context (monitor/ingest/listener_tls.py) it speaks MLLP inside TLS only: each
connection's handshake runs in its own thread, after it got a slot.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import ssl
import threading
from dataclasses import dataclass
from typing import Any

from kafka.errors import KafkaError

from collectors.reports_in import (
    AckCode,
    Frame,
    Hl7Limits,
    MllpDecoder,
    ReportError,
    ReportReason,
    ack_code_for,
    build_ack,
    error_code_for,
    frame,
    parse_oru,
    read_header,
)
from collectors.reports_in.ack import APPLICATION_INTERNAL_ERROR
from monitor.ingest.listener_tls import handshake
from monitor.ingest.report_labels import ReportLabelSink

log = logging.getLogger(__name__)
SOURCE = "hl7-listen"


@dataclass(frozen=True)
class ListenerConfig:
    host: str = "127.0.0.1"
    port: int = 2575  # the port IANA registered for HL7 over MLLP
    accession_field: str = "OBR-3"
    max_message_bytes: int = 1_048_576
    max_connections: int = 32
    idle_timeout_s: float = 300.0
    tls: ssl.SSLContext | None = None  # None: plain TCP (loopback or a trusted segment only)


class ReportListener:
    """The MLLP server; `serve_forever()` in one thread, `shutdown()` from another."""

    def __init__(self, sink: ReportLabelSink, config: ListenerConfig) -> None:
        self.sink, self.config = sink, config
        self.limits = Hl7Limits(max_bytes=config.max_message_bytes)
        self._slots = threading.BoundedSemaphore(config.max_connections)
        self._seq = 0
        self._seq_lock = threading.Lock()
        self._server = _Server((config.host, config.port), _Connection, listener=self)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def serve_forever(self) -> None:
        log.info("hl7-listen: MLLP%s on %s:%d", " over TLS" if self.config.tls else "",
                 *self.address)  # fmt: skip
        try:
            self._server.serve_forever(poll_interval=0.2)
        finally:
            self._server.server_close()

    def shutdown(self) -> None:
        """Stop accepting and return once serve_forever has (safe from any other thread)."""
        self._server.shutdown()

    def _next_position(self) -> int:
        with self._seq_lock:
            self._seq += 1
            return self._seq

    def process(self, block: Frame) -> bytes:
        """One MLLP block → its ACK message (never raises)."""
        position = self._next_position()
        raw = block.content
        header = read_header(raw) if raw is not None else None
        if block.error is not None or raw is None:
            error = block.error or ReportError(ReportReason.BAD_FRAMING, "no message")
            return self._refuse(header, error, None, position, block.size)
        try:
            reports = parse_oru(raw, accession_field=self.config.accession_field,
                                limits=self.limits)  # fmt: skip
        except ReportError as exc:
            return self._refuse(header, exc, raw, position, len(raw))
        try:
            for report in reports:
                self.sink.handle(report)
        except KafkaError as exc:
            # The broker did not acknowledge: refuse for now, the sender resends (§2.9.2).
            self.sink.count("broker_unavailable")
            log.warning("hl7-listen: message #%d not acknowledged by Kafka (%s); answered AR",
                        position, type(exc).__name__)  # fmt: skip
            return build_ack(header, AckCode.REJECT, error_code=APPLICATION_INTERNAL_ERROR,
                             user_message="label store unavailable, resend later")  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - one message's failure never stops the server
            # The class only: a message could quote the text it choked on.
            log.error("hl7-listen: message #%d failed (%s)", position, type(exc).__name__)
            error = ReportError(ReportReason.MALFORMED, f"internal error ({type(exc).__name__})")
            return self._refuse(header, error, raw, position, len(raw), internal=True)
        self.sink.count("accepted")
        return build_ack(header, AckCode.ACCEPT)

    def _refuse(self, header: Any, error: ReportError, raw: bytes | None, position: int,
                size: int, *, internal: bool = False) -> bytes:  # fmt: skip
        try:
            self.sink.dead_letter(SOURCE, raw, error, position=position, size=size)
        except Exception as exc:  # noqa: BLE001 - the dead letter could not be written
            log.warning("hl7-listen: dead letter for #%d not written (%s); answered AR",
                        position, type(exc).__name__)  # fmt: skip
            return build_ack(header, AckCode.REJECT, error_code=APPLICATION_INTERNAL_ERROR,
                             user_message="dead letter not recorded, resend later")  # fmt: skip
        code = AckCode.ERROR if internal else ack_code_for(error.reason)
        location: tuple[str, ...] = ()
        if error.reason is ReportReason.NO_ACCESSION:
            segment, _, field = self.config.accession_field.partition("-")
            location = (segment, "1", field.split(".")[0])
        return build_ack(header, code,
                         error_code=APPLICATION_INTERNAL_ERROR if internal
                         else error_code_for(error.reason),
                         user_message=f"{error.reason}: {error.message}",
                         error_location=location)  # fmt: skip


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: Any, *, listener: ReportListener) -> None:
        self.listener = listener
        super().__init__(address, handler)


class _Connection(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        listener: ReportListener = self.server.listener  # type: ignore[attr-defined]
        if not listener._slots.acquire(blocking=False):
            listener.sink.count("refused:too_many_connections")
            log.warning("hl7-listen: connection refused, %d already open",
                        listener.config.max_connections)  # fmt: skip
            return
        sock: socket.socket | None = self.request
        try:
            if listener.config.tls is not None:
                sock = handshake(self.request, listener.config.tls, listener.sink.count, "MLLP")
            if sock is not None:
                self._exchange(listener, sock)
        finally:
            if sock is not None and sock is not self.request:
                sock.close()  # the TLS socket; socketserver closes the one it accepted
            listener._slots.release()

    @staticmethod
    def _exchange(listener: ReportListener, sock: socket.socket) -> None:
        """MLLP blocks in, one ACK out for each, until the sender closes or falls idle."""
        sock.settimeout(listener.config.idle_timeout_s)
        decoder = MllpDecoder(listener.config.max_message_bytes)
        while True:
            try:
                chunk = sock.recv(65_536)
            except (TimeoutError, OSError):
                return
            if not chunk:
                return
            for block in decoder.feed(chunk):
                ack = listener.process(block)
                try:
                    sock.sendall(frame(ack))
                except OSError:
                    return  # the sender went away; it resends what was not ACKed
