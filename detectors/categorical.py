"""Categorical DICOM attributes: vocabularies, never-seen values, and reference-vs-current shares.

Pure helpers under the Chi-square detector (detectors/alibi_backend.py): a value never seen
in the reference (a new SoftwareVersions, a new Manufacturer) is a finding by itself, with a
p-value from the Good–Turing estimate of the reference's unseen mass (Good 1953,
Biometrika 40:237): under no shift, P(next value is unseen) ≈ (#values seen once) / N.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

MISSING = "(missing)"
RARE = "(rare)"
NEW = "(new)"


@dataclass(frozen=True)
class Vocabulary:
    """A reference attribute's values and frequencies, frozen at fit time."""

    feature: str
    counts: tuple[tuple[str, int], ...]  # value → reference count, most common first
    n: int
    rare_share: float  # values below this reference share are pooled for Chi-square

    @classmethod
    def fit(cls, feature: str, values: Sequence[object], rare_share: float = 0.01) -> Vocabulary:
        counter = Counter(as_category(v) for v in values)
        return cls(feature, tuple(counter.most_common()), len(values), rare_share)

    @property
    def shares(self) -> dict[str, float]:
        return {v: c / self.n for v, c in self.counts} if self.n else {}

    @property
    def unseen_mass(self) -> float:
        """Good–Turing estimate of P(unseen value), floored at 1/(N+1) so it is never zero."""
        singletons = sum(1 for _, c in self.counts if c == 1)
        return max(singletons / self.n if self.n else 1.0, 1.0 / (self.n + 1))

    def codes(self) -> dict[str, int]:
        """Integer codes for the Chi-square test: common values, then one pooled rare bucket."""
        shares = self.shares
        common = [v for v, _ in self.counts if shares[v] >= self.rare_share]
        mapping = {v: i for i, v in enumerate(common)}
        rare_code = len(common)
        for v, _ in self.counts:
            mapping.setdefault(v, rare_code)
        return mapping

    def encode(self, values: Sequence[object]) -> np.ndarray:
        """Codes for values; never-seen values share the pooled bucket after the rare one."""
        mapping = self.codes()
        new_code = max(mapping.values(), default=-1) + 2
        return np.array([mapping.get(as_category(v), new_code) for v in values], dtype=np.int64)


@dataclass(frozen=True)
class NewValues:
    feature: str
    values: tuple[tuple[str, int], ...]  # never-seen value → count in the window
    n_window: int
    p_value: float


def as_category(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return str(value)


def new_values(vocab: Vocabulary, window: Sequence[object]) -> NewValues:
    """Never-seen values in the window, with P(≥ k unseen | no shift) = Binomial tail."""
    known = {v for v, _ in vocab.counts}
    counter = Counter(as_category(v) for v in window)
    unseen = tuple((v, c) for v, c in counter.most_common() if v not in known)
    k = sum(c for _, c in unseen)
    n = len(window)
    p = float(stats.binom.sf(k - 1, n, vocab.unseen_mass)) if k > 0 else 1.0
    return NewValues(vocab.feature, unseen, n, p)


def share_table(vocab: Vocabulary, window: Sequence[object]) -> list[tuple[str, float, float]]:
    """(value, window share, reference share) for every value, largest |difference| first."""
    ref = vocab.shares
    counter = Counter(as_category(v) for v in window)
    n = max(len(window), 1)
    values = set(ref) | set(counter)
    rows = [(v, counter.get(v, 0) / n, ref.get(v, 0.0)) for v in values]
    return sorted(rows, key=lambda r: (-abs(r[1] - r[2]), r[0]))


def describe_shift(rows: list[tuple[str, float, float]], feature: str) -> tuple[str, str]:
    """The alert wording: "Manufacturer: 'NewVendor' 41% of window, 0% in reference"."""
    if not rows:
        return ("", "")
    value, cur, ref = rows[0]
    return (f"{feature}: '{value}' {ref:.0%} in reference", f"'{value}' {cur:.0%} of window")


def cramers_v(table: np.ndarray) -> float:
    """Cramér's V of a 2×k contingency table: the Chi-square effect size (0 none … 1 total)."""
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or table.sum() == 0:
        return 0.0
    chi2 = stats.chi2_contingency(table, correction=False)[0]
    return float(math.sqrt(chi2 / (table.sum() * (min(table.shape) - 1))))
