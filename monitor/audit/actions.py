"""The catalogue of audit actions: every `action` the trail may hold, and what it means in FHIR.

Each layer that calls `monitor.audit.trail.record` names one of these members (their values are
the strings stored in audit_events.action); `record` refuses an action or an outcome that is
not catalogued here, and the FHIR export (monitor.audit.export) reads its codes from here.
Members are never removed or renamed: rows in existing trails carry their values.

Codes, with their sources:
- FHIR R4 AuditEvent.action (http://hl7.org/fhir/audit-event-action): C create, R read,
  U update, D delete, E execute.
- AuditEvent.type: DICOM PS3.16 CID 400 "Audit Event ID" (system DCM), the events of
  DICOM PS3.15 A.5.3; AuditEvent.subtype: CID 401 "Audit Event Type Code" / CID 403
  "Security Alert Type Code". FHIR R4's own addition to that value set, audit-event-type
  "rest", is "execution of a RESTful operation as defined by FHIR": radwatch serves no FHIR
  REST interface, so no member uses it. Where no DICOM event fits (alert and incident
  lifecycle, window decisions) the type is the action itself in our own system: the R4 binding of
  AuditEvent.type is extensible, which allows a local code when none in the set applies.
- AuditEvent.outcome (http://hl7.org/fhir/audit-event-outcome): 0 success, 4 minor failure,
  8 serious failure (an unexpected error), 12 major failure (the system is no longer
  available). A decision that was taken (an alert opened, acknowledged, resolved; a window
  that drifted) is a success: only an action that did not do what it set out to is a failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from monitor.errors import RadwatchError

DCM: Final = "http://dicom.nema.org/resources/ontology/DCM"
SYSTEM_ACTION: Final = "urn:radwatch:audit:action"

# FHIR AuditEvent.outcome codes (audit-event-outcome).
SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE, MAJOR_FAILURE = "0", "4", "8", "12"


class UnknownAuditAction(RadwatchError, ValueError):
    """An action, or an action's outcome, that the catalogue does not hold."""


@dataclass(frozen=True)
class Coding:
    system: str
    code: str
    display: str

    def as_fhir(self) -> dict[str, str]:
        return {"system": self.system, "code": self.code, "display": self.display}


# DICOM PS3.16 CID 400 (event IDs) and CID 401/403 (event types) used below.
APPLICATION_ACTIVITY = Coding(DCM, "110100", "Application Activity")  # PS3.15 A.5.3.1
AUDIT_LOG_USED = Coding(DCM, "110101", "Audit Log Used")  # PS3.15 A.5.3.2
INSTANCES_ACCESSED = Coding(DCM, "110103", "DICOM Instances Accessed")  # PS3.15 A.5.3.6
PROCEDURE_RECORD = Coding(DCM, "110111", "Procedure Record")  # PS3.15 A.5.3.15
QUERY = Coding(DCM, "110112", "Query")  # PS3.15 A.5.3.12
SECURITY_ALERT = Coding(DCM, "110113", "Security Alert")  # PS3.15 A.5.3.11
APPLICATION_START = Coding(DCM, "110120", "Application Start")
APPLICATION_STOP = Coding(DCM, "110121", "Application Stop")
SOFTWARE_CONFIGURATION = Coding(DCM, "110131", "Software Configuration")


@dataclass(frozen=True)
class ActionSpec:
    """What one action means in a FHIR AuditEvent.

    `dicom_type`/`dicom_subtype` are None where DICOM has no event for it (the export then
    uses the action itself as the type). `outcomes` maps every outcome string the action is
    recorded with to its FHIR outcome code; any other outcome is refused when recorded.
    """

    fhir_action: str
    dicom_type: Coding | None
    dicom_subtype: Coding | None
    outcomes: Mapping[str, str]


def _spec(fhir_action: str, outcomes: Mapping[str, str], dicom_type: Coding | None = None,
          dicom_subtype: Coding | None = None) -> ActionSpec:  # fmt: skip
    assert fhir_action in ("C", "R", "U", "D", "E"), fhir_action
    assert all(code in (SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE, MAJOR_FAILURE)
               for code in outcomes.values()), outcomes  # fmt: skip
    return ActionSpec(fhir_action, dicom_type, dicom_subtype, MappingProxyType(dict(outcomes)))


OK: Final = {"success": SUCCESS}


