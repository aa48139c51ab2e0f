"""The optional `radwatch.interaction.v1` event: what a reader did with an AI result.

First step of the data flow, beside collectors.events (which dispatches here on the schema):
a decoded JSON object (already through collectors.bounded_json's limits) → a validated,
pseudonymised `InteractionEvent`, or InvalidEvent with a reason code (collectors.errors)
for the dead-letter path. The contract is docs/contract/interaction.v1.schema.json.

Identifiers are pseudonymised exactly as a label's (collectors.pseudonym, the same kinds
`study_uid` and `accession`), so an interaction joins the model's inference the same way.
Nothing about the reader is kept but a role from a closed set (DESIGN.md §5): a user name,
id or free text never reaches PostgreSQL. Unknown extra fields are accepted and not stored.
There is no typed fast path for this schema (collectors.typed_events returns None for it):
interactions are a small stream next to inferences.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from collectors.bounded_json import ParseLimits
from collectors.errors import InvalidEvent, Reason
from collectors.event_types import (
    INTERACTION_ACTIONS,
    MAX_TIME_TO_READ_S,
    USER_ROLES,
    AccessionRef,
    InteractionEvent,
    StudyRef,
    parse_timestamp,
)
from collectors.pseudonym import Pseudonymiser

INTERACTION_KEYS = frozenset(
    {"schema", "event_id", "occurred_at", "model", "study", "action", "viewed",
     "time_to_read_s", "user_role"}
)  # fmt: skip


def parse_interaction(
    doc: Mapping[str, Any], pseudonym: Pseudonymiser, digest: str, limits: ParseLimits
) -> InteractionEvent:
    """Validate one decoded interaction object; raises InvalidEvent with a reason code.

    Messages name the field, never its value (values come from the producer).
    """
    event_id = _text(doc, "event_id", "event_id", 128)
    model = _field(doc, "model", dict, "model")
    model_name = _text(model, "name", "model.name", 128)
    version = model.get("version")
    if version is not None and not isinstance(version, str):
        raise InvalidEvent(Reason.WRONG_TYPE, "model.version must be a string")
    occurred_at = parse_timestamp(_field(doc, "occurred_at", str, "occurred_at"), limits)
    study = _study(_field(doc, "study", dict, "study"), pseudonym)
    action = _field(doc, "action", str, "action")
    if action not in INTERACTION_ACTIONS:
        raise InvalidEvent(
            Reason.WRONG_TYPE, f"action must be one of {', '.join(sorted(INTERACTION_ACTIONS))}"
        )
    viewed = doc.get("viewed")
    if viewed is not None and not isinstance(viewed, bool):
        raise InvalidEvent(Reason.WRONG_TYPE, "viewed must be true or false")
    if viewed is False and action != "dismissed":
        # Accepting or overriding a result, or viewing it, is seeing it; only a result set
        # aside unseen (a bulk worklist action) can be dismissed without a view.
        raise InvalidEvent(Reason.WRONG_TYPE, "viewed may be false only when action is dismissed")
    return InteractionEvent(
        event_id=event_id,
        occurred_at=occurred_at,
        model_name=model_name,
        model_version=version[:64] if version else None,
        study=study,
        action=action,
        viewed=viewed,
        time_to_read_s=_time_to_read(doc.get("time_to_read_s")),
        user_role=_role(doc.get("user_role")),
        content_hash=digest,
    )


def _field(doc: Mapping[str, Any], key: str, kind: type, path: str) -> Any:
    value = doc.get(key)
    if value is None:
        raise InvalidEvent(Reason.MISSING_FIELD, f"{path} is required")
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidEvent(Reason.WRONG_TYPE, f"{path} has the wrong type")
    return value


def _text(doc: Mapping[str, Any], key: str, path: str, limit: int) -> str:
    value: str = _field(doc, key, str, path)
    if not value.strip() or len(value) > limit:
        raise InvalidEvent(Reason.WRONG_TYPE, f"{path} must be a non-empty string of ≤{limit}")
    return value


def _identifier(study: Mapping[str, Any], key: str) -> str | None:
    value = study.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidEvent(Reason.WRONG_TYPE, f"study.{key} must be a string")
    text = str(value)
    if not text.strip() or len(text) > 256:
        raise InvalidEvent(Reason.WRONG_TYPE, f"study.{key} must be a non-empty string of ≤256")
    return text


def _study(study: Mapping[str, Any], pseudonym: Pseudonymiser) -> StudyRef | AccessionRef:
    """By Study Instance UID, else by accession (the same kinds as a label's: they join)."""
    uid, accession = _identifier(study, "study_uid"), _identifier(study, "accession")
    acc = pseudonym("accession", accession) if accession is not None else None
    if uid is not None:
        return StudyRef(pseudonym("study_uid", uid), accession=acc)
    if acc is None:
        raise InvalidEvent(Reason.MISSING_FIELD, "study.study_uid or study.accession is required")
    return AccessionRef(acc)


def _time_to_read(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidEvent(Reason.WRONG_TYPE, "time_to_read_s must be a number")
    if not math.isfinite(value) or not 0 <= value <= MAX_TIME_TO_READ_S:
        raise InvalidEvent(
            Reason.SCORE_OUT_OF_RANGE, f"time_to_read_s must be in 0..{MAX_TIME_TO_READ_S:g}"
        )
    return float(value)


def _role(value: object) -> str | None:
    """A closed set; any other text is reduced to "other" (it could be a person's name)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEvent(Reason.WRONG_TYPE, "user_role must be a string")
    text = value.strip().lower()
    return text if text in USER_ROLES else "other"
