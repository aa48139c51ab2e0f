"""`radwatch hl7-listen`: the MLLP server for radiology reports (monitor/ingest/report_listener.py).

HL7 v2 ORU^R01 in, label events by accession out, one ACK per message. Binds to loopback
unless --host says otherwise (MLLP has no authentication of its own: a wider address belongs
behind TLS, RADWATCH_HL7_TLS_* (monitor/ingest/listener_tls.py), or on a trusted segment, and a
warning says so). Stops cleanly on SIGTERM or Ctrl-C (exit 0) and prints what it did.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import TYPE_CHECKING

from monitor.commands.output import add_json_flag, emit, key_values
from monitor.config import Settings
from monitor.errors import ConfigError
from monitor.safeguards import binds_loopback

if TYPE_CHECKING:
    import ssl

    from monitor.ingest.fhir_http import FhirEndpoint
    from monitor.ingest.report_labels import SinkResources

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "hl7-listen",
        help="receive radiology reports (HL7 v2 ORU^R01 over MLLP) and publish derived labels",
        description="An MLLP server for ORU^R01 reports: the labeler derives labels from the "
        "report text and publishes them by accession; ACK AA once durable. "
        "Example: radwatch hl7-listen --port 2575 --model cxr-nodule=nodule,mass",
    )
    parser.add_argument("--port", type=int, required=True, help="TCP port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--model", action="append", metavar="MODEL[=FINDING,...]",
                        help="a model the labels are for, with the findings it scores "
                        "(repeatable; default: RADWATCH_REPORT_MODELS)")  # fmt: skip
    parser.add_argument("--not-mentioned", choices=("negative", "absent"), default="negative",
                        help="a listed finding the report does not mention: label 0 "
                        "(default) or no label")  # fmt: skip
    parser.add_argument("--accession-field", metavar="OBR-N[.C]",
                        help="where the accession is (default RADWATCH_HL7_ACCESSION_FIELD, OBR-3)")  # fmt: skip
    parser.add_argument("--fhir-port", type=int, metavar="P",
                        help="also accept FHIR R4 DiagnosticReports POSTed to HOST:P/fhir, HTTPS "
                        "with RADWATCH_HL7_TLS_* (needs RADWATCH_FHIR_TOKEN: callers send it as a "
                        "bearer token)")  # fmt: skip
    parser.add_argument("--max-connections", type=int, default=32, metavar="N",
                        help="concurrent MLLP connections accepted (default 32)")  # fmt: skip
    parser.add_argument("--metrics-addr", metavar="HOST:PORT",
                        help="also serve this listener's counts on /metrics here "
                        "(radwatch_listener_events_total)")  # fmt: skip
    add_json_flag(parser)
    parser.set_defaults(handler=_listen)


def _listen(args: argparse.Namespace, settings: Settings) -> int:
    from collectors.reports_in import accession_location
    from monitor.ingest.listener_tls import listener_tls
    from monitor.ingest.report_labels import SinkResources, report_models
    from monitor.ingest.report_listener import ListenerConfig, ReportListener
    from monitor.pilot.serving import serve_process_metrics

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0..65535, got {args.port}")
    if args.max_connections < 1:
        raise ConfigError("--max-connections must be at least 1")
    field = args.accession_field or settings.hl7_accession_field
    try:
        accession_location(field)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    models = report_models(settings, args.model)
    if args.fhir_port is not None:
        if not 0 <= args.fhir_port <= 65535:
            raise ConfigError(f"--fhir-port must be 0..65535, got {args.fhir_port}")
        if not settings.fhir_token or len(settings.fhir_token) < 16:
            raise ConfigError("--fhir-port needs RADWATCH_FHIR_TOKEN (16 characters or more)")
    tls = listener_tls(settings)  # a file that does not load stops us here (exit 2)
    if not binds_loopback(args.host) and tls is None:
        log.warning("hl7-listen: binding %s, not loopback, without TLS: reports cross the network "
                    "in clear; set RADWATCH_HL7_TLS_CERT_FILE and _KEY_FILE, or keep this on a "
                    "trusted segment that only the interface engine reaches", args.host)  # fmt: skip
    elif not binds_loopback(args.host) and not settings.hl7_tls_client_ca_file:
        log.warning("hl7-listen: binding %s with TLS but no client certificates: any host that "
                    "reaches the port may send reports; set RADWATCH_HL7_TLS_CLIENT_CA_FILE or "
                    "allow only the interface engine at the firewall", args.host)  # fmt: skip
    config = ListenerConfig(host=args.host, port=args.port, accession_field=field,
                            max_message_bytes=settings.hl7_max_message_bytes,
                            max_connections=args.max_connections, tls=tls)  # fmt: skip
    resources = SinkResources(settings, models,
                              not_mentioned_negative=args.not_mentioned == "negative")  # fmt: skip
    metrics = None
    try:
        if args.metrics_addr:
            metrics = serve_process_metrics(settings, args.metrics_addr)
        try:
            listener = ReportListener(resources.sink, config)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
        servers = [threading.Thread(target=listener.serve_forever, name="hl7-listen", daemon=True)]
        stoppers = [listener.shutdown]
        if args.fhir_port is not None:
            endpoint = _fhir_endpoint(resources, settings, args.host, args.fhir_port, tls)
            servers.append(threading.Thread(target=endpoint.serve_forever, name="fhir-http",
                                            daemon=True))  # fmt: skip
            stoppers.append(endpoint.shutdown)
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        for server in servers:
            server.start()
        host, port = listener.address
        # The bound port on stdout (for --port 0), flushed: scripts and tests wait for this line.
        print(f"listening {host}:{port}", flush=True)
        if args.fhir_port is not None:
            print(f"fhir {endpoint.url}", flush=True)
        while not stop.wait(0.5):
            if not all(server.is_alive() for server in servers):
                raise RuntimeError("a listener thread stopped")
        for shutdown in stoppers:
            shutdown()
        for server in servers:
            server.join(timeout=10)
    finally:
        resources.close()
        if metrics is not None:
            metrics.stop()
    counts = resources.sink.snapshot()
    emit(counts, args.json, lambda d: key_values(d.items(), title="hl7-listen"))
    return 0


def _fhir_endpoint(resources: SinkResources, settings: Settings, host: str, port: int,
                   tls: ssl.SSLContext | None) -> FhirEndpoint:  # fmt: skip
    from collectors.reports_in import FhirLimits
    from monitor.ingest.fhir_http import FhirEndpoint

    assert settings.fhir_token
    try:
        limits = FhirLimits(max_line_bytes=settings.hl7_max_message_bytes)
        return FhirEndpoint(resources.sink, settings.fhir_token, host, port, limits, tls)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
