"""The TV fit of rumba-bids before slab-wise TV (issue 14): a reference for benchmarks.

A verbatim copy of ``tv_factor`` (whole-volume, blocks of compartments) and
``_iterate_tv`` (every chunk of every iteration streams the whole volume) as
they were on main before the slab-wise implementation, so that
``benchmarks/whole_head.py`` and ``tests/core/test_tv.py`` can measure the new
one against it: same results to float32 round-off, and the time ratio.

``reference_tv_fit(model, data, mask)`` runs a model's TV fit with this code.

It also keeps the numpy voxel-wise chunk iteration as it was before the
compiled element-wise passes (``rumba_bids.core.kernels``):
``reference_voxelwise_fit(model, data, mask)`` runs a model's voxel-wise or
global fit without TV with it, which the compiled one equals bit for bit.
"""

from __future__ import annotations

import time

import numpy as np

from rumba_bids.core import iteration as _rumba
from rumba_bids.core.iteration import (
    _EPS,
    SIGMA0,
    SIGMA2_BOUNDS,
    TV_LAMBDA_FLOOR,
    _initial_noise_state,
    bessel_ratio,
)

TV_EPSILON = 1e-7
#: Work memory allowed for one block of the TV computation (bytes).
TV_BLOCK_BYTES = 32 * 2**20


