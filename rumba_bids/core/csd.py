"""Constrained spherical deconvolution (CSD), vectorised over voxels.

The fibre orientation distribution (fODF) ``f`` in real symmetric SH is found
from the diffusion-weighted signal ``s`` of one shell by Tournier et al.'s
(NeuroImage 2007) iteratively constrained least squares::

    minimise |X f - s|^2 + |H f|^2,   X = B_dwi diag(r_l),

where ``r_l`` are the convolution factors of an axially symmetric response,
and ``H`` holds the rows of ``lambda * B_reg`` (the SH basis on a
regularisation hemisphere) at which the previous fODF fell below ``tau``
times its mean.  The first constraint set comes from the unconstrained fit
truncated to degree 4; iterations stop when the set no longer changes.  This
follows ``dipy.reconst.csdeconv.csdeconv`` (including its ``lambda`` scaling).

Every voxel is iterated at once: the 45 x 45 systems ``X^T X + H_v^T H_v``
are assembled for all voxels with one matrix product (of the 0/1 constraint
indicators with the packed outer products of the rows of ``B_reg``), solved
with a batched ``numpy.linalg.solve``, and voxels leave
the loop as their constraint set settles.  Each iteration's voxels are shared
between threads (numpy and LAPACK release the GIL).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import linalg

from .gradients import GradientTable
from .kernel import AxisymmetricResponse
from .shm import real_sh_basis, sh_degree_order, sh_zonal_indices, zonal_to_rotational
from .sphere import Sphere, as_sphere

DEFAULT_REG_SPHERE = "symmetric362"
_DEFAULT_CHUNK = 20000
# Tikhonov term added when X^T X alone is singular (more SH terms than directions).
_MU = 1e-5
# Number of coefficients of degree <= 4 (the smooth first guess of the constraint set).
_N_LOW_ORDER = 15
# Below this many voxels per thread, threads cost more than they save.
_MIN_VOXELS_PER_THREAD = 1000


def hemisphere(sphere) -> Sphere:
    """One vertex of every antipodal pair of ``sphere`` (all vertices if not symmetric)."""
    sphere = as_sphere(sphere)
    partner = sphere.antipodal_partner
    if np.any(partner < 0):
        return sphere
    keep = np.arange(len(sphere)) < partner
    return Sphere(sphere.vertices[keep], name=f"{sphere.name}-hemisphere")


def zonal_from_tensor(gtab: GradientTable, evals, *, S0: float = 1.0, sh_order: int = 8):
    """Zonal SH coefficients of a z-aligned tensor signal sampled on the gradient table.

    The signal ``S0 exp(-b g^T D g)`` of the tensor with eigenvalues
    ``(l1, l2, l3)`` along ``(z, y, x)`` is fitted with the full SH basis of
    degree ``sh_order`` at the diffusion directions (least squares), and the
    ``m = 0`` coefficients are returned (as DIPY's CSD does with a tensor
    response).

    Parameters
    ----------
    gtab : GradientTable
        Single-shell acquisition.
    evals : array_like, shape (3,)
        Eigenvalues in mm^2/s.

    Returns
    -------
    ndarray, shape (sh_order / 2 + 1,)
    """
    evals = np.asarray(evals, dtype=np.float64)
    dwi = ~gtab.b0s_mask
    g = gtab.bvecs[dwi]
    adc = evals[0] * g[:, 2] ** 2 + evals[1] * g[:, 1] ** 2 + evals[2] * g[:, 0] ** 2
    signal = S0 * np.exp(-gtab.bvals[dwi] * adc)
    design = real_sh_basis(gtab.bvecs[dwi], sh_order=sh_order)
    coefs = np.linalg.lstsq(design, signal, rcond=None)[0]
    return coefs[sh_zonal_indices(sh_order)]


@dataclass(frozen=True)
class CsdFit:
    """Result of :meth:`CsdModel.fit`.

    Attributes
    ----------
    sh : ndarray, shape (..., n_coef)
        fODF coefficients in the model's SH basis (zero outside the mask).
    n_iterations : ndarray of int, shape (...)
        Constrained iterations used per voxel (0: the unconstrained fit was
        already non-negative).
    converged : ndarray of bool, shape (...)
        False where the constraint set still changed after ``max_iter``.
    model : CsdModel
    """

    sh: np.ndarray
    n_iterations: np.ndarray
    converged: np.ndarray
    model: CsdModel

    def odf(self, sphere=None) -> np.ndarray:
        """fODF amplitudes on ``sphere`` (default ``repulsion724``), shape (..., n_vertices)."""
        design = real_sh_basis(
            as_sphere(sphere).vertices, sh_order=self.model.sh_order, basis=self.model.basis
        )
        return self.sh @ design.T


class CsdModel:
    """Single-shell constrained spherical deconvolution.

    Parameters
    ----------
    gtab : GradientTable
        One non-zero shell (plus b0 volumes).
    response : AxisymmetricResponse or tuple (evals, S0) or array_like (3,)
        Single-fibre response: zonal SH coefficients, or tensor eigenvalues in
        mm^2/s (with an optional b0 signal; default 1).
    sh_order : int
        Maximum even SH degree of the fODF.
    basis : {'mrtrix3', 'descoteaux'}
        SH basis of the returned coefficients (the fODF does not depend on it).
    reg_sphere : sphere-like
        Directions of the non-negativity constraint; an antipodally symmetric
        sphere is reduced to one hemisphere.
    lambda_ : float
        Weight of the constraint (scaled as in Tournier 2012 / DIPY).
    tau : float
        Amplitudes below ``tau`` times the fODF mean are constrained.
    max_iter : int
        Maximum constrained iterations per voxel.
    """

    def __init__(
        self,
        gtab: GradientTable,
        response,
        *,
        sh_order: int = 8,
        basis: str = "mrtrix3",
        reg_sphere=DEFAULT_REG_SPHERE,
        lambda_: float = 1.0,
        tau: float = 0.1,
        max_iter: int = 50,
    ):
        if gtab.n_shells != 1:
            raise ValueError(
                f"CSD needs single-shell data, got shells {[round(b) for b in gtab.shells]}: "
                "select one shell and the b0s with gtab.subset(...)"
            )
        self.gtab = gtab
        self.sh_order = int(sh_order)
        self.basis = basis
        self.tau = float(tau)
        self.max_iter = int(max_iter)
        self.dwi_mask = ~gtab.b0s_mask
        if isinstance(response, AxisymmetricResponse):
            zonal = response.zonal_coefs
        else:
            if isinstance(response, tuple) and len(response) == 2:
                evals, S0 = response
            else:
                evals, S0 = response, 1.0
            zonal = zonal_from_tensor(gtab, evals, S0=float(S0), sh_order=self.sh_order)
        self.response = response
        degrees, _ = sh_degree_order(self.sh_order)
        per_degree = np.zeros(self.sh_order // 2 + 1)
        n_used = min(len(zonal), len(per_degree))
        per_degree[:n_used] = zonal_to_rotational(zonal[:n_used])
        if not per_degree[0] > 0:
            raise ValueError("the response has no positive mean signal (zonal coefficient 0)")
        self.rotational = per_degree
        b_dwi = real_sh_basis(gtab.bvecs[self.dwi_mask], sh_order=self.sh_order, basis=basis)
        self.design = b_dwi * per_degree[degrees // 2]
        reg = hemisphere(reg_sphere)
        b_reg = real_sh_basis(reg.vertices, sh_order=self.sh_order, basis=basis)
        n_coef = b_dwi.shape[1]
        # DIPY's scaling (Tournier 2012), with its reference sphere size of 362
        scaled_lambda = lambda_ * n_coef * per_degree[0] / (np.sqrt(len(reg)) * np.sqrt(362.0))
        self.reg_matrix = b_reg * scaled_lambda
        gram = self.design.T @ self.design
        try:
            linalg.cho_factor(gram)
        except linalg.LinAlgError:  # more SH terms than directions: as DIPY, add mu I
            gram = gram + _MU * np.eye(n_coef)
        self.gram = gram

    @property
    def n_coefficients(self) -> int:
        return self.design.shape[1]

    def fit(
        self, data, *, mask=None, chunk_size: int = _DEFAULT_CHUNK, n_threads: int | None = None
    ) -> CsdFit:
        """Deconvolve every voxel.

        Parameters
        ----------
        data : array_like, shape (..., N)
            Signal of all N volumes of the gradient table (b0s are ignored).
        mask : array_like of bool, shape (...), optional
        chunk_size : int
            Voxels processed together (memory about ``chunk_size * 25`` kB).
        n_threads : int, optional
            Threads solving the per-voxel systems (default: the CPUs available).

        Returns
        -------
        CsdFit
        """
        data = np.asarray(data)
        if data.shape[-1:] != (len(self.gtab),):
            raise ValueError(
                f"data has {data.shape[-1] if data.ndim else 0} volumes but the gradient "
                f"table has {len(self.gtab)}"
            )
        spatial = data.shape[:-1]
        if mask is None:
            mask = np.ones(spatial, dtype=bool)
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != spatial:
            raise ValueError(f"mask shape {mask.shape} differs from the data's {spatial}")
        signal = data[mask][:, self.dwi_mask].astype(np.float64)
        if not np.all(np.isfinite(signal)):
            raise ValueError("the data contain NaN or inf inside the mask")
        sh, n_iterations, converged = deconvolve(
            signal,
            self.design,
            self.reg_matrix,
            gram=self.gram,
            tau=self.tau,
            max_iter=self.max_iter,
            chunk_size=chunk_size,
            n_threads=n_threads,
        )
        out_sh = np.zeros(spatial + (self.n_coefficients,))
        out_iter = np.zeros(spatial, dtype=np.intp)
        out_conv = np.ones(spatial, dtype=bool)
        out_sh[mask], out_iter[mask], out_conv[mask] = sh, n_iterations, converged
        return CsdFit(sh=out_sh, n_iterations=out_iter, converged=out_conv, model=self)


def deconvolve(
    signal,
    design,
    reg_matrix,
    *,
    gram=None,
    tau: float = 0.1,
    max_iter: int = 50,
    chunk_size: int = _DEFAULT_CHUNK,
    n_threads: int | None = None,
):
    """Constrained deconvolution of many voxels (the core of :class:`CsdModel`).

    Parameters
    ----------
    signal : ndarray, shape (V, N)
        Diffusion-weighted signals.
    design : ndarray, shape (N, C)
        Forward matrix from fODF SH coefficients to signals.
    reg_matrix : ndarray, shape (K, C)
        ``lambda`` times the SH basis on the constraint directions; its first
        column must be constant (the ``l = 0`` harmonic).
    gram : ndarray, shape (C, C), optional
        ``design.T @ design`` (possibly regularised).
    tau : float
    max_iter : int
    chunk_size : int
        Voxels per block (memory about ``chunk_size * 25`` kB).
    n_threads : int, optional
        Threads sharing each iteration's voxels (default: the CPUs available).
        Every thread makes its own matrix products, so limit BLAS to one
        thread (e.g. ``threadpoolctl``) when using several here.

    Returns
    -------
    sh : ndarray, shape (V, C)
    n_iterations : ndarray of int, shape (V,)
    converged : ndarray of bool, shape (V,)
    """
    signal = np.asarray(signal, dtype=np.float64)
    if gram is None:
        gram = design.T @ design
    n_vox, n_coef = len(signal), design.shape[1]
    # Only the lower triangle of the symmetric systems is assembled: row k of
    # ``outer`` is the packed lower triangle of the outer product of constraint
    # row k, and ``unpack`` rebuilds full C x C matrices from packed rows.
    lower_i, lower_j = np.tril_indices(n_coef)
    outer = reg_matrix[:, lower_i] * reg_matrix[:, lower_j]
    position = np.zeros((n_coef, n_coef), dtype=np.intp)
    position[lower_i, lower_j] = np.arange(len(lower_i))
    position[lower_j, lower_i] = np.arange(len(lower_i))
    packing = (outer, gram[lower_i, lower_j], position.ravel())
    gram_factor = linalg.cho_factor(gram)
    sh = np.empty((n_vox, n_coef))
    n_iterations = np.zeros(n_vox, dtype=np.intp)
    converged = np.ones(n_vox, dtype=bool)
    n_threads = _n_threads() if n_threads is None else max(int(n_threads), 1)
    for start in range(0, n_vox, max(int(chunk_size), 1)):
        block = slice(start, start + chunk_size)
        sh[block], n_iterations[block], converged[block] = _deconvolve_block(
            signal[block],
            design,
            reg_matrix,
            gram_factor,
            packing,
            tau=tau,
            max_iter=max_iter,
            n_threads=n_threads,
        )
    return sh, n_iterations, converged


def _deconvolve_block(
    signal, design, reg_matrix, gram_factor, packing, *, tau, max_iter, n_threads
):
    """DIPY's ``csdeconv`` iteration for a block of voxels (V, N)."""
    outer, gram_packed, unpack = packing
    n_vox, n_coef = len(signal), design.shape[1]
    rhs = signal @ design  # (V, C) = X^T s per voxel
    sh = linalg.cho_solve(gram_factor, rhs.T).T
    threshold = reg_matrix[0, 0] * sh[:, 0] * tau
    n_low = _N_LOW_ORDER if n_coef >= _N_LOW_ORDER else n_coef
    constrained = sh[:, :n_low] @ reg_matrix[:, :n_low].T < threshold[:, None]
    none = ~constrained.any(axis=1)
    if none.any():
        constrained[none] = sh[none] @ reg_matrix.T < threshold[none, None]
    n_iterations = np.zeros(n_vox, dtype=np.intp)
    converged = np.ones(n_vox, dtype=bool)
    todo = np.flatnonzero(constrained.any(axis=1))
    active = constrained[todo]
    # Buffers reused by every iteration (fresh large arrays cost page faults).
    packed = np.empty((len(todo), outer.shape[1]))
    systems = np.empty((len(todo), n_coef * n_coef))
    solution = np.empty((len(todo), n_coef))
    new_active = np.empty(active.shape, dtype=bool)

    def solve_rows(rows: slice, voxels: np.ndarray, rows_active: np.ndarray):
        # assemble, solve and re-threshold some voxels (one thread's share)
        np.matmul(rows_active.astype(np.float64), outer, out=packed[rows])
        packed[rows] += gram_packed
        np.take(packed[rows], unpack, axis=1, out=systems[rows])
        matrices = systems[rows].reshape(-1, n_coef, n_coef)
        solution[rows] = np.linalg.solve(matrices, rhs[voxels][..., None])[..., 0]
        new_active[rows] = solution[rows] @ reg_matrix.T < threshold[voxels, None]

    pool = ThreadPoolExecutor(n_threads) if n_threads > 1 else None
    try:
        for iteration in range(1, max_iter + 1):
            if not todo.size:
                break
            count = len(todo)
            n_parts = min(n_threads, max(count // _MIN_VOXELS_PER_THREAD, 1))
            bounds = np.linspace(0, count, n_parts + 1).astype(int)
            parts = [slice(bounds[k], bounds[k + 1]) for k in range(n_parts)]
            jobs = [(part, todo[part], active[part]) for part in parts]
            if n_parts == 1:
                solve_rows(*jobs[0])
            else:
                list(pool.map(lambda job: solve_rows(*job), jobs))
            sh[todo] = solution[:count]
            n_iterations[todo] = iteration
            changed = (new_active[:count] != active).any(axis=1)
            if iteration == max_iter:
                converged[todo[changed]] = False
                break
            todo, active = todo[changed], new_active[:count][changed]
    finally:
        if pool is not None:
            pool.shutdown()
    return sh, n_iterations, converged


def _n_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
