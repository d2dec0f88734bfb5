"""Synthetic diffusion signals with known ground truth.

Multi-tensor signals (fibres as axially symmetric tensors plus isotropic
compartments), Rician and noncentral-chi noise, and standard acquisitions.
Used by tests, the demo dataset and the validation benchmarks.  Every random
function takes an explicit ``rng`` (a :class:`numpy.random.Generator`) or seed.

For validation, :func:`make_voxel_population` (independent voxels with 1-3
randomly oriented fibres) and :func:`make_coherent_phantom` (two curved
bundles crossing in a slab) return signals together with a
:class:`GroundTruth`; :mod:`rumba_bids.core.scoring` compares estimated peaks
with it.  :func:`tensor_response_zonal` gives the exact response of the
simulated fibres in zonal spherical harmonics (e.g. for MRtrix3's CSD).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import eval_legendre

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


# --- populations of voxels with known fibres (validation) ------------------------------------

#: Most fibres a ground-truth voxel holds; direction arrays are padded to this.
MAX_FIBRES = 3
CSF_DIFFUSIVITY = 3.0e-3
GM_DIFFUSIVITY = 0.8e-3


class GroundTruth(NamedTuple):
    """What a phantom's voxels hold.

    Attributes
    ----------
    directions : ndarray, shape (..., MAX_FIBRES, 3)
        Unit fibre directions, largest fraction first; NaN rows pad voxels
        with fewer fibres.
    n_fibres : ndarray of int, shape (...)
    fractions : ndarray, shape (..., MAX_FIBRES)
        Volume fraction of each fibre in the voxel (0 for padding rows).
    f_iso : ndarray, shape (...)
        Volume fraction of the isotropic compartments.
    """

    directions: np.ndarray
    n_fibres: np.ndarray
    fractions: np.ndarray
    f_iso: np.ndarray


def fibre_configuration(n_fibres: int, crossing_angle: float = 90.0) -> np.ndarray:
    """Unit directions of ``n_fibres`` fibres crossing at ``crossing_angle``, shape (F, 3).

    One fibre lies along x; two fibres lie in the xy-plane (as
    :func:`crossing_directions`); three fibres lie on a cone about z with the
    same angle between every pair (90 degrees: the three axes).

    Parameters
    ----------
    n_fibres : {1, 2, 3}
    crossing_angle : float in (0, 90]
        Degrees between (every pair of) fibre axes; ignored for one fibre.

    Examples
    --------
    >>> dirs = fibre_configuration(3, 60.0)
    >>> np.round(np.degrees(np.arccos(np.abs(dirs @ dirs.T))), 6).tolist()[0]
    [0.0, 60.0, 60.0]
    """
    if n_fibres not in (1, 2, 3):
        raise ValueError(f"n_fibres must be 1, 2 or 3, got {n_fibres!r}")
    if n_fibres == 1:
        return np.array([[1.0, 0.0, 0.0]])
    if not 0 < crossing_angle <= 90:
        raise ValueError(
            f"crossing_angle must be in (0, 90] degrees between fibre axes, got {crossing_angle!r}"
        )
    if n_fibres == 2:
        return crossing_directions(crossing_angle)
    # three vectors at polar angle alpha, azimuths 0/120/240: cos(angle) = cos^2 a - sin^2 a / 2
    cos_alpha = np.sqrt((np.cos(np.radians(crossing_angle)) + 0.5) / 1.5)
    sin_alpha = np.sqrt(1 - cos_alpha**2)
    azimuth = np.radians([0.0, 120.0, 240.0])
    return np.stack(
        [sin_alpha * np.cos(azimuth), sin_alpha * np.sin(azimuth), np.full(3, cos_alpha)], axis=1
    )


def random_rotations(n: int, *, rng) -> np.ndarray:
    """``n`` rotation matrices drawn uniformly from SO(3), shape (n, 3, 3).

    Built from uniformly random unit quaternions.
    """
    rng = np.random.default_rng(rng)
    q = rng.normal(size=(n, 4))
    w, x, y, z = (q / np.linalg.norm(q, axis=1, keepdims=True)).T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def _add_noise(signal, *, snr, n_coils, rng, S0):
    if snr is None:
        return signal
    if not snr > 0:
        raise ValueError(f"snr must be positive (or None for noise-free signals), got {snr!r}")
    n_coils = int(n_coils)
    if n_coils < 1:
        raise ValueError(f"n_coils must be >= 1, got {n_coils!r}")
    return add_noncentral_chi_noise(signal, snr=snr, rng=rng, n_coils=n_coils, S0=S0)


def _pad_truth(directions, fractions, f_iso) -> GroundTruth:
    """GroundTruth from (..., F, 3) directions and (..., F) voxel fractions."""
    n_fibres = directions.shape[-2]
    pad = MAX_FIBRES - n_fibres
    shape = directions.shape[:-2]
    padded_dirs = np.concatenate([directions, np.full(shape + (pad, 3), np.nan)], axis=-2)
    padded_fracs = np.concatenate([fractions, np.zeros(shape + (pad,))], axis=-1)
    return GroundTruth(
        directions=padded_dirs,
        n_fibres=np.full(shape, n_fibres, dtype=np.intp),
        fractions=padded_fracs,
        f_iso=np.broadcast_to(np.asarray(f_iso, dtype=np.float64), shape).copy(),
    )


def make_voxel_population(
    gtab: GradientTable,
    *,
    n_fibres: int,
    crossing_angle: float = 90.0,
    fractions=None,
    csf_fraction: float = 0.0,
    snr: float | None,
    n_coils: int = 1,
    n_voxels: int,
    seed,
    S0: float = 100.0,
    evals=WM_EVALS,
) -> tuple[np.ndarray, GroundTruth]:
    """Independent voxels sharing one fibre configuration, each randomly rotated.

    Every voxel holds the fibres of :func:`fibre_configuration`, turned by
    its own uniformly random rotation (so results do not depend on how the
    fibres sit relative to the gradient directions or a sphere's vertices),
    plus an optional CSF compartment, and gets its own noise.

    Parameters
    ----------
    gtab : GradientTable
    n_fibres : {1, 2, 3}
    crossing_angle : float in (0, 90]
        Degrees between fibre axes (every pair for three fibres).
    fractions : array_like, shape (n_fibres,), optional
        Relative fibre fractions (normalised to sum to 1), largest first
        recommended; default equal.  E.g. ``(0.7, 0.3)``.
    csf_fraction : float in [0, 1)
        Volume fraction of free water (diffusivity ``CSF_DIFFUSIVITY``); the
        fibres share the rest.
    snr : float or None
        ``S0 / sigma`` of the noise in each channel; None for noise-free signals.
    n_coils : int
        1: Rician noise; more: noncentral chi (sum of squares of ``n_coils``
        channels, the signal in the first).
    n_voxels : int
    seed : int or numpy.random.Generator
    S0 : float
        Signal without diffusion weighting.
    evals : array_like, shape (3,)
        Fibre tensor eigenvalues (mm^2/s).

    Returns
    -------
    signals : ndarray, shape (n_voxels, N)
    truth : GroundTruth
        ``directions`` (n_voxels, MAX_FIBRES, 3) etc.
    """
    canonical = fibre_configuration(n_fibres, crossing_angle)
    if fractions is None:
        fractions = np.full(n_fibres, 1.0 / n_fibres)
    fractions = np.asarray(fractions, dtype=np.float64).ravel()
    if fractions.shape != (n_fibres,) or np.any(fractions <= 0):
        raise ValueError(
            f"fractions must hold {n_fibres} positive numbers (one per fibre), got "
            f"{fractions.tolist()}"
        )
    if not 0 <= csf_fraction < 1:
        raise ValueError(f"csf_fraction must be in [0, 1), got {csf_fraction!r}")
    n_voxels = int(n_voxels)
    if n_voxels < 1:
        raise ValueError(f"n_voxels must be >= 1, got {n_voxels!r}")
    rng = np.random.default_rng(seed)
    directions = np.einsum("vij,fj->vfi", random_rotations(n_voxels, rng=rng), canonical)
    volume = np.broadcast_to(
        (1 - csf_fraction) * fractions / fractions.sum(), (n_voxels, n_fibres)
    )
    iso = np.full((n_voxels, 1), float(csf_fraction))
    signal = multi_tensor_signal(
        gtab,
        directions,
        volume,
        evals=evals,
        iso_fractions=iso,
        iso_diffusivities=[CSF_DIFFUSIVITY],
        S0=S0,
    )
    signal = _add_noise(signal, snr=snr, n_coils=n_coils, rng=rng, S0=S0)
    return signal, _pad_truth(directions, np.array(volume), iso[:, 0])


def _arc_bundle(points, centre, radius, width):
    """Membership (bool) and in-plane tangent (unit, (..., 3)) of an annular bundle."""
    offset = points - np.asarray(centre, dtype=np.float64)
    distance = np.linalg.norm(offset, axis=-1)
    inside = np.abs(distance - radius) <= width / 2
    safe = np.where(distance > 0, distance, 1.0)
    tangent = np.stack([-offset[..., 1] / safe, offset[..., 0] / safe, np.zeros_like(safe)], -1)
    return inside, tangent


def make_coherent_phantom(
    gtab: GradientTable,
    *,
    shape=(32, 32, 1),
    snr: float | None,
    seed,
    n_coils: int = 1,
    radius: float = 0.71,
    width: float = 0.3,
    csf_fraction: float = 0.0,
    S0: float = 100.0,
    evals=WM_EVALS,
) -> tuple[np.ndarray, GroundTruth]:
    """Two curved fibre bundles crossing in a slab: spatially coherent ground truth.

    In every xy-slice (the pattern repeats along z), bundle A follows arcs
    about the lower-left corner ``(0, 0)`` and bundle B arcs about the
    lower-right corner ``(X, 0)``; each is an annulus of mid-radius
    ``radius * X`` and width ``width * X`` (voxel units, voxel centres at
    ``i + 0.5``).  Fibre directions are the arcs' tangents (in-plane), so
    they turn smoothly from voxel to voxel, and where the bundles overlap
    (around ``(X/2, X/2)``) they cross at angles that vary across the
    overlap (about 60-90 degrees with the defaults).  Single-bundle voxels
    hold one fibre, overlap voxels two of equal fraction; voxels outside
    both bundles are isotropic (diffusivity ``GM_DIFFUSIVITY``, no fibres).

    Parameters
    ----------
    gtab : GradientTable
    shape : tuple of 3 ints
        ``(X, Y, Z)``; ``Z = 1`` gives a single slice (2D), a few slices a thin slab.
    snr : float or None
        ``S0 / sigma`` per channel; None for noise-free signals.
    seed : int or numpy.random.Generator
    n_coils : int
        1: Rician noise; more: noncentral chi.
    radius, width : float
        Mid-radius and width of both bundles as fractions of X.
    csf_fraction : float in [0, 1)
        Free-water fraction added to every fibre voxel.
    S0 : float
    evals : array_like, shape (3,)
        Fibre tensor eigenvalues (mm^2/s).

    Returns
    -------
    signals : ndarray, shape (X, Y, Z, N)
    truth : GroundTruth
        Arrays of shape (X, Y, Z, ...); ``n_fibres`` is 0 outside the bundles.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 1 or min(shape[:2]) < 4:
        raise ValueError(f"shape must be (X, Y, Z) with X, Y >= 4 and Z >= 1, got {shape}")
    if not 0 <= csf_fraction < 1:
        raise ValueError(f"csf_fraction must be in [0, 1), got {csf_fraction!r}")
    if not (0 < width and 0 < radius):
        raise ValueError(f"radius and width must be positive, got {radius!r} and {width!r}")
    n_x, n_y, n_z = shape
    i, j = np.meshgrid(np.arange(n_x) + 0.5, np.arange(n_y) + 0.5, indexing="ij")
    points = np.stack([i, j], axis=-1)
    in_a, tangent_a = _arc_bundle(points, (0.0, 0.0), radius * n_x, width * n_x)
    in_b, tangent_b = _arc_bundle(points, (float(n_x), 0.0), radius * n_x, width * n_x)

    n_fibres = in_a.astype(np.intp) + in_b
    directions = np.full((n_x, n_y, MAX_FIBRES, 3), np.nan)
    fractions = np.zeros((n_x, n_y, MAX_FIBRES))
    share = (1 - csf_fraction) / np.maximum(n_fibres, 1)
    directions[in_a, 0] = tangent_a[in_a]
    fractions[in_a, 0] = share[in_a]
    only_b = in_b & ~in_a
    directions[only_b, 0] = tangent_b[only_b]
    fractions[only_b, 0] = share[only_b]
    both = in_a & in_b
    directions[both, 1] = tangent_b[both]
    fractions[both, 1] = share[both]
    f_iso = np.where(n_fibres > 0, csf_fraction, 1.0)

    safe_dirs = np.where(np.isnan(directions), 0.0, directions)
    safe_dirs[..., 0] += np.isnan(directions[..., 0])  # any unit vector under a zero fraction
    fibres = multi_tensor_signal(gtab, safe_dirs, fractions, evals=evals, S0=S0)
    iso_fractions = np.stack(
        [np.where(n_fibres > 0, csf_fraction, 0.0), np.where(n_fibres > 0, 0.0, 1.0)], axis=-1
    )
    iso = multi_tensor_signal(
        gtab,
        np.zeros((n_x, n_y, 0, 3)),
        np.zeros((n_x, n_y, 0)),
        iso_fractions=iso_fractions,
        iso_diffusivities=[CSF_DIFFUSIVITY, GM_DIFFUSIVITY],
        S0=S0,
    )
    signal = np.repeat((fibres + iso)[:, :, None], n_z, axis=2)
    rng = np.random.default_rng(seed)
    signal = _add_noise(signal, snr=snr, n_coils=n_coils, rng=rng, S0=S0)

    def slab(array):
        return np.repeat(array[:, :, None], n_z, axis=2)

    truth = GroundTruth(
        directions=slab(directions),
        n_fibres=slab(n_fibres),
        fractions=slab(fractions),
        f_iso=slab(f_iso),
    )
    return signal, truth


def tensor_response_zonal(bval: float, *, evals=WM_EVALS, S0: float = 1.0, sh_order: int = 8):
    """Zonal SH coefficients of a z-aligned axially symmetric tensor's signal on one shell.

    ``coefs[k]`` multiplies the orthonormal real harmonic ``Y_{2k}^0``
    (MRtrix3's response-file convention, and
    :class:`rumba_bids.core.kernel.AxisymmetricResponse`'s); computed by
    Gauss-Legendre quadrature of ``S0 exp(-b (l_perp + (l1 - l_perp) cos^2))``,
    so it is exact to rounding (no fit to sampled directions).

    Parameters
    ----------
    bval : float
        s/mm^2 (0 gives the isotropic ``S0`` row of a multi-shell response).
    evals : array_like, shape (3,)
        mm^2/s; the mean of the last two is the perpendicular diffusivity.
    S0 : float
    sh_order : int
        Even maximum degree.

    Returns
    -------
    ndarray, shape (sh_order // 2 + 1,)

    Examples
    --------
    >>> coefs = tensor_response_zonal(0.0, S0=2.0)
    >>> bool(np.isclose(coefs[0], 2 * np.sqrt(4 * np.pi)) and np.allclose(coefs[1:], 0))
    True
    """
    if sh_order < 0 or sh_order % 2:
        raise ValueError(f"sh_order must be a non-negative even integer, got {sh_order!r}")
    l1 = float(evals[0])
    l_perp = 0.5 * (float(evals[1]) + float(evals[2]))
    nodes, weights = np.polynomial.legendre.leggauss(64)
    signal = S0 * np.exp(-float(bval) * (l_perp + (l1 - l_perp) * nodes**2))
    degrees = np.arange(0, sh_order + 1, 2)
    norms = np.sqrt((2 * degrees + 1) / (4 * np.pi))
    legendre = eval_legendre(degrees[:, None], nodes[None, :])
    return 2 * np.pi * norms * ((legendre * weights) @ signal)


def tutorial_slab(gtab: GradientTable, *, shape=(18, 18, 2), background: int = 2, snr=25, seed=0):
    """The synthetic slab the RUMBA-SD tutorial examples run on, in a noise-only background.

    In the brain part: a central band (in y) of single fibres along x (a
    corpus callosum, where an FA-ROI response looks), 90-degree x/y crossings
    below it (small y), single fibres along y above it, CSF (90 %) in the
    ``X // 6`` voxels at both x ends; 10 % CSF (D = 3e-3 mm^2/s) everywhere else.
    Rician noise, SNR ``snr`` at S0 = 100.

    Returns
    -------
    data : ndarray, shape (X + 2 b, Y + 2 b, Z, N)
    brain : (slice, slice)
        x and y extent of the brain part in ``data``.

    Examples
    --------
    >>> data, brain = tutorial_slab(make_acquisition(n_b0=2, n_dirs=20))
    >>> data.shape, data[brain].shape
    ((22, 22, 2, 22), (18, 18, 2, 22))
    """
    n_x, n_y, n_z = shape
    directions = np.zeros((*shape, 2, 3))
    directions[..., 0, :] = [1.0, 0.0, 0.0]
    directions[..., 1, :] = [0.0, 1.0, 0.0]
    fractions = np.zeros((*shape, 2))
    third = n_y // 3
    fractions[:, :third] = 0.45
    fractions[:, third : 2 * third, :, 0] = 0.9
    fractions[:, 2 * third :, :, 1] = 0.9
    csf = np.full((*shape, 1), 0.1)
    width = max(1, n_x // 6)
    ends = np.r_[0:width, n_x - width : n_x]
    fractions[ends] *= 0.1 / 0.9
    csf[ends] = 0.9
    brain_signal = multi_tensor_signal(
        gtab, directions, fractions, iso_fractions=csf, iso_diffusivities=[3e-3], S0=100.0
    )
    signal = np.zeros((n_x + 2 * background, n_y + 2 * background, n_z, len(gtab)))
    brain = (slice(background, background + n_x), slice(background, background + n_y))
    signal[brain] = brain_signal
    return add_rician_noise(signal, snr=snr, rng=seed, S0=100.0), brain
