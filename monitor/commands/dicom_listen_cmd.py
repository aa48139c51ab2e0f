"""`radwatch dicom-listen`: run the DICOM Storage SCP for AI results (monitor/ingest/dicom_listener.py).

Binds to loopback unless --host says otherwise; a non-loopback address needs
RADWATCH_DICOM_CALLING_AETS. Stops cleanly on SIGTERM or Ctrl-C (exit 0).
"""

from __future__ import annotations

import argparse
import signal
import threading
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.config import Settings
from monitor.errors import ConfigError

if TYPE_CHECKING:
    from collectors.dicom_results import ModelOverrides


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "dicom-listen",
        help="receive images and AI results (DICOM SR) and publish inference events",
        description="A DICOM Storage SCP for AI results (TID 1500 SR). "
        "Example: radwatch dicom-listen --port 11112",
    )
    parser.add_argument("--port", type=int, required=True, help="TCP port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default loopback; others need "
                        "RADWATCH_DICOM_CALLING_AETS)")  # fmt: skip
    parser.add_argument("--ae-title", help="this SCP's AE title (default RADWATCH_DICOM_AE_TITLE)")
    parser.add_argument("--metrics-addr", metavar="HOST:PORT",
                        help="also serve this listener's counts on /metrics here "
                        "(radwatch_listener_events_total)")  # fmt: skip
    parser.set_defaults(handler=_listen)


def _listen(args: argparse.Namespace, settings: Settings) -> int:
    from collectors.pseudonym import Pseudonymiser
    from monitor.ingest.dicom_listener import DicomListener, KafkaResultPublisher, ListenerConfig
    from monitor.pilot.serving import serve_process_metrics
    from monitor.services.runtime import resolve_endpoints

    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0..65535, got {args.port}")
    aets = settings.dicom_calling_aets
    config = ListenerConfig(
        image_root=settings.image_root_paths()[0],
        host=args.host,
        port=args.port,
        ae_title=args.ae_title or settings.dicom_ae_title,
        calling_aets=None
        if aets is None
        else tuple(a.strip() for a in aets.split(",") if a.strip()),
        source_wait_s=settings.dicom_source_wait_s,
        site=settings.dicom_site,
        overrides=load_overrides(settings.dicom_models_file),
    )
    pseudonym = Pseudonymiser(settings.key_bytes())
    endpoints = resolve_endpoints(settings)
    publisher = KafkaResultPublisher.connect(
        endpoints.bootstrap, settings.inference_topic, settings.deadletter_topic,
        security=settings.kafka_client_options(),
    )  # fmt: skip
    listener = DicomListener(config, pseudonym, publisher)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server = None
    try:
        if args.metrics_addr:
            server = serve_process_metrics(settings, args.metrics_addr)
        port = listener.start()
        # The bound port on stdout (for --port 0), flushed: scripts and tests wait for it.
        print(f"listening {args.host}:{port}", flush=True)
        stop.wait()
    finally:
        listener.stop()
        publisher.close()
        if server is not None:
            server.stop()
    return 0


def load_overrides(path: Path | None) -> Mapping[str, ModelOverrides]:
    """`[models."NAME"]` tables → ModelOverrides by model name; ConfigError naming the fault."""
    from collectors.dicom_results import ModelOverrides

    if path is None:
        return {}
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read RADWATCH_DICOM_MODELS_FILE: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"RADWATCH_DICOM_MODELS_FILE is not valid TOML: {exc}") from None
    models = doc.get("models", {})
    if not isinstance(models, dict):
        raise ConfigError("RADWATCH_DICOM_MODELS_FILE: [models] must be a table")
    out = {}
    for name, table in models.items():
        try:
            out[str(name)] = ModelOverrides.from_mapping(table)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"RADWATCH_DICOM_MODELS_FILE: models.{name}: {exc}") from None
    return out
