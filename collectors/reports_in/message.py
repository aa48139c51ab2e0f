"""One radiology report as the input edge keeps it, whichever standard carried it.

The common result of collectors.reports_in's parsers (HL7 v2 ORU^R01 and FHIR R4
DiagnosticReport), handed to the listener / importer in monitor/ingest, which labels the text
and publishes a label event by accession.

Privacy (DESIGN.md §5): a `ReportMessage` keeps only what labelling needs. PID, PV1, NK1,
ORC's and OBR's people and places, FHIR `subject`/`performer`: none of it is ever copied
here. The accession is kept raw, because the caller pseudonymises it at its edge (the label
event carries it like an inference service's event does, and the collector replaces it by
its keyed pseudonym before anything is stored); the report text is kept only until the
labeler has turned it into numbers and span hashes. Neither appears in `repr` (so neither
reaches a log line by accident).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class ResultStatus(StrEnum):
    """The report's result status, as HL7 v2 table 0123 (OBR-25) spells it."""

    FINAL = "F"
    CORRECTED = "C"
    PRELIMINARY = "P"


@dataclass(frozen=True)
class ReportMessage:
    accession: str = field(repr=False)
    status: ResultStatus
    text: str = field(repr=False)
    # When the report was made (OBR-22, else MSH-7; FHIR `issued`), None when absent/unreadable.
    reported_at: datetime | None = None
    # When the imaging was done (OBR-7; FHIR `effectiveDateTime`).
    observed_at: datetime | None = None
    # MSH-10 (HL7) or the resource id (FHIR): echoed in the ACK, and part of the event id.
    control_id: str = ""
    standard: str = "hl7v2"  # "hl7v2" or "fhir-r4"

    @property
    def text_sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8", "surrogatepass")).hexdigest()
