"""Total-variation factor of the global RUMBA-SD fit.

For every compartment ``j`` the TV prior multiplies the Richardson-Lucy
factor by ``1 / |1 - lambda * div(grad f_j / |grad f_j|)|`` (Canales-Rodriguez
et al. 2015, eq. 13).  Gradients are forward differences with a zero
(Neumann) last difference; the divergence is their adjoint backward
difference.  Axes of length 1 carry no gradient, which turns the 3D prior into
a 2D one on single slices (documented behaviour; DIPY refuses such volumes).

The factor is computed in blocks of compartments, so the work memory is
bounded by the block size rather than by the number of sphere directions.
"""

from __future__ import annotations

import numpy as np

TV_EPSILON = 1e-7
_EPS = np.finfo(np.float64).eps
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
