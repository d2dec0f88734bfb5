"""RUMBA-SD: Robust and Unbiased Model-BAsed Spherical Deconvolution.

Canales-Rodriguez et al., PLOS ONE 10(10): e0138910 (2015).  A Richardson-Lucy
style multiplicative update that maximises a Rician (``recon_type='smf'``) or
noncentral-chi (``'sos'``, ``n_coils`` channels) likelihood, estimating the
noise variance of every voxel alongside the fODF, optionally with a
total-variation prior across neighbouring voxels (global fit).

Both fit modes run the same batched iteration: voxels are processed in chunks
with two matrix products per iteration (one with the kernel, one with its
transpose on the stacked numerator/denominator operands).  Without TV, each
chunk runs all iterations while it sits in cache; with TV, every iteration
sweeps slabs of slices, computing each slab's TV factor (:mod:`.tv`) and its
update together.  Chunks (and slabs) are spread over ``n_threads`` workers
with BLAS on one thread each; they are fixed by the data alone, so results do
not depend on the number of threads.

When the sphere is antipodally symmetric (all named spheres are) the kernel's
columns come in identical pairs, so the two weights of a pair receive the same
update forever; the fit folds each pair into one column (half the work) and
splits the weight evenly at the end, which is exact.
"""

from __future__ import annotations

import logging
import threading
import time
import warnings
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from . import kernels, memory
from .defaults import DEFAULT_N_COILS, DEFAULT_N_ITER, DEFAULT_R, DEFAULT_RECON_TYPE
from .gradients import GradientTable, as_gradient_table
from .kernel import (
    DEFAULT_CSF_RESPONSE,
    DEFAULT_GM_RESPONSE,
    DEFAULT_WM_RESPONSE,
    as_wm_response,
    rumba_kernel,
)
from .sphere import as_sphere
from .threads import WorkerPool, resolve_threads
from .tv import TVLayout, TVWork, slab_tv_denominator, tv_epsilon2

logger = logging.getLogger("rumba_bids.rumba")

_EPS = np.finfo(np.float64).eps
SIGMA0 = 1.0 / 15.0  # initial noise level (S0 = 1)
SIGMA2_BOUNDS = ((1.0 / 80.0) ** 2, (1.0 / 8.0) ** 2)  # SNR between 8 and 80
TV_LAMBDA_FLOOR = (1.0 / 30.0) ** 2
RECON_TYPES = ("smf", "sos")
#: Voxels per batch: small enough to keep a chunk's arrays in cache.
_DEFAULT_CHUNK = memory.DEFAULT_CHUNK


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


def _antipodal_kept(partner: np.ndarray) -> np.ndarray | None:
    """One vertex index per antipodal pair, or None when the sphere does not fold.

    Folding needs the antipodal map to be an involution without fixed points
    (``partner[partner[i]] == i != partner[i]``), so that the pairs partition
    the vertices.
    """
    index = np.arange(len(partner))
    if np.any(partner < 0) or np.any(partner == index) or np.any(partner[partner] != index):
        return None
    return np.flatnonzero(index < partner)


def _fold_antipodal(kernel: np.ndarray, partner: np.ndarray):
    """Keep one column per antipodal pair; return (kernel, kept, weight)."""
    n_wm = len(partner)
    kept = _antipodal_kept(partner)
    if kept is None:
        return kernel, None, np.ones(n_wm + 2)
    columns = np.concatenate([kept, [n_wm, n_wm + 1]])
    weight = np.concatenate([np.full(len(kept), 2.0), [1.0, 1.0]])
    return kernel[:, columns], kept, weight


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
        kernels.bessel_weighting(signal, reblurred, sigma2_arg, order, weighted)
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
        self.den = np.empty((n_comp, layout.max_rows), dtype=dtype)
        chunk = min(chunk_size, layout.max_rows)
        self.operands = np.empty(2 * chunk * n_vol, dtype=dtype)
        self.factor = np.empty(2 * chunk * n_comp, dtype=dtype)


