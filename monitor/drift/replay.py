"""A stream of rows replayed through detection's pure steps: alerts and incidents, no servers.

Beside monitor/drift/scheduler.py, which does the same against PostgreSQL: the offline path of
the Python API (monitor/api/), and statistical tests and benchmarks that need thousands of
windows: windows are cut as the scheduler cuts them
(windows.next_window), judged at the budget's α (decisions.decide), each stratum × signal's
persistence is the lifecycle's own rule (lifecycle.step), an opening alert carries the details
and onset the scheduler stores (decisions.alert_details, decisions.onset), and opened alerts
form incidents as monitor/alerts/incidents.py forms them (grouping.choose, grouping.assess;
an incident resolves when all its alerts have). `judge` is the costly part (the tests) and
`replay` the cheap one (the rules), so one judged stream can be replayed under several
policies. `exchangeable_rows` makes seeded no-shift streams for calibration.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from detectors.drift.results import DriftResult
from detectors.drift.suite import DetectorSuite, StratumVerdict
from detectors.false_alarm_budget import Derivation
from monitor.alerts import grouping
from monitor.alerts.lifecycle import AlertPolicy, Streak, audit_safe, step
from monitor.drift import decisions
from monitor.drift.reference import ReferenceInfo
from monitor.drift.windows import EventRow, WindowSpec, next_window, stratum_values, to_sample

MODEL = "replayed-model"
ONLINE_SIGNAL = "online"  # as monitor/drift/scheduler.py names the online detector's alerts
ONSET_LOOKBACK = 5  # windows searched for the change point (scheduler.ONSET_LOOKBACK)
TOP_K = 3  # features an alert leads with (scheduler's DetectionConfig.top_k)

Key = tuple[str, str, str]  # stratum kind, stratum value, signal


@dataclass(frozen=True)
class Settings:
    """What detection runs with: the windowed tests' α, persistence and window."""

    alpha: float | None  # None: the suite's own level
    policy: AlertPolicy = field(default_factory=AlertPolicy)
    window: int = 200
    max_span: timedelta = timedelta(days=7)

    @classmethod
    def from_derivation(cls, derivation: Derivation) -> Settings:
        rule = derivation.drift
        return cls(rule.alpha, AlertPolicy(rule.open_after, rule.resolve_after), rule.window)


@dataclass(frozen=True)
class JudgedWindow:
    """One window's decisions (localised, firing or not) and the online detector's firings."""

    seq: int
    rows: tuple[EventRow, ...]
    decisions: tuple[decisions.Decision, ...]
    verdicts: tuple[StratumVerdict, ...]
    # Positions in `rows` where the online detector fired; None: no online detector.
    online_fired: tuple[int, ...] | None = None

    @property
    def start(self) -> datetime:
        return self.rows[0].occurred_at

    @property
    def end(self) -> datetime:
        return self.rows[-1].occurred_at


@dataclass(frozen=True)
class WindowSummary:
    seq: int
    end: datetime
    studies: int  # studies in the stream up to this window's end
    firing: tuple[tuple[Key, tuple[str, ...]], ...]  # firing keys with their leading features


@dataclass(frozen=True)
class OpenedAlert:
    facts: grouping.AlertFacts  # as monitor/alerts/incidents.py reads a stored alert
    seq: int  # the window at which it opened
    opened_at: datetime  # that window's end (the online detector's: the firing study's time)
    studies: int  # studies in the stream up to then
    incident: int  # index into Replay.incidents

    @property
    def key(self) -> Key:
        return (self.facts.stratum_kind, self.facts.stratum_value, self.facts.signal)

    @property
    def lead(self) -> tuple[str, ...]:
        return tuple(str(f.get("feature")) for f in self.facts.details.get("top_features", []))


@dataclass(frozen=True)
class Incident:
    alerts: tuple[int, ...]  # alert ids (OpenedAlert.facts.id)
    assessment: grouping.Assessment  # over all its alerts, as the last join left it
    seq: int  # the window at which it opened
    opened_at: datetime
    studies: int

    @property
    def root_cause(self) -> tuple[str, str]:
        return (self.assessment.root_kind, self.assessment.root_value)

    @property
    def shift_type(self) -> str:
        return self.assessment.shift_type


@dataclass(frozen=True)
class Replay:
    windows: tuple[WindowSummary, ...]
    alerts: tuple[OpenedAlert, ...]
    incidents: tuple[Incident, ...]


def reference_info(suite: DetectorSuite, n_reference: int) -> ReferenceInfo:
    """A stand-in for the stored reference's record (what alert details cite)."""
    return ReferenceInfo(id=0, model=MODEL, n_events=n_reference, content_hash="replay",
                         detector_fingerprint=suite.fingerprint, embedder_fingerprint=None,
                         strata_counts={}, calibration={})  # fmt: skip


