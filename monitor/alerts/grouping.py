"""Which alerts of one model are one incident, where its root cause lies, and what kind of shift.

Between the alert lifecycle (monitor/alerts/lifecycle.py opens alerts per stratum × signal) and
the incidents people act on (monitor/alerts/incidents.py stores them): pure functions over the
alerts' stored details (monitor/drift/decisions.py `alert_details`, monitor/performance/
evaluation.py `window_decisions`). No database here: the caller passes which sites each scanner
produced studies at.

Grouping: an alert belongs with an incident's alerts when the model is the same, its onset lies
within the members' onsets widened by a tolerance (`tolerance`), and its stratum is nested with
every member's: whole model ⊃ site ⊃ scanner (a scanner is inside the sites it produced studies
at); population strata (view, sex, age band) cut across sites and nest only in the whole model,
so they sit with any member. The root cause is the most specific stratum on that chain.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from monitor.plan.document import RECOMMENDED_ACTIONS, SHIFT_TYPES  # noqa: F401 (the types it infers)

ALL = ("all", "all")
POPULATION_KINDS = frozenset({"view", "sex", "age_band"})

# Onsets are change points dated within about one window of the truth (tests/monitor/drift/
# test_scheduler.py), so two alerts of one shift can differ by up to two windows: the tolerance
# is two of the alert's windows, and never less than a day.
ONSET_TOLERANCE = timedelta(hours=24)
TOLERANCE_WINDOWS = 2

# Attributes whose change means the studies reach the model wrongly, not that the device changed:
# inverted greyscale (PS3.3 C.7.6.3.1.2 PhotometricInterpretation, C.11.6 PresentationLUTShape),
# another modality or body part routed to the model.
INTEGRATION_ATTRIBUTES = frozenset({"PhotometricInterpretation", "PresentationLUTShape",
                                    "Modality", "BodyPartExamined"})  # fmt: skip
POPULATION_ATTRIBUTES = frozenset({"PatientSex", "ViewPosition", "AgeBand"})
MISSING = "(missing)"  # how the categorical test names an absent tag (detectors/drift/chi2.py)
# Image-quality features on [0, 1] intensities (detectors/embedding/image_features.py): an
# inverted image maps each to about 1 − itself.
INTENSITY_FEATURES = frozenset({"p01", "p05", "p25", "p50", "p75", "p95", "p99", "mean"})
GEOMETRY_FEATURES = frozenset({"rows", "columns", "spacing_row_mm", "spacing_col_mm"})
IMAGE_SIGNALS = frozenset({"image_quality", "image_embedding"})  # the pixels themselves
OUTPUT_SIGNALS = frozenset({"scores", "model_embedding"})  # what the model made of them
PERFORMANCE = "performance"
# The windowed test's alerts and the sequential channel's (monitor/performance/sequential.py).
# The AI-vs-report discrepancy rate (monitor/labelwatch/discrepancy.py) is read as one too:
# the model disagrees with the radiologists more often than it did.
PERFORMANCE_SIGNALS = frozenset(
    {PERFORMANCE, "performance_cusum", "performance_floor", "discrepancy"}
)
INPUT_KINDS = ("acquisition", "population", "integration")  # what a finding can say of inputs
MATERIAL_P = 1e-3  # evidence that names an input shift (adjusted p), see shift_type

_READABLE = {"acquisition": "acquisition tags", "image_quality": "image quality",
             "image_embedding": "images", "model_embedding": "model embeddings",
             "scores": "scores", "online": "the online detector",
             PERFORMANCE: "performance", "performance_cusum": "performance",
             "performance_floor": "performance",
             "discrepancy": "AI-report discrepancy"}  # fmt: skip
_MEDIAN = re.compile(r"median\s+(-?[\d.]+(?:e-?\d+)?)")


@dataclass(frozen=True)
class AlertFacts:
    """What grouping reads of one alert: where, which signal, since when, its stored details."""

    id: int
    model: str
    stratum_kind: str
    stratum_value: str
    signal: str
    onset: datetime  # the alert's onset, or its first firing window's end when unknown
    details: Mapping[str, Any]
    window: timedelta | None = None  # its windows' span, when the details do not give it

    @property
    def stratum(self) -> tuple[str, str]:
        return ALL if self.stratum_kind == "all" else (self.stratum_kind, self.stratum_value)


@dataclass(frozen=True)
class Assessment:
    """One incident's reading: root-cause stratum, shift type, statement, action, onset."""

    root_kind: str
    root_value: str
    shift_type: str
    summary: str
    recommended_action: str
    onset: datetime

    @property
    def root_cause(self) -> str:
        return f"{self.root_kind}={self.root_value}"


SitesOf = Mapping[str, Iterable[str]]  # scanner -> the sites it produced studies at