class AuditAction(StrEnum):
    """Every action the audit trail records; the value is the stored string."""

    RADWATCH_START = "radwatch.start"
    RADWATCH_STOP = "radwatch.stop"
    CONFIG_CHANGED = "config.changed"
    SCHEMA_MIGRATE = "schema.migrate"
    AUDIT_EXPORT = "audit.export"
    AUDIT_CHECKPOINT = "audit.checkpoint"
    REFERENCE_BUILT = "reference.built"
    REFERENCE_MIGRATED = "reference.migrated"
    EMBEDDER_REGISTERED = "embedder.registered"
    EMBEDDINGS_BACKFILLED = "embeddings.backfilled"
    DRIFT_WINDOW = "drift.window"
    PERFORMANCE_WINDOW = "performance.window"
    PERFORMANCE_EVALUATE = "performance.evaluate"
    DISCREPANCY_EVALUATE = "discrepancy.evaluate"
    LABEL_CORRECT = "label.correct"
    ALERT_OPENED = "alert.opened"
    ALERT_UPDATED = "alert.updated"
    ALERT_ACKNOWLEDGED = "alert.acknowledged"
    ALERT_RESOLVED = "alert.resolved"
    ALERT_NOTIFIED = "alert.notified"
    INCIDENT_OPENED = "incident.opened"
    INCIDENT_UPDATED = "incident.updated"
    INCIDENT_ACKNOWLEDGED = "incident.acknowledged"
    INCIDENT_RESOLVED = "incident.resolved"
    BUDGET_DERIVED = "budget.derived"
    PLAN_APPROVED = "plan.approved"
    INCIDENT_DECIDED = "incident.decided"
    # monitor.model_status forms these as f"{component}.model_failed|recovered" for each
    # model_status.Component; the catalogue test enumerates that Literal.
    DRIFT_MODEL_FAILED = "drift.model_failed"
    DRIFT_MODEL_RECOVERED = "drift.model_recovered"
    PERFORMANCE_MODEL_FAILED = "performance.model_failed"
    PERFORMANCE_MODEL_RECOVERED = "performance.model_recovered"
    STUDY_RESOLVED = "study.resolved"
    LABEL_REVIEWED = "label.reviewed"

    @property
    def spec(self) -> ActionSpec:
        return SPECS[self]

    @property
    def fhir_action(self) -> str:
        return SPECS[self].fhir_action

    def outcome_code(self, outcome: str) -> str:
        """The FHIR AuditEvent.outcome code of `outcome` for this action."""
        try:
            return SPECS[self].outcomes[outcome]
        except KeyError:
            known = ", ".join(sorted(SPECS[self].outcomes))
            raise UnknownAuditAction(
                f"audit action {self.value!r} has no outcome {outcome!r} (one of: {known})"
            ) from None

    @classmethod
    def of(cls, action: str) -> AuditAction:
        """The member whose value is `action`; a clear error when there is none."""
        try:
            return cls(action)
        except ValueError:
            raise UnknownAuditAction(
                f"unknown audit action {action!r}: add it to monitor.audit.actions.AuditAction"
            ) from None


A = AuditAction
_MODEL_FAILED = _spec("E", {"failure": SERIOUS_FAILURE})  # the model's pass raised
_MODEL_RECOVERED = _spec("E", OK)

