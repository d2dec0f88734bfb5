"""The compiled passes equal the numpy expressions they replace, bit for bit."""

import numpy as np
import pytest

from rumba_bids.core import kernels
from rumba_bids.core.rumba import _EPS, SIGMA2_BOUNDS, bessel_ratio

DTYPES = [np.float32, np.float64]


def _signals(dtype, shape=(37, 74), seed=0):
    rng = np.random.default_rng(seed)
    signal = rng.uniform(0.05, 1.0, shape).astype(dtype)
    reblurred = rng.uniform(0.05, 1.0, shape).astype(dtype)
    sigma2 = rng.uniform(*SIGMA2_BOUNDS, shape[0]).astype(dtype)
    return signal, reblurred, sigma2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("order", [1, 4])
@pytest.mark.parametrize("n_ahead", [0, 3, 70])
def test_bessel_weighting_is_the_numpy_expression(dtype, order, n_ahead):
    """The same values whether it prefetches no rows, fewer rows than voxels, or more."""
    signal, reblurred, sigma2 = _signals(dtype)
    arg = signal * reblurred
    arg /= sigma2[:, None]
    expected = bessel_ratio(order, arg) * signal
    # the columns prefetched end at the last one (no hint past the array)
    ahead = np.ones((n_ahead, len(signal) + 5), dtype=dtype)
    got = kernels.bessel_weighting(
        signal, reblurred, sigma2, order, np.empty_like(signal), ahead, 5
    )
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(ahead, 1)


@pytest.mark.parametrize("dtype", DTYPES)
def test_multiply_ratio_is_the_richardson_lucy_step(dtype):
    rng = np.random.default_rng(1)
    fodf, num, den = (rng.random((9, 50)).astype(dtype) for _ in range(3))
    shifted = den.copy()
    shifted += _EPS  # in place, as the numpy iteration did (float32 stays float32)
    expected = fodf * (num / shifted)
    got = kernels.multiply_ratio(fodf.copy(), num, den, _EPS)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_multiply_ratio_tv_writes_only_its_voxels(dtype):
    """The step multiplies, in place, the weights times the TV factor (held in the new
    weights) by the Richardson-Lucy ratio, at its voxels only."""
    rng = np.random.default_rng(2)
    n_comp, n_vox, k, first = 6, 40, 7, 11
    factor = rng.random((n_comp, 2 * k)).astype(dtype)
    quotient = rng.uniform(0.5, 1.5, (n_comp, k)).astype(dtype)
    new = np.full((n_comp, n_vox + 1), -1.0, dtype)
    new[:, first : first + k] = quotient
    kernels.multiply_ratio_tv(new, first, factor, _EPS)
    den = factor[:, k:].copy()
    den += _EPS
    expected = quotient * (factor[:, :k] / den)
    np.testing.assert_array_equal(new[:, first : first + k], expected)
    assert (np.delete(new, np.s_[first : first + k], axis=1) == -1).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_vol", [3, 8, 41, 74, 129, 288, 1000, 3001])
def test_noise_variance_sums_as_numpy_does(dtype, n_vol):
    """numpy's pairwise summation is reproduced (blocks of 128 and their halving)."""
    signal, reblurred, _ = _signals(dtype, (13, n_vol), seed=n_vol)
    weighted = signal * reblurred * dtype(0.9)
    half_sq = 0.5 * np.einsum("ij,ij->i", signal, signal)
    norm = 1.0 / n_vol
    arg = reblurred * 0.5
    arg -= weighted
    arg *= reblurred
    expected = arg.sum(axis=1)
    expected += half_sq
    expected *= norm
    np.clip(expected, *SIGMA2_BOUNDS, out=expected)
    got = np.empty(13, dtype=dtype)
    plan = kernels.pairwise_plan(n_vol)
    kernels.noise_variance(reblurred, weighted, half_sq, norm, *SIGMA2_BOUNDS, *plan, got)
    np.testing.assert_array_equal(got, expected)


def test_pairwise_plan_covers_every_value_once():
    for n in (1, 128, 129, 1000):
        blocks, program = kernels.pairwise_plan(n)
        assert blocks[:, 1].sum() == n and (blocks[:, 1] <= 128).all()
        np.testing.assert_array_equal(blocks[1:, 0], np.cumsum(blocks[:-1, 1]))
        # a postfix program of B leaves and B - 1 additions
        assert (program >= 0).sum() == len(blocks) and (program == -1).sum() == len(blocks) - 1


def test_a_sequential_sum_would_be_caught():
    """Negative control: summing in order differs from numpy's pairwise sum, so the
    equality above is a real check of the order."""
    values = np.random.default_rng(5).random(1000).astype(np.float32)
    sequential = np.float32(0)
    for value in values:
        sequential += value
    assert sequential != values.sum()


def test_compiled_code_is_cached_only_where_we_choose(tmp_path, monkeypatch):
    """NUMBA_CACHE_DIR when writable (created if needed); never numba's fallback to the
    home folder: an unwritable NUMBA_CACHE_DIR means no cache at all."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    assert kernels._cache_wanted() and (tmp_path / "numba").is_dir()
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/proc/rumba-bids-numba")  # cannot be created
    assert not kernels._cache_wanted()
