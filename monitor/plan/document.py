"""The post-market monitoring plan as a file: its schema, the default plan, parsing and diffs.

At the top of the data flow, beside the settings (monitor/config.py): a plan is one YAML file
per model that says what radwatch watches and what happens when it sees something — signals,
strata, windows, the reference, the false-alarm budget, one clause per incident type (owner,
recommended action), stop rules, review cadence and log retention. It is the document EU AI
Act Art. 72 asks for inside the technical documentation, and the one FDA's PCCP guidance
(Dec 2024) asks to pre-specify; here it is also what radwatch runs (monitor/plan/store.py
keeps the approved versions). No database; `read_file` reads the one file it is given.

Every part of the plan is a *clause* with a stable dotted name (`incident_types.acquisition`,
`stop_rules.inverted-images`): an incident names the clause it fired under, so a reader goes
from an incident to the sentence of the plan that governed it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from detectors.drift.contract import STRATUM_KINDS
from monitor.errors import UsageError

SCHEMA_VERSION = 1
MAX_PLAN_BYTES = 256 * 1024  # a plan is a page or two; a larger file is a mistake or hostile
SIGNALS = ("acquisition", "image_quality", "image_embedding", "model_embedding", "scores",
           "performance", "performance_cusum", "discrepancy")  # fmt: skip
ShiftType = Literal["acquisition", "population", "prevalence", "integration", "performance",
                    "unknown"]  # fmt: skip
Signal = Literal["acquisition", "image_quality", "image_embedding", "model_embedding", "scores",
                 "performance", "performance_cusum", "discrepancy"]  # fmt: skip
StratumKind = Literal["site", "scanner", "view", "sex", "age_band"]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
Text = Annotated[str, Field(min_length=1, max_length=2000)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Probability = Annotated[float, Field(gt=0, lt=1)]
PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]

SHIFT_TYPES = ("acquisition", "population", "prevalence", "integration", "performance",
               "unknown")  # fmt: skip
# The default plan's recommended action per shift type (monitor/alerts/grouping.py names the
# shift type; an approved plan's incident_types override these).
RECOMMENDED_ACTIONS: Mapping[str, str] = {
    "acquisition": "Confirm the device, software or protocol change with the modality's owner; "
    "check the model's performance there on labelled studies; rebuild the reference once the "
    "change is validated, or suspend the model for that stratum if performance dropped.",
    "population": "Check whether the new patient or view mix is intended and within the model's "
    "indications; route out-of-scope studies (children, lateral views) away from the model.",
    "prevalence": "Confirm the case-mix change with the clinical lead (e.g. a screening "
    "programme); sensitivity and specificity should hold but positive predictive value moves: "
    "review the operating threshold and the reading workflow.",
    "integration": "Check the integration pipeline (MONOCHROME1 handling, missing DICOM tags, "
    "routing, the feed); stop sending the affected studies to the model until it is fixed.",
    "performance": "Review the discrepant studies with the radiologists; consider suspending the "
    "model for the affected stratum (EU AI Act Art. 26) and inform the manufacturer.",
    "unknown": "Review the alerts' evidence and the most atypical studies, then acknowledge the "
    "incident with what was found.",
}

# Who is told by default, per shift type (Alertmanager receivers of deploy/alertmanager).
DEFAULT_OWNERS: Mapping[str, str] = {
    "acquisition": "modality lead (radiographer in charge of the scanner)",
    "population": "clinical lead for the AI tool",
    "prevalence": "clinical lead for the AI tool",
    "integration": "PACS / integration engineer",
    "performance": "clinical lead for the AI tool",
    "unknown": "QA team",
}


class PlanError(UsageError):
    """A plan file that cannot be used: unreadable, not YAML, not the schema, or not this
    model's (the command line prints it on one line, exit 2)."""


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Windows(_Part):
    drift: PositiveInt = 200  # studies per drift window
    performance: PositiveInt = 500  # inferences per performance window
    max_span_days: PositiveFloat = 7.0  # a window closes after this long even when not full


class Reference(_Part):
    source: Literal["frozen"] = "frozen"  # the frozen drift reference, for drift and performance
    min_studies: PositiveInt = 1000
    rebuild: Text = ("A rebuilt reference is a plan change: it is approved by the plan's owner "
                     "after the shift it absorbs was reviewed.")  # fmt: skip


class Budget(_Part):
    incidents: PositiveFloat = 1.0  # false incidents accepted ...
    days: PositiveFloat = 90.0  # ... per this many days, per model


class IncidentType(_Part):
    owner: Name
    action: Text
    severity: Literal["warning", "critical"] = "warning"


class StopRule(_Part):
    """When it holds, a critical incident "suspend use recommended" goes to `receiver`, and a
    person's decision (suspend / continue, with a reason) is recorded (EU AI Act Art. 26)."""

    id: Slug
    description: Text
    shift_type: ShiftType | None = None  # holds when an incident of this type opens ...
    metric: Literal["sensitivity", "specificity"] | None = None  # ... or this metric ...
    below: Probability | None = None  # ... is below this floor ...
    confidence: Probability = 0.95  # ... with this confidence (its upper bound is below)
    receiver: Name = "governance"

    @model_validator(mode="after")
    def _one_condition(self) -> StopRule:
        by_type = self.shift_type is not None
        by_metric = self.metric is not None or self.below is not None
        if by_type == by_metric:
            raise ValueError("a stop rule holds on a shift_type, or on a metric below a floor")
        if by_metric and (self.metric is None or self.below is None):
            raise ValueError("a metric stop rule needs both metric and below")
        return self


class Review(_Part):
    cadence_days: PositiveInt = 90
    owner: Name = "clinical lead for the AI tool"


