"""An `SrResult` (collectors.dicom_results.mapping) → the contract-v1 inference event JSON.

Between the SR mapping and the Kafka inference topic: the document is exactly what an
inference service would publish (DESIGN.md §4), study identifiers raw, because the collector
(collectors.events) pseudonymises them at its edge like any producer's. The event id is a
keyed pseudonym of the SR and the model, so a re-sent SR is the same event (stored once).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydicom.dataset import Dataset

from collectors.dicom_results.mapping import ImageRef, SrResult
from collectors.dicom_tags import ALLOWED
from collectors.event_types import INFERENCE_SCHEMA
from collectors.pseudonym import Pseudonymiser


def inference_event(
    result: SrResult,
    *,
    image: ImageRef,
    image_uri: str,
    image_header: Dataset | None,
    pseudonym: Pseudonymiser,
    received_at: datetime,
    site: str | None = None,
) -> dict[str, Any]:
    """The inference event for one model's result, pointing at its first source image."""
    study: dict[str, Any] = {
        "study_uid": image.study_uid or result.study_uid,
        "sop_uid": image.sop_uid,
    }
    if image.series_uid:
        study["series_uid"] = image.series_uid
    if result.accession:
        study["accession"] = result.accession
    if result.patient_id:
        study["patient_id"] = result.patient_id
    prediction: dict[str, Any] = {"scores": dict(result.scores)}
    if result.thresholds:
        prediction["threshold"] = dict(result.thresholds)
    model: dict[str, Any] = {"name": result.model_name}
    if result.model_version:
        model["version"] = result.model_version
    doc: dict[str, Any] = {
        "schema": INFERENCE_SCHEMA,
        # Keyed, so the id says nothing about the SR's UID; stable, so a re-send is a replay.
        "event_id": "dicom-sr-"
        + pseudonym("dicom_sr_event", f"{result.sr_sop_uid}\x00{result.model_name}"),
        "occurred_at": _iso(result.occurred_at or received_at),
        "model": model,
        "study": study,
        "image": {"uri": image_uri},
        "prediction": prediction,
    }
    if site:
        doc["site"] = site
    if image_header is not None:
        # The scanner's technical attributes, from the image (not the SR: its Manufacturer is
        # the AI vendor's). The collector applies the same allow-list again (dicom_tags).
        doc["dicom"] = technical_tags(image_header)
    return doc


def technical_tags(header: Dataset) -> dict[str, Any]:
    """The allow-listed attributes of an image header as JSON values (collectors.dicom_tags)."""
    out: dict[str, Any] = {}
    for name in sorted(ALLOWED):
        value = header.get(name)
        if value is None or value == "":
            continue
        json_value = _json(value)
        if json_value is not None:
            out[name] = json_value
    return out


def _json(value: Any) -> Any:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return value if not isinstance(value, str) else str(value)
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        items = [_json(v) for v in value]
        return items if all(i is not None for i in items) else None
    try:
        # pydicom's DSfloat, IS and PersonName-free value types: numbers first, then text.
        return float(value)
    except (TypeError, ValueError):
        text = str(value)
        return text if text else None


def _iso(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
