"""The categorical detector's parts: never-seen values as their own finding, the share table
and its wording, and the Chi-square test equal to alibi-detect's ChiSquareDrift it replaces."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from detectors.drift import chi2
from detectors.drift.chi2 import pearson_chi2


def test_never_seen_value_is_a_finding_with_small_p():
    vocab = chi2.Vocabulary.fit("Manufacturer", ["ACME"] * 600 + ["Borealis"] * 400)
    found = chi2.new_values(vocab, ["ACME"] * 50 + ["Zenith"] * 10)
    assert found.values == (("Zenith", 10),) and found.p_value < 1e-10
    assert chi2.new_values(vocab, ["ACME"] * 60).p_value == 1.0
    rows = chi2.share_table(vocab, ["ACME"] * 50 + ["Zenith"] * 10)
    assert rows[0][:2] == ("Borealis", 0.0)  # 40% in the reference, absent now: the largest move
    ref_txt, cur_txt = chi2.describe_shift([("Zenith", 10 / 60, 0.0)], "Manufacturer")
    assert (
        cur_txt == "'Zenith' 17% of window" and ref_txt == "Manufacturer: 'Zenith' 0% in reference"
    )


def test_chi_square_via_scipy_gives_alibis_p_values():
    """chi2.chi2_test on a fixed example equals alibi-detect's ChiSquareDrift, which it
    replaces: rare values pooled, a never-seen value, and the 2-column (Yates) case."""
    from alibi_detect.cd import ChiSquareDrift

    ref = ["ACME"] * 500 + ["Borealis"] * 300 + ["Cobalt"] * 195 + ["Dyna"] * 5
    cases = [
        ["ACME"] * 60 + ["Borealis"] * 20 + ["Cobalt"] * 15 + ["Dyna"] * 3 + ["Zenith"] * 12,
        ["ACME"] * 48 + ["Borealis"] * 31 + ["Cobalt"] * 21,
        ["Borealis"] * 70 + ["Cobalt"] * 30,
    ]
    vocab = chi2.Vocabulary.fit("Manufacturer", ref, rare_share=0.01)
    alibi = ChiSquareDrift(vocab.encode(ref).reshape(-1, 1), p_val=0.05)
    found = []
    for window in cases:
        codes = vocab.encode(window)
        p_vals, dists = alibi.score(codes.reshape(-1, 1))
        p, statistic = chi2.chi2_test(vocab, codes)
        assert (p, statistic) == (float(p_vals[0]), float(dists[0]))
        found.append(p)
    assert found[0] < 1e-6 and found[1] > 0.05 and found[2] < 1e-6
    two = chi2.Vocabulary.fit("PatientSex", ["F"] * 300 + ["M"] * 200)
    codes = two.encode(["F"] * 30 + ["M"] * 50)  # one degree of freedom: Yates' correction
    p_vals, dists = ChiSquareDrift(two.encode(["F"] * 300 + ["M"] * 200).reshape(-1, 1)).score(
        codes.reshape(-1, 1)
    )
    assert chi2.chi2_test(two, codes) == (float(p_vals[0]), float(dists[0]))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(1, 400), min_size=1, max_size=8).flatmap(
        lambda ref: st.tuples(
            st.just(ref), st.lists(st.integers(0, 400), min_size=len(ref), max_size=len(ref))
        )
    ),
    st.booleans(),
)
def test_pearson_chi2_gives_scipys_bits(
    rows: tuple[list[int], list[int]], correction: bool
) -> None:
    """The hand-rolled test equals scipy.stats.chi2_contingency exactly (statistic and p)."""
    ref, window = rows
    table = np.array([ref, window])
    table = table[:, table.sum(axis=0) > 0]
    if table[1].sum() == 0:
        return  # an empty window is never tested
    ours = pearson_chi2(table, correction=correction)
    statistic, p = stats.chi2_contingency(table, correction=correction)[:2]
    assert ours == (float(statistic), float(p))
