"""The false-alarm budget: the false incidents a hospital accepts, turned into test settings.

Pure computation at the start of detection: monitor/drift/scheduler.py and
monitor/performance/watch.py call `derive` with the model's observed daily volume and run
with what it returns; monitor/budget/ records the derivation in the audit trail and
`radwatch budget show` prints it. The hospital states one number (default: at most one false
incident per model per 90 days); the windowed tests' α, the persistence rule (consecutive
firing windows before an alert opens), the CUSUM's in-control run length (ARL0) and the
online detector's expected run time (ERT) follow from it and the volume.

How (every step is in the derivation's `as_dict`, so a reader can redo it):
- The budget is split between the channels that can open an incident (drift windows,
  performance windows, the performance CUSUM, the online detector when on), by `SHARES`.
- A windowed channel with w windows a day and daily share r may open a false alert with
  probability q = r / w per window. With α per window (the whole window's multiple-testing
  family) and persistence k, a stratum × signal opens only after k consecutive firing
  windows: per window at most Σᵢ αᵢᵏ ≤ αᵏ when windows are independent (each αᵢ ≤ α and
  Σᵢ αᵢ ≈ α for the family). The smallest k whose α = q^(1/k) stays at or above ALPHA_FLOOR
  is chosen and α is capped at ALPHA_CAP: a weak shift loses more power below α = 0.02 than
  one more window of persistence costs in delay. Windows share one reference, which
  correlates them; tests/monitor/drift/test_budget_calibration.py measures the rate.
- The CUSUM reads one indicator per labelled study: ARL0 = labelled studies a day / r.
- The online detector reads every study: ERT = studies a day / r. alibi-detect calibrates
  its thresholds by simulating about 3·d·ERT streams (d features), so at a hospital's
  volume (ERT ≈ 10⁵) a fit takes hours: it stays off by default (`online_note`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from detectors.errors import DetectorError

ALPHA_CAP = 0.05  # never looser than the suite's historical default
ALPHA_FLOOR = 0.02  # below this a longer persistence is preferred (see the docstring)
MAX_PERSISTENCE = 4
RESOLVE_AFTER = 3  # quiet windows before an alert resolves (hysteresis; not a false-alarm knob)
MAX_SPAN_DAYS = 7.0  # a window closes after this long even when not full (scheduler's max_span)

DRIFT, PERFORMANCE, CUSUM, ONLINE = "drift_windows", "performance_windows", "cusum", "online"
# Shares of the budget. Drift windows watch every study in many strata and signals, so they
# get the largest part; the online detector's share is used only when it is switched on.
SHARES: Mapping[str, float] = {DRIFT: 0.5, PERFORMANCE: 0.25, CUSUM: 0.25}
ONLINE_SHARE = 0.2  # taken from the others in proportion when the online detector is on
# An ERT above this needs more simulated streams than a reference build should spend.
ONLINE_MAX_ERT = 20_000


class BudgetError(DetectorError, ValueError):
    """A budget or volume that cannot be turned into settings (non-positive, not finite)."""


@dataclass(frozen=True)
class FalseAlarmBudget:
    """At most `incidents` false incidents per model every `days` days."""

    incidents: float = 1.0
    days: float = 90.0

    def __post_init__(self) -> None:
        for name in ("incidents", "days"):
            value = getattr(self, name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and value > 0):
                raise BudgetError(f"false-alarm budget {name} must be a positive number")

    @property
    def per_day(self) -> float:
        return self.incidents / self.days


@dataclass(frozen=True)
class Volume:
    """A model's studies and labelled studies per day, and how they were measured."""

    studies_per_day: float
    labels_per_day: float
    basis: str  # e.g. "2,880 studies over 1.0 days of event time"

    def __post_init__(self) -> None:
        for name in ("studies_per_day", "labels_per_day"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise BudgetError(f"volume {name} must be a number")
        if not (math.isfinite(self.studies_per_day) and self.studies_per_day > 0):
            raise BudgetError("the observed volume must be a positive number of studies a day")
        if not (math.isfinite(self.labels_per_day) and self.labels_per_day >= 0):
            raise BudgetError("the labelled volume must be a non-negative number a day")


@dataclass(frozen=True)
class WindowedRule:
    """α and persistence for one windowed channel, with the numbers they came from."""

    window: int  # studies per window
    windows_per_day: float
    daily_rate: float  # this channel's share of the budget, false incidents a day
    per_window: float  # q: the false-open probability allowed per window
    alpha: float
    open_after: int
    resolve_after: int
    per_window_bound: float  # α^k: the rule's false opens per window (independent windows)
    per_period_bound: float  # the same over the budget's period

    def explain(self) -> str:
        return (f"{self.windows_per_day:.3g} windows/day of {self.window}; allowed "
                f"{self.per_window:.2g} false opens per window → α = {self.alpha:.3g}, "
                f"open after {self.open_after} consecutive firing windows "
                f"(≤ {self.per_window_bound:.2g} per window)")  # fmt: skip


@dataclass(frozen=True)
class Derivation:
    """Everything detection runs with under one budget, and how it was derived."""

    budget: FalseAlarmBudget
    volume: Volume
    shares: Mapping[str, float]
    drift: WindowedRule
    performance: WindowedRule
    cusum_arl0: float  # labelled studies between false CUSUM alarms
    online_ert: int | None  # None: the online detector is off
    online_note: str
    expected_false_incidents: float = field(default=0.0)  # bound, per budget period

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["shares"] = dict(self.shares)
        return doc

    def settings(self) -> dict[str, Any]:
        """What detection runs with (the part whose change is audited)."""
        return {"drift_alpha": self.drift.alpha, "drift_open_after": self.drift.open_after,
                "performance_alpha": self.performance.alpha,
                "performance_open_after": self.performance.open_after,
                "cusum_arl0": self.cusum_arl0, "online_ert": self.online_ert}  # fmt: skip

    def lines(self) -> list[str]:
        """The derivation as a QA engineer reads it (`radwatch budget show`)."""
        b, v = self.budget, self.volume
        return [
            f"budget: at most {b.incidents:g} false incident(s) per {b.days:g} days "
            f"({b.per_day:.3g} a day)",
            f"volume: {v.studies_per_day:,.0f} studies/day, {v.labels_per_day:,.0f} labelled/day "
            f"({v.basis})",
            "shares: " + ", ".join(f"{k} {s:.0%}" for k, s in self.shares.items()),
            f"drift windows: {self.drift.explain()}",
            f"performance windows: {self.performance.explain()}",
            f"performance CUSUM: ARL0 = {self.cusum_arl0:,.0f} labelled studies between false "
            f"alarms",
            f"online detector: {self.online_note}",
            f"bound: ≤ {self.expected_false_incidents:.2g} false incidents per {b.days:g} days",
        ]


def windowed_rule(daily_rate: float, studies_per_day: float, window: int) -> WindowedRule:
    """α and persistence for a channel allowed `daily_rate` false opens a day."""
    if window <= 0:
        raise BudgetError("window size must be positive")
    # A window closes when full or after MAX_SPAN_DAYS, whichever comes first.
    per_day = max(studies_per_day / window, 1.0 / MAX_SPAN_DAYS)
    q = min(daily_rate / per_day, 1.0)
    k = next((k for k in range(2, MAX_PERSISTENCE + 1) if q ** (1 / k) >= ALPHA_FLOOR),
             MAX_PERSISTENCE)  # fmt: skip
    # Rounded down (three significant digits): the rule detection runs with never spends more
    # than its allowance, and the recorded bound is that rule's.
    alpha = _round(min(ALPHA_CAP, q ** (1 / k)), down=True)
    bound = alpha**k
    return WindowedRule(window=window, windows_per_day=per_day, daily_rate=daily_rate,
                        per_window=q, alpha=alpha, open_after=k,
                        resolve_after=RESOLVE_AFTER, per_window_bound=bound,
                        per_period_bound=0.0)  # fmt: skip


def derive(
    budget: FalseAlarmBudget,
    volume: Volume,
    *,
    drift_window: int = 200,
    performance_window: int = 500,
    online: bool = False,
) -> Derivation:
    """The settings that keep false incidents within `budget` at `volume` (pure)."""
    shares = dict(SHARES)
    if online:
        shares = {k: s * (1 - ONLINE_SHARE) for k, s in shares.items()} | {ONLINE: ONLINE_SHARE}
    rate = {k: budget.per_day * s for k, s in shares.items()}
    drift = windowed_rule(rate[DRIFT], volume.studies_per_day, drift_window)
    perf = windowed_rule(rate[PERFORMANCE], volume.studies_per_day, performance_window)
    cusum_arl0 = _round(max(volume.labels_per_day, 1.0) / rate[CUSUM], up=True)
    online_ert: int | None = None
    if online:
        online_ert = int(_round(volume.studies_per_day / rate[ONLINE], up=True))
        note = f"on, ERT {online_ert:,} studies (= studies/day ÷ its share of the budget)"
        if online_ert > ONLINE_MAX_ERT:
            note += (
                f"; above {ONLINE_MAX_ERT:,}, calibrating it simulates about "
                f"{3 * online_ert:,}·d streams at every reference build"
            )
    else:
        need = _round(volume.studies_per_day / (budget.per_day * ONLINE_SHARE))
        note = (
            f"off: within the budget it would need ERT ≈ {need:,.0f} studies, and "
            f"alibi-detect calibrates that by simulating ≈ 3·d·ERT streams per reference "
            f"build; the windowed tests and the CUSUM cover its shifts"
        )
    per_period = {DRIFT: drift, PERFORMANCE: perf}
    bound = 0.0
    for name, rule in per_period.items():
        periods = rule.windows_per_day * budget.days * rule.per_window_bound
        per_period[name] = _with_period(rule, periods)
        bound += periods
    bound += volume.labels_per_day * budget.days / cusum_arl0 if volume.labels_per_day else 0.0
    if online_ert:
        bound += volume.studies_per_day * budget.days / online_ert
    return Derivation(budget=budget, volume=volume, shares=shares, drift=per_period[DRIFT],
                      performance=per_period[PERFORMANCE], cusum_arl0=cusum_arl0,
                      online_ert=online_ert, online_note=note,
                      expected_false_incidents=bound)  # fmt: skip


def _with_period(rule: WindowedRule, per_period: float) -> WindowedRule:
    return WindowedRule(**{**asdict(rule), "per_period_bound": per_period})


def _round(x: float, *, down: bool = False, up: bool = False) -> float:
    """Three significant digits (a small change of volume does not change the settings'
    printed values); `down` / `up` round towards the safe side of a false-alarm allowance."""
    if x == 0 or not math.isfinite(x):
        return x
    digits = 2 - int(math.floor(math.log10(abs(x))))
    scale = 10.0**digits
    if down:
        return math.floor(x * scale * (1 + 1e-12)) / scale
    if up:
        return math.ceil(x * scale * (1 - 1e-12)) / scale
    return round(x, digits)