def tolerance(alert: AlertFacts) -> timedelta:
    """Two of the alert's windows (its details' window bounds, else `window`), at least
    ONSET_TOLERANCE."""
    start, end = _time(alert.details.get("window_start")), _time(alert.details.get("window_end"))
    span = end - start if start is not None and end is not None else alert.window
    if span is None or span <= timedelta(0):
        return ONSET_TOLERANCE
    return max(ONSET_TOLERANCE, TOLERANCE_WINDOWS * span)


def nested(a: tuple[str, str], b: tuple[str, str], sites_of: SitesOf) -> bool:
    """Whether one stratum contains the other (or they cut across: population strata).

    A scanner whose sites the caller does not know is taken to sit in any site.
    """
    if a == b or ALL in (a, b) or a[0] in POPULATION_KINDS or b[0] in POPULATION_KINDS:
        return True
    kinds = {a[0], b[0]}
    if kinds == {"site", "scanner"}:
        site, scanner = (a, b) if a[0] == "site" else (b, a)
        sites = sites_of.get(scanner[1])
        return sites is None or site[1] in set(sites)
    return False


def belongs(alert: AlertFacts, members: Sequence[AlertFacts], sites_of: SitesOf) -> bool:
    """Same model, onset overlapping the members' (within `tolerance`), strata nested."""
    if not members or any(m.model != alert.model for m in members):
        return False
    tol = max(tolerance(alert), *(tolerance(m) for m in members))
    onsets = [m.onset for m in members]
    if not min(onsets) - tol <= alert.onset <= max(onsets) + tol:
        return False
    return all(nested(alert.stratum, m.stratum, sites_of) for m in members)


def choose(alert: AlertFacts, incidents: Sequence[Sequence[AlertFacts]],
           sites_of: SitesOf) -> int | None:  # fmt: skip
    """Index of the incident the alert joins (the nearest onset first), or None: a new one."""
    fits = [i for i, members in enumerate(incidents) if belongs(alert, members, sites_of)]
    if not fits:
        return None
    return min(fits, key=lambda i: min(abs(m.onset - alert.onset) for m in incidents[i]))


def root_stratum(members: Sequence[AlertFacts]) -> tuple[str, str]:
    """The most specific stratum that explains the others: the scanner when an alert is
    there, else the site, else a single population stratum, else the whole model."""
    strata = {m.stratum for m in members}
    for kind in ("scanner", "site"):
        found = sorted(s for s in strata if s[0] == kind)
        if len(found) == 1:
            return found[0]
    population = sorted(s for s in strata if s[0] in POPULATION_KINDS)
    return population[0] if len(population) == 1 else ALL


def shift_type(members: Sequence[AlertFacts], root: tuple[str, str] = ALL) -> str:
    """The kind of shift, from which signals moved and which findings lead.

    Only material evidence (adjusted p ≤ MATERIAL_P) names an input shift, so that a borderline
    finding riding along (the window's sex mix at p = 0.05 beside a prevalence change) does not.
    Integration wins whenever a material finding shows it (inverted greyscale, a missing tag,
    another modality); otherwise the strongest material attribute finding decides between
    acquisition (device, software, protocol) and population (age, sex, view). Images that moved
    materially with no attribute are acquisition when localised to a site or scanner, unknown
    when not. With no input shift: a performance alert is performance, moved scores are
    prevalence; a weak attribute finding alone still names its kind.
    """
    findings = sorted(
        (_p(f), -abs(_num(f.get("effect_size")) or 0.0), _finding_kind(f, m.signal))
        for m in members for f in _features(m.details)
    )  # fmt: skip
    inputs = [kind for p, _, kind in findings if kind in INPUT_KINDS]
    material = [kind for p, _, kind in findings if kind in INPUT_KINDS and p <= MATERIAL_P]
    if "integration" in material:
        return "integration"
    if material:
        return material[0]
    signals = {m.signal for m in members}
    if any(m.signal in IMAGE_SIGNALS and _best_p(m.details) <= MATERIAL_P for m in members):
        return "acquisition" if root[0] in ("site", "scanner") else "unknown"
    if signals & PERFORMANCE_SIGNALS:
        return "performance"
    if "scores" in signals:
        return "prevalence"
    return inputs[0] if inputs else "unknown"


def assess(members: Sequence[AlertFacts], sites_of: SitesOf,
           actions: Mapping[str, str] = RECOMMENDED_ACTIONS) -> Assessment:  # fmt: skip
    """Root cause, shift type, the one-paragraph statement and the recommended action."""
    if not members:
        raise ValueError("an incident needs at least one alert")
    root = root_stratum(members)
    kind = shift_type(members, root)
    onset = min(m.onset for m in members)
    return Assessment(root[0], root[1], kind, statement(members, root, kind, onset, sites_of),
                      actions.get(kind, RECOMMENDED_ACTIONS[kind]), onset)  # fmt: skip


