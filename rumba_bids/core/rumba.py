"""RUMBA-SD: Robust and Unbiased Model-BAsed Spherical Deconvolution.

Canales-Rodriguez et al., PLOS ONE 10(10): e0138910 (2015).  A Richardson-Lucy
style multiplicative update that maximises a Rician (``recon_type='smf'``) or
noncentral-chi (``'sos'``, ``n_coils`` channels) likelihood, estimating the
noise variance of every voxel alongside the fODF, optionally with a
total-variation prior across neighbouring voxels (global fit).

Both fit modes run the same batched iteration (:mod:`.iteration`): chunks of
voxels, two matrix products per iteration, spread over ``n_threads``
workers; with TV, slabs of slices whose TV factor (:mod:`.tv`) is computed
with their update.  Results do not depend on the number of threads.

When the sphere is antipodally symmetric (all named spheres are) the kernel's
columns come in identical pairs, so the two weights of a pair receive the same
update forever; the fit folds each pair into one column (half the work) and
splits the weight evenly at the end, which is exact.
"""

from __future__ import annotations

import logging
import warnings
from functools import cached_property

import numpy as np

from . import iteration, memory
from .defaults import DEFAULT_N_COILS, DEFAULT_N_ITER, DEFAULT_R, DEFAULT_RECON_TYPE
from .gradients import GradientTable, as_gradient_table
from .iteration import (  # noqa: F401  (public here: the model's constants and Bessel ratio)
    _EPS,
    SIGMA0,
    SIGMA2_BOUNDS,
    TV_LAMBDA_FLOOR,
    RumbaIterationSettings,
    bessel_ratio,
)
from .kernel import (
    DEFAULT_CSF_RESPONSE,
    DEFAULT_GM_RESPONSE,
    DEFAULT_WM_RESPONSE,
    as_wm_response,
    rumba_kernel,
)
from .sphere import as_sphere
from .threads import resolve_threads

logger = logging.getLogger("rumba_bids.rumba")

RECON_TYPES = ("smf", "sos")


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
        Voxels per batch (default 1024, or 384 with TV:
        :func:`~rumba_bids.core.memory.default_chunk`).
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
        chunk_size = self.chunk_size or memory.default_chunk(self.use_tv)
        if n_vox == 0:
            sigma2 = np.zeros(0, dtype=self.dtype)
            fodf = np.empty((0, kernel.shape[1]), dtype=self.dtype)
        elif self.use_tv:
            grid_mask = _bounding_box(fit_mask)
            if self.verbose:
                logger.info("global TV fit of %d voxels in a %s box", n_vox, grid_mask.shape)
            # masked voxels in C order of the volume are in C order of their box too
            sigma2, fodf = iteration._iterate_tv(
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
            sigma2 = iteration._iterate_plain(
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