class Retention(_Part):
    audit_years: PositiveInt = 10  # the audit trail and its signed checkpoints
    events_days: PositiveInt = 730  # stored inferences and labels (pseudonymised)


class Plan(_Part):
    """One model's monitoring plan (schema version 1)."""

    schema_version: Literal[1] = 1
    model: Name
    # `version: 3` in YAML is a number: read as the text "3".
    version: Annotated[
        str,
        BeforeValidator(lambda v: str(v) if isinstance(v, int | float) else v),
        Field(min_length=1, max_length=64),
    ]
    intended_use: Text = "As stated in the manufacturer's instructions for use."
    owner: Name = "clinical lead for the AI tool"
    signals: tuple[Signal, ...] = SIGNALS  # type: ignore[assignment]
    strata: tuple[StratumKind, ...] = STRATUM_KINDS  # type: ignore[assignment]
    windows: Windows = Windows()
    reference: Reference = Reference()
    false_alarm_budget: Budget = Budget()
    incident_types: dict[ShiftType, IncidentType] = Field(default_factory=dict)
    stop_rules: tuple[StopRule, ...] = ()
    review: Review = Review()
    retention: Retention = Retention()

    @model_validator(mode="after")
    def _complete(self) -> Plan:
        missing = [t for t in SHIFT_TYPES if t not in self.incident_types]
        if missing:
            raise ValueError(f"incident_types must give every shift type; missing {missing}")
        ids = [r.id for r in self.stop_rules]
        if len(ids) != len(set(ids)):
            raise ValueError("stop rule ids must be unique")
        if len(set(self.signals)) != len(self.signals) or not self.signals:
            raise ValueError("signals must be a non-empty list without repeats")
        return self

    def incident_clause(self, shift_type: str) -> str:
        """The clause an incident of this shift type fires under."""
        return f"incident_types.{shift_type}"

    def stop_rules_for(self, shift_type: str) -> list[StopRule]:
        return [r for r in self.stop_rules if r.shift_type == shift_type]

    def clauses(self) -> list[str]:
        """Every clause name, in document order (the rendered plan numbers them)."""
        names = ["intended_use", "signals", "strata", "windows", "reference",
                 "false_alarm_budget"]  # fmt: skip
        names += [self.incident_clause(t) for t in self.incident_types]
        names += [f"stop_rules.{r.id}" for r in self.stop_rules]
        return [*names, "review", "retention"]


def default_plan(model: str) -> Plan:
    """The plan radwatch runs for a model that has none approved: today's defaults, written out
    (`radwatch plan show` prints it), with two stop rules every deployment should have."""
    types = {t: IncidentType(owner=DEFAULT_OWNERS[t], action=RECOMMENDED_ACTIONS[t],
                             severity="critical" if t in ("integration", "performance")
                             else "warning")  # fmt: skip
             for t in SHIFT_TYPES}  # fmt: skip
    rules = (
        StopRule(id="integration-fault", shift_type="integration",
                 description="The images reach the model wrongly (e.g. inverted greyscale, "
                             "another body part): its output is not valid for them."),
        StopRule(id="specificity-floor", metric="specificity", below=0.80,
                 description="Specificity is below 0.80 with 95% confidence: false "
                             "positives would burden the reading workflow."),
    )  # fmt: skip
    return Plan(model=model, version="default", incident_types=types, stop_rules=rules)  # type: ignore[arg-type]


def parse(text: str | bytes, *, model: str | None = None) -> Plan:
    """A plan from YAML text; PlanError (one line, naming the field) when it is not one."""
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > MAX_PLAN_BYTES:
        raise PlanError(f"plan file is {len(raw):,} bytes; at most {MAX_PLAN_BYTES:,}")
    try:
        doc = yaml.safe_load(raw)
    except RecursionError:
        raise PlanError("plan file is nested too deeply") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PlanError(f"plan file is not YAML: {_first_line(exc)}") from None
    if not isinstance(doc, dict):
        raise PlanError("plan file must be a YAML mapping (model: ..., version: ..., ...)")
    try:
        plan = Plan.model_validate(doc)
    except ValidationError as exc:
        raise PlanError(f"plan file: {_validation_message(exc)}") from None
    except RecursionError:
        raise PlanError("plan file is nested too deeply") from None
    if model is not None and plan.model != model:
        raise PlanError(f"plan file is for model {plan.model!r}, not {model!r}")
    return plan


def read_file(path: Path, *, model: str | None = None) -> Plan:
    """A plan from a file (at most MAX_PLAN_BYTES are read); PlanError naming the file."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_PLAN_BYTES + 1)
    except OSError as exc:
        raise PlanError(f"cannot read plan file {path}: {exc.strerror or exc}") from None
    try:
        return parse(raw, model=model)
    except PlanError as exc:
        raise PlanError(f"{path}: {exc}") from None


def dump(plan: Plan) -> str:
    """The canonical YAML of a plan: what is stored, hashed, diffed and approved."""
    doc = plan.model_dump(mode="json")
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=96)


def diff(old: Plan | None, new: Plan) -> str:
    """A unified diff of the canonical texts ('' when they say the same)."""
    before = dump(old).splitlines(keepends=True) if old else []
    after = dump(new).splitlines(keepends=True)
    label = f"{new.model} plan"
    return "".join(difflib.unified_diff(before, after, f"{label} {old.version if old else '(none)'}",
                                        f"{label} {new.version}"))  # fmt: skip


def as_json(plan: Plan) -> dict[str, Any]:
    return plan.model_dump(mode="json")


def _validation_message(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {_first_line(err.get('msg', 'invalid'))}{more}"


def _first_line(exc: object) -> str:
    text = re.sub(r"\s+", " ", str(exc)).strip()
    return text[:300]