SPECS: Final[Mapping[AuditAction, ActionSpec]] = MappingProxyType({
    A.RADWATCH_START: _spec("E", OK, APPLICATION_ACTIVITY, APPLICATION_START),
    # The component's run ended; with an error, it is no longer running: a major failure.
    A.RADWATCH_STOP: _spec("E", {"success": SUCCESS, "failure": MAJOR_FAILURE},
                           APPLICATION_ACTIVITY, APPLICATION_STOP),
    # Configuration and schema changes are DICOM's Security Alert / Software Configuration.
    A.CONFIG_CHANGED: _spec("U", OK, SECURITY_ALERT, SOFTWARE_CONFIGURATION),
    A.SCHEMA_MIGRATE: _spec("U", OK, SECURITY_ALERT, SOFTWARE_CONFIGURATION),
    # The trail itself read out (export) or read and sealed (checkpoint): Audit Log Used.
    A.AUDIT_EXPORT: _spec("R", OK, AUDIT_LOG_USED),
    A.AUDIT_CHECKPOINT: _spec("C", OK, AUDIT_LOG_USED),
    A.REFERENCE_BUILT: _spec("C", OK),
    # A stored reference rewritten from a pickle to a data artifact (same fit, new format).
    A.REFERENCE_MIGRATED: _spec("U", OK),
    # New model weights put into use: a software configuration change.
    A.EMBEDDER_REGISTERED: _spec("C", OK, SECURITY_ALERT, SOFTWARE_CONFIGURATION),
    # Reads DICOM images; some unreadable images are a minor failure (the rest is done).
    A.EMBEDDINGS_BACKFILLED: _spec("R", {"success": SUCCESS, "partial": MINOR_FAILURE},
                                   INSTANCES_ACCESSED),
    # Decisions: a drifted or degraded window is a decision taken, not a failure.
    A.DRIFT_WINDOW: _spec("E", {"ok": SUCCESS, "drift": SUCCESS}),
    A.PERFORMANCE_WINDOW: _spec("E", {"ok": SUCCESS, "degraded": SUCCESS}),
    A.PERFORMANCE_EVALUATE: _spec("E", OK),
    A.DISCREPANCY_EVALUATE: _spec("E", OK),  # the AI's calls against the reports' labels
    # A corrected label is a changed reading of one study (the radiologist's report).
    A.LABEL_CORRECT: _spec("U", OK, PROCEDURE_RECORD),
    # Alert lifecycle: the outcome is the alert's state after the change, all successes.
    A.ALERT_OPENED: _spec("C", {"open": SUCCESS}),
    A.ALERT_UPDATED: _spec("U", {"open": SUCCESS, "acknowledged": SUCCESS}),
    A.ALERT_ACKNOWLEDGED: _spec("U", {"acknowledged": SUCCESS}),
    A.ALERT_RESOLVED: _spec("U", {"resolved": SUCCESS}),
    # Alertmanager's status of the notified alert (monitor.alerts.webhook accepts only these).
    A.ALERT_NOTIFIED: _spec("C", {"firing": SUCCESS, "resolved": SUCCESS}),
    # Incidents (monitor.alerts.incidents) as alerts: no DICOM event fits, the state after the
    # change is the outcome, all successes. An alert joining re-reads the incident: an update.
    A.INCIDENT_OPENED: _spec("C", {"open": SUCCESS}),
    A.INCIDENT_UPDATED: _spec("U", {"open": SUCCESS, "acknowledged": SUCCESS}),
    A.INCIDENT_ACKNOWLEDGED: _spec("U", {"acknowledged": SUCCESS}),
    A.INCIDENT_RESOLVED: _spec("U", {"resolved": SUCCESS}),
    # The false-alarm budget's settings for a model (monitor.alerts.budget): derived anew when
    # the volume moves them, a configuration change of the monitor itself.
    A.BUDGET_DERIVED: _spec("U", OK),
    # A monitoring plan put in force by a named person (monitor.plan.store), with its diff.
    A.PLAN_APPROVED: _spec("U", OK),
    # A person's decision on a stop rule's "suspend use recommended" (EU AI Act Art. 26):
    # the decision is the outcome.
    A.INCIDENT_DECIDED: _spec("U", {"suspend": SUCCESS, "continue": SUCCESS}),
    A.DRIFT_MODEL_FAILED: _MODEL_FAILED,
    A.DRIFT_MODEL_RECOVERED: _MODEL_RECOVERED,
    A.PERFORMANCE_MODEL_FAILED: _MODEL_FAILED,
    A.PERFORMANCE_MODEL_RECOVERED: _MODEL_RECOVERED,
    # A study pseudonym turned back into its PACS identifiers (monitor.studies) by querying
    # the PACS: DICOM's Query event; finding nothing is a minor failure (nothing disclosed).
    A.STUDY_RESOLVED: _spec("R", {"success": SUCCESS, "not_found": MINOR_FAILURE}, QUERY),
    # A radiologist's answer on a report-derived label (monitor.labelwatch.review): the answer
    # is the outcome, all successes; a disagreement also stores the corrected reading.
    A.LABEL_REVIEWED: _spec("U", {"agree": SUCCESS, "disagree": SUCCESS, "skip": SUCCESS},
                            PROCEDURE_RECORD),
})  # fmt: skip

if _missing := set(AuditAction) - set(SPECS):  # a member without codes cannot be exported
    raise RuntimeError(f"audit actions without a spec: {sorted(_missing)}")


def validate(action: str, outcome: str) -> AuditAction:
    """The catalogued action, after checking that `outcome` is one it is recorded with."""
    member = AuditAction.of(action)
    member.outcome_code(outcome)
    return member
