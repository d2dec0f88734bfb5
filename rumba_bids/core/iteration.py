"""The RUMBA-SD iteration of :class:`~rumba_bids.core.rumba.RumbaSDModel`, batched over voxels.

Both fit modes run the same update: voxels are processed in chunks with two
matrix products per iteration (one with the kernel, one with its transpose
on the stacked numerator/denominator operands) and, between them, the
compiled element-wise passes of :mod:`.kernels`.  Without TV, each chunk runs
all iterations while it sits in cache (:func:`_iterate_plain`); with TV, every
iteration sweeps slabs of slices, computing each slab's TV factor
(:mod:`.tv`) and its update together (:func:`_iterate_tv`).  Chunks (and
slabs) are spread over ``n_threads`` workers with BLAS on one thread each;
they are fixed by the data alone, so results do not depend on the number of
threads.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from . import kernels
from .threads import WorkerPool
from .tv import TVLayout, TVWork, slab_tv_denominator, tv_epsilon2

_EPS = np.finfo(np.float64).eps
SIGMA0 = 1.0 / 15.0  # initial noise level (S0 = 1)
SIGMA2_BOUNDS = ((1.0 / 80.0) ** 2, (1.0 / 8.0) ** 2)  # SNR between 8 and 80
TV_LAMBDA_FLOOR = (1.0 / 30.0) ** 2


def bessel_ratio(order: int, x: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """Approximate ``I_order(x) / I_{order-1}(x)`` (modified Bessel functions).

    Perron's continued fraction truncated after four levels, the
    approximation of the RUMBA-SD reference implementation and of DIPY's
    ``mbessel_ratio`` (same values to round-off).  Its relative error,
    measured against ``scipy.special.ive`` on a dense grid of x in (0, 1e6]
    (``tests/core/test_rumba_api.py``), is largest at moderate x and falls
    with the order: at most 1.15e-2 for order 1 (x ~ 2.2), 5.6e-3 for order 2,
    3.0e-3 for order 4, 1.5e-3 for order 16, 1.3e-3 for order 32; it tends to 0 for small
    and large x.  Evaluated in place on ``x``'s dtype to keep the inner loop
    cheap.

    Parameters
    ----------
    order : int
        ``n`` >= 1 (number of coils for noncentral chi; 1 for Rician).
    x : ndarray
        Non-negative arguments.
    out : ndarray, optional
        Output array (may not be ``x``).

    Examples
    --------
    >>> from scipy.special import ive
    >>> x = np.array([0.5, 5.0, 50.0])
    >>> bool(np.allclose(bessel_ratio(1, x), ive(1, x) / ive(0, x), rtol=1e-3))
    True
    """
    n = float(order)
    two_x = np.multiply(x, 2.0)
    # innermost level first: d3 = 2n+3+2x ; d_k = (2n+k+2x) - 2x (n+k+1/2) / d_{k+1}
    denom = two_x + (2 * n + 3)
    for level in (2, 1):
        step = np.multiply(two_x, n + level + 0.5)
        step /= denom
        denom = np.subtract(two_x + (2 * n + level), step, out=denom)
    step = np.multiply(two_x, n + 0.5)
    step /= denom
    denom = np.subtract(np.add(x, 2 * n), step, out=denom)
    return np.divide(x, denom, out=out)


@dataclass(frozen=True)
class RumbaIterationSettings:
    """Hyperparameters of the iteration, shared by both fit modes."""

    n_iter: int
    noise_order: int  # 1 for Rician, n_coils for noncentral chi
    use_tv: bool = False
    R: int = 1


def _initial_noise_state(signal: np.ndarray, order: int):
    """Normalisation 1/(N n), half the squared signal norm (V,), and the two
    noise variances of the first iteration (the ratio uses the lagged one)."""
    n_vox, n_vol = signal.shape
    half_sq = 0.5 * np.einsum("ij,ij->i", signal, signal)
    sigma2 = np.full(n_vox, SIGMA0**2, dtype=signal.dtype)
    return 1.0 / (n_vol * order), half_sq, sigma2, sigma2.copy()


def _run_chunk(signal, kernel, kernel_t, fodf, settings, sigma2_out):
    """All iterations of the plain (no TV) update for one chunk, in place.

    signal : (V, N) normalised data; fodf : (V, C) initial weights (updated);
    sigma2_out : (V,) receives the final noise variance.  Two matrix products
    per iteration; the element-wise steps are compiled passes (:mod:`.kernels`).
    """
    n_vox, n_vol = signal.shape
    dtype = signal.dtype
    order = settings.noise_order
    norm, half_sq, sigma2, sigma2_arg = _initial_noise_state(signal, order)
    operands = np.empty((2 * n_vox, n_vol), dtype=dtype)
    weighted = operands[:n_vox]  # signal * bessel ratio
    reblurred = operands[n_vox:]  # the prediction
    np.matmul(fodf, kernel_t, out=reblurred)
    factor = np.empty((2 * n_vox, fodf.shape[1]), dtype=dtype)
    spare = np.empty_like(sigma2)
    plan = kernels.pairwise_plan(n_vol)
    for _ in range(settings.n_iter):
        # (no rows to prefetch: the chunk stays in cache)
        kernels.bessel_weighting(signal, reblurred, sigma2_arg, order, weighted, fodf[:0], 0)
        np.matmul(operands, kernel, out=factor)
        kernels.multiply_ratio(fodf, factor[:n_vox], factor[n_vox:], _EPS)
        np.matmul(fodf, kernel_t, out=reblurred)
        # noise variance: mean over volumes of (S^2 + Sr^2)/2 - S Sr ratio
        kernels.noise_variance(reblurred, weighted, half_sq, norm, *SIGMA2_BOUNDS, *plan, spare)
        # the next iteration's lagged variance is this one's
        sigma2_arg, sigma2, spare = sigma2, spare, sigma2_arg
    sigma2_out[:] = sigma2


def _chunks(n_vox: int, chunk_size: int) -> list[slice]:
    """Consecutive row ranges of ``chunk_size`` voxels: the fixed units of work."""
    return [slice(start, min(start + chunk_size, n_vox)) for start in range(0, n_vox, chunk_size)]


def _iterate_plain(signal, kernel, fodf, settings, *, chunk_size, n_threads, progress):
    """Voxel chunks, each run for all iterations (cache friendly), on ``n_threads``."""
    kernel_t = np.ascontiguousarray(kernel.T)
    n_vox = len(signal)
    sigma2 = np.empty(n_vox, dtype=signal.dtype)
    start_time = time.perf_counter()
    done = [0]

    def work(rows):
        chunk = np.array(fodf[rows])
        _run_chunk(signal[rows], kernel, kernel_t, chunk, settings, sigma2[rows])
        fodf[rows] = chunk

    def report(rows):
        done[0] += rows.stop - rows.start
        if progress is not None:
            progress(done[0] / n_vox, time.perf_counter() - start_time)

    with WorkerPool(n_threads) as pool:
        pool.run(work, _chunks(n_vox, chunk_size), done=report)
    return sigma2


class _TVThreadWork:
    """One thread's work arrays of the TV iteration, reused by all its slabs and chunks."""

    def __init__(self, layout, n_comp, n_vol, chunk_size, dtype):
        self.tv = TVWork(layout.max_points, dtype)
        chunk = min(chunk_size, layout.max_rows)
        self.operands = np.empty(2 * chunk * n_vol, dtype=dtype)
        self.factor = np.empty(2 * chunk * n_comp, dtype=dtype)


