"""Memory of a RUMBA-SD fit, phase by phase: the one byte model of rumba-bids.

Every layer asks here: :meth:`RumbaSDModel.fit_memory` (the arrays of one
:meth:`~RumbaSDModel.fit` call), :func:`process_bytes` (a whole fit process
as :func:`rumba_bids.interfaces.rumba.fit_rumba_files` runs it: the
interpreter, the series as loaded, the 3D maps and the fit),
:func:`choose_block_voxels` (the voxel-wise fit in blocks within a limit),
and :func:`series_node_bytes` / :func:`fod_node_bytes` for the other nodes
of the workflow.  Each estimate is checked against what the code allocates
(tracemalloc, ``tests/robustness/test_memory.py``) and against the peak RSS
of real fit processes on int16 NIfTI input (voxel-wise, global and TV fits).

The estimates are in bytes; the workflow reports GB (1e9 bytes).
"""

from __future__ import annotations

import numpy as np

from .threads import resolve_threads
from .tv import TV_SLAB_VOXELS

#: Voxels per batch of the fit (the chunk): small enough to keep its arrays in cache.
DEFAULT_CHUNK = 1024
#: Voxels per chunk of the TV update: a slab's chunks read their weights and TV factor
#: from memory once per iteration, and the matrix products of that layout ran fastest at
#: 384 (measured on the whole head, one thread: 2.8-3.0 against 3.3-3.5 us per
#: voxel-iteration at 512 and 1024; the same fit, bit for bit, on the development VM).
TV_CHUNK = 384


def default_chunk(use_tv: bool) -> int:
    """The chunk of a fit when ``chunk_size`` is not given: :data:`TV_CHUNK` with TV,
    else :data:`DEFAULT_CHUNK`."""
    return TV_CHUNK if use_tv else DEFAULT_CHUNK


#: Memory of the process running the fit before it reads any data (interpreter,
#: numpy/scipy/nibabel/Nipype/numba, BLAS buffers, and numba's compiler when the kernels
#: are not cached: measured peak 230 MB on a tiny fit, 203 MB from the cache, and just
#: over 300 MB for a process fitting blocks within 0.3 GB while compiling), in bytes.
FIT_BASE_BYTES = 280e6
#: Per-voxel 3D maps the fit keeps in memory: f_gm, f_csf, snr, f_wm, f_iso (float32),
#: the mask and the fitted-voxel flags (bool), in bytes per grid voxel.
MAP_BYTES_PER_VOXEL = 5 * 4 + 2
#: Bytes of the buffer of direction volumes in which the fODF file is written
#: (:func:`rumba_bids.interfaces.rumba.write_fod_volumes`; see :func:`fod_volumes_per_write`).
FOD_BUFFER_BYTES = 2**27
#: Bytes per value of the series held by the nodes that read it whole (brain mask,
#: response): the stored values, their float copy and the work arrays (measured peak RSS).
SERIES_NODE_BYTES_PER_VALUE = 12
#: Memory of those nodes and of the SH / peak nodes besides their arrays (bytes).
NODE_BASE_BYTES = 100e6
#: Exit status of a run refused for memory (the BIDS-Apps usage error, as ``--mem``).
EXIT_USAGE = 64