def judge(
    suite: DetectorSuite,
    rows: Sequence[EventRow],
    *,
    alpha: float | None,
    window: int = 200,
    max_span: timedelta = timedelta(days=7),
) -> list[JudgedWindow]:
    """Every complete window of `rows` (in stream order) judged as the scheduler judges it,
    and the suite's online detector, when it has one, fed every study (`feed_online`)."""
    spec = WindowSpec(size=window, max_span=max_span)
    out: list[JudgedWindow] = []
    pos = 0
    while (found := next_window(rows[pos:], spec)) is not None:
        verdicts, made = decisions.decide(suite, found.rows, len(out) + 1, alpha=alpha)
        out.append(JudgedWindow(len(out) + 1, found.rows, tuple(made), tuple(verdicts)))
        pos += len(found.rows)
    return out if suite.online is None else feed_online(out, suite.online)


def feed_online(windows: Sequence[JudgedWindow], online: Any) -> list[JudgedWindow]:
    """The windows with where `online` (an online detector: detectors/drift/alibi_backend.py)
    fired in each; it is reset first, then fed every study in order (it keeps state)."""
    online.reset()
    out = []
    for w in windows:
        sample = to_sample(w.rows)
        # update() skips studies without the online features; map back by position, as the
        # scheduler does (_online_usable).
        usable = np.flatnonzero(np.isfinite(online._columns(sample)).all(1))
        fired = tuple(int(usable[i]) for i, u in enumerate(online.update(sample)) if u.fired)
        out.append(replace(w, online_fired=fired))
    return out


def replay(suite: DetectorSuite, windows: Sequence[JudgedWindow], settings: Settings, *,
           info: ReferenceInfo | None = None) -> Replay:  # fmt: skip
    """Judged windows → alerts opened by the persistence rule → incidents (pure)."""
    return _Replayer(suite, settings, info or reference_info(suite, 0)).run(windows)


class _Replayer:
    """The lifecycle's and incidents' state over one stream (what the database holds)."""

    def __init__(self, suite: DetectorSuite, settings: Settings, info: ReferenceInfo) -> None:
        self.suite, self.settings, self.info = suite, settings, info
        self.streaks: dict[Key, Streak] = defaultdict(Streak)
        self.first_firing: dict[Key, datetime] = {}
        self.active: dict[Key, int] = {}  # key -> index into self.alerts
        self.alerts: list[OpenedAlert] = []
        self.resolved: set[int] = set()
        self.groups: list[list[int]] = []  # incident -> alert indices
        self.opened: list[tuple[int, datetime, int]] = []  # incident -> seq, time, studies
        self.closed: set[int] = set()
        self.sites_of: dict[str, set[str]] = defaultdict(set)
        self.studies = 0

    def run(self, windows: Sequence[JudgedWindow]) -> Replay:
        summaries = []
        for i, w in enumerate(windows):
            self.studies += len(w.rows)
            for row in w.rows:
                s = stratum_values(row)
                if s["scanner"] and s["site"]:
                    self.sites_of[str(s["scanner"])].add(str(s["site"]))
            made = list(w.decisions)
            if w.online_fired is not None:
                made.append(("all", "all", ONLINE_SIGNAL, bool(w.online_fired), []))
            for kind, value, signal, fire, results in made:
                self._observe(windows, i, (kind, value, signal), fire, results)
            firing = tuple(((k, v, s), tuple(f.feature for f in
                                             decisions.top_features(rs, TOP_K)))
                           for k, v, s, fire, rs in made if fire)  # fmt: skip
            summaries.append(WindowSummary(w.seq, w.end, self.studies, firing))
        incidents = []
        for n, members in enumerate(self.groups):
            seq, at, studies = self.opened[n]
            facts = [self.alerts[a].facts for a in members]
            found = grouping.assess(facts, self._sites())
            incidents.append(Incident(tuple(f.id for f in facts), found, seq, at, studies))
        return Replay(tuple(summaries), tuple(self.alerts), tuple(incidents))

    def _observe(self, windows: Sequence[JudgedWindow], i: int, key: Key, fire: bool,
                 results: list[DriftResult]) -> None:  # fmt: skip
        w = windows[i]
        online = key[2] == ONLINE_SIGNAL
        new, action = step(self.streaks[key], firing=fire, immediate=online,
                           active=key in self.active, policy=self.settings.policy)  # fmt: skip
        self.streaks[key] = new
        if new.firing_run == 1:
            self.first_firing[key] = w.end
        if action == "open":
            if online:  # the scheduler opens it at the firing study (_online)
                first = (w.online_fired or (len(w.rows) - 1,))[0]
                at, studies = w.rows[first].occurred_at, self.studies - len(w.rows) + first + 1
                body: dict[str, Any] = {"signal": ONLINE_SIGNAL, "stratum": "all=all",
                                        "event_time": at, "onset": at}  # fmt: skip
            else:
                at, studies = w.end, self.studies
                body = {**self._details(w, key, results), **self._onset(windows, i, key, results),
                        "firing_windows": new.firing_run}  # fmt: skip
            onset = body.get("onset") or self.first_firing.get(key) or at
            facts = grouping.AlertFacts(len(self.alerts) + 1, MODEL, key[0], key[1], key[2],
                                        onset, audit_safe(body))  # fmt: skip
            self.active[key] = len(self.alerts)
            incident = self._attach(facts, w.seq, at, studies)
            self.alerts.append(OpenedAlert(facts, w.seq, at, studies, incident))
        elif action == "resolve":
            index = self.active.pop(key)
            self.resolved.add(index)
            incident = self.alerts[index].incident
            if all(a in self.resolved for a in self.groups[incident]):
                self.closed.add(incident)

    def _attach(self, facts: grouping.AlertFacts, seq: int, at: datetime, studies: int) -> int:
        """incidents.attach: join the nearest open incident it groups with, else open one."""
        open_ = [n for n in range(len(self.groups)) if n not in self.closed]
        members = [[self.alerts[a].facts for a in self.groups[n]] for n in open_]
        pick = grouping.choose(facts, members, self._sites())
        if pick is None:
            self.groups.append([facts.id - 1])
            self.opened.append((seq, at, studies))
            return len(self.groups) - 1
        self.groups[open_[pick]].append(facts.id - 1)
        return open_[pick]

    def _sites(self) -> Mapping[str, frozenset[str]]:
        return {k: frozenset(v) for k, v in self.sites_of.items()}

    def _details(self, w: JudgedWindow, key: Key, results: list[DriftResult]) -> dict[str, Any]:
        kind, value, signal = key
        verdict = next((v for v in w.verdicts if (v.kind, v.value) == (kind, value)), None)
        readings = decisions.summaries(self.suite, (kind, value), results)
        return decisions.alert_details(kind, value, signal, results, verdict, self.info, w.start,
                                       w.end, TOP_K, readings, alpha=self.settings.alpha)  # fmt: skip

    def _onset(self, windows: Sequence[JudgedWindow], i: int, key: Key,
               results: list[DriftResult]) -> dict[str, Any]:  # fmt: skip
        """scheduler._onset: this stratum's studies since the window before the firing ones."""
        back = max(self.settings.policy.open_after, ONSET_LOOKBACK - 1)
        rows = [r for w in windows[max(0, i - back) : i + 1] for r in w.rows]
        sample = to_sample(rows)
        mask = sample.stratum_mask(key[0], key[1])
        times = [r.occurred_at for r, m in zip(rows, mask, strict=True) if m]
        return decisions.onset(self.suite, (key[0], key[1]), results, sample.take(mask), times)