def _tv_chunk_update(signal, reblurred, new_weights, work, state, rows, order):
    """One RUMBA-SD update with TV of the k voxels ``rows`` (compartment-major weights).

    ``new_weights`` (C, V + 1) holds at ``rows`` the weights times the TV
    factor on entry and the new weights on return; ``reblurred`` (k, N) is read
    then replaced by the new prediction; ``state`` holds the kernel and the noise variances (read:
    ``sigma2_arg``; written: ``new_sigma2``).
    """
    n_vox, n_vol = signal.shape
    operands = work.operands[: 2 * n_vox * n_vol].reshape(2 * n_vox, n_vol)
    weighted = operands[:n_vox]
    operands[n_vox:] = reblurred
    # the step's weights come next from memory: prefetched while the Bessel pass computes
    kernels.bessel_weighting(
        signal, reblurred, state.sigma2_arg[rows], order, weighted, new_weights, rows.start
    )
    n_comp = len(state.kernel_t)
    factor = work.factor[: 2 * n_vox * n_comp].reshape(n_comp, 2 * n_vox)
    np.matmul(state.kernel_t, operands.T, out=factor)
    kernels.multiply_ratio_tv(new_weights, rows.start, factor, _EPS)
    np.matmul(new_weights[:, rows].T, state.kernel_t, out=reblurred)
    kernels.noise_variance(
        reblurred,
        weighted,
        state.half_sq[rows],
        state.norm,
        *SIGMA2_BOUNDS,
        *kernels.pairwise_plan(signal.shape[1]),
        state.new_sigma2[rows],
    )


