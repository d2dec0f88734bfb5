"""The RUMBA-SD convolution kernel.

Column ``j < M`` of the kernel is the signal of a single fibre along sphere
vertex ``j`` (normalised to 1 at b=0); the last two columns are the
isotropic grey-matter and CSF signals (all zeros when that compartment is
switched off).  Rows follow the gradient table given.

White-matter responses come in three forms:

* three tensor eigenvalues ``(l1, l2, l3)`` in mm^2/s, evaluated at each
  measurement's own b-value (single shell, and also Cartesian q-space grids
  with many distinct b-values);
* an ``(n_shells, 3)`` array: one row of eigenvalues per non-zero shell
  (multi-shell data);
* an :class:`AxisymmetricResponse` (data driven, e.g. the recursive response).
"""

from __future__ import annotations

import numpy as np
from scipy.special import eval_legendre

from .defaults import (  # noqa: F401  (re-exported)
    DEFAULT_CSF_RESPONSE,
    DEFAULT_GM_RESPONSE,
    DEFAULT_WM_RESPONSE,
    GM_MIN_SHELLS,
)
from .gradients import GradientTable


class AxisymmetricResponse:
    """A fibre response that is symmetric about its axis (z), in zonal SH.

    Parameters
    ----------
    zonal_coefs : array_like, shape (K,)
        ``zonal_coefs[k]`` multiplies the orthonormal real spherical harmonic
        ``Y_{2k}^0`` (degrees 0, 2, 4, ...).
    S0 : float
        The b=0 signal of the response; the kernel uses ``signal / S0``.

    Examples
    --------
    >>> resp = AxisymmetricResponse([np.sqrt(4 * np.pi)], 2.0)  # isotropic, value 1
    >>> resp.on_cosines(np.array([0.0, 1.0])).tolist()
    [1.0, 1.0]
    """

    def __init__(self, zonal_coefs, S0: float):
        self.zonal_coefs = np.asarray(zonal_coefs, dtype=np.float64).ravel()
        if self.zonal_coefs.size == 0 or not np.all(np.isfinite(self.zonal_coefs)):
            raise ValueError("the axisymmetric response needs finite zonal coefficients")
        if not (np.isfinite(S0) and S0 > 0):
            raise ValueError(f"the axisymmetric response needs S0 > 0, got {S0}")
        self.S0 = float(S0)

    @property
    def sh_order(self) -> int:
        """Highest SH degree of the response."""
        return 2 * (len(self.zonal_coefs) - 1)

    def on_cosines(self, cosines) -> np.ndarray:
        """Response signal at the angles whose cosines (to the axis) are given."""
        cosines = np.asarray(cosines, dtype=np.float64)
        total = np.zeros_like(cosines)
        for k, coef in enumerate(self.zonal_coefs):
            degree = 2 * k
            norm = np.sqrt((2 * degree + 1) / (4 * np.pi))
            total += coef * norm * eval_legendre(degree, cosines)
        return total

    def to_dict(self) -> dict:
        return {"Type": "zsh", "ZonalCoefficients": self.zonal_coefs.tolist(), "S0": self.S0}

    def __repr__(self) -> str:
        return f"AxisymmetricResponse(sh_order={self.sh_order}, S0={self.S0:.4g})"


def as_wm_response(wm_response):
    """The white-matter response in a form :func:`rumba_kernel` takes.

    An :class:`AxisymmetricResponse` and arrays pass through; a tuple or list
    becomes a float array (as DIPY does); any object with ``S0`` and
    ``dwi_response`` (DIPY's ``AxSymShResponse``: zonal coefficients of the
    orthonormal ``Y_l^0``, ``l = 0, 2, 4, ...``) becomes an
    :class:`AxisymmetricResponse`.

    Raises
    ------
    ValueError
        The object has non-zonal (``m != 0``) or odd-degree coefficients.
    """
    if isinstance(wm_response, AxisymmetricResponse):
        return wm_response
    if hasattr(wm_response, "dwi_response") and hasattr(wm_response, "S0"):
        coefs = np.asarray(wm_response.dwi_response, dtype=np.float64).ravel()
        m_values = getattr(wm_response, "m_values", None)
        if m_values is not None and np.any(np.asarray(m_values) != 0):
            raise ValueError("wm_response must be axially symmetric (all m_values zero)")
        degrees = getattr(wm_response, "l_values", getattr(wm_response, "n_values", None))
        if degrees is not None and not np.array_equal(
            np.asarray(degrees), 2 * np.arange(len(coefs))
        ):
            raise ValueError(
                f"wm_response degrees {np.asarray(degrees).tolist()} are not 0, 2, 4, ...: "
                "only even zonal harmonics describe an axisymmetric response"
            )
        return AxisymmetricResponse(coefs, float(wm_response.S0))
    if isinstance(wm_response, (tuple, list)):
        return np.asarray(wm_response, dtype=np.float64)
    return wm_response


