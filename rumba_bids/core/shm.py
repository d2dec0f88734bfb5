"""Real, antipodally symmetric spherical-harmonic (SH) bases and fits.

Two bases are supported, both orthonormal on the unit sphere and holding the
even degrees ``l = 0, 2, ..., sh_order`` only:

``'mrtrix3'``
    The basis of MRtrix3 (Tournier et al. 2019), identical to DIPY's
    ``tournier07`` basis with ``legacy=False``::

        Y_lm = sqrt(2) * Im(Y_l^|m|)   if m < 0
               Y_l^0                   if m = 0
               sqrt(2) * Re(Y_l^m)     if m > 0

``'descoteaux'``
    The basis of Descoteaux et al. 2007, identical to DIPY's ``descoteaux07``
    basis with ``legacy=False``::

        Y_lm = sqrt(2) * Re(Y_l^m)     if m < 0   (m itself, not |m|)
               Y_l^0                   if m = 0
               sqrt(2) * Im(Y_l^m)     if m > 0

``Y_l^m`` is the complex harmonic of :func:`scipy.special.sph_harm_y` (with the
Condon-Shortley phase).  Coefficients are ordered by degree ``l`` ascending,
then order ``m = -l, ..., l`` (MRtrix3's and DIPY's ordering), so there are
``(sh_order + 1) * (sh_order + 2) / 2`` of them.  Following MRtrix3 and DIPY,
``sh_order`` names the maximum degree ``l_max``.

Orientation frame: the harmonics are defined with respect to the axes of the
vectors they are evaluated on.  Sphere vertices in the voxel (ijk) frame give
voxel-frame coefficients; MRtrix3 reads SH images in the scanner (world, xyz)
frame of the image transform, so fit SH for export on world-frame vertices,
``sf_to_sh(odf, voxel_to_world(sphere.vertices, affine))`` (the amplitudes
are unchanged, only the directions they belong to are rotated).
"""

from __future__ import annotations

import numpy as np
from scipy.special import eval_legendre, sph_harm_y

from .defaults import DEFAULT_SH_BASIS, DEFAULT_SH_ORDER  # noqa: F401  (re-exported)
from .sphere import as_sphere

#: Names of the supported SH bases.
SH_BASES = ("mrtrix3", "descoteaux")


def _check_sh_order(sh_order) -> int:
    if isinstance(sh_order, bool) or int(sh_order) != sh_order or sh_order < 0:
        raise ValueError(f"sh_order must be a non-negative even integer, got {sh_order!r}")
    if sh_order % 2:
        raise ValueError(
            f"sh_order must be even for an antipodally symmetric basis, got {sh_order}; "
            f"use {int(sh_order) - 1} or {int(sh_order) + 1}"
        )
    return int(sh_order)


def _check_basis(basis: str) -> str:
    if basis not in SH_BASES:
        raise ValueError(
            f"unknown SH basis {basis!r}; choose 'mrtrix3' (DIPY tournier07, legacy=False) "
            "or 'descoteaux' (DIPY descoteaux07, legacy=False)"
        )
    return basis


def n_sh_coefficients(sh_order: int) -> int:
    """Number of coefficients of the symmetric basis up to degree ``sh_order``.

    Examples
    --------
    >>> [n_sh_coefficients(order) for order in (0, 2, 4, 6, 8)]
    [1, 6, 15, 28, 45]
    """
    sh_order = _check_sh_order(sh_order)
    return (sh_order + 1) * (sh_order + 2) // 2


