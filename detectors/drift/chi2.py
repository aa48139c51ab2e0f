"""Chi-square per categorical attribute, and never-seen values: the windowed detector for
categories (DICOM attributes, the model's calls), with the vocabularies it is fitted on.

One detector of the suite (suite.py; listed in registry.py), between a window's categories
(`Sample.categories`) and its typed `DriftResult`, one or two findings per attribute: per
attribute a Chi-square test of reference vs window counts (scipy's chi2_contingency, rare
values pooled), and a value never seen in the reference (a new SoftwareVersions, a new
Manufacturer) as a finding by itself, with a p-value from the Good–Turing estimate of the
reference's unseen mass (Good 1953, Biometrika 40:237): under no shift, P(next value is
unseen) ≈ (#values seen once) / N. No alibi-detect here: it only called chi2_contingency.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Self

import numpy as np
from scipy import special, stats

from detectors.drift.contract import CALL_PREFIX, N_ATYPICAL, Sample
from detectors.drift.results import DriftResult, FeatureFinding, Status
from detectors.drift.suite import SuiteConfig
from detectors.errors import InsufficientDataError

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
        counter = Counter(categories(values))
        return cls(feature, tuple(counter.most_common()), len(values), rare_share)

    # Cached: every stratum of every window reads them (frozen, so they never go stale).
    @cached_property
    def shares(self) -> dict[str, float]:
        return {v: c / self.n for v, c in self.counts} if self.n else {}

    @property
    def unseen_mass(self) -> float:
        """Good–Turing estimate of P(unseen value), floored at 1/(N+1) so it is never zero."""
        singletons = sum(1 for _, c in self.counts if c == 1)
        return max(singletons / self.n if self.n else 1.0, 1.0 / (self.n + 1))

    @cached_property
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
        mapping = self.codes
        new_code = max(mapping.values(), default=-1) + 2
        return np.array([mapping.get(v, new_code) for v in categories(values)], dtype=np.int64)


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


def categories(values: Iterable[object]) -> list[str]:
    """as_category of each value. Strings, nearly every value, pass through untouched: a
    window of 16 strata × 12 attributes is hundreds of thousands of values."""
    return [v if type(v) is str else as_category(v) for v in values]


def new_values(vocab: Vocabulary, window: Sequence[object]) -> NewValues:
    """Never-seen values in the window, with P(≥ k unseen | no shift) = Binomial tail."""
    known = {v for v, _ in vocab.counts}
    counter = Counter(categories(window))
    unseen = tuple((v, c) for v, c in counter.most_common() if v not in known)
    k = sum(c for _, c in unseen)
    n = len(window)
    p = float(stats.binom.sf(k - 1, n, vocab.unseen_mass)) if k > 0 else 1.0
    return NewValues(vocab.feature, unseen, n, p)


def share_table(vocab: Vocabulary, window: Sequence[object]) -> list[tuple[str, float, float]]:
    """(value, window share, reference share) for every value, largest |difference| first."""
    ref = vocab.shares
    counter = Counter(categories(window))
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
    chi2 = pearson_chi2(table, correction=False)[0]
    return float(math.sqrt(chi2 / (table.sum() * (min(table.shape) - 1))))


def pearson_chi2(table: np.ndarray, *, correction: bool = True) -> tuple[float, float]:
    """(statistic, p) of Pearson's Chi-square test of independence on a 2×k table of counts.

    What scipy.stats.chi2_contingency computes (Yates' continuity correction at one degree
    of freedom when `correction`; the same expected counts, sum and survival function, so
    the same bits: tests/detectors/drift/test_chi2.py), without its argument handling,
    which cost more than the test itself: a window of 16 strata × 12 attributes runs
    hundreds of these. Every row and column of `table` must have a count.
    """
    observed = np.asarray(table, dtype=np.float64)
    total = observed.sum()
    expected = observed.sum(axis=1, keepdims=True) * observed.sum(axis=0, keepdims=True) / total
    dof = expected.size - sum(expected.shape) + expected.ndim - 1
    if dof == 0:
        return 0.0, 1.0  # one column: observed equals expected
    if dof == 1 and correction:
        diff = expected - observed
        observed = observed + np.minimum(0.5, np.abs(diff)) * np.sign(diff)
    statistic = float(((observed - expected) ** 2 / expected).sum())
    return statistic, float(special.chdtrc(dof, statistic))


def chi2_test(vocab: Vocabulary, window_codes: np.ndarray) -> tuple[float, float]:
    """Pearson's Chi-square of reference vs window code counts: (p, statistic).

    The table's columns are the union of the reference's codes and the window's, as
    alibi-detect's ChiSquareDrift built it (chi2_contingency with its default Yates
    correction, which applies only at one degree of freedom). Both values are rounded
    through float32, as alibi returned them, so verdicts are unchanged by the move.
    """
    both = contingency(vocab, window_codes)
    # The columns of codes seen in either sample (a code neither has is no column).
    table = both[:, both.sum(axis=0) > 0]
    with np.errstate(all="ignore"):
        statistic, p = pearson_chi2(table)
    p32, stat32 = float(np.float32(p)), float(np.float32(statistic))
    return (p32 if math.isfinite(p32) else 1.0), stat32


def contingency(vocab: Vocabulary, window_codes: np.ndarray) -> np.ndarray:
    """The 2×k table of reference and window counts per code (for Cramér's V)."""
    # The reference's counts per code, from its value counts (not one code per study).
    ref_codes = vocab.encode([v for v, _ in vocab.counts])
    k = int(max(ref_codes.max(initial=0), window_codes.max(initial=0))) + 1
    ref = np.bincount(ref_codes, weights=[c for _, c in vocab.counts], minlength=k)
    return np.vstack([ref.astype(np.int64), np.bincount(window_codes, minlength=k)])


class CategoricalChi2:
    """Chi-square per categorical DICOM attribute, plus never-seen values as their own finding."""

    kind = "CategoricalChi2"  # its name in a stored reference's manifest

    def __init__(self, signal: str, attributes: tuple[str, ...], rare_share: float) -> None:
        self.signal = signal
        self.name = f"chi2:{signal}"
        self.attributes = attributes
        self.rare_share = rare_share

    @classmethod
    def candidates(
        cls, part: Sample, config: SuiteConfig, attributes: tuple[str, ...], whole: bool
    ) -> list[Self]:
        """The DICOM attributes as one signal, and the model's calls ("call:<score>") as part
        of its output signal."""
        found = []
        if any(a in part.categories for a in attributes):
            found.append(cls("acquisition", attributes, config.rare_share))
        calls = tuple(sorted(a for a in part.categories if a.startswith(CALL_PREFIX)))
        if calls:
            found.append(cls("scores", calls, config.rare_share))
        return found

    def fit(self, reference: Sample) -> Self:
        # attribute -> (vocabulary, None): the pair's shape is kept for readers that index [0].
        self.vocab: dict[str, tuple[Vocabulary, None]] = {}
        for attr in self.attributes:
            values = reference.categories.get(attr)
            if values is None or len(values) == 0:
                continue
            self.vocab[attr] = (Vocabulary.fit(attr, list(values), self.rare_share), None)
        if not self.vocab:
            raise InsufficientDataError("no categorical attribute in the reference")
        return self

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """JSON parameters (vocabularies in fit order) and no arrays."""
        vocab = [{"feature": v.feature, "counts": [list(c) for c in v.counts], "n": v.n,
                  "rare_share": v.rare_share} for v, _ in self.vocab.values()]  # fmt: skip
        return {"signal": self.signal, "attributes": list(self.attributes),
                "rare_share": self.rare_share, "vocab": vocab}, {}  # fmt: skip

    @classmethod
    def from_state(cls, params: dict[str, Any], arrays: dict[str, np.ndarray]) -> Self:
        self = cls(params["signal"], tuple(params["attributes"]), float(params["rare_share"]))
        self.vocab = {}
        for v in params["vocab"]:
            counts = tuple((str(value), int(c)) for value, c in v["counts"])
            vocab = Vocabulary(str(v["feature"]), counts, int(v["n"]), float(v["rare_share"]))
            self.vocab[vocab.feature] = (vocab, None)
        return self

    def indicator(self, window: Sample, result: DriftResult) -> np.ndarray | None:
        """Each study's surprisal under the reference shares of the leading attribute: high
        for never-seen or newly frequent values."""
        top = result.top_features(1)
        if not top or top[0].feature not in self.vocab:
            return None
        vocab = self.vocab[top[0].feature][0]
        shares = vocab.shares
        values = window.categories.get(top[0].feature, np.array([], dtype=object))
        floor = 1.0 / (vocab.n + 1)  # a never-seen value is rare, not impossible
        return _surprisal(shares, categories(values), floor)

    def summary(self, result: DriftResult) -> str | None:
        return None  # the per-attribute findings say what moved

    def score(self, window: Sample, *, seed: int = 0) -> DriftResult:
        findings = []
        window_values: dict[str, list[str]] = {}  # categorised once, read by every test below
        for attr, (vocab, _) in self.vocab.items():
            values = window.categories.get(attr)
            if values is None or len(values) == 0:
                continue
            vals = window_values[attr] = categories(values)
            rows = share_table(vocab, vals)
            ref_txt, cur_txt = describe_shift(rows, attr)
            new = new_values(vocab, vals)
            if new.values:
                listed = ", ".join(f"'{v}' {c / len(vals):.0%}" for v, c in new.values[:3])
                findings.append(FeatureFinding(
                    feature=attr, test="new_value", p_value=new.p_value,
                    statistic=float(sum(c for _, c in new.values)),
                    effect_size=sum(c for _, c in new.values) / len(vals),
                    reference=f"{attr}: never seen in reference",
                    current=f"{listed} of window", new_values=tuple(v for v, _ in new.values),
                ))  # fmt: skip
            codes = vocab.encode(vals)
            if len(vocab.counts) == 1 and set(codes) == {0}:
                continue  # the same single value in both: nothing to test
            p, statistic = chi2_test(vocab, codes)
            findings.append(FeatureFinding(
                feature=attr, test="chi2", p_value=p, statistic=statistic,
                effect_size=cramers_v(contingency(vocab, codes)), reference=ref_txt,
                current=cur_txt,
            ))  # fmt: skip
        if not findings:
            raise InsufficientDataError("no categorical attribute in the window")
        best = min(findings, key=lambda f: f.p_value)
        # Most atypical studies: rarest values under the reference (summed surprisal).
        surprisal = np.zeros(len(window))
        for vocab, _ in self.vocab.values():
            cats = window_values.get(vocab.feature)
            if cats is not None and len(cats) == len(window):
                surprisal += _surprisal(vocab.shares, cats, 1.0 / (vocab.n + 1))
        order = np.argsort(-surprisal, kind="stable")[:N_ATYPICAL]
        return DriftResult(
            atypical_ids=tuple(window.ids[i] for i in order),
            detector=self.name, signal=self.signal, status=Status.OK, p_value=best.p_value,
            statistic=best.statistic, effect_size=max(f.effect_size for f in findings),
            n_reference=max(v.n for v, _ in self.vocab.values()), n_window=len(window),
            features=tuple(findings),
        )  # fmt: skip


def _surprisal(shares: dict[str, float], values: list[str], floor: float) -> np.ndarray:
    """-log(reference share + floor) of each value; the floor keeps a never-seen value finite."""
    found = np.fromiter((shares.get(v, 0.0) for v in values), dtype=float, count=len(values))
    return -np.log(found + floor)
