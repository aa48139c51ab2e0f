"""Export of the audit trail (`radwatch audit export`): FHIR R4 AuditEvent NDJSON, or CSV.

Reads audit_events (monitor.audit.trail) for a time range and writes one resource (or CSV row)
per audit row, each validated against the FHIR R4 AuditEvent definition, with the action,
type and outcome codes the catalogue (monitor.audit.actions) gives its action. fhir.resources
8.x models R5 at its top level (AuditEvent.code/category/severity); its `R4B` subpackage
is used because R4B's AuditEvent is R4's, unchanged. The export itself is then recorded
in the trail (with the file's SHA-256), after the rows it exported.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import psycopg
from fhir.resources.R4B.auditevent import AuditEvent

from monitor.audit.actions import SYSTEM_ACTION, AuditAction, UnknownAuditAction
from monitor.audit.trail import AuditError, AuditRecord, canonical_json, read_records, record

FORMATS = ("fhir", "csv")
SYSTEM_ENTITY_TYPE = "urn:radwatch:audit:entity-type"
SYSTEM_ENTITY = "urn:radwatch:entity"
SYSTEM_ACTOR = "urn:radwatch:actor"
CSV_COLUMNS = ("seq", "recorded_at", "actor", "action", "entity_type", "entity_id",
               "entity_version", "outcome", "reason", "refs", "detail", "prev_hash",
               "row_hash")  # fmt: skip


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    rows: int
    first_seq: int | None
    last_seq: int | None
    sha256: str


def parse_time(text: str, *, end: bool = False) -> datetime:
    """ISO 8601 date or date-time, UTC when no offset. A bare date as an end bound means
    the end of that day (so --to 2026-11-28 includes the 28th)."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            start = datetime.combine(day, time(), tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise AuditError(f"not an ISO 8601 date or date-time: {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _detail(name: str, value: Any) -> dict[str, str]:
    # FHIR strings may not be empty: an empty value is written as its JSON, '""'.
    text = value if isinstance(value, str) and value.strip() else canonical_json(value)
    return {"type": name, "valueString": text}


def _text(value: str | None, empty: str = "(empty)") -> str:
    return value if value and value.strip() else empty


def to_fhir(row: AuditRecord, *, source_site: str = "radwatch") -> dict[str, Any]:
    """One audit row as an R4 AuditEvent dict (validated by the caller).

    Codes come from the catalogue (monitor.audit.actions); a row whose action or outcome it
    does not hold (written past `record`, e.g. by hand) is refused rather than guessed at.
    """
    try:
        action = AuditAction.of(row.action)
        outcome_code = action.outcome_code(row.outcome)
    except UnknownAuditAction as exc:
        raise AuditError(f"audit row {row.seq}: {exc}") from exc
    spec = action.spec
    # FHIR strings cannot be empty or padded; our columns are NOT NULL but may be.
    row = replace(row, entity_type="-".join(row.entity_type.split()) or "unknown",
                  actor=_text(row.actor, "(unknown)"), entity_id=_text(row.entity_id))  # fmt: skip
    action_coding = {"system": SYSTEM_ACTION, "code": action.value}
    # No DICOM event fits: the action itself is the type (AuditEvent.type is extensible).
    type_ = spec.dicom_type.as_fhir() if spec.dicom_type else action_coding
    subtype = [action_coding] if spec.dicom_type else []
    if spec.dicom_subtype:
        subtype.insert(0, spec.dicom_subtype.as_fhir())
    details = [_detail("radwatch.seq", str(row.seq)), _detail("radwatch.prev_hash", row.prev_hash),
               _detail("radwatch.row_hash", row.row_hash)]  # fmt: skip
    if row.entity_version is not None:
        details.append(_detail("entity_version", row.entity_version))
    details += [_detail(f"refs.{k}", v) for k, v in sorted(row.refs.items())]
    details += [_detail(f"detail.{k}", v) for k, v in sorted(row.detail.items())]
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": f"radwatch-audit-{row.seq}",
        "type": type_,
        "action": spec.fhir_action,
        "recorded": row.recorded_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "outcome": outcome_code,
        "agent": [{
            "who": {"identifier": {"system": SYSTEM_ACTOR, "value": row.actor},
                    "display": row.actor},
            "name": row.actor,
            "requestor": True,
        }],
        "source": {
            "site": source_site,
            "observer": {"display": "radwatch"},
            # security-source-type 4: Application Server
            "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                      "code": "4", "display": "Application Server"}],
        },
        "entity": [{
            "what": {"identifier": {"system": f"{SYSTEM_ENTITY}:{row.entity_type}",
                                    "value": row.entity_id},
                     "display": f"{row.entity_type}/{row.entity_id}"},
            "type": {"system": SYSTEM_ENTITY_TYPE, "code": row.entity_type},
            "name": row.entity_id,
            "detail": details,
        }],
    }  # fmt: skip
    if subtype:
        event["subtype"] = subtype
    outcome_desc = (
        row.reason
        if row.reason and row.reason.strip()
        else (None if row.outcome == "success" else row.outcome)
    )
    if outcome_desc:
        event["outcomeDesc"] = outcome_desc
    return event


def fhir_lines(rows: Iterator[AuditRecord]) -> Iterator[tuple[AuditRecord, str]]:
    for row in rows:
        try:
            event = to_fhir(row)
            AuditEvent.model_validate(event)
        except ValueError as exc:  # pydantic.ValidationError is a ValueError
            raise AuditError(f"audit row {row.seq} is not a valid FHIR AuditEvent: {exc}") from exc
        # Our dict, once validated, is the FHIR JSON: serialising the model again would
        # cost a third of the time for the same document.
        yield row, json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def csv_row(row: AuditRecord) -> list[str]:
    content = row.content()
    return [
        *(("" if content[c] is None else str(content[c])) for c in CSV_COLUMNS[:9]),
        canonical_json(content["refs"]),
        canonical_json(content["detail"]),
        row.prev_hash,
        row.row_hash,
    ]


def export(
    conn: psycopg.Connection,
    out: Path,
    *,
    fmt: str,
    since: datetime | None = None,
    until: datetime | None = None,
    actor: str = "radwatch",
) -> ExportResult:
    """Write the rows recorded in [since, until) to `out`, then record the export."""
    if fmt not in FORMATS:
        raise AuditError(f"unknown export format {fmt!r} (use one of {', '.join(FORMATS)})")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    count, first, last = 0, None, None
    rows = read_records(conn, since=since, until=until)
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        if fmt == "fhir":
            for row, line in fhir_lines(rows):
                fh.write(line + "\n")
                count, first, last = count + 1, first or row.seq, row.seq
        else:
            writer = csv.writer(fh)
            writer.writerow(CSV_COLUMNS)
            for row in rows:
                writer.writerow(csv_row(row))
                count, first, last = count + 1, first or row.seq, row.seq
    digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
    tmp.replace(out)
    record(conn, actor=actor, action="audit.export", entity_type="audit_export",
           entity_id=digest[:16], outcome="success",
           refs={"first_seq": first, "last_seq": last},
           detail={"format": fmt, "rows": count, "sha256": digest, "file": out.name,
                   "from": since.isoformat() if since else None,
                   "to": until.isoformat() if until else None})  # fmt: skip
    if not conn.autocommit:
        conn.commit()
    return ExportResult(out, fmt, count, first, last, digest)


def read_ndjson(path: Path) -> Iterator[AuditEvent]:
    """Parse an exported file back into validated R4 AuditEvents (tests, consumers)."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield AuditEvent.model_validate(json.loads(line))