def n_axes(vertices, *, tolerance: float = 1e-6) -> int:
    """Distinct axes among unit ``vertices`` (``v`` and ``-v`` count once).

    Even SH take the same value at ``v`` and ``-v``: only distinct axes carry
    information about their coefficients.

    >>> n_axes([[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0]])
    2
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    vertices = vertices / np.linalg.norm(vertices, axis=1, keepdims=True)
    first = np.argmax(np.abs(vertices) > tolerance, axis=1)
    signs = np.sign(vertices[np.arange(len(vertices)), first])
    canonical = np.round(vertices * signs[:, None] / tolerance) * tolerance
    return len(np.unique(canonical, axis=0))


def max_sh_order(vertices) -> int:
    """Largest even SH order whose coefficients a fit on ``vertices`` determines.

    An order-``L`` even series has ``(L + 1)(L + 2) / 2`` coefficients; the
    samples determine them when there are at least as many distinct axes
    (:func:`n_axes`).  Beyond, the coefficients come from the regulariser alone.

    >>> max_sh_order(np.eye(3))
    0
    """
    axes = n_axes(vertices)
    order = 0
    while n_sh_coefficients(order + 2) <= axes:
        order += 2
    return order


def sh_order_from_n_coefficients(n_coefficients: int) -> int:
    """Maximum even degree of a symmetric basis with ``n_coefficients`` terms.

    Examples
    --------
    >>> sh_order_from_n_coefficients(45)
    8
    """
    n = int(n_coefficients)
    # n = (L + 1)(L + 2) / 2  <=>  L = (sqrt(8 n + 1) - 3) / 2
    sh_order = int(round((np.sqrt(8 * n + 1) - 3) / 2))
    if n < 1 or sh_order % 2 or (sh_order + 1) * (sh_order + 2) // 2 != n:
        valid = ", ".join(str((k + 1) * (k + 2) // 2) for k in range(0, 14, 2))
        raise ValueError(
            f"{n_coefficients} is not the number of coefficients of a symmetric SH basis "
            f"(valid counts: {valid}, ...)"
        )
    return sh_order


def sh_degree_order(sh_order: int) -> tuple[np.ndarray, np.ndarray]:
    """Degree ``l`` and order ``m`` of each coefficient.

    Returns
    -------
    degrees, orders : ndarray of int, shape (n_coef,)

    Examples
    --------
    >>> degrees, orders = sh_degree_order(2)
    >>> degrees.tolist(), orders.tolist()
    ([0, 2, 2, 2, 2, 2], [0, -2, -1, 0, 1, 2])
    """
    sh_order = _check_sh_order(sh_order)
    even = np.arange(0, sh_order + 1, 2)
    degrees = np.repeat(even, 2 * even + 1)
    orders = np.concatenate([np.arange(-l_value, l_value + 1) for l_value in even])
    return degrees.astype(np.intp), orders.astype(np.intp)


def sh_zonal_indices(sh_order: int) -> np.ndarray:
    """Indices of the zonal (``m = 0``) coefficients, one per even degree.

    Examples
    --------
    >>> sh_zonal_indices(6).tolist()
    [0, 3, 10, 21]
    """
    _, orders = sh_degree_order(sh_order)
    return np.flatnonzero(orders == 0)


def laplace_beltrami_eigenvalues(sh_order: int) -> np.ndarray:
    """Eigenvalues ``-l (l + 1)`` of the Laplace-Beltrami operator per coefficient.

    Used as the regulariser of :func:`sf_to_sh` (``smooth``) and by the
    constrained spherical deconvolution.

    Returns
    -------
    ndarray, shape (n_coef,), float64
    """
    degrees, _ = sh_degree_order(sh_order)
    return -(degrees * (degrees + 1)).astype(np.float64)


def legendre_at_zero(degrees) -> np.ndarray:
    """Legendre polynomials ``P_l(0)``, elementwise (0 for odd ``l``).

    Examples
    --------
    >>> legendre_at_zero([0, 2, 4]).tolist()
    [1.0, -0.5, 0.375]
    """
    return eval_legendre(np.asarray(degrees, dtype=np.float64), 0.0)


def _as_vertices(vertices) -> np.ndarray:
    if hasattr(vertices, "vertices"):
        vertices = vertices.vertices
    vertices = np.asarray(vertices, dtype=np.float64)
    if vertices.shape[-1:] != (3,):
        raise ValueError(f"directions must have shape (..., 3), got {vertices.shape}")
    return vertices


def real_sh_basis(vertices, *, sh_order: int = DEFAULT_SH_ORDER, basis: str = DEFAULT_SH_BASIS):
    """Real symmetric SH evaluated at directions.

    Parameters
    ----------
    vertices : array_like, shape (..., 3), or a sphere
        Directions (normalised here; zero vectors give the north pole).
        The harmonics are defined in the frame of these vectors.
    sh_order : int
        Maximum even degree.
    basis : {'mrtrix3', 'descoteaux'}

    Returns
    -------
    ndarray, shape (..., n_coef), float64
        ``B[..., j]`` is harmonic ``j`` (see :func:`sh_degree_order`) at each direction.

    Examples
    --------
    On the z axis only the zonal harmonics are non-zero:

    >>> B = real_sh_basis([[0.0, 0.0, 1.0]], sh_order=2)
    >>> (np.round(B * np.sqrt(4 * np.pi), 6) + 0.0).tolist()
    [[1.0, 0.0, 0.0, 2.236068, 0.0, 0.0]]
    """
    basis = _check_basis(basis)
    vertices = _as_vertices(vertices)
    degrees, orders = sh_degree_order(sh_order)
    radius = np.linalg.norm(vertices, axis=-1)
    cos_polar = np.divide(vertices[..., 2], radius, out=np.ones_like(radius), where=radius > 0)
    polar = np.arccos(np.clip(cos_polar, -1.0, 1.0))[..., None]
    azimuth = np.arctan2(vertices[..., 1], vertices[..., 0])[..., None]
    scale = np.where(orders == 0, 1.0, np.sqrt(2.0))
    if basis == "mrtrix3":
        harmonics = sph_harm_y(degrees, np.abs(orders), polar, azimuth)
        real = np.where(orders < 0, harmonics.imag, harmonics.real)
    else:
        harmonics = sph_harm_y(degrees, orders, polar, azimuth)
        real = np.where(orders > 0, harmonics.imag, harmonics.real)
    return real * scale


def sh_fit_matrix(
    sphere,
    *,
    sh_order: int = DEFAULT_SH_ORDER,
    basis: str = DEFAULT_SH_BASIS,
    smooth: float = 0.0,
) -> np.ndarray:
    """Regularised least-squares matrix from sphere amplitudes to SH coefficients.

    Minimises ``|B c - sf|^2 + smooth * |diag(l (l + 1)) c|^2`` (Laplace-Beltrami
    regularisation as in Descoteaux et al. 2007 and DIPY's ``smooth_pinv``).

    Parameters
    ----------
    sphere : Sphere, str, array_like (N, 3) or DIPY sphere
        Directions at which the amplitudes are given (anything
        :func:`rumba_bids.core.sphere.as_sphere` accepts).
    sh_order : int
    basis : {'mrtrix3', 'descoteaux'}
    smooth : float
        Regularisation weight (>= 0, dimensionless); 0 gives plain least squares.

    Returns
    -------
    ndarray, shape (n_coef, N)
        ``coefficients = matrix @ amplitudes``.
    """
    if not np.isfinite(smooth) or smooth < 0:
        raise ValueError(f"smooth must be a finite number >= 0, got {smooth!r}")
    vertices = as_sphere(sphere).vertices
    design = real_sh_basis(vertices, sh_order=sh_order, basis=basis)
    n_vertices, n_coef = design.shape
    if smooth == 0 and n_vertices < n_coef:
        raise ValueError(
            f"{n_vertices} directions cannot determine {n_coef} SH coefficients of order "
            f"{sh_order}: lower sh_order or use smooth > 0"
        )
    # normal equations of the small (n_coef x n_coef) problem; equal to DIPY's
    # pinv([B; sqrt(smooth) diag(L)]) restricted to the data columns
    gram = design.T @ design + smooth * np.diag(laplace_beltrami_eigenvalues(sh_order) ** 2)
    if np.linalg.cond(gram) > 1e12:
        raise ValueError(
            f"the {n_vertices} directions do not determine SH coefficients of order "
            f"{sh_order} (ill-conditioned fit): use more distinct directions, a lower "
            "sh_order or smooth > 0"
        )
    return np.linalg.solve(gram, design.T)


def sf_to_sh(
    sf,
    sphere,
    *,
    sh_order: int = DEFAULT_SH_ORDER,
    basis: str = DEFAULT_SH_BASIS,
    smooth: float = 0.0,
) -> np.ndarray:
    """Fit SH coefficients to amplitudes sampled on a sphere.

    Parameters
    ----------
    sf : array_like, shape (..., N)
        Amplitudes at the N sphere directions (any unit).
    sphere : Sphere, str, array_like (N, 3) or DIPY sphere
        The directions; the coefficients are in the frame of these vectors.
    sh_order : int
        Maximum even degree (default 8).
    basis : {'mrtrix3', 'descoteaux'}
    smooth : float
        Laplace-Beltrami regularisation weight (see :func:`sh_fit_matrix`).

    Returns
    -------
    ndarray, shape (..., n_coef)
        float32 for float32 input, float64 otherwise.
    """
    sf = np.asarray(sf)
    matrix = sh_fit_matrix(sphere, sh_order=sh_order, basis=basis, smooth=smooth)
    if sf.shape[-1:] != (matrix.shape[1],):
        raise ValueError(
            f"sf has {sf.shape[-1] if sf.ndim else 0} values per voxel but the sphere has "
            f"{matrix.shape[1]} directions: they must match"
        )
    dtype = np.float32 if sf.dtype == np.float32 else np.float64
    return np.matmul(sf.astype(dtype, copy=False), matrix.T.astype(dtype))


def sh_to_sf(
    sh,
    sphere,
    *,
    sh_order: int | None = None,
    basis: str = DEFAULT_SH_BASIS,
) -> np.ndarray:
    """Evaluate SH coefficients on a sphere.

    Parameters
    ----------
    sh : array_like, shape (..., n_coef)
    sphere : Sphere, str, array_like (N, 3) or DIPY sphere
        Directions, in the frame of the coefficients.
    sh_order : int, optional
        Maximum even degree; inferred from ``n_coef`` when omitted, and must
        agree with it when given.
    basis : {'mrtrix3', 'descoteaux'}

    Returns
    -------
    ndarray, shape (..., N)
        float32 for float32 input, float64 otherwise.
    """
    sh = np.asarray(sh)
    inferred = sh_order_from_n_coefficients(sh.shape[-1] if sh.ndim else 0)
    if sh_order is not None and _check_sh_order(sh_order) != inferred:
        raise ValueError(
            f"sh_order={sh_order} needs {n_sh_coefficients(sh_order)} coefficients but the "
            f"last axis holds {sh.shape[-1]} (order {inferred}); omit sh_order to infer it"
        )
    design = real_sh_basis(as_sphere(sphere).vertices, sh_order=inferred, basis=basis)
    dtype = np.float32 if sh.dtype == np.float32 else np.float64
    return np.matmul(sh.astype(dtype, copy=False), design.T.astype(dtype))


def zonal_to_rotational(zonal_coefficients) -> np.ndarray:
    """Per-degree convolution factors of an axially symmetric kernel.

    A kernel aligned with z whose SH coefficients are ``zonal_coefficients[k]``
    for ``Y_{2k}^0`` convolves an fODF as ``signal_lm = r_l * fodf_lm`` with
    ``r_l = sqrt(4 pi / (2 l + 1)) * zonal_l`` (Funk-Hecke theorem; DIPY calls
    these "rotational harmonics").

    Parameters
    ----------
    zonal_coefficients : array_like, shape (..., K)
        Coefficients for degrees ``0, 2, ..., 2 (K - 1)``.

    Returns
    -------
    ndarray, shape (..., K)
    """
    zonal = np.asarray(zonal_coefficients, dtype=np.float64)
    degrees = 2 * np.arange(zonal.shape[-1])
    return zonal * np.sqrt(4 * np.pi / (2 * degrees + 1))


def zonal_to_sh(
    zonal_coefficients,
    directions,
    *,
    sh_order: int | None = None,
    basis: str = DEFAULT_SH_BASIS,
) -> np.ndarray:
    """SH coefficients of an axially symmetric function rotated onto directions.

    The function with zonal coefficients ``z_l`` about the z axis, rotated so
    its axis points along ``u``, has ``c_lm = sqrt(4 pi / (2 l + 1)) z_l Y_lm(u)``.

    Parameters
    ----------
    zonal_coefficients : array_like, shape (K,)
        Coefficients of ``Y_0^0, Y_2^0, ...`` of the z-aligned function.
    directions : array_like, shape (..., 3)
        Axes of the rotated copies (normalised here), in the caller's frame.
    sh_order : int, optional
        Output degree; default ``2 (K - 1)``.  Missing degrees are zero.
    basis : {'mrtrix3', 'descoteaux'}

    Returns
    -------
    ndarray, shape (..., n_coef)
    """
    zonal = np.asarray(zonal_coefficients, dtype=np.float64).ravel()
    if sh_order is None:
        sh_order = 2 * (len(zonal) - 1)
    sh_order = _check_sh_order(sh_order)
    degrees, _ = sh_degree_order(sh_order)
    per_degree = np.zeros(sh_order // 2 + 1)
    n_used = min(len(zonal), len(per_degree))
    per_degree[:n_used] = zonal_to_rotational(zonal[:n_used])
    basis_values = real_sh_basis(directions, sh_order=sh_order, basis=basis)
    return basis_values * per_degree[degrees // 2]
