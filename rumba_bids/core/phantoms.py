"""Synthetic diffusion signals with known ground truth.

Multi-tensor signals (fibres as axially symmetric tensors plus isotropic
compartments), Rician and noncentral-chi noise, and standard acquisitions.
Used by tests, the demo dataset and the validation benchmarks.  Every random
function takes an explicit ``rng`` (a :class:`numpy.random.Generator`) or seed.
"""

from __future__ import annotations

import numpy as np

from .gradients import GradientTable

WM_EVALS = (1.7e-3, 0.2e-3, 0.2e-3)


def fibonacci_directions(n: int) -> np.ndarray:
    """``n`` near-uniform unit vectors on the upper hemisphere, shape (n, 3).

    Deterministic (golden-angle spiral); good enough for gradient schemes.
    """
    k = np.arange(n) + 0.5
    z = 1 - k / n  # (0, 1]: upper hemisphere
    phi = np.pi * (1 + 5**0.5) * k
    r = np.sqrt(1 - z**2)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def make_acquisition(*, n_b0: int = 10, n_dirs: int = 150, bvals=(2000.0,)) -> GradientTable:
    """A spherical-shell acquisition: ``n_b0`` b0 volumes then ``n_dirs``
    directions on every shell in ``bvals`` (s/mm^2).

    The seed tutorial's acquisition is the default (10 b0 + 150 at b=2000).
    """
    dirs = fibonacci_directions(n_dirs)
    bv = [np.zeros(n_b0)] + [np.full(n_dirs, float(b)) for b in bvals]
    bvecs = [np.zeros((n_b0, 3))] + [dirs] * len(bvals)
    return GradientTable(np.concatenate(bv), np.concatenate(bvecs))


def tensor_from_direction(direction, evals=WM_EVALS) -> np.ndarray:
    """Diffusion tensor(s) with principal axis ``direction``.

    Parameters
    ----------
    direction : array_like, shape (..., 3)
    evals : array_like, shape (3,) or (..., 3)
        Eigenvalues in mm^2/s; the second and third are the perpendicular ones
        (their mean is used: the tensor is axially symmetric).

    Returns
    -------
    ndarray, shape (..., 3, 3)
    """
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d, axis=-1, keepdims=True)
    evals = np.asarray(evals, dtype=np.float64)
    l1 = evals[..., 0]
    lperp = 0.5 * (evals[..., 1] + evals[..., 2])
    outer = d[..., :, None] * d[..., None, :]
    eye = np.eye(3)
    return lperp[..., None, None] * eye + (l1 - lperp)[..., None, None] * outer


def multi_tensor_signal(
    gtab: GradientTable,
    directions,
    fractions,
    *,
    evals=WM_EVALS,
    iso_fractions=(),
    iso_diffusivities=(),
    S0: float = 1.0,
) -> np.ndarray:
    """Noise-free signal of fibres plus isotropic compartments.

    Parameters
    ----------
    gtab : GradientTable
    directions : array_like, shape (..., F, 3)
        Fibre directions.
    fractions : array_like, shape (..., F)
        Fibre volume fractions.
    evals : array_like, shape (3,)
        Fibre tensor eigenvalues (mm^2/s).
    iso_fractions : array_like, shape (..., I)
    iso_diffusivities : array_like, shape (I,)
        Isotropic diffusivities (mm^2/s), e.g. GM 0.8e-3 and CSF 3.0e-3.
    S0 : float
        Signal without diffusion weighting.

    Returns
    -------
    ndarray, shape (..., N)
    """
    directions = np.asarray(directions, dtype=np.float64)
    fractions = np.asarray(fractions, dtype=np.float64)
    tensors = tensor_from_direction(directions, evals)  # (..., F, 3, 3)
    g = gtab.bvecs
    adc = np.einsum("ni,...fij,nj->...fn", g, tensors, g)
    signal = np.einsum("...f,...fn->...n", fractions, np.exp(-gtab.bvals * adc))
    iso_fractions = np.asarray(iso_fractions, dtype=np.float64)
    iso_diffusivities = np.asarray(iso_diffusivities, dtype=np.float64)
    if iso_diffusivities.size:
        iso = np.exp(-np.outer(iso_diffusivities, gtab.bvals))  # (I, N)
        signal = signal + iso_fractions @ iso
    return S0 * signal


def add_rician_noise(signal, *, snr: float, rng, S0: float = 1.0) -> np.ndarray:
    """Rician noise with ``sigma = S0 / snr`` (magnitude of a complex Gaussian)."""
    return add_noncentral_chi_noise(signal, snr=snr, rng=rng, n_coils=1, S0=S0)


def add_noncentral_chi_noise(
    signal, *, snr: float, rng, n_coils: int = 1, S0: float = 1.0
) -> np.ndarray:
    """Noncentral-chi noise of ``n_coils`` channels (sum of squares), sigma = S0 / snr.

    The signal is put in the first channel's real part; every channel gets
    complex Gaussian noise; the result is the root sum of squares.
    """
    rng = np.random.default_rng(rng)
    signal = np.asarray(signal, dtype=np.float64)
    sigma = S0 / snr
    total = np.zeros_like(signal)
    for coil in range(n_coils):
        real = rng.normal(0, sigma, signal.shape)
        if coil == 0:
            real += signal
        imag = rng.normal(0, sigma, signal.shape)
        total += real**2 + imag**2
    return np.sqrt(total)


def random_directions(n: int, *, rng) -> np.ndarray:
    """``n`` uniformly random unit vectors, shape (n, 3)."""
    rng = np.random.default_rng(rng)
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def crossing_directions(angle_deg: float, *, axis=(1.0, 0.0, 0.0)) -> np.ndarray:
    """Two unit vectors in the xy-plane separated by ``angle_deg``, shape (2, 3).

    The first is ``axis``; the second is rotated about z.
    """
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    t = np.radians(angle_deg)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    return np.stack([a, rot @ a])