def _block_size(grid_shape, n_components: int, itemsize: int) -> int:
    per_component = int(np.prod(grid_shape)) * itemsize * 6  # grid, 3 gradients, norm, div
    return int(max(1, min(n_components, TV_BLOCK_BYTES // max(per_component, 1))))


def divergence_of_normalised_gradient(grid: np.ndarray) -> np.ndarray:
    """``div(grad u / sqrt(eps^2 + |grad u|^2))`` for each trailing channel.

    Parameters
    ----------
    grid : ndarray, shape (X, Y, Z, B)

    Returns
    -------
    ndarray, shape (X, Y, Z, B)
    """
    axes = [axis for axis in range(3) if grid.shape[axis] > 1]
    gradients = []
    for axis in axes:
        g = np.zeros_like(grid)
        head = [slice(None)] * 4
        tail = [slice(None)] * 4
        head[axis] = slice(0, -1)
        tail[axis] = slice(1, None)
        np.subtract(grid[tuple(tail)], grid[tuple(head)], out=g[tuple(head)])
        gradients.append(g)
    norm = np.full_like(grid, TV_EPSILON**2)
    for g in gradients:
        norm += g * g
    np.sqrt(norm, out=norm)
    np.divide(1.0, norm, out=norm)
    div = np.zeros_like(grid)
    for axis, g in zip(axes, gradients):
        g *= norm
        head = [slice(None)] * 4
        tail = [slice(None)] * 4
        head[axis] = slice(0, -1)
        tail[axis] = slice(1, None)
        div += g
        div[tuple(tail)] -= g[tuple(head)]
    return div


def tv_factor(
    weights: np.ndarray,
    grid_mask: np.ndarray,
    tv_lambda,
    *,
    scale: np.ndarray | None = None,
) -> np.ndarray:
    """TV multiplicative factor for every masked voxel and compartment.

    Parameters
    ----------
    weights : ndarray, shape (V, C)
        Current compartment weights of the V voxels where ``grid_mask`` is
        True (in C order of the grid).
    grid_mask : ndarray of bool, shape (X, Y, Z)
    tv_lambda : float or ndarray, shape (V,)
        Regularisation strength (global, or per voxel when R > 1).
    scale : ndarray, shape (C,), optional
        The TV acts on ``weights / scale`` (used when antipodal pairs are
        folded into one column of double weight).

    Returns
    -------
    ndarray, shape (V, C), same dtype as ``weights``
    """
    n_vox, n_comp = weights.shape
    out = np.empty_like(weights)
    lam = np.asarray(tv_lambda, dtype=weights.dtype)
    if lam.ndim == 1:
        lam = lam[:, None]
    block = _block_size(grid_mask.shape, n_comp, weights.itemsize)
    for start in range(0, n_comp, block):
        cols = slice(start, min(start + block, n_comp))
        grid = np.zeros((*grid_mask.shape, cols.stop - cols.start), dtype=weights.dtype)
        values = weights[:, cols]
        if scale is not None:
            values = values / scale[cols].astype(weights.dtype)
        grid[grid_mask] = values
        div = divergence_of_normalised_gradient(grid)[grid_mask]
        div *= lam
        np.subtract(1.0, div, out=div)
        np.abs(div, out=div)
        div += _EPS
        np.divide(1.0, div, out=out[:, cols])
    return out


def _iterate_tv(signal, kernel, fodf, settings, *, grid_mask, tv_scale, chunk_size, progress):
    """Global fit with total variation: each iteration sweeps every chunk."""
    kernel_t = np.ascontiguousarray(kernel.T)
    n_vox, n_vol = signal.shape
    order = settings.noise_order
    norm, half_sq, sigma2, sigma2_arg = _initial_noise_state(signal, order)
    reblurred = fodf @ kernel_t
    tv_lambda = SIGMA0**2
    start_time = time.perf_counter()
    for iteration in range(settings.n_iter):
        tv = tv_factor(fodf, grid_mask, tv_lambda, scale=tv_scale)
        new_sigma2 = np.empty_like(sigma2)
        for start in range(0, n_vox, chunk_size):
            rows = slice(start, min(start + chunk_size, n_vox))
            s, r = signal[rows], reblurred[rows]
            weighted = bessel_ratio(order, s * r / sigma2_arg[rows, None])
            weighted *= s
            factor = np.concatenate([weighted, r]) @ kernel
            k = len(s)
            numerator = factor[:k]
            numerator /= factor[k:] + _EPS
            numerator *= tv[rows]
            fodf[rows] *= numerator
            new_r = fodf[rows] @ kernel_t
            reblurred[rows] = new_r
            residual = (new_r * 0.5 - weighted) * new_r
            new_sigma2[rows] = (residual.sum(axis=1) + half_sq[rows]) * norm
        np.clip(new_sigma2, *SIGMA2_BOUNDS, out=new_sigma2)
        sigma2_arg, sigma2 = sigma2, new_sigma2
        if settings.R == 1:
            tv_lambda = max(float(np.mean(sigma2, dtype=np.float64)), TV_LAMBDA_FLOOR)
        else:
            tv_lambda = sigma2
        if progress is not None:
            progress((iteration + 1) / settings.n_iter, time.perf_counter() - start_time)
    return sigma2


def reference_tv_fit(model, data, mask=None):
    """``model.fit(data, mask)`` (a TV model) with the reference TV iteration."""
    if not model.use_tv:
        raise ValueError("the reference covers the TV fit only")
    new = _rumba._iterate_tv

    def old(signal, kernel, initial, settings, *, grid_mask, tv_scale, chunk_size, **_):
        fodf = np.empty((len(signal), len(initial)), dtype=signal.dtype)
        fodf[:] = initial
        sigma2 = _iterate_tv(
            signal,
            kernel,
            fodf,
            settings,
            grid_mask=grid_mask,
            tv_scale=tv_scale,
            chunk_size=chunk_size,
            progress=None,
        )
        return sigma2, fodf

    _rumba._iterate_tv = old
    try:
        return model.fit(data, mask=mask)
    finally:
        _rumba._iterate_tv = new


def _run_chunk(signal, kernel, kernel_t, fodf, settings, sigma2_out):
    """The numpy chunk iteration of main before the compiled passes (verbatim)."""
    n_vox, n_vol = signal.shape
    dtype = signal.dtype
    order = settings.noise_order
    norm, half_sq, sigma2, sigma2_arg = _initial_noise_state(signal, order)
    reblurred = fodf @ kernel_t
    operands = np.empty((2 * n_vox, n_vol), dtype=dtype)
    weighted = operands[:n_vox]  # signal * bessel ratio
    operands[n_vox:] = reblurred
    arg = np.empty_like(signal)
    factor = np.empty((2 * n_vox, fodf.shape[1]), dtype=dtype)
    for _ in range(settings.n_iter):
        np.multiply(signal, reblurred, out=arg)
        arg /= sigma2_arg[:, None]
        bessel_ratio(order, arg, out=weighted)
        weighted *= signal
        np.matmul(operands, kernel, out=factor)
        numerator, denominator = factor[:n_vox], factor[n_vox:]
        denominator += _EPS
        numerator /= denominator
        fodf *= numerator
        np.matmul(fodf, kernel_t, out=reblurred)
        operands[n_vox:] = reblurred
        np.multiply(reblurred, 0.5, out=arg)
        arg -= weighted
        arg *= reblurred
        new_sigma2 = arg.sum(axis=1)
        new_sigma2 += half_sq
        new_sigma2 *= norm
        np.clip(new_sigma2, *SIGMA2_BOUNDS, out=new_sigma2)
        sigma2_arg, sigma2 = sigma2, new_sigma2.astype(dtype, copy=False)
    sigma2_out[:] = sigma2


def reference_voxelwise_fit(model, data, mask=None):
    """``model.fit(data, mask)`` (no TV) with the numpy chunk iteration above."""
    if model.use_tv:
        raise ValueError("the numpy chunk iteration covers fits without TV")
    new = _rumba._run_chunk
    _rumba._run_chunk = _run_chunk
    try:
        return model.fit(data, mask=mask)
    finally:
        _rumba._run_chunk = new
