"""Alertmanager's webhook, received: each notification becomes audit rows.

The last hop of the alert path (Prometheus → Alertmanager → QA team): Alertmanager POSTs
its webhook payload (version 4, https://prometheus.io/docs/alerting/latest/configuration/
#webhook_config) to `POST /alertmanager/webhook` on radwatch's metrics server, and every
alert in it is recorded in the audit trail (who was notified of what, and when), in one
transaction per notification.

The audit trail is append-only evidence, so writing to it is guarded: the caller must
present `Authorization: Bearer <RADWATCH_WEBHOOK_TOKEN>` (checked by the server before the
body is read; no token configured means no webhook), the body is capped by the server, and
the work per call is bounded here: at most MAX_ALERTS alerts, MAX_PAIRS labels or
annotations per alert and MAX_STRING characters per string are kept, and what was cut is
recorded on each row.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from monitor.audit import trail
from monitor.errors import ConfigError, RadwatchError
from monitor.store import db

log = logging.getLogger(__name__)

PATH = "/alertmanager/webhook"
MAX_BODY_BYTES = 1_048_576  # Alertmanager truncates with max_alerts long before this
MAX_ALERTS = 200  # alerts recorded per notification; deploy/ sets max_alerts: 50
MAX_PAIRS = 64  # labels (or annotations) kept per alert
MAX_STRING = 1024  # characters kept of any one string
MIN_TOKEN_CHARS = 16
ACTOR = "alertmanager"


def bearer_matches(header: str | None, token: str) -> bool:
    """`Authorization: Bearer <token>`, compared in constant time."""
    if not header:
        return False
    scheme, _, given = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


class WebhookError(RadwatchError, ValueError):
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
    truncated_alerts: int  # as Alertmanager reported it (its max_alerts)
    alerts: tuple[NotifiedAlert, ...]
    dropped_alerts: int = 0  # alerts beyond MAX_ALERTS, not recorded here
    truncated_strings: int = 0  # strings or label sets cut to MAX_STRING / MAX_PAIRS


class _Cuts:
    """Counts what was cut while a payload is read (recorded on its audit rows)."""

    def __init__(self) -> None:
        self.strings = 0

    def text(self, value: Any) -> str:
        if isinstance(value, str):
            text = value
        else:
            try:
                text = json.dumps(value, default=str)
            except (ValueError, RecursionError):
                text = "<unreadable>"
        if len(text) > MAX_STRING:
            self.strings += 1
            text = text[:MAX_STRING]
        # PostgreSQL's jsonb holds neither NUL nor lone surrogates: replaced, not a 500.
        return text.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")

    def pairs(self, value: Any, what: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise WebhookError(f"{what} must be an object")
        items = list(value.items())
        if len(items) > MAX_PAIRS:
            self.strings += 1
            items = items[:MAX_PAIRS]
        return {self.text(k): self.text(v) for k, v in items}


def parse_notification(body: bytes) -> Notification:
    """Validate an Alertmanager webhook body (version 4)."""
    if len(body) > MAX_BODY_BYTES:
        raise WebhookError(f"payload larger than {MAX_BODY_BYTES} bytes")
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # ValueError covers JSONDecodeError and integers past Python's digit limit;
        # RecursionError deep nesting. Only the class is said: never the payload.
        raise WebhookError(f"payload is not JSON ({type(exc).__name__})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("alerts"), list):
        raise WebhookError("payload has no alerts list")
    if str(doc.get("version", "4"))[:8] != "4":
        raise WebhookError("unsupported webhook version (radwatch reads version 4)")
    cuts = _Cuts()
    raw_alerts = doc["alerts"]
    alerts = []
    for i, raw in enumerate(raw_alerts[:MAX_ALERTS]):
        if not isinstance(raw, dict):
            raise WebhookError(f"alerts[{i}] must be an object")
        labels = cuts.pairs(raw.get("labels"), f"alerts[{i}].labels")
        status = raw.get("status", doc.get("status", ""))
        if status not in ("firing", "resolved"):
            raise WebhookError(f"alerts[{i}].status must be firing or resolved")
        # Alertmanager's fingerprint is a hash of the label set; derive one when absent.
        fingerprint = cuts.text(raw.get("fingerprint") or hashlib.sha256(
            trail.canonical_json(labels).encode()).hexdigest()[:16])[:64]  # fmt: skip
        alerts.append(NotifiedAlert(
            status=status, labels=labels,
            annotations=cuts.pairs(raw.get("annotations"), f"alerts[{i}].annotations"),
            starts_at=_time(raw.get("startsAt"), cuts), ends_at=_time(raw.get("endsAt"), cuts),
            fingerprint=fingerprint,
        ))  # fmt: skip
    truncated = doc.get("truncatedAlerts") or 0
    if isinstance(truncated, bool) or not isinstance(truncated, int) or not (
            0 <= truncated < 2**31):  # fmt: skip
        raise WebhookError("truncatedAlerts must be a non-negative integer")
    dropped = max(0, len(raw_alerts) - MAX_ALERTS)
    if dropped or cuts.strings:
        log.warning("Alertmanager notification cut to fit: %d alert(s) beyond %d not recorded, "
                    "%d string(s) or label set(s) shortened", dropped, MAX_ALERTS,
                    cuts.strings)  # fmt: skip
    return Notification(
        receiver=cuts.text(doc.get("receiver", "")),
        status=cuts.text(doc.get("status", "")),
        group_key=cuts.text(doc.get("groupKey", "")),
        truncated_alerts=truncated,
        alerts=tuple(alerts),
        dropped_alerts=dropped,
        truncated_strings=cuts.strings,
    )


def _time(value: Any, cuts: _Cuts) -> str | None:
    return None if value is None else cuts.text(value)[:64]


def record_notification(conn, notification: Notification) -> list[trail.AuditRecord]:
    """One audit row per notified alert, all in one transaction."""
    rows = []
    with conn.transaction():
        for alert in notification.alerts:
            rows.append(trail.record(
                conn, actor=ACTOR, action="alert.notified", entity_type="prometheus_alert",
                entity_id=alert.fingerprint, outcome=alert.status,
                reason=alert.annotations.get("summary"),
                refs={"receiver": notification.receiver, "group_key": notification.group_key,
                      "alertname": alert.name},
                detail={"labels": dict(alert.labels),
                        "annotations": dict(alert.annotations),
                        "starts_at": alert.starts_at, "ends_at": alert.ends_at,
                        "notification_status": notification.status,
                        "truncated_alerts": notification.truncated_alerts,
                        "dropped_alerts": notification.dropped_alerts,
                        "truncated_strings": notification.truncated_strings},
            ))  # fmt: skip
    return rows


class AlertWebhook:
    """The HTTP-facing handler: body in, (status code, JSON reply) out."""

    def __init__(self, database_url: str, *, token: str) -> None:
        if len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(f"webhook_token must be at least {MIN_TOKEN_CHARS} characters "
                              "(openssl rand -hex 32)")  # fmt: skip
        self._url = database_url
        self._token = token

    def authorized(self, header: str | None) -> bool:
        """True for `Authorization: Bearer <the configured token>` (constant-time compare)."""
        return bearer_matches(header, self._token)

    def handle(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            notification = parse_notification(body)
        except WebhookError as exc:
            log.warning("rejected an Alertmanager webhook call: %s", exc)  # no payload in it
            return 400, {"error": str(exc)}
        # A database error propagates: the server answers 500 and Alertmanager retries.
        with db.connect(self._url) as conn:
            rows = record_notification(conn, notification)
            conn.commit()
        log.info("recorded %d notified alert(s) from %r (%r)", len(rows),
                 notification.receiver or "alertmanager", notification.status)  # fmt: skip
        return 200, {"recorded": len(rows), "audit_seq": [r.seq for r in rows]}