def _tv_chunk_update(signal, reblurred, weights, new_weights, work, state, rows, local, order):
    """One RUMBA-SD update with TV of the k voxels ``rows`` (compartment-major weights).

    ``weights`` (C, V + 1) are read and ``new_weights`` written at ``rows``;
    ``work.den`` (C, n) holds the inverse TV factor of the slab, at columns
    ``local``; ``reblurred`` (k, N) is read then replaced by the new
    prediction; ``state`` holds the kernel and the noise variances (read:
    ``sigma2_arg``; written: ``new_sigma2``).
    """
    n_vox, n_vol = signal.shape
    operands = work.operands[: 2 * n_vox * n_vol].reshape(2 * n_vox, n_vol)
    weighted = operands[:n_vox]
    operands[n_vox:] = reblurred
    kernels.bessel_weighting(signal, reblurred, state.sigma2_arg[rows], order, weighted)
    n_comp = len(state.kernel_t)
    factor = work.factor[: 2 * n_vox * n_comp].reshape(n_comp, 2 * n_vox)
    np.matmul(state.kernel_t, operands.T, out=factor)
    kernels.multiply_ratio_tv(
        weights, new_weights, rows.start, factor, work.den, local.start, _EPS
    )
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
        slab_tv_denominator(weights, slab, tv_lambda, eps2, work_arrays.den, work_arrays.tv)
        for local in _chunks(slab.n_rows, chunk_size):
            rows = slice(first + local.start, first + local.stop)
            _tv_chunk_update(
                signal[rows],
                reblurred[rows],
                weights,
                new_weights,
                work_arrays,
                state,
                rows,
                local,
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


def _validate_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


class RumbaSDModel:
    """RUMBA-SD model: hyperparameters, kernel, and :meth:`fit`.

    A drop-in for DIPY's ``dipy.reconst.rumba.RumbaSDModel``: same positional
    ``gtab``, same keywords and defaults, and it takes DIPY's objects (gradient
    table, spheres, ``AxSymShResponse``) without importing DIPY.  It adds
    ``dtype``, ``chunk_size``, ``progress`` and ``n_threads``; ``recon_type`` is checked by
    :meth:`fit`, as in DIPY.

    Parameters
    ----------
    gtab : GradientTable or gradient-table-like
        Gradient table in the frame of the fODF (voxel frame for image data):
        ours, or any object with ``bvals``, ``bvecs`` and ``b0s_mask`` (a DIPY
        ``GradientTable``), see :func:`~rumba_bids.core.gradients.as_gradient_table`.
    wm_response : tuple of 3 floats, ndarray (n_shells, 3) or axisymmetric response
        White-matter fibre response (mm^2/s), see :mod:`rumba_bids.core.kernel`;
        an :class:`~rumba_bids.core.kernel.AxisymmetricResponse` or DIPY's
        ``AxSymShResponse`` (any object with ``S0`` and ``dwi_response``).
    gm_response, csf_response : float or None
        Isotropic diffusivities (mm^2/s) of the GM and CSF compartments;
        ``None`` switches a compartment off (its fraction is then zero).
    n_iter : int
        Number of RUMBA iterations (600 in the paper and DIPY).
    recon_type : {'smf', 'sos'}
        Spatial matched filter (Rician noise) or sum of squares (noncentral chi
        with ``n_coils`` degrees of freedom).
    n_coils : int
        Number of receiver coils (used by ``'sos'``).
    R : int
        Acceleration factor; ``R > 1`` makes the TV strength voxel-wise, from
        each voxel's noise estimate.
    voxelwise : bool
        Voxel-wise fit (no spatial coupling) or global fit (4D data, optional TV).
    use_tv : bool
        Total-variation regularisation (global fit only).
    sphere : str, ndarray (M, 3), Sphere, DIPY Sphere/HemiSphere or None
        Directions of the fODF; default ``'repulsion724'``.  Duplicate
        directions are refused.
    verbose : bool
        Log progress and the mean SNR estimate.  With the voxel-wise fit a
        ``UserWarning`` says that only progress is logged (DIPY warns there
        too: its verbose has no effect on that fit).
    dtype : numpy dtype
        Arithmetic of the iteration and dtype of ``RumbaFit.model_params``:
        float32 (default; fast) or float64.  The fODF and fractions the fit
        object returns are float64, as DIPY's.
    chunk_size : int, optional
        Voxels per batch (default 1024).
    progress : callable, optional
        ``progress(fraction_done, elapsed_seconds)`` called after each chunk
        (without TV) or iteration (with TV).
    n_threads : int, optional
        Threads of the fit (default: every CPU this process may use); each
        runs BLAS on one thread.  Results do not depend on it, bit for bit.
    """

    def __init__(
        self,
        gtab,
        *,
        wm_response=DEFAULT_WM_RESPONSE,
        gm_response=DEFAULT_GM_RESPONSE,
        csf_response=DEFAULT_CSF_RESPONSE,
        n_iter: int = DEFAULT_N_ITER,
        recon_type: str = DEFAULT_RECON_TYPE,
        n_coils: int = DEFAULT_N_COILS,
        R: int = DEFAULT_R,
        voxelwise: bool = True,
        use_tv: bool = False,
        sphere=None,
        verbose: bool = False,
        dtype=np.float32,
        chunk_size: int | None = None,
        progress=None,
        n_threads: int | None = None,
    ):
        gtab = as_gradient_table(gtab)
        self.n_iter = _validate_positive_int(n_iter, "n_iter")
        self.n_coils = _validate_positive_int(n_coils, "n_coils")
        self.R = _validate_positive_int(R, "R")
        if voxelwise and use_tv:
            raise ValueError("total variation needs the global fit: set voxelwise=False")
        if voxelwise and verbose:
            warnings.warn(
                "verbose=True with the voxel-wise fit logs progress only; the SNR "
                "estimate is logged by the global fit (voxelwise=False)",
                UserWarning,
                stacklevel=2,
            )
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        if chunk_size is not None:
            chunk_size = _validate_positive_int(chunk_size, "chunk_size")
        self.gtab = gtab
        self.wm_response = as_wm_response(wm_response)
        self.gm_response = gm_response
        self.csf_response = csf_response
        self.recon_type = recon_type
        self.voxelwise = bool(voxelwise)
        self.use_tv = bool(use_tv)
        self.sphere = as_sphere(sphere)
        self.verbose = bool(verbose)
        self.chunk_size = chunk_size
        self.progress = progress
        self.n_threads = None if n_threads is None else resolve_threads(n_threads)
        # the fit sees one b0 row (the normalised mean b0 = 1) followed by the DWIs
        dwi = ~gtab.b0s_mask
        self.fit_gtab = GradientTable(
            np.concatenate([[0.0], gtab.bvals[dwi]]),
            np.concatenate([np.zeros((1, 3)), gtab.bvecs[dwi]]),
            b0_threshold=gtab.b0_threshold,
            shell_tolerance=gtab.shell_tolerance,
        )
        self.kernel = self.kernel_for(self.fit_gtab)
        self.kernel.setflags(write=False)

    @property
    def noise_order(self) -> int:
        """Order of the noncentral-chi distribution (1 = Rician)."""
        return self.n_coils if self.recon_type == "sos" else 1

    @property
    def fit_columns(self) -> int:
        """Columns the iteration updates: M/2 + 2 when antipodal pairs fold, else M + 2."""
        kept = _antipodal_kept(self.sphere.antipodal_partner)
        return len(self.sphere) + 2 if kept is None else len(kept) + 2

    def fit_memory(self, n_voxels: int, *, grid_shape=None, data_itemsize=None) -> int:
        """Estimated peak bytes :meth:`fit` allocates on top of its input array.

        Counts every array of the fit that grows with the number of voxels (the
        gathered voxels, normalised signals, weights, outputs, and the work
        arrays of each thread's chunk, or with TV those of the whole volume
        and of each thread's slab), phase by phase, and returns the largest
        total; small arrays (kernel, sphere) are ignored.  Checked against
        :mod:`tracemalloc` (see :mod:`rumba_bids.core.memory`, where the model
        lives).

        Parameters
        ----------
        n_voxels : int
            Voxels fitted (inside the mask).
        grid_shape : tuple of int, optional
            Spatial shape of ``data`` (default: ``(n_voxels,)``, i.e. 2D input
            ``(n_voxels, N)`` without a mask).  With TV it also bounds the box.
        data_itemsize : int, optional
            Bytes per value of ``data`` (default: that of the model's dtype).

        Returns
        -------
        int
            Bytes.
        """
        return memory.fit_bytes(self, n_voxels, grid_shape=grid_shape, data_itemsize=data_itemsize)

    def block_memory(self, n_voxels: int, *, data_itemsize=None, extra_per_voxel=0) -> int:
        """Peak bytes of one :meth:`fit` call on a 2D block ``(n_voxels, N)``.

        The block itself (``data_itemsize`` bytes per value, default the
        model's dtype), :meth:`fit_memory`, and ``extra_per_voxel`` bytes per
        voxel that the caller keeps alongside (0 voxels need nothing).
        """
        return memory.block_bytes(
            self, n_voxels, data_itemsize=data_itemsize, extra_per_voxel=extra_per_voxel
        )

    def block_voxels(self, max_bytes: float, *, data_itemsize=None, extra_per_voxel=0) -> int:
        """Largest block of voxels one :meth:`fit` call may take within ``max_bytes``.

        Uses :meth:`block_memory`.  The result is a multiple of the chunk size
        (so fitting block by block iterates exactly the chunks a single call
        would, and gives bit-identical results), or 0 when not even one chunk
        fits.

        Parameters
        ----------
        max_bytes : float
            Memory available to the fit.
        data_itemsize : int, optional
            Bytes per value of the blocks passed to :meth:`fit` (default: the
            model's dtype).
        extra_per_voxel : int
            Further bytes per voxel of the block held by the caller.

        Returns
        -------
        int
        """
        return memory.block_voxels(
            self, max_bytes, data_itemsize=data_itemsize, extra_per_voxel=extra_per_voxel
        )

    def kernel_for(self, gtab) -> np.ndarray:
        """The kernel (N, M + 2) of this model's responses on ``gtab`` (gradient-table-like)."""
        return rumba_kernel(
            as_gradient_table(gtab),
            self.sphere.vertices,
            wm_response=self.wm_response,
            gm_response=self.gm_response,
            csf_response=self.csf_response,
        )

    def _normalise(self, data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Signals divided by their mean b0, b0 part replaced by one row of ones.

        Returns the (V, 1 + n_dwi) array (clipped to [eps, 1]) and the mean b0 (V,).
        """
        b0 = data[:, self.gtab.b0s_mask].mean(axis=1, dtype=np.float64)
        signal = np.empty((len(data), len(self.fit_gtab)), dtype=self.dtype)
        signal[:, 0] = 1.0
        dwi = np.clip(data[:, ~self.gtab.b0s_mask], _EPS, None, dtype=np.float64)
        safe_b0 = np.where(b0 > 0, b0, 1.0)
        np.divide(dwi, safe_b0[:, None], out=signal[:, 1:], casting="same_kind")
        np.clip(signal, _EPS, 1.0, out=signal)
        return signal, b0

    def fit(self, data, mask=None) -> RumbaFit:
        """Fit the fODF and isotropic fractions.

        Parameters
        ----------
        data : ndarray, shape (..., N)
            Signals (any positive scale); 4D ``(X, Y, Z, N)`` for the global fit.
        mask : ndarray of bool, shape data.shape[:-1], optional
            Voxels to fit; others stay zero.  Voxels whose mean b0 is not
            positive are excluded and counted in ``RumbaFit.n_excluded``.

        Returns
        -------
        RumbaFit

        Raises
        ------
        ValueError
            Unknown ``recon_type``; data or mask of the wrong shape; NaN/inf in
            fitted voxels; TV with fewer than two non-singleton spatial axes.
        """
        if self.recon_type not in RECON_TYPES:
            raise ValueError(f"recon_type must be 'smf' or 'sos', got {self.recon_type!r}")
        data = np.asarray(data)
        if data.ndim < 1 or data.shape[-1] != len(self.gtab):
            raise ValueError(
                f"data have {data.shape[-1] if data.ndim else 0} volumes but the gradient "
                f"table has {len(self.gtab)}"
            )
        spatial = data.shape[:-1]
        if not self.voxelwise and len(spatial) != 3:
            raise ValueError(f"the global fit needs 4D data (x, y, z, N), got shape {data.shape}")
        if self.use_tv and sum(n > 1 for n in spatial) < 2:
            raise ValueError(
                f"total variation needs at least two spatial axes longer than 1 (a slice or "
                f"a volume), got data of shape {data.shape}"
            )
        if mask is None:
            mask = np.ones(spatial, dtype=bool)
        else:
            mask = np.asarray(mask)
            if mask.shape != spatial:
                raise ValueError(
                    f"mask shape {mask.shape} does not match the data's spatial shape {spatial}"
                )
            mask = mask.astype(bool)
        flat_index = np.flatnonzero(mask)
        voxels = gather_voxels(data, flat_index)
        finite = np.isfinite(voxels).all(axis=1)
        if not finite.all():
            bad = np.unravel_index(flat_index[~finite][:5], spatial)
            where = ", ".join(str(tuple(int(c[i]) for c in bad)) for i in range(len(bad[0])))
            raise ValueError(
                f"{int((~finite).sum())} voxels contain NaN or inf (first: {where}); "
                "mask them out or fix the data"
            )
        positive_b0 = voxels[:, self.gtab.b0s_mask].mean(axis=1) > 0
        n_excluded = int((~positive_b0).sum())
        if n_excluded:
            logger.warning("%d voxels with non-positive b0 signal are excluded", n_excluded)
            flat_index = flat_index[positive_b0]
            voxels = voxels[positive_b0]
        fit_mask = np.zeros(int(np.prod(spatial)), dtype=bool)
        fit_mask[flat_index] = True
        fit_mask = fit_mask.reshape(spatial)
        signal, _ = self._normalise(voxels)
        params, sigma2 = self._deconvolve(signal, fit_mask)
        full = np.zeros((*spatial, params.shape[1]), dtype=self.dtype)
        full.reshape(-1, params.shape[1])[flat_index] = params
        snr = np.zeros(spatial, dtype=self.dtype)
        snr.reshape(-1)[flat_index] = 1.0 / np.sqrt(sigma2)
        if self.verbose and len(sigma2):
            logger.info("mean SNR estimate %.1f over %d voxels", snr[fit_mask].mean(), len(sigma2))
        return RumbaFit(self, full, snr=snr, mask=fit_mask, n_excluded=n_excluded)

    def _deconvolve(self, signal: np.ndarray, fit_mask: np.ndarray):
        """Run the iterations on (V, N) normalised signals; return params (V, M+2), sigma2."""
        n_vox = len(signal)
        n_comp = self.kernel.shape[1]
        kernel, kept, weight = _fold_antipodal(self.kernel, self.sphere.antipodal_partner)
        kernel = np.ascontiguousarray(kernel, dtype=self.dtype)
        initial = (weight / n_comp).astype(self.dtype)
        settings = RumbaIterationSettings(
            n_iter=self.n_iter, noise_order=self.noise_order, use_tv=self.use_tv, R=self.R
        )
        progress = self.progress
        if self.verbose and progress is None:
            progress = _log_progress
        chunk_size = self.chunk_size or _DEFAULT_CHUNK
        if n_vox == 0:
            sigma2 = np.zeros(0, dtype=self.dtype)
            fodf = np.empty((0, kernel.shape[1]), dtype=self.dtype)
        elif self.use_tv:
            grid_mask = _bounding_box(fit_mask)
            if self.verbose:
                logger.info("global TV fit of %d voxels in a %s box", n_vox, grid_mask.shape)
            # masked voxels in C order of the volume are in C order of their box too
            sigma2, fodf = _iterate_tv(
                signal,
                kernel,
                initial,
                settings,
                grid_mask=grid_mask,
                tv_scale=weight,
                chunk_size=chunk_size,
                n_threads=self.n_threads,
                progress=progress,
            )
        else:
            fodf = np.empty((n_vox, kernel.shape[1]), dtype=self.dtype)
            fodf[:] = initial
            sigma2 = _iterate_plain(
                signal,
                kernel,
                fodf,
                settings,
                chunk_size=chunk_size,
                n_threads=self.n_threads,
                progress=progress,
            )
        if kept is not None:
            # every vertex reads its pair's folded column (a row-wise gather), halved
            column = np.empty(n_comp, dtype=np.intp)
            column[kept] = column[self.sphere.antipodal_partner[kept]] = np.arange(len(kept))
            column[-2:] = len(kept), len(kept) + 1
            fodf = np.take(fodf, column, axis=1)
            fodf[:, :-2] *= self.dtype.type(0.5)
        total = fodf.sum(axis=1, dtype=np.float64)
        fodf /= (total + _EPS)[:, None].astype(self.dtype)
        return fodf, sigma2


def gather_voxels(data: np.ndarray, flat_index: np.ndarray, *, order: str = "C") -> np.ndarray:
    """Rows ``(n, N)`` of ``data`` (..., N) at flat voxel indices, without a copy of ``data``.

    Parameters
    ----------
    data : ndarray, shape (..., N)
    flat_index : ndarray of int, shape (n,)
        Flat indices into ``data.shape[:-1]``, in C order or (``order='F'``)
        Fortran order.

    Notes
    -----
    A NIfTI series is loaded in Fortran order, each volume contiguous: its
    voxels are gathered volume by volume (``N`` sequential passes; the result
    is a transposed view of an ``(N, n)`` array) rather than voxel by voxel
    (``N`` values ``X Y Z`` apart each), and ``reshape`` would copy it.
    """
    spatial = data.shape[:-1]
    if data.ndim >= 2 and data.flags.f_contiguous and not data.flags.c_contiguous:
        if order != "F":
            flat_index = np.ravel_multi_index(
                np.unravel_index(flat_index, spatial), spatial, order="F"
            )
        return data.T.reshape(data.shape[-1], -1)[:, flat_index].T
    if order == "F":
        flat_index = np.ravel_multi_index(
            np.unravel_index(flat_index, spatial, order="F"), spatial
        )
    if data.flags.c_contiguous or data.ndim < 2:
        return data.reshape(-1, data.shape[-1])[flat_index]
    return data[np.unravel_index(flat_index, spatial)]


def _bounding_box(fit_mask: np.ndarray) -> np.ndarray:
    """The mask cropped to its bounding box (TV boundaries are the box's)."""
    coords = np.nonzero(fit_mask)
    box = tuple(slice(int(c.min()), int(c.max()) + 1) for c in coords)
    return fit_mask[box]


def _log_progress(fraction: float, elapsed: float) -> None:
    eta = elapsed * (1 - fraction) / fraction if fraction > 0 else float("nan")
    logger.info("RUMBA fit %5.1f%% done, %.1f s elapsed, ETA %.1f s", 100 * fraction, elapsed, eta)


class RumbaFit:
    """Result of :meth:`RumbaSDModel.fit`; never modifies the model.

    The accessors return float64 arrays (as DIPY's, and what DIPY's Cython
    peak finder needs), computed once; ``model_params`` keeps the model's
    dtype.

    Attributes
    ----------
    model : RumbaSDModel
    model_params : ndarray, shape (..., M + 2), the model's dtype
        fODF weights on the sphere, then GM and CSF fractions; each fitted
        voxel sums to 1, other voxels are 0.
    snr : ndarray, shape (...) or None
        S0 / sigma from the per-voxel noise estimate (0 outside the fit).
    mask : ndarray of bool, shape (...) or None
        Voxels that were fitted.
    n_excluded : int
        Voxels in the requested mask dropped for a non-positive b0 signal.
    """

    def __init__(self, model, model_params, *, snr=None, mask=None, n_excluded=0):
        self.model = model
        self.model_params = model_params
        self.snr = snr
        self.mask = mask
        self.n_excluded = n_excluded

    def odf(self, sphere=None, *, dtype=np.float64) -> np.ndarray:
        """fODF on the model's sphere, shape (..., M); sums to ``f_wm``.

        Parameters
        ----------
        sphere : sphere-like, optional
            Must be the model's sphere (the fODF exists only there).
        dtype : numpy dtype or None
            float64 by default (a new array); None returns a view of
            ``model_params`` in the model's dtype (no copy).
        """
        if sphere is not None and as_sphere(sphere) != self.model.sphere:
            raise ValueError("the fODF exists only on the sphere the model was fitted with")
        odf = self.model_params[..., :-2]
        return odf if dtype is None else odf.astype(dtype)

    @cached_property
    def f_gm(self) -> np.ndarray:
        """Grey-matter volume fraction, shape (...), float64."""
        return self.model_params[..., -2].astype(np.float64)

    @cached_property
    def f_csf(self) -> np.ndarray:
        """CSF volume fraction, shape (...), float64."""
        return self.model_params[..., -1].astype(np.float64)

    @cached_property
    def f_iso(self) -> np.ndarray:
        """Isotropic fraction ``f_gm + f_csf``, shape (...), float64."""
        return self.f_gm + self.f_csf

    @cached_property
    def f_wm(self) -> np.ndarray:
        """White-matter fraction, the sum of the fODF, shape (...), float64."""
        # summed in float64 without a float64 copy of the fODF (equal to odf().sum(-1))
        return self.model_params[..., :-2].sum(axis=-1, dtype=np.float64)

    @cached_property
    def combined_odf_iso(self) -> np.ndarray:
        """fODF plus the isotropic fraction spread evenly over the sphere, (..., M),
        float64; sums to 1 in fitted voxels."""
        odf = self.odf()
        return odf + self.f_iso[..., None] / odf.shape[-1]

    def predict(self, gtab=None, S0=None) -> np.ndarray:
        """Predicted signal, shape (..., N) for ``gtab`` (default: the model's).

        ``gtab`` is gradient-table-like (ours or DIPY's); ``S0`` is a scalar or
        an array of shape (...); default 1.
        """
        gtab = self.model.gtab if gtab is None else gtab
        kernel = self.model.kernel_for(gtab)
        signal = self.model_params.astype(np.float64) @ kernel.T
        if S0 is not None:
            signal *= np.asarray(S0, dtype=np.float64)[..., None]
        return signal