def perpendicular_axes(directions) -> tuple[np.ndarray, np.ndarray]:
    """Second and third tensor axes for each principal direction.

    The frame ``(x, y, z)`` is carried onto each direction by the smallest
    rotation taking ``x`` to it (about ``x cross d``); the images of ``y``
    and ``z`` are returned.  Only matters when ``l2 != l3``.

    Parameters
    ----------
    directions : ndarray, shape (M, 3), unit vectors

    Returns
    -------
    e1, e2 : ndarray, shape (M, 3)
    """
    d = np.asarray(directions, dtype=np.float64)
    x = np.array([1.0, 0.0, 0.0])
    axis = np.cross(x, d)
    sin = np.linalg.norm(axis, axis=1)
    cos = d[:, 0]
    safe = sin > np.finfo(float).eps
    unit_axis = np.zeros_like(axis)
    unit_axis[safe] = axis[safe] / sin[safe, None]

    def rotate(a):
        a = np.broadcast_to(a, d.shape)
        cross = np.cross(unit_axis, a)
        rotated = a + sin[:, None] * cross + (1 - cos)[:, None] * np.cross(unit_axis, cross)
        # parallel or antiparallel to x: identity or point reflection
        rotated[~safe] = np.sign(cos[~safe])[:, None] * a[~safe]
        return rotated

    return rotate(np.array([0.0, 1.0, 0.0])), rotate(np.array([0.0, 0.0, 1.0]))


def _tensor_columns(bvals, bvecs, sticks, evals) -> np.ndarray:
    """exp(-b g^T D g) for a tensor of eigenvalues ``evals`` along each stick; (N, M)."""
    l1, l2, l3 = (float(v) for v in evals)
    e1, e2 = perpendicular_axes(sticks)
    adc = l1 * (bvecs @ sticks.T) ** 2 + l2 * (bvecs @ e1.T) ** 2 + l3 * (bvecs @ e2.T) ** 2
    return np.exp(-bvals[:, None] * adc)


def _check_evals(evals, what: str) -> np.ndarray:
    evals = np.asarray(evals, dtype=np.float64)
    if not np.all(np.isfinite(evals)) or np.any(evals < 0):
        raise ValueError(f"{what} must be finite and non-negative, got {evals.tolist()}")
    if np.any(evals > 0.01):
        raise ValueError(
            f"{what} {evals.tolist()} look too large: diffusivities are in mm^2/s (e.g. 1.7e-3)"
        )
    return evals


def white_matter_columns(gtab: GradientTable, sticks, wm_response) -> np.ndarray:
    """Signals of single fibres along ``sticks`` for every volume, shape (N, M).

    b0 rows are exactly 1.  See the module docstring for ``wm_response``.
    """
    sticks = np.asarray(sticks, dtype=np.float64)
    bvals, bvecs, b0 = gtab.bvals, gtab.bvecs, gtab.b0s_mask
    columns = np.ones((len(bvals), len(sticks)))
    dwi = ~b0
    if isinstance(wm_response, AxisymmetricResponse):
        cosines = np.clip(bvecs[dwi] @ sticks.T, -1.0, 1.0)
        columns[dwi] = wm_response.on_cosines(cosines) / wm_response.S0
        return columns
    response = np.asarray(wm_response, dtype=np.float64)
    if response.shape == (3,):
        evals = _check_evals(response, "wm_response eigenvalues")
        columns[dwi] = _tensor_columns(bvals[dwi], bvecs[dwi], sticks, evals)
        return columns
    if response.ndim == 2 and response.shape[1] == 3:
        if response.shape[0] != gtab.n_shells:
            raise ValueError(
                f"multi-shell wm_response has {response.shape[0]} rows but the data have "
                f"{gtab.n_shells} non-zero shells ({[round(b) for b in gtab.shells]})"
            )
        for shell, evals in enumerate(response):
            evals = _check_evals(evals, f"wm_response eigenvalues of shell {shell}")
            rows = gtab.shell_index == shell
            columns[rows] = _tensor_columns(bvals[rows], bvecs[rows], sticks, evals)
        return columns
    raise ValueError(
        "wm_response must be 3 eigenvalues, one row of 3 eigenvalues per shell, "
        f"or an AxisymmetricResponse; got an array of shape {response.shape}"
    )


def isotropic_column(gtab: GradientTable, diffusivity) -> np.ndarray:
    """exp(-b D) for every volume, shape (N,); zeros when ``diffusivity`` is None."""
    if diffusivity is None:
        return np.zeros(len(gtab.bvals))
    d = _check_evals(np.atleast_1d(diffusivity), "isotropic diffusivity")
    if d.size != 1:
        raise ValueError("isotropic diffusivity must be a single number (mm^2/s) or None")
    return np.exp(-gtab.bvals * d[0])


def rumba_kernel(
    gtab: GradientTable,
    sticks,
    *,
    wm_response=DEFAULT_WM_RESPONSE,
    gm_response=DEFAULT_GM_RESPONSE,
    csf_response=DEFAULT_CSF_RESPONSE,
) -> np.ndarray:
    """The RUMBA-SD kernel, shape (N, M + 2): M fibre columns, then GM, then CSF.

    Parameters
    ----------
    gtab : GradientTable
        Rows of the kernel (N volumes).
    sticks : ndarray, shape (M, 3)
        Fibre directions (sphere vertices), same frame as ``gtab.bvecs``.
    wm_response : see module docstring
    gm_response, csf_response : float or None
        Isotropic diffusivities in mm^2/s; ``None`` switches the compartment off
        (its column is zero, so its fraction stays zero).
    """
    wm = white_matter_columns(gtab, sticks, wm_response)
    iso = np.stack(
        [isotropic_column(gtab, gm_response), isotropic_column(gtab, csf_response)], axis=1
    )
    return np.concatenate([wm, iso], axis=1)
