"""The MMD detector's parts: permutation p-values (exact in the bulk, a fitted tail beyond),
and the Gaussian RBF kernel and median-heuristic bandwidth, ours, equal to alibi-detect's
GaussianRBF (Gretton et al. 2012) that they replace (seeded random data, several shapes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detectors.drift.mmd import EmbeddingMMD, median_bandwidth, permutation_p_value, single_thread


def test_permutation_p_value_exact_in_bulk_and_tail_beyond():
    null = np.random.default_rng(1).normal(size=100)
    assert permutation_p_value(0.0, null) == (1 + (null >= 0).sum()) / 101
    tail = permutation_p_value(6.0, null)
    assert 0 < tail < 1 / 101


@pytest.mark.parametrize(("n", "d", "seed"), [(500, 16, 0), (120, 8, 1), (37, 512, 2)])
def test_bandwidth_and_kernel_equal_alibis_gaussian_rbf(n, d, seed):
    from alibi_detect.utils.pytorch.kernels import GaussianRBF

    x = torch.as_tensor(np.random.default_rng(seed).normal(size=(n, d)), dtype=torch.float32)
    y = torch.as_tensor(np.random.default_rng(seed + 10).normal(size=(n // 2, d)),
                        dtype=torch.float32)  # fmt: skip
    with torch.no_grad(), single_thread():
        alibi = GaussianRBF()
        alibi(x, x, infer_sigma=True)
        # σ is stored in every fitted reference: the same bits as alibi chose.
        assert median_bandwidth(x) == float(alibi.sigma.reshape(-1)[0])
        mmd = EmbeddingMMD("e", max_reference=n, n_permutations=10, seed=0)
        mmd.sigma = median_bandwidth(x)
        # Same kernel; cdist and alibi's expanded square differ only in the last bits.
        assert torch.allclose(mmd._kernel(x, y), alibi(x, y), rtol=1e-5, atol=1e-6)