@dataclass
class _TVState:
    kernel_t: np.ndarray
    norm: float
    half_sq: np.ndarray
    sigma2_arg: np.ndarray
    new_sigma2: np.ndarray


def _iterate_tv(
    signal, kernel, initial, settings, *, grid_mask, tv_scale, chunk_size, n_threads, progress
):
    """Global fit with total variation: each iteration sweeps every slab of slices.

    A slab's TV factor (from the weights of its voxels and of one slice on
    each side, :mod:`.tv`) and its update are computed together, chunk by
    chunk, while they are in cache; the new weights go to a second array, so
    slabs run in parallel.  ``initial`` (C,) is every voxel's starting weight;
    returns the final noise variances (V,) and weights (V, C).
    """
    n_vox, n_vol = signal.shape
    dtype = signal.dtype
    order = settings.noise_order
    layout = TVLayout(grid_mask)
    norm, half_sq, sigma2, sigma2_arg = _initial_noise_state(signal, order)
    # compartment-major, one more column of zeros: the grid points outside the mask
    n_comp = len(initial)
    weights = np.empty((n_comp, n_vox + 1), dtype=dtype)
    weights[:, :n_vox] = initial[:, None]
    weights[:, n_vox] = 0
    new_weights = np.empty_like(weights)
    new_weights[:, n_vox] = 0
    kernel_t = np.ascontiguousarray(kernel.T)
    reblurred = np.empty((n_vox, n_vol), dtype=dtype)
    reblurred[:] = initial @ kernel_t
    eps2 = tv_epsilon2(tv_scale, dtype)
    state = _TVState(kernel_t, norm, half_sq, sigma2_arg, np.empty_like(sigma2))
    tv_lambda = SIGMA0**2
    start_time = time.perf_counter()

    slab_work = threading.local()

    def work(slab):
        first = slab.rows.start
        if not hasattr(slab_work, "arrays"):
            slab_work.arrays = _TVThreadWork(layout, n_comp, n_vol, chunk_size, dtype)
        work_arrays = slab_work.arrays
        # the weights times the TV factor go where the slab's new weights will be
        # (the update multiplies them by the ratio in place)
        slab_tv_denominator(
            weights,
            slab,
            tv_lambda,
            eps2,
            new_weights,
            work_arrays.tv,
            out_first=first,
            quotient=True,
        )
        for local in _chunks(slab.n_rows, chunk_size):
            rows = slice(first + local.start, first + local.stop)
            _tv_chunk_update(
                signal[rows],
                reblurred[rows],
                new_weights,
                work_arrays,
                state,
                rows,
                order,
            )

    with WorkerPool(n_threads) as pool:
        for iteration in range(settings.n_iter):
            pool.run(work, layout.slabs)
            weights, new_weights = new_weights, weights
            new_sigma2 = state.new_sigma2  # clipped to the bounds by the updates
            # the lagged variance of the next iteration is this one's; recycle its buffer
            state.new_sigma2, state.sigma2_arg, sigma2 = state.sigma2_arg, sigma2, new_sigma2
            if settings.R == 1:
                tv_lambda = max(float(np.mean(sigma2, dtype=np.float64)), TV_LAMBDA_FLOOR)
            else:
                tv_lambda = sigma2
            if progress is not None:
                progress((iteration + 1) / settings.n_iter, time.perf_counter() - start_time)
    return sigma2, weights[:, :n_vox].T
