"""The AI inventory (`radwatch models`): every model radwatch has seen, with its state.

At the reading end of the data flow, beside the other reports: one pass over the stored
inferences (versions, sites, counts), the plan in force (monitor/plan/store.py), the active
drift reference, the open incidents and the last detection and performance passes
(monitor/model_status.py). The ACR–SIIM practice parameter for imaging AI (2026) asks a
facility to keep an inventory of its AI tools with their versions; this is it, from what
radwatch actually receives rather than from what someone remembered to write down. Reads only.

The status word, the first that holds: `suspended` (a person decided to suspend use under a
stop rule, and the incident is not resolved), `suspend recommended` (a stop rule holds and
nobody has decided yet), `failing` (the last detection or performance pass raised),
`incident open`, `no reference` (nothing to compare against: drift is not watched), `watched`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from monitor.plan import store

NONE_YET = "no models yet: radwatch has stored no inference (run `radwatch collect`)"


@dataclass(frozen=True)
class VersionSeen:
    version: str  # '(none)' when the events carried no model_version
    inferences: int
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class ActiveReference:
    id: int
    n_events: int
    built_at: datetime


@dataclass(frozen=True)
class PassStatus:
    status: str  # 'ok' | 'error'
    error_class: str | None
    last_run_at: datetime


@dataclass(frozen=True)
class ModelEntry:
    model: str
    versions: tuple[VersionSeen, ...]
    sites: tuple[str, ...]
    inferences: int
    plan_version: str
    plan_approved_by: str | None  # None: the default plan is in force
    plan_approved_at: datetime | None
    reference: ActiveReference | None
    open_incidents: int
    stop_rules_holding: int  # open incidents whose stop rule holds, not yet decided
    suspended: int  # open incidents where a person decided to suspend use
    passes: dict[str, PassStatus]  # 'drift' / 'performance' → the last pass

    @property
    def status(self) -> str:
        if self.suspended:
            return "suspended"
        if self.stop_rules_holding:
            return "suspend recommended"
        if any(p.status == "error" for p in self.passes.values()):
            return "failing"
        if self.open_incidents:
            return "incident open"
        if self.reference is None:
            return "no reference"
        return "watched"

    def as_json(self) -> dict[str, Any]:
        ref = self.reference
        return {
            "model": self.model, "status": self.status,
            "versions": [{"version": v.version, "inferences": v.inferences,
                          "first_seen": _iso(v.first_seen), "last_seen": _iso(v.last_seen)}
                         for v in self.versions],
            "sites": list(self.sites), "inferences": self.inferences,
            "plan": {"version": self.plan_version, "approved_by": self.plan_approved_by,
                     "approved_at": _iso(self.plan_approved_at),
                     "in_force": "approved" if self.plan_approved_by else "default"},
            "reference": None if ref is None else {"id": ref.id, "n_events": ref.n_events,
                                                   "built_at": _iso(ref.built_at)},
            "open_incidents": self.open_incidents,
            "stop_rules_holding": self.stop_rules_holding, "suspended": self.suspended,
            "passes": {c: {"status": p.status, "error_class": p.error_class,
                           "last_run_at": _iso(p.last_run_at)}
                       for c, p in sorted(self.passes.items())},
        }  # fmt: skip


def inventory(conn: psycopg.Connection) -> list[ModelEntry]:
    """Every model with stored inferences, by name (one scan of the inferences)."""
    seen = conn.execute(
        """SELECT model_name, coalesce(model_version, '(none)'), site, count(*),
                  min(occurred_at), max(occurred_at)
           FROM inferences GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
    ).fetchall()
    if not seen:
        return []
    references = {
        str(r[0]): ActiveReference(int(r[1]), int(r[2]), r[3])
        for r in conn.execute(
            "SELECT model_name, id, n_events, created_at FROM drift_references WHERE active"
        ).fetchall()
    }
    incidents = {
        str(r[0]): (int(r[1]), int(r[2]), int(r[3]))
        for r in conn.execute(
            """SELECT model_name, count(*),
                      count(*) FILTER (WHERE stop_rule IS NOT NULL AND decision IS NULL),
                      count(*) FILTER (WHERE stop_rule IS NOT NULL AND decision = 'suspend')
               FROM incidents WHERE state <> 'resolved' GROUP BY model_name"""
        ).fetchall()
    }
    passes: dict[str, dict[str, PassStatus]] = {}
    for model, component, status, error_class, last_run in conn.execute(
        "SELECT model_name, component, status, error_class, last_run_at FROM model_pass_status"
    ).fetchall():
        passes.setdefault(str(model), {})[str(component)] = PassStatus(status, error_class,
                                                                       last_run)  # fmt: skip
    entries = []
    for model in sorted({str(r[0]) for r in seen}):
        rows = [r for r in seen if r[0] == model]
        versions: dict[str, list[Any]] = {}
        for _, version, _, n, first, last in rows:
            v = versions.setdefault(version, [0, first, last])
            v[0], v[1], v[2] = v[0] + n, min(v[1], first), max(v[2], last)
        plan = store.in_force(conn, model)
        open_n, holding, suspended = incidents.get(model, (0, 0, 0))
        entries.append(ModelEntry(
            model=model,
            versions=tuple(VersionSeen(k, *v) for k, v in sorted(versions.items(),
                                                                 key=lambda kv: kv[1][1])),
            sites=tuple(sorted({str(r[2]) for r in rows if r[2] is not None})),
            inferences=sum(int(r[3]) for r in rows),
            plan_version=plan.plan.version, plan_approved_by=plan.approved_by,
            plan_approved_at=plan.approved_at, reference=references.get(model),
            open_incidents=open_n, stop_rules_holding=holding, suspended=suspended,
            passes=passes.get(model, {}),
        ))  # fmt: skip
    return entries


def lines(entries: list[ModelEntry]) -> list[str]:
    """The inventory as a compact table (`radwatch models`)."""
    if not entries:
        return [NONE_YET]
    header = ("model", "versions", "sites", "inferences", "plan", "reference", "incidents",
              "drift", "perf.", "status")  # fmt: skip
    rows = [header]
    for e in entries:
        ref = e.reference
        rows.append((
            e.model, ", ".join(v.version for v in e.versions), str(len(e.sites)),
            f"{e.inferences:,}",
            f"{e.plan_version} ({e.plan_approved_by})" if e.plan_approved_by else "default",
            f"#{ref.id}, {ref.n_events:,} ev., {ref.built_at:%Y-%m-%d}" if ref else "none",
            str(e.open_incidents),
            _pass(e.passes.get("drift")), _pass(e.passes.get("performance")), e.status,
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows]  # fmt: skip


def _pass(found: PassStatus | None) -> str:
    if found is None:
        return "–"
    return "ok" if found.status == "ok" else f"error ({found.error_class or '?'})"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat(timespec="seconds")