# --- seeded no-shift streams -------------------------------------------------------------------

START = datetime(2026, 11, 1, tzinfo=UTC)
SITES = (("north-general", "ACME", "X1"), ("south-clinic", "Borealis", "B-200"),
         ("east-imaging", "ACME", "X2"))  # fmt: skip
AGE_BANDS = ("18-29", "30-44", "45-59", "60-74", "75+")
THRESHOLD = 0.5  # the score's operating point: the model's call is tested too


def exchangeable_rows(seed: int, n: int, *, per_day: float, start: datetime = START,
                      part: int = 0) -> list[EventRow]:  # fmt: skip
    """`n` independent, identically distributed studies, `per_day` a day from `start`.

    As tests/drift_streams.py's stream with no shift: three sites with one scanner each, sex,
    age band, KVP, a 16-dimensional model embedding, a score and its call. `part` draws an
    independent stream of the same seed (e.g. 0: the reference, 1: the monitored stream).
    """
    rng = np.random.default_rng([seed, part])
    site = rng.integers(len(SITES), size=n)
    sex = np.where(rng.random(n) < 0.5, "F", "M")
    age = rng.choice(len(AGE_BANDS), size=n, p=[0.15, 0.25, 0.25, 0.2, 0.15])
    kvp = rng.normal(110, 5, size=n)
    emb = rng.normal(size=(n, 16)).astype(np.float32)
    score = rng.beta(2, 5, size=n)
    step_ = timedelta(days=1) / per_day
    rows = []
    for i in range(n):
        name, vendor, model = SITES[int(site[i])]
        dicom = {"Modality": "DX", "Manufacturer": vendor, "ManufacturerModelName": model,
                 "PhotometricInterpretation": "MONOCHROME2",
                 "KVP": float(kvp[i]), "PatientSex": str(sex[i]),
                 "AgeBand": AGE_BANDS[int(age[i])]}  # fmt: skip
        eid = str(uuid.UUID(int=(seed * 8 + part) * 10**9 + i))
        rows.append(EventRow(eid, start + i * step_, f"study-{seed}-{part}-{i:06d}", name,
                             "1.4.2", dicom, {"nodule": float(score[i])}, emb[i].tolist(),
                             None, None, {"nodule": THRESHOLD}))  # fmt: skip
    return rows
