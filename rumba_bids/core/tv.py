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
one row of zeros where the box goes on.  That local grid is padded by one
more plane on each side of each axis: zeros below (whose normalised gradient
is held at zero, so the first backward difference at the box's edge vanishes)
and a copy of the last plane above (so the last forward difference is exactly
zero).  The compiled kernel :func:`~rumba_bids.core.kernels.tv_denominator`
then runs, compartment by compartment, three passes over the slab: copy the
weights' runs into the grid, normalise the gradient where the slab's voxels
need it, and take the divergence at those voxels.  The last two run in
blocks of :data:`~rumba_bids.core.kernels.TV_BLOCK` points (one vector, no
remainder loop): the lines of a head are short (37 points on average in the
whole-head benchmark), and the remainder loops of variable length cost as
much as the vectors (see :class:`TVSlab` for where blocks may reach beyond
what is needed).  A slab's work arrays (the grid and three gradient fields)
stay in a core's L2 cache, and slabs are computed in parallel.  The slab of a
voxel depends on the mask only (not on the number of threads).

The weights are held compartment-major, ``(C, V + 1)``, the last column
zero (the points outside the mask): one compartment of a slab's voxels is then
a contiguous run of values.  (A voxel-major layout would let the update's
matrix products run in the voxel-wise fit's faster shapes, but its kernel,
16 compartments per vector, left the slab's work arrays in L3 rather than L2:
measured 3.0 against 0.7 us per voxel.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import kernels
from .kernels import TV_BLOCK

TV_EPSILON = 1e-7
_EPS = np.finfo(np.float64).eps
#: Voxels of the fit per slab (whole slices are added until a slab holds this many).
TV_SLAB_VOXELS = 16384
_NO_LAMBDA = {np.dtype(np.float32): np.empty(0, np.float32), np.dtype(np.float64): np.empty(0)}


@dataclass(frozen=True)
class TVSlab:
    """One slab of slices: which voxels it updates, reads, and where they sit.

    Attributes
    ----------
    rows : slice
        The slab's voxels (rows of the fit, in C order of the box).
    shape : ndarray of intp, shape (3,)
        Its padded local grid (slices with halo, cropped rows and columns, one
        plane of padding on each side of each axis).
    fill : ndarray of uint64, shape (n_runs, 3)
        Runs ``(first point, first column of the weights, length)`` copied into
        the grid; the other points are zero.
    gradient : ndarray of uint64, shape (n_blocks,)
        First points of the blocks of ``TV_BLOCK`` points where the normalised
        gradient is taken.  They cover every point needed (the slab's voxels
        and their backward neighbours), and may take more points of the same
        line (``1 <= z <= Z - 1``): a gradient is the same whichever block
        takes it, and none is written on the lower padding, which stays zero.
    lines : ndarray of uint64, shape (n_lines, 3)
        ``(first point of the line, first z, stop z)`` of the lines where the
        gradient is taken point by point instead (grids with ``Z <= TV_BLOCK``).
    divergence : ndarray of uint64, shape (n_items, 3)
        ``(first point, first row within the slab, length)`` in the order of
        the rows: blocks of ``TV_BLOCK`` voxels, and runs taken point by point.
        A block may reach past its run into the rows of later runs (a wrong
        value there, then overwritten by the later items), never past the slab.
    """

    rows: slice
    shape: np.ndarray
    fill: np.ndarray
    gradient: np.ndarray
    lines: np.ndarray
    divergence: np.ndarray

    @property
    def n_points(self) -> int:
        return int(np.prod(self.shape))

    @property
    def n_rows(self) -> int:
        return self.rows.stop - self.rows.start


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
        return max((slab.n_rows for slab in self.slabs), default=0)


def _runs(points: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``(first point, first value, length)`` of the runs where both go up by one."""
    if len(points) == 0:
        return np.zeros((0, 3), dtype=np.uint64)
    breaks = np.flatnonzero((np.diff(points) != 1) | (np.diff(values) != 1)) + 1
    first = np.concatenate([[0], breaks])
    lengths = np.diff(np.concatenate([first, [len(points)]]))
    return np.stack([points[first], values[first], lengths], axis=1).astype(np.uint64)


def _make_slab(mask, starts, first, stop) -> TVSlab:
    lo, hi = max(first - 1, 0), min(stop + 1, mask.shape[0])
    inside = mask[lo:hi].any(axis=0)
    crop = []
    for axis, length in ((1, mask.shape[1]), (2, mask.shape[2])):
        used = np.flatnonzero(inside.any(axis=2 - axis))
        # one row of zeros on each side where the grid goes on (not at its edges)
        crop.append(slice(max(int(used[0]) - 1, 0), min(int(used[-1]) + 2, length)))
    local = mask[lo:hi, crop[0], crop[1]]
    zero_column = int(starts[-1])
    source = np.full(local.shape, zero_column, dtype=np.intp)
    source[local] = np.arange(starts[lo], starts[hi], dtype=np.intp)
    # padding: zeros below, a copy of the last plane above (a zero last difference)
    source = np.pad(source, 1, constant_values=zero_column)
    source[-1] = source[-2]
    source[:, -1] = source[:, -2]
    source[:, :, -1] = source[:, :, -2]
    own = np.zeros(source.shape, dtype=bool)
    own[1 + first - lo : 1 + stop - lo, 1:-1, 1:-1] = local[first - lo : stop - lo]
    # the gradient is needed at the voxels, and at their backward neighbours
    need = own.copy()
    need[:-1] |= own[1:]
    need[:, :-1] |= own[:, 1:]
    need[:, :, :-1] |= own[:, :, 1:]
    need[0] = need[:, 0] = need[:, :, 0] = False  # the lower padding stays zero
    line_x, line_y = np.nonzero(need.any(axis=2))
    needed = need[line_x, line_y]
    z_first = needed.argmax(axis=1)
    z_stop = needed.shape[1] - needed[:, ::-1].argmax(axis=1)
    base = (line_x * source.shape[1] + line_y) * source.shape[2]
    points = np.flatnonzero(source.ravel() != zero_column)
    own_points = np.flatnonzero(own.ravel())
    gradient, lines = _gradient_blocks(base, z_first, z_stop, source.shape[2])
    return TVSlab(
        rows=slice(int(starts[first]), int(starts[stop])),
        shape=np.array(source.shape, dtype=np.uint64),
        fill=_runs(points, source.ravel()[points]),
        gradient=gradient,
        lines=lines,
        divergence=_divergence_items(own_points, source.size),
    )


def _gradient_blocks(base, z_first, z_stop, nz):
    """Blocks covering ``[z_first, z_stop)`` of each line inside ``1 <= z <= nz - 1``
    (the last ones shifted back), or the lines themselves when a block does not fit."""
    if nz - 1 < TV_BLOCK:
        return np.zeros(0, np.uint64), np.stack([base, z_first, z_stop], axis=1).astype(np.uint64)
    counts = -(-(z_stop - z_first) // TV_BLOCK)
    line = np.repeat(np.arange(len(base)), counts)
    offset = np.arange(len(line)) - np.repeat(np.cumsum(counts) - counts, counts)
    z = np.minimum(z_first[line] + TV_BLOCK * offset, nz - TV_BLOCK)
    return (base[line] + z).astype(np.uint64), np.zeros((0, 3), dtype=np.uint64)


def _divergence_items(own_points, n_points):
    """The divergence's blocks and runs (:class:`TVSlab`) of a slab's voxels (their
    points in the padded grid of ``n_points``, in row order).

    Each run of consecutive points is cut into blocks from its start when the
    last one, reaching past the run, stays inside the slab's rows and grid;
    else into blocks inside the run (the last shifted back onto the one
    before), or, shorter than a block, kept whole.
    """
    n_rows = len(own_points)
    items = []
    for point, row, length in _runs(own_points, np.arange(n_rows)).tolist():
        reach = -(-length // TV_BLOCK) * TV_BLOCK
        if row + reach <= n_rows and point + reach <= n_points:
            starts = range(0, length, TV_BLOCK)
        elif length >= TV_BLOCK:
            starts = [min(j, length - TV_BLOCK) for j in range(0, length, TV_BLOCK)]
        else:
            items.append((point, row, length))
            continue
        items += [(point + j, row + j, TV_BLOCK) for j in starts]
    return np.array(items, dtype=np.uint64).reshape(-1, 3)


class TVWork:
    """Work arrays of one thread's slabs: the grid and three gradient fields."""

    def __init__(self, n_points: int, dtype):
        self.grid = np.zeros(n_points, dtype=dtype)
        self.normed = np.zeros((3, n_points), dtype=dtype)


def slab_tv_denominator(
    weights: np.ndarray,
    slab: TVSlab,
    tv_lambda,
    eps2: np.ndarray,
    out: np.ndarray,
    work=None,
    *,
    out_first: int = 0,
    quotient: bool = False,
) -> np.ndarray:
    """``|1 - lambda div(...)| + eps`` of the slab's voxels: the TV factor's inverse.

    With ``quotient``, the slab's weights divided by it instead: the weights
    times the TV factor, which the TV iteration's step multiplies by the
    Richardson-Lucy ratio.

    Parameters
    ----------
    weights : ndarray, shape (C, V + 1)
        Compartment weights of every voxel (compartment-major), then zeros.
    slab : TVSlab
    tv_lambda : float or ndarray, shape (V,)
        Regularisation strength (global, or per voxel).
    eps2 : ndarray, shape (C,)
        Squared gradient smoothing of each compartment (in units of ``weights``).
    out : ndarray, shape (C, >= out_first + n_rows), C-contiguous
        Receives the result (the slab's voxels) in ``n_rows`` columns from ``out_first``.
    work : TVWork, optional
        Work arrays of at least ``slab.n_points`` points (allocated when omitted).
    out_first : int, optional
        First column of ``out`` written (the TV iteration writes into the slab's
        rows of the new weights, where the update then reads it).
    quotient : bool, optional
        Write ``weights / (|1 - lambda div(...)| + eps)`` (default False).

    Returns
    -------
    ndarray
        ``out``.
    """
    dtype = weights.dtype
    if work is None or len(work.grid) < slab.n_points:
        work = TVWork(slab.n_points, dtype)
    if np.ndim(tv_lambda) == 0:
        scale, per_voxel = float(tv_lambda), _NO_LAMBDA[dtype]
    else:
        scale, per_voxel = 1.0, np.asarray(tv_lambda, dtype=dtype)[slab.rows]
    if np.may_share_memory(out, weights):
        raise ValueError("out must not share memory with weights (the kernel is compiled noalias)")
    kernels.tv_denominator(
        weights,
        slab.shape,
        slab.fill,
        slab.gradient,
        slab.lines,
        slab.divergence,
        scale,
        eps2,
        per_voxel,
        _EPS,
        out,
        out_first,
        work.grid,
        work.normed,
        quotient,
    )
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
    weights : ndarray, shape (V, C), float32 or float64
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
    work = TVWork(layout.max_points, weights.dtype)
    for slab in layout.slabs:
        slab_tv_denominator(columns, slab, tv_lambda, eps2, out, work, out_first=slab.rows.start)
    return np.divide(1.0, out, out=out).T