def statement(members: Sequence[AlertFacts], root: tuple[str, str], kind: str,
              onset: datetime, sites_of: SitesOf) -> str:  # fmt: skip
    """E.g. "scanner ACME X1 at north-general: SoftwareVersions: '5.0.1' 100% of window, never
    seen in reference; since 2026-11-07 06:15 UTC; acquisition tags, images and performance
    moved there; the whole-model and site alerts follow from it (acquisition shift, 6 alerts)".
    Built from the findings' own readings; study pseudonyms are never quoted."""
    at_root = [m for m in members if m.stratum == root] or list(members)
    evidence = _evidence(at_root, members)
    moved = _join(sorted({_READABLE.get(m.signal, m.signal) for m in at_root}))
    text = f"{_where(root, members, sites_of)}: "
    text += "; ".join(evidence) + "; " if evidence else ""
    text += f"since {onset:%Y-%m-%d %H:%M} UTC; {moved} moved there"
    wider = sorted({_stratum_word(m.stratum) for m in members if m.stratum != root})
    if wider:
        text += f"; the {_join(wider)} alerts follow from it"
    n = len(members)
    return text + f" ({kind} shift, {n} alert{'s' if n != 1 else ''})"


# --- reading the details -------------------------------------------------------------------------


def _features(details: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [f for f in details.get("top_features") or [] if isinstance(f, Mapping)]


def _finding_kind(f: Mapping[str, Any], signal: str) -> str:
    feature = str(f.get("feature", ""))
    text = f"{f.get('current', '')} {' '.join(map(str, f.get('new_values') or []))}"
    if feature in INTEGRATION_ATTRIBUTES or MISSING in text:
        return "integration"
    if signal == "image_quality":
        if feature in INTENSITY_FEATURES and _inverted(f):
            return "integration"
        return "acquisition" if feature in GEOMETRY_FEATURES else "image"  # detector read-out
    if feature in POPULATION_ATTRIBUTES:
        return "population"
    return "acquisition" if signal == "acquisition" else "output"


def _inverted(f: Mapping[str, Any]) -> bool:
    """An intensity feature whose window median is about 1 − its reference median."""
    ref, cur = _median(f.get("reference")), _median(f.get("current"))
    if ref is None or cur is None:
        return False
    return abs(ref - cur) > 0.2 and abs(ref + cur - 1.0) < 0.1


def _median(text: Any) -> float | None:
    match = _MEDIAN.search(str(text or ""))
    return float(match.group(1)) if match else None


def _evidence(at_root: Sequence[AlertFacts], members: Sequence[AlertFacts],
              limit: int = 2) -> list[str]:  # fmt: skip
    """The leading findings' readings (the root's, else any member's: AgeBand is tested on the
    whole model, not inside the age band), performance drops and whole-signal test readings."""
    found = sorted((f for m in at_root for f in _features(m.details)), key=_p) or sorted(
        (f for m in members for f in _features(m.details)), key=_p
    )
    out: list[str] = []
    for f in found:
        text = str(f.get("summary") or "")
        if text and text not in out:
            out.append(text)
    out = out[:limit]
    for m in at_root:
        if m.signal in PERFORMANCE_SIGNALS:
            out += _performance(m.details)
    if not out:
        for m in at_root:
            out += [f"{t['detector']}: {t['summary']}" for t in m.details.get("tests") or []
                    if isinstance(t, Mapping) and t.get("status") == "drift" and t.get("summary")]  # fmt: skip
    return out[: limit + 2]


def _performance(details: Mapping[str, Any]) -> list[str]:
    if details.get("method") in ("cusum", "discrepancy"):  # each carries its one-line reading
        return [str(details["summary"])] if details.get("summary") else []
    out = []
    findings = details.get("findings") or {}
    for name in details.get("degraded_findings") or []:
        worst = (findings.get(name) or {}).get("worst_test") or {}
        ref, win = _num(worst.get("reference")), _num(worst.get("window"))
        if worst.get("metric") and ref is not None and win is not None:
            out.append(f"{name} {worst['metric']} {win:.2f} vs {ref:.2f} in reference")
    return out


def _where(root: tuple[str, str], members: Sequence[AlertFacts], sites_of: SitesOf) -> str:
    if root == ALL:
        return "the whole model"
    if root[0] == "scanner":
        sites = sorted({m.stratum_value for m in members if m.stratum_kind == "site"}
                       or set(sites_of.get(root[1], ())))  # fmt: skip
        return f"scanner {root[1]}" + (f" at {', '.join(sites)}" if sites else "")
    return f"{root[0].replace('_', ' ')} {root[1]}"


def _stratum_word(stratum: tuple[str, str]) -> str:
    return "whole-model" if stratum == ALL else stratum[0].replace("_", " ")


def _join(words: Sequence[str]) -> str:
    return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else "".join(words)


def _best_p(details: Mapping[str, Any]) -> float:
    """The strongest evidence of an alert: its smallest adjusted p over tests and features."""
    tests = [t for t in details.get("tests") or [] if isinstance(t, Mapping)]
    return min((_p(x) for x in [*tests, *_features(details)]), default=1.0)


def _p(f: Mapping[str, Any]) -> float:
    for key in ("adjusted_p", "p_value"):
        value = _num(f.get(key))
        if value is not None:
            return value
    return 1.0


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None