class InsufficientMemoryError(MemoryError):
    """A fit (or a run) cannot work within the memory it was given.

    The one error of that kind in rumba-bids: the interfaces raise it when a
    fit cannot fit its ``max_memory_gb``, the command line when a run cannot
    fit ``--mem`` (exit code 64, one line naming the file).

    Parameters
    ----------
    message : str
        What needs how much, against what limit, and what to change.
    path : str, optional
        The file concerned (the DWI series).
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, path=None):
        super().__init__(message)
        self.message = message
        self.path = None if path is None else str(path)

    def one_line(self, prog: str = "rumba-bids") -> str:
        """``<prog>: error: <path>: <message>`` on a single line."""
        where = f"{self.path}: " if self.path else ""
        return f"{prog}: error: " + " ".join(f"{where}{self.message}".split())

    def __reduce__(self):
        return (_rebuild_error, (self.message, self.path))


def _rebuild_error(message, path):
    return InsufficientMemoryError(message, path=path)


def fit_bytes(model, n_voxels: int, *, grid_shape=None, data_itemsize=None) -> int:
    """Peak bytes of one ``model.fit(data, mask)`` on top of ``data`` (see
    :meth:`RumbaSDModel.fit_memory`, which calls this)."""
    n_vox = int(n_voxels)
    grid = n_vox if grid_shape is None else int(np.prod(grid_shape))
    item = model.dtype.itemsize
    data_item = item if data_itemsize is None else int(data_itemsize)
    n_vol = len(model.gtab)
    n_b0 = int(model.gtab.b0s_mask.sum())
    n_dwi = n_vol - n_b0
    n_fit = len(model.fit_gtab)
    n_comp = len(model.sphere) + 2
    n_cols = model.fit_columns
    n_threads = resolve_threads(model.n_threads)
    chunk = min(model.chunk_size or default_chunk(model.use_tv), max(n_vox, 1))
    # alive during the whole fit: gathered voxels, their index, mean b0, signals, masks
    fixed = n_vox * (n_vol * data_item + 16 + n_fit * item) + 2 * grid
    checks = n_vox * (n_vol + n_b0 * data_item + 8)
    normalise = n_vox * (n_dwi * (8 + data_item) + 8)
    if model.use_tv:
        iterate = _tv_iterate_bytes(n_vox, grid, grid_shape, n_fit, n_cols, item, chunk, n_threads)
    else:
        # weights, noise variances; each worker's chunk: its weights, the operands
        # (weighted signals and predictions) and the factor of both halves
        chunk_work = chunk * (2 * n_fit + 3 * n_cols + 4) * item
        iterate = n_vox * (n_cols + 1) * item + min(n_threads, -(-n_vox // chunk)) * chunk_work
    if n_cols < n_comp:  # unfold antipodal pairs: folded and full weights
        unfold = n_vox * ((n_cols + n_comp + 4) * item + 24)
    else:
        unfold = n_vox * ((n_comp + 4) * item + 24)
    outputs = n_vox * (n_comp + 3) * item + grid * (n_comp + 1) * item
    # 3 % for what the phases leave out (views, ufunc buffers, small temporaries)
    return int(1.03 * (fixed + max(checks, normalise, iterate, unfold, outputs)))


def _tv_iterate_bytes(n_vox, grid, grid_shape, n_fit, n_cols, item, chunk, n_threads):
    """The TV iteration (:func:`rumba_bids.core.iteration._iterate_tv`): two weight arrays,
    predictions, noise variances, the slab layout, and each worker's slab grid and chunk."""
    state = (2 * (n_vox + 1) * n_cols + n_vox * (n_fit + 5)) * item
    # slab layout: runs of (point, column, length); at most one run per voxel of a slab
    # and of its halo, of a copied padding point, of a line
    layout = 3 * 8 * (4 * n_vox + 2 * grid)
    if grid_shape is None:
        largest_slice = padded_grid = grid
    else:
        largest_slice = (grid_shape[1] + 2) * (grid_shape[2] + 2)
        padded_grid = int(np.prod([n + 2 for n in grid_shape]))
    slab_rows = min(n_vox, TV_SLAB_VOXELS + largest_slice)
    # the slab's padded grid: its slices, two halo and two padding slices, cropped
    slab_points = min(padded_grid, 3 * slab_rows + 4 * largest_slice)
    # (the slab's inverse TV factor is written into its rows of the new weights)
    per_worker = (
        4 * slab_points * item  # grid, three normalised gradients
        + chunk * (2 * n_fit + 2 * n_cols) * item  # operands, factor
    )
    n_workers = min(n_threads, max(1, -(-n_vox // TV_SLAB_VOXELS)))  # at most one per slab
    return state + layout + n_workers * per_worker


def block_bytes(model, n_voxels: int, *, data_itemsize=None, extra_per_voxel=0) -> int:
    """Peak bytes of one fit on a 2D block (n_voxels, N): the block, :func:`fit_bytes`,
    and ``extra_per_voxel`` bytes per voxel held by the caller (0 voxels: 0)."""
    n_vox = int(n_voxels)
    if n_vox <= 0:
        return 0
    data_item = model.dtype.itemsize if data_itemsize is None else int(data_itemsize)
    return int(
        n_vox * (len(model.gtab) * data_item + extra_per_voxel)
        + fit_bytes(model, n_vox, data_itemsize=data_item)
    )


def block_voxels(model, max_bytes: float, *, data_itemsize=None, extra_per_voxel=0) -> int:
    """Largest block (a multiple of the chunk, or 0) whose :func:`block_bytes` fits."""
    chunk = model.chunk_size or default_chunk(model.use_tv)

    def needed(n_vox: int) -> int:
        return block_bytes(
            model, n_vox, data_itemsize=data_itemsize, extra_per_voxel=extra_per_voxel
        )

    if needed(chunk) > max_bytes:
        return 0
    # the memory grows with the chunks (linearly once every thread has one): bisect
    low, high = 1, 2
    while needed(high * chunk) <= max_bytes:
        low, high = high, 2 * high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if needed(middle * chunk) <= max_bytes else (low, middle)
    return low * chunk


def fod_volumes_per_write(grid_voxels: int, n_directions: int) -> int:
    """Direction volumes of ``grid_voxels`` float32 written at once (at most 64), in
    :data:`FOD_BUFFER_BYTES`."""
    fit = FOD_BUFFER_BYTES // max(4 * int(grid_voxels), 1)
    return int(max(1, min(fit, 64, int(n_directions))))


def _block_extra_per_voxel(model, n_volumes: int, values_itemsize: int) -> float:
    """Bytes per voxel of a block beyond :func:`block_bytes`'s float32 input: the
    block as stored and its voxel coordinates."""
    return n_volumes * values_itemsize + 24


def process_bytes(model, shape, *, values_itemsize=2, n_voxels=None, block_voxels=None) -> int:
    """Peak memory (bytes) of a whole fit process for a 4D series of ``shape``.

    The process (:data:`FIT_BASE_BYTES`), the series' values as loaded (NIfTI
    stores them in Fortran order; the fit gathers its voxels without a
    C-order copy of the series), the 3D maps, the buffer in which the fODF
    file is written (:func:`fod_volumes_per_write`), and the RUMBA-SD fit of one
    block of ``block_voxels`` voxels (voxel-wise fit) or of every voxel
    (global fit, which also holds the series as float32).

    Parameters
    ----------
    model : RumbaSDModel
        Its sizes (gradient table, sphere, fit mode, threads) matter.
    shape : tuple of 4 int
        Shape (X, Y, Z, N) of the series.
    values_itemsize : int
        Bytes per value of the series as read (2 for int16; 8 when scaled).
    n_voxels : int, optional
        Voxels in the mask (default: every voxel of the grid).
    block_voxels : int, optional
        Voxels fitted at once (voxel-wise fit; default: all).
    """
    grid = int(np.prod(shape[:3]))
    n_volumes = int(shape[3])
    n_voxels = grid if n_voxels is None else int(n_voxels)
    fod_buffer = 4 * grid * fod_volumes_per_write(grid, len(model.sphere))
    fixed = (
        FIT_BASE_BYTES + grid * (n_volumes * values_itemsize + MAP_BYTES_PER_VOXEL) + fod_buffer
    )
    if model.voxelwise:
        block = n_voxels if block_voxels is None else min(int(block_voxels), n_voxels)
        per_voxel = _block_extra_per_voxel(model, n_volumes, values_itemsize)
        block_total = block_bytes(model, block, data_itemsize=4, extra_per_voxel=per_voxel)
        return int(fixed + n_voxels * 9 + block_total)
    loaded = grid * n_volumes * model.dtype.itemsize
    fit = fit_bytes(model, n_voxels, grid_shape=shape[:3])
    return int(fixed + loaded + fit)


def choose_block_voxels(model, shape, *, max_bytes, values_itemsize=2, n_voxels=None) -> int:
    """Voxels per block of the voxel-wise fit within ``max_bytes`` (all of them if possible).

    Raises
    ------
    InsufficientMemoryError
        When not even one chunk of voxels fits (or the global fit does not), with
        the memory needed.
    """
    n_voxels = int(np.prod(shape[:3])) if n_voxels is None else int(n_voxels)
    if not model.voxelwise:
        needed = process_bytes(model, shape, values_itemsize=values_itemsize, n_voxels=n_voxels)
        if needed > max_bytes:
            raise InsufficientMemoryError(
                f"the global fit of {n_voxels} voxels needs {needed / 1e9:.2f} GB but only "
                f"{max_bytes / 1e9:.2f} GB are allowed"
            )
        return n_voxels
    fixed = process_bytes(
        model, shape, values_itemsize=values_itemsize, n_voxels=n_voxels, block_voxels=0
    )
    per_voxel = _block_extra_per_voxel(model, shape[3], values_itemsize)
    whole = block_bytes(model, n_voxels, data_itemsize=4, extra_per_voxel=per_voxel)
    if fixed + whole <= max_bytes:
        return n_voxels
    block = block_voxels(model, max_bytes - fixed, data_itemsize=4, extra_per_voxel=per_voxel)
    if block == 0:
        needed = process_bytes(
            model,
            shape,
            values_itemsize=values_itemsize,
            n_voxels=n_voxels,
            block_voxels=model.chunk_size or default_chunk(model.use_tv),
        )
        raise InsufficientMemoryError(
            f"the voxel-wise fit needs at least {needed / 1e9:.2f} GB but only "
            f"{max_bytes / 1e9:.2f} GB are allowed"
        )
    return min(block, n_voxels)


def series_node_bytes(shape) -> int:
    """Peak bytes of a node reading the whole series (brain mask, response estimate)."""
    return int(NODE_BASE_BYTES + SERIES_NODE_BYTES_PER_VALUE * int(np.prod(shape[:4])))


def fod_node_bytes(grid_voxels: int, *, n_directions: int, n_sh: int, npeaks: int, slab: int):
    """Peak bytes of the SH and peak nodes: their outputs on the grid and one slab
    of at most ``slab`` voxels of the fODF (2.5 float32 copies, measured)."""
    grid_voxels = int(grid_voxels)
    slab_bytes = min(grid_voxels, int(slab)) * (int(n_directions) + 2) * 10
    return int(NODE_BASE_BYTES + grid_voxels * (n_sh + 4 * npeaks + 1) * 4 + slab_bytes)
