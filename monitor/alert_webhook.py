"""Alertmanager's webhook, received: each notification becomes audit rows.

The last hop of the alert path (Prometheus → Alertmanager → QA team): Alertmanager POSTs
its webhook payload (version 4, https://prometheus.io/docs/alerting/latest/configuration/
#webhook_config) to `POST /alertmanager/webhook` on radwatch's metrics server, and every
alert in it is recorded in the audit trail (who was notified of what, and when), in one
transaction per notification.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from monitor import audit, db

log = logging.getLogger(__name__)

PATH = "/alertmanager/webhook"
MAX_BODY_BYTES = 1_048_576  # Alertmanager truncates with max_alerts long before this
ACTOR = "alertmanager"


class WebhookError(ValueError):
    """The payload is not an Alertmanager webhook notification (answered with HTTP 400)."""


@dataclass(frozen=True)
class NotifiedAlert:
    status: str  # firing | resolved
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: str | None
    ends_at: str | None
    fingerprint: str

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "unnamed")


@dataclass(frozen=True)
class Notification:
    receiver: str
    status: str
    group_key: str
    truncated_alerts: int
    alerts: tuple[NotifiedAlert, ...]


def _strings(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise WebhookError(f"{what} must be an object")
    return {str(k): str(v) for k, v in value.items()}


def parse_notification(body: bytes) -> Notification:
    """Validate an Alertmanager webhook body (version 4)."""
    if len(body) > MAX_BODY_BYTES:
        raise WebhookError(f"payload larger than {MAX_BODY_BYTES} bytes")
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookError(f"payload is not JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("alerts"), list):
        raise WebhookError("payload has no alerts list")
    if str(doc.get("version", "4")) != "4":
        raise WebhookError(f"unsupported webhook version {doc.get('version')!r}")
    alerts = []
    for i, raw in enumerate(doc["alerts"]):
        if not isinstance(raw, dict):
            raise WebhookError(f"alerts[{i}] must be an object")
        labels = _strings(raw.get("labels"), f"alerts[{i}].labels")
        status = str(raw.get("status", doc.get("status", "")))
        if status not in ("firing", "resolved"):
            raise WebhookError(f"alerts[{i}].status must be firing or resolved")
        # Alertmanager's fingerprint is a hash of the label set; derive one when absent.
        fingerprint = str(raw.get("fingerprint") or hashlib.sha256(
            audit.canonical_json(labels).encode()).hexdigest()[:16])  # fmt: skip
        alerts.append(NotifiedAlert(
            status=status, labels=labels,
            annotations=_strings(raw.get("annotations"), f"alerts[{i}].annotations"),
            starts_at=raw.get("startsAt"), ends_at=raw.get("endsAt"), fingerprint=fingerprint,
        ))  # fmt: skip
    return Notification(
        receiver=str(doc.get("receiver", "")),
        status=str(doc.get("status", "")),
        group_key=str(doc.get("groupKey", "")),
        truncated_alerts=int(doc.get("truncatedAlerts") or 0),
        alerts=tuple(alerts),
    )


def record_notification(conn, notification: Notification) -> list[audit.AuditRecord]:
    """One audit row per notified alert, all in one transaction."""
    rows = []
    with conn.transaction():
        for alert in notification.alerts:
            rows.append(audit.record(
                conn, actor=ACTOR, action="alert.notified", entity_type="prometheus_alert",
                entity_id=alert.fingerprint, outcome=alert.status,
                reason=alert.annotations.get("summary"),
                refs={"receiver": notification.receiver, "group_key": notification.group_key,
                      "alertname": alert.name},
                detail={"labels": dict(alert.labels),
                        "annotations": dict(alert.annotations),
                        "starts_at": alert.starts_at, "ends_at": alert.ends_at,
                        "notification_status": notification.status,
                        "truncated_alerts": notification.truncated_alerts},
            ))  # fmt: skip
    return rows


class AlertWebhook:
    """The HTTP-facing handler: body in, (status code, JSON reply) out."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url

    def handle(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            notification = parse_notification(body)
        except WebhookError as exc:
            log.warning("rejected an Alertmanager webhook call: %s", exc)
            return 400, {"error": str(exc)}
        # A database error propagates: the server answers 500 and Alertmanager retries.
        with db.connect(self._url) as conn:
            rows = record_notification(conn, notification)
            conn.commit()
        log.info("recorded %d notified alert(s) from %s (%s)", len(rows),
                 notification.receiver or "alertmanager", notification.status)  # fmt: skip
        return 200, {"recorded": len(rows), "audit_seq": [r.seq for r in rows]}
