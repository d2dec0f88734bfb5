"""Diffusion tensor fit by weighted linear least squares, vectorised over voxels.

The log-signal model is ``log S = log S0 - b g^T D g``.  As DIPY's default
``TensorModel(fit_method='WLS')`` (Chung et al. 2006), an ordinary
least-squares fit first predicts the signal, and the weighted fit uses the
squared predicted signal as weights.  Every voxel is solved at once through
7 x 7 normal equations (batched ``numpy.linalg.solve``), in chunks of voxels
so that memory stays bounded.

Degenerate voxels (no positive signal at all, or no positive b0 signal) are
not fitted: their eigenvalues, FA, MD and S0 are zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .gradients import GradientTable

#: Signals below this are raised to it before taking the log (DIPY's default).
MIN_SIGNAL = 1e-4
_DEFAULT_CHUNK = 20000
# Upper-triangle index pairs in the order of the design matrix columns.
_PAIRS = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


@dataclass(frozen=True)
class TensorFit:
    """Result of :func:`fit_tensor`.

    Attributes
    ----------
    evals : ndarray, shape (..., 3)
        Eigenvalues in mm^2/s (if b is in s/mm^2), descending.  In fitted
        voxels they are at least ``1e-6 / b_max`` (about 1e-9 mm^2/s: negative
        eigenvalues are noise), as in DIPY; 0 elsewhere.
    evecs : ndarray, shape (..., 3, 3)
        Eigenvectors as columns: ``evecs[..., :, k]`` belongs to ``evals[..., k]``.
    S0 : ndarray, shape (...)
        Fitted signal without diffusion weighting.
    mask : ndarray of bool, shape (...)
        Voxels that were fitted (inside the given mask and not degenerate).
    """

    evals: np.ndarray
    evecs: np.ndarray
    S0: np.ndarray
    mask: np.ndarray

    @property
    def fa(self) -> np.ndarray:
        """Fractional anisotropy, shape (...)."""
        return fractional_anisotropy(self.evals)

    @property
    def md(self) -> np.ndarray:
        """Mean diffusivity, shape (...)."""
        return mean_diffusivity(self.evals)

    @property
    def ad(self) -> np.ndarray:
        """Axial diffusivity (largest eigenvalue), shape (...)."""
        return self.evals[..., 0]

    @property
    def rd(self) -> np.ndarray:
        """Radial diffusivity (mean of the two smaller eigenvalues), shape (...)."""
        return 0.5 * (self.evals[..., 1] + self.evals[..., 2])

    @property
    def directions(self) -> np.ndarray:
        """Principal eigenvectors, shape (..., 3)."""
        return self.evecs[..., :, 0]

    @property
    def quadratic_form(self) -> np.ndarray:
        """Diffusion tensors, shape (..., 3, 3)."""
        return np.einsum("...ik,...k,...jk->...ij", self.evecs, self.evals, self.evecs)


def fractional_anisotropy(evals) -> np.ndarray:
    """Fractional anisotropy of eigenvalue triplets.

    Parameters
    ----------
    evals : array_like, shape (..., 3)

    Returns
    -------
    ndarray, shape (...)
        In [0, 1]; 0 where all eigenvalues are zero.

    Examples
    --------
    >>> round(float(fractional_anisotropy([1.7e-3, 0.2e-3, 0.2e-3])), 4)
    0.8704
    >>> float(fractional_anisotropy([0.0, 0.0, 0.0]))
    0.0
    """
    evals = np.asarray(evals, dtype=np.float64)
    if evals.shape[-1:] != (3,):
        raise ValueError(f"eigenvalues must have a last axis of length 3, got {evals.shape}")
    l1, l2, l3 = evals[..., 0], evals[..., 1], evals[..., 2]
    spread = (l1 - l2) ** 2 + (l2 - l3) ** 2 + (l3 - l1) ** 2
    norm = (evals**2).sum(axis=-1)
    safe = np.where(norm > 0, norm, 1.0)
    return np.where(norm > 0, np.sqrt(0.5 * spread / safe), 0.0)


def mean_diffusivity(evals) -> np.ndarray:
    """Mean of the eigenvalues, shape (...)."""
    return np.asarray(evals, dtype=np.float64).mean(axis=-1)


def tensor_design_matrix(gtab: GradientTable) -> np.ndarray:
    """Design matrix of the log-signal tensor model, shape (N, 7).

    Columns: ``-b gx^2, -b gy^2, -b gz^2, -2b gx gy, -2b gx gz, -2b gy gz, 1``
    multiply ``Dxx, Dyy, Dzz, Dxy, Dxz, Dyz, log S0``.
    """
    g = gtab.bvecs
    b = gtab.bvals
    columns = [-(2.0 if i != j else 1.0) * b * g[:, i] * g[:, j] for i, j in _PAIRS]
    return np.stack(columns + [np.ones_like(b)], axis=1)


def fit_tensor(
    gtab: GradientTable,
    data,
    *,
    mask=None,
    min_signal: float = MIN_SIGNAL,
    chunk_size: int = _DEFAULT_CHUNK,
) -> TensorFit:
    """Weighted least-squares diffusion tensor fit of every voxel.

    Parameters
    ----------
    gtab : GradientTable
        N volumes; needs at least 6 non-coplanar directions and a b0.
    data : array_like, shape (..., N)
        Diffusion signal.
    mask : array_like of bool, shape (...), optional
        Voxels to fit (default: all).
    min_signal : float
        Signals are raised to at least this value before the log.
    chunk_size : int
        Voxels solved together; bounds memory to about
        ``chunk_size * N * 40`` bytes.

    Returns
    -------
    TensorFit
        Zero eigenvalues, FA, MD and S0 outside the mask and in degenerate
        voxels (no positive signal, or no positive b0 signal).
    """
    data = np.asarray(data)
    if data.ndim < 1 or data.shape[-1] != len(gtab):
        raise ValueError(
            f"data has {data.shape[-1] if data.ndim else 0} volumes on its last axis but "
            f"the gradient table has {len(gtab)}"
        )
    if not min_signal > 0:
        raise ValueError(f"min_signal must be strictly positive, got {min_signal}")
    design = tensor_design_matrix(gtab)
    if np.linalg.matrix_rank(design) < 7:
        raise ValueError(
            "the gradient table cannot determine a tensor: it needs a b0 and at least six "
            "non-coplanar diffusion directions"
        )
    spatial = data.shape[:-1]
    if mask is None:
        mask = np.ones(spatial, dtype=bool)
    else:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != spatial:
            raise ValueError(f"mask shape {mask.shape} differs from the data's {spatial}")
    # the smallest diffusivity the acquisition can resolve (DIPY's floor)
    min_diffusivity = 1e-6 / max(-design[:, :6].min(), 1.0)
    voxels = data[mask]
    positive = voxels > 0
    fittable = positive.any(axis=-1) & positive[:, gtab.b0s_mask].any(axis=-1)

    n_vox = len(voxels)
    evals = np.zeros((n_vox, 3))
    evecs = np.broadcast_to(np.eye(3), (n_vox, 3, 3)).copy()
    S0 = np.zeros(n_vox)
    index = np.flatnonzero(fittable)
    for start in range(0, len(index), max(int(chunk_size), 1)):
        sel = index[start : start + chunk_size]
        params = _wls_chunk(design, voxels[sel], min_signal=min_signal)
        evals[sel], evecs[sel] = _decompose(params[:, :6], floor=min_diffusivity)
        S0[sel] = np.exp(params[:, 6])

    fitted = np.zeros(spatial, dtype=bool)
    fitted[mask] = fittable
    out_evals = np.zeros(spatial + (3,))
    out_evecs = np.broadcast_to(np.eye(3), spatial + (3, 3)).copy()
    out_S0 = np.zeros(spatial)
    out_evals[mask], out_evecs[mask], out_S0[mask] = evals, evecs, S0
    return TensorFit(evals=out_evals, evecs=out_evecs, S0=out_S0, mask=fitted)


def _wls_chunk(design: np.ndarray, signal: np.ndarray, *, min_signal: float) -> np.ndarray:
    """WLS tensor parameters of a (V, N) block, shape (V, 7)."""
    log_signal = np.log(np.maximum(signal.astype(np.float64), min_signal))
    # Column scaling keeps the normal equations well conditioned.
    scale = np.abs(design).max(axis=0)
    scaled = design / scale
    beta_ols = log_signal @ np.linalg.pinv(scaled).T
    log_pred = beta_ols @ scaled.T
    # Weights: squared predicted signal, normalised per voxel (the solution
    # does not depend on a per-voxel factor, and this avoids overflow).
    # The floor (relative weight 1e-12) only matters for absurd fits and keeps
    # every system invertible.
    weights = np.exp(np.maximum(2.0 * (log_pred - log_pred.max(axis=1, keepdims=True)), -27.6))
    outer = (scaled[:, :, None] * scaled[:, None, :]).reshape(len(design), 49)
    normal = (weights @ outer).reshape(-1, 7, 7)
    rhs = (weights * log_signal) @ scaled
    beta = np.linalg.solve(normal, rhs[..., None])[..., 0]
    return beta / scale


def _decompose(lower: np.ndarray, *, floor: float):
    """Eigen-decomposition of tensors given as (Dxx, Dyy, Dzz, Dxy, Dxz, Dyz).

    Returns descending eigenvalues raised to ``floor``, shape (V, 3), and
    eigenvectors as columns, shape (V, 3, 3).
    """
    tensors = np.empty((len(lower), 3, 3))
    for k, (i, j) in enumerate(_PAIRS):
        tensors[:, i, j] = lower[:, k]
        tensors[:, j, i] = lower[:, k]
    values, vectors = np.linalg.eigh(tensors)
    return np.maximum(values[:, ::-1], floor), vectors[:, :, ::-1]
