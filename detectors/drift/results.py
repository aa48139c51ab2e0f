"""Typed, frozen results of the drift tests: what every detector hands to the monitor.

Sits between detectors/ (pure computation) and monitor/ (storage, alerts, metrics): the
monitor consumes only these values, never alibi-detect's dicts (DESIGN.md §10).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


class Status(enum.StrEnum):
    """Outcome of one test on one window (shared with performance results)."""

    OK = "ok"
    DRIFT = "drift"
    INSUFFICIENT_DATA = "insufficient_data"
    ERROR = "error"


@dataclass(frozen=True)
class FeatureFinding:
    """One feature's contribution: its own test, effect size and reference vs current."""

    feature: str
    test: str
    p_value: float
    statistic: float
    effect_size: float
    reference: str  # human summary, e.g. "0% 'NewVendor'" or "median 0.31"
    current: str
    adjusted_p: float | None = None
    new_values: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "test": self.test,
            "p_value": _finite(self.p_value),
            "adjusted_p": _finite(self.adjusted_p),
            "statistic": _finite(self.statistic),
            "effect_size": _finite(self.effect_size),
            "reference": self.reference,
            "current": self.current,
            "new_values": list(self.new_values),
        }


@dataclass(frozen=True)
class DriftResult:
    """One detector's verdict on one window of one stratum.

    `p_value` is the detector's own (for multi-feature tests, the smallest feature p-value
    after the detector's internal correction, if any); `adjusted_p` is filled by the
    window-level multiple-testing step (Benjamini–Hochberg by default).
    """

    detector: str  # e.g. "mmd:model_embedding", "ks:scores"
    signal: str  # what moved, e.g. "model_embedding", "scores", "acquisition"
    status: Status
    p_value: float = math.nan
    statistic: float = math.nan
    threshold: float = math.nan
    effect_size: float = (
        math.nan
    )  # standardised: (stat - null mean) / null sd, or KS D / Cramér's V
    n_reference: int = 0
    n_window: int = 0
    features: tuple[FeatureFinding, ...] = ()
    atypical_ids: tuple[str, ...] = ()  # pseudonymised study ids, most atypical first
    adjusted_p: float | None = None
    message: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def with_adjusted(
        self, adjusted: float, features: tuple[FeatureFinding, ...], alpha: float
    ) -> DriftResult:
        """The result after window-level correction: DRIFT when the adjusted p is below α."""
        status = self.status
        if status in (Status.OK, Status.DRIFT):
            status = Status.DRIFT if adjusted < alpha else Status.OK
        return replace(self, adjusted_p=adjusted, features=features, status=status)

    def top_features(self, k: int = 3) -> tuple[FeatureFinding, ...]:
        def key(f: FeatureFinding) -> tuple[float, float]:
            p = f.adjusted_p if f.adjusted_p is not None else f.p_value
            return (p if math.isfinite(p) else 1.0, -abs(f.effect_size or 0.0))

        return tuple(sorted(self.features, key=key)[:k])

    def as_dict(self) -> dict[str, Any]:
        return {
            "detector": self.detector,
            "signal": self.signal,
            "status": self.status.value,
            "p_value": _finite(self.p_value),
            "adjusted_p": _finite(self.adjusted_p),
            "statistic": _finite(self.statistic),
            "threshold": _finite(self.threshold),
            "effect_size": _finite(self.effect_size),
            "n_reference": self.n_reference,
            "n_window": self.n_window,
            "features": [f.as_dict() for f in self.features],
            "atypical_ids": list(self.atypical_ids),
            "message": self.message,
        }


@dataclass(frozen=True)
class OnlineUpdate:
    """What an online detector says after one more instance (alibi's predict, typed)."""

    detector: str
    signal: str
    fired: bool
    t: int  # instances seen since the last reset
    statistic: float
    threshold: float


def _finite(value: float | None) -> float | None:
    """JSON has no NaN: missing or non-finite numbers become null."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None
