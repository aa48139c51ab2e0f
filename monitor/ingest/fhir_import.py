"""`radwatch labels import --fhir FILE`: FHIR R4 DiagnosticReport NDJSON → label events.

The FHIR path of the report edge (DESIGN.md §5b), the same as HL7 v2's after parsing: each
line (a DiagnosticReport, or a Bundle with reports and their Observations) is parsed by
collectors.reports_in.fhir_report, labelled and published by monitor/ingest/report_labels.py;
a line or report that cannot be used is dead-lettered with its reason (hash and size only).
Lines are read with a size cap, so one huge line cannot exhaust memory; a broker that stops
acknowledging stops the import (its error propagates: one line, exit 2 in the command), and
a rerun publishes the same event ids again, which the store keeps once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collectors.reports_in import DEFAULT_FHIR_LIMITS, FhirLimits, ReportError, parse_fhir
from collectors.reports_in.errors import ReportReason
from monitor.errors import ConfigError
from monitor.ingest.report_labels import ModelFindings, ReportLabelSink, SinkResources

log = logging.getLogger(__name__)
SOURCE = "fhir-import"


@dataclass(frozen=True)
class ImportSummary:
    lines: int  # non-blank lines read
    reports: int  # DiagnosticReports found
    published: int  # label events acknowledged by the broker
    preliminary: int  # preliminary / partial reports ignored
    no_findings: int  # reports that said nothing about the models' findings
    dead_lettered: int  # lines or reports refused (with a reason)

    def as_dict(self) -> dict[str, int]:
        return dict(vars(self))


def import_fhir(
    path: str | Path,
    settings: Any,
    models: tuple[ModelFindings, ...],
    *,
    not_mentioned_negative: bool = True,
    sink: ReportLabelSink | None = None,
    limits: FhirLimits = DEFAULT_FHIR_LIMITS,
) -> ImportSummary:
    """Import one NDJSON file; `sink` for tests and callers that hold one, else from settings."""
    file = Path(path)
    try:
        handle = file.open("rb")
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror}") from None
    resources = None
    if sink is None:
        resources = SinkResources(settings, models, not_mentioned_negative=not_mentioned_negative,
                                  one_shot=True)  # fmt: skip
        sink = resources.sink
    try:
        with handle:
            return _import(handle, sink, limits)
    finally:
        if resources is not None:
            resources.close()


def _import(handle: Any, sink: ReportLabelSink, limits: FhirLimits) -> ImportSummary:
    lines = reports = published = preliminary = no_findings = dead = 0
    number = 0
    while True:
        # One byte over the cap tells an over-long line from one exactly at it.
        line = handle.readline(limits.max_line_bytes + 1)
        if not line:
            break
        number += 1
        if len(line) > limits.max_line_bytes and not line.endswith(b"\n"):
            lines += 1
            size = len(line)
            while line and not line.endswith(b"\n"):  # skip the rest of the line, bounded reads
                line = handle.readline(limits.max_line_bytes)
                size += len(line)
            error = ReportError(ReportReason.TOO_LARGE, f"line over {limits.max_line_bytes} bytes")
            sink.dead_letter(SOURCE, None, error, position=number, size=size)
            dead += 1
            continue
        line = line.rstrip(b"\r\n")
        if not line.strip():
            continue
        lines += 1
        try:
            results = parse_fhir(line, limits)
        except ReportError as exc:
            sink.dead_letter(SOURCE, line, exc, position=number)
            dead += 1
            continue
        for result in results:
            reports += 1
            if isinstance(result, ReportError):
                sink.dead_letter(SOURCE, line, result, position=number)
                dead += 1
                continue
            outcome = sink.handle(result)
            published += outcome.published
            preliminary += outcome.ignored == "preliminary"
            no_findings += outcome.ignored == "no_findings"
    summary = ImportSummary(lines, reports, published, preliminary, no_findings, dead)
    log.info("labels import --fhir: %s", summary.as_dict())
    return summary
