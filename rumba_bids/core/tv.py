"""Total-variation factor of the global RUMBA-SD fit, computed slab by slab.

For every compartment ``j`` the TV prior multiplies the Richardson-Lucy
factor by ``1 / |1 - lambda * div(grad f_j / |grad f_j|)|`` (Canales-Rodriguez
et al. 2015, eq. 13).  Gradients are forward differences with a zero
(Neumann) last difference; the divergence is their adjoint backward
difference.  Axes of length 1 carry no gradient, which turns the 3D prior into
a 2D one on single slices (documented behaviour; DIPY refuses such volumes).

The volume is cut into slabs of whole slices along its first axis
(:class:`TVLayout`); the divergence of a slab needs its voxels and one slice
on each side (the halo), cropped to the bounding box of the voxels there plus
one row of zeros where the box goes on.  Each slab is computed in blocks of a
few compartments whose work arrays stay in a core's cache, so the TV costs a
few passes over data in cache rather than over the whole volume in memory,
and slabs can be computed in parallel.  The slab of a voxel depends on the
mask only (not on the number of threads).

The weights are held compartment-major, ``(C, V + 1)``, the last column
zero: one compartment of a slab's voxels is then a contiguous run of values,
and a block's grid is gathered from it (``np.take``, the grid points outside
the mask reading the zero column), several times faster than scattering into
a zeroed grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TV_EPSILON = 1e-7
_EPS = np.finfo(np.float64).eps
#: Voxels of the fit per slab (whole slices are added until a slab holds this many).
TV_SLAB_VOXELS = 16384
#: Values (grid points x compartments) of one block of a slab: its work arrays
#: (the grid, one gradient per axis, their norm) fit in a core's L2 cache.
TV_BLOCK_VALUES = 48 * 1024


@dataclass(frozen=True)
class TVSlab:
    """One slab of slices: which voxels it updates, reads, and where they sit.

    Attributes
    ----------
    rows : slice
        The slab's voxels (rows of the fit, in C order of the box).
    shape : tuple of 3 int
        Its local grid (slices with halo, cropped rows and columns).
    source : ndarray of int, shape (n_points,)
        Column of the weights holding each point of the local grid (C order):
        a voxel, or the zero column ``V`` for points outside the mask.
    gather : ndarray of int
        Flat index in the local grid of each of the slab's voxels.
    """

    rows: slice
    shape: tuple
    source: np.ndarray
    gather: np.ndarray

    @property
    def n_points(self) -> int:
        return int(np.prod(self.shape))


class TVLayout:
    """The slabs of the TV computation for a mask (voxels in C order of its grid).

    Parameters
    ----------
    grid_mask : ndarray of bool, shape (X, Y, Z)
        Fitted voxels; the TV boundaries are the grid's.
    slab_voxels : int, optional
        Slices are grouped until a slab holds at least this many voxels
        (default :data:`TV_SLAB_VOXELS`).

    Attributes
    ----------
    grid_shape : tuple of 3 int
    axes : tuple of int
        Axes carrying a gradient (those longer than 1).
    n_voxels : int
    slabs : list of TVSlab
    """

    def __init__(self, grid_mask: np.ndarray, *, slab_voxels: int | None = None):
        if slab_voxels is None:
            slab_voxels = TV_SLAB_VOXELS
        mask = np.asarray(grid_mask, dtype=bool)
        if mask.ndim != 3:
            raise ValueError(f"the TV grid must be 3D, got shape {mask.shape}")
        self.grid_shape = mask.shape
        self.axes = tuple(axis for axis in range(3) if mask.shape[axis] > 1)
        per_slice = mask.reshape(mask.shape[0], -1).sum(axis=1)
        starts = np.concatenate([[0], np.cumsum(per_slice)]).astype(np.intp)
        self.n_voxels = int(starts[-1])
        self.slabs = []
        first = 0
        while first < mask.shape[0]:
            stop = first + 1
            while stop < mask.shape[0] and starts[stop] - starts[first] < slab_voxels:
                stop += 1
            if starts[stop] > starts[first]:
                self.slabs.append(_make_slab(mask, starts, first, stop))
            first = stop

    @property
    def max_points(self) -> int:
        """Grid points of the largest slab."""
        return max((slab.n_points for slab in self.slabs), default=0)

    @property
    def max_rows(self) -> int:
        """Voxels of the largest slab."""
        return max((slab.rows.stop - slab.rows.start for slab in self.slabs), default=0)


def _make_slab(mask, starts, first, stop) -> TVSlab:
    lo, hi = max(first - 1, 0), min(stop + 1, mask.shape[0])
    inside = mask[lo:hi].any(axis=0)
    crop = []
    for axis, length in ((1, mask.shape[1]), (2, mask.shape[2])):
        used = np.flatnonzero(inside.any(axis=2 - axis))
        # one row of zeros on each side where the grid goes on (not at its edges)
        crop.append(slice(max(int(used[0]) - 1, 0), min(int(used[-1]) + 2, length)))
    local = mask[lo:hi, crop[0], crop[1]]
    own = local.copy()
    own[: first - lo] = False
    own[stop - lo :] = False
    source = np.full(local.size, starts[-1], dtype=np.intp)  # the zero column
    source[local.ravel()] = np.arange(starts[lo], starts[hi], dtype=np.intp)
    return TVSlab(
        rows=slice(int(starts[first]), int(starts[stop])),
        shape=local.shape,
        source=source,
        gather=np.flatnonzero(own),
    )


def divergence_of_normalised_gradient(
    grid: np.ndarray, *, axes=None, eps2=TV_EPSILON**2, scale=1.0, work=None
) -> np.ndarray:
    """``scale * div(grad u / sqrt(eps2 + |grad u|^2))`` for each leading channel.

    Parameters
    ----------
    grid : ndarray, shape (B, X, Y, Z)
        ``u``; overwritten by the result (which is returned).
    axes : tuple of int, optional
        Spatial axes (0, 1, 2) carrying a gradient (default: those longer than 1).
    eps2 : float or ndarray, shape (B,)
        Squared smoothing of the gradient norm, per channel.
    scale : float
        Factor applied to the result (folded into the normalisation).
    work : ndarray, optional
        At least ``(len(axes) + 1) * grid.size`` values of ``grid``'s dtype.

    Returns
    -------
    ndarray, shape (B, X, Y, Z)
        ``grid`` itself.
    """
    if axes is None:
        axes = tuple(axis for axis in range(3) if grid.shape[axis + 1] > 1)
    if not axes:
        grid.fill(0)
        return grid
    n_axes = len(axes)
    if work is None:
        work = np.empty((n_axes + 1) * grid.size, dtype=grid.dtype)
    diffs = work[: n_axes * grid.size].reshape(n_axes, *grid.shape)
    norm = work[n_axes * grid.size : (n_axes + 1) * grid.size].reshape(grid.shape)
    cuts = []
    for k, axis in enumerate(axes):
        head = [slice(None)] * 4
        tail = [slice(None)] * 4
        last = [slice(None)] * 4
        head[axis + 1] = slice(0, -1)
        tail[axis + 1] = slice(1, None)
        last[axis + 1] = slice(-1, None)
        head, tail = tuple(head), tuple(tail)
        np.subtract(grid[tail], grid[head], out=diffs[k][head])
        diffs[k][tuple(last)] = 0
        cuts.append((head, tail))
    # the grid is free from here on: it holds squares, then the divergence
    np.multiply(diffs[0], diffs[0], out=norm)
    for k in range(1, n_axes):
        np.multiply(diffs[k], diffs[k], out=grid)
        norm += grid
    norm += np.reshape(np.asarray(eps2, dtype=grid.dtype), (-1, 1, 1, 1))
    np.sqrt(norm, out=norm)
    np.divide(grid.dtype.type(scale), norm, out=norm)
    diffs *= norm  # the normalised gradient, one field per axis
    if n_axes == 1:
        grid[...] = diffs[0]
    else:
        np.add(diffs[0], diffs[1], out=grid)
        for k in range(2, n_axes):
            grid += diffs[k]
    for k, (head, tail) in enumerate(cuts):
        grid[tail] -= diffs[k][head]
    return grid


def slab_tv_denominator(
    weights: np.ndarray, slab: TVSlab, axes, tv_lambda, eps2: np.ndarray, out: np.ndarray
) -> np.ndarray:
    """``|1 - lambda div(...)| + eps`` of the slab's voxels: the TV factor's inverse.

    Parameters
    ----------
    weights : ndarray, shape (C, V + 1)
        Compartment weights of every voxel (compartment-major), then zeros.
    slab : TVSlab
    axes : tuple of int
        :attr:`TVLayout.axes`.
    tv_lambda : float or ndarray, shape (V,)
        Regularisation strength (global, or per voxel).
    eps2 : ndarray, shape (C,)
        Squared gradient smoothing of each compartment (in units of ``weights``).
    out : ndarray, shape (C, n_rows)
        Receives the result (``n_rows``: the slab's voxels).

    Returns
    -------
    ndarray
        ``out``.
    """
    n_comp, dtype = weights.shape[0], weights.dtype
    n_points = slab.n_points
    block = int(max(1, min(n_comp, TV_BLOCK_VALUES // max(n_points, 1))))
    scalar = np.ndim(tv_lambda) == 0
    scale = float(tv_lambda) if scalar else 1.0
    grid_buffer = np.empty(block * n_points, dtype=dtype)
    work = np.empty((len(axes) + 1) * block * n_points, dtype=dtype)
    for start in range(0, n_comp, block):
        stop = min(start + block, n_comp)
        grid = grid_buffer[: (stop - start) * n_points].reshape(stop - start, n_points)
        np.take(weights[start:stop], slab.source, axis=1, out=grid, mode="clip")
        divergence_of_normalised_gradient(
            grid.reshape(stop - start, *slab.shape),
            axes=axes,
            eps2=eps2[start:stop],
            scale=scale,
            work=work,
        )
        np.take(grid, slab.gather, axis=1, out=out[start:stop], mode="clip")
    if not scalar:
        out *= np.asarray(tv_lambda, dtype=dtype)[slab.rows]
    np.subtract(dtype.type(1), out, out=out)
    np.abs(out, out=out)
    out += dtype.type(_EPS)
    return out


def tv_epsilon2(scale, dtype) -> np.ndarray:
    """Squared gradient smoothing per compartment when the TV acts on ``weights / scale``.

    ``grad(u/s) / sqrt(eps^2 + |grad(u/s)|^2) = grad u / sqrt((s eps)^2 + |grad u|^2)``.
    """
    return ((TV_EPSILON * np.asarray(scale, dtype=np.float64)) ** 2).astype(dtype)


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
    layout = TVLayout(grid_mask)
    if layout.n_voxels != n_vox:
        raise ValueError(f"{n_vox} rows of weights but the mask holds {layout.n_voxels} voxels")
    eps2 = tv_epsilon2(np.ones(n_comp) if scale is None else scale, weights.dtype)
    columns = np.zeros((n_comp, n_vox + 1), dtype=weights.dtype)
    columns[:, :n_vox] = weights.T
    out = np.empty((n_comp, n_vox), dtype=weights.dtype)
    for slab in layout.slabs:
        den = np.empty((n_comp, slab.rows.stop - slab.rows.start), dtype=weights.dtype)
        out[:, slab.rows] = slab_tv_denominator(columns, slab, layout.axes, tv_lambda, eps2, den)
    return np.divide(1.0, out, out=out).T
