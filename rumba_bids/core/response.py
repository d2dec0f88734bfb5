"""Single-fibre response estimation.

Four ways to get the white-matter response that RUMBA-SD deconvolves with:

* :func:`default_response` -- the tensor eigenvalues (1.7, 0.2, 0.2) x 1e-3 mm^2/s;
* :func:`fa_roi_response` -- mean tensor eigenvalues of the high-FA voxels of
  a cuboid ROI (Tournier et al. 2004; DIPY's ``auto_response_ssst``), for
  multi-shell data optionally one row of eigenvalues per shell;
* :func:`recursive_response` -- Tax et al. (NeuroImage 2014): start from a
  fat tensor, run CSD, keep the single-peak voxels, average their signal
  (aligned with their peak) in zonal SH, repeat until the response settles
  (DIPY's ``recursive_response``);
* a response read back from JSON (:meth:`ResponseEstimate.from_dict`).

Each returns a :class:`ResponseEstimate` holding the response together with
what a user needs to judge it (eigenvalues, S0, voxel count, lambda2/lambda1),
and raises ``ValueError`` naming the cause and the fix when an estimate cannot
be made, instead of letting NaNs reach the fit.
"""

from __future__ import annotations

import numbers
import warnings
from dataclasses import dataclass, field

import numpy as np

from .csd import CsdModel, hemisphere
from .gradients import DEFAULT_SHELL_TOLERANCE, GradientTable, as_gradient_table
from .kernel import DEFAULT_WM_RESPONSE, AxisymmetricResponse
from .peaks import extract_peaks
from .shm import n_sh_coefficients
from .tensor import fit_tensor

METHODS = ("default", "fa", "recursive", "file")
_CHUNK = 20000


@dataclass(frozen=True)
class ResponseEstimate:
    """A white-matter response and the numbers that describe how it was obtained.

    Attributes
    ----------
    method : {'default', 'fa', 'recursive', 'file'}
    evals : ndarray, shape (3,) or (n_shells, 3)
        Tensor eigenvalues in mm^2/s, descending (``l2`` repeated as ``l3``
        for estimated responses).  For the recursive method, the mean tensor
        of the voxels it finally used.
    S0 : float or None
        Mean b0 signal of the voxels used (None for the default response).
    n_voxels : int
        Voxels the estimate is based on (0 for the default).
    ratio : float or ndarray, shape (n_shells,)
        ``lambda2 / lambda1``: about 0.1-0.2 for a good single-fibre response.
    shells : tuple of float or None
        Non-zero b-values (s/mm^2, ascending) of the data the response was
        estimated on; the rows of a per-shell ``evals``.  None for a response
        not measured on data (the default tensor, eigenvalues given by hand),
        which applies to any shells.  See :func:`response_shells_problem`.
    n_iterations : int or None
        Recursive method: iterations run.
    converged : bool or None
        Recursive method: whether the response met the convergence criterion.
    max_change : float or None
        Recursive method: largest relative change of a zonal coefficient in
        the last iteration (converged when below ``convergence``).
    zonal_coefs : ndarray, shape (K,) or None
        Recursive method: zonal SH coefficients (orthonormal ``Y_{2k}^0``) of
        the response signal aligned with z, in the data's signal unit.
    parameters : dict
        Settings of the estimate (for provenance).
    """

    method: str
    evals: np.ndarray
    S0: float | None = None
    n_voxels: int = 0
    ratio: float | np.ndarray = 0.0
    shells: tuple | None = None
    n_iterations: int | None = None
    converged: bool | None = None
    zonal_coefs: np.ndarray | None = None
    parameters: dict = field(default_factory=dict)
    max_change: float | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown response method {self.method!r}; use one of {METHODS}")
        evals = np.asarray(self.evals, dtype=np.float64)
        if evals.shape[-1:] != (3,) or evals.ndim > 2 or not np.all(np.isfinite(evals)):
            raise ValueError(f"response eigenvalues must be finite, shape (3,) or (S, 3): {evals}")
        object.__setattr__(self, "evals", evals)
        if self.zonal_coefs is not None:
            object.__setattr__(self, "zonal_coefs", np.asarray(self.zonal_coefs, dtype=float))

    @property
    def axisymmetric(self) -> AxisymmetricResponse | None:
        """The zonal-SH response (recursive method), else None."""
        if self.zonal_coefs is None:
            return None
        return AxisymmetricResponse(self.zonal_coefs, self.S0)

    @property
    def wm_response(self):
        """What ``RumbaSDModel(wm_response=...)`` takes: an
        :class:`AxisymmetricResponse`, an (n_shells, 3) array, or 3 eigenvalues."""
        if self.zonal_coefs is not None:
            return self.axisymmetric
        if self.evals.ndim == 2:
            return self.evals.copy()
        return tuple(float(v) for v in self.evals)

    def to_dict(self) -> dict:
        """JSON-serialisable description (BIDS-style keys)."""
        out = {
            "Method": self.method,
            "Type": "zsh" if self.zonal_coefs is not None else "eigen",
            "Eigenvalues": self.evals.tolist(),
            "S0": None if self.S0 is None else float(self.S0),
            "NVoxels": int(self.n_voxels),
            "Ratio": np.asarray(self.ratio, dtype=float).tolist(),
        }
        if self.shells is not None:
            out["Shells"] = [float(b) for b in self.shells]
        if self.n_iterations is not None:
            out["NIterations"] = int(self.n_iterations)
            out["Converged"] = bool(self.converged)
            if self.max_change is not None:
                out["MaxRelativeChange"] = float(self.max_change)
        if self.zonal_coefs is not None:
            out["ZonalCoefficients"] = self.zonal_coefs.tolist()
        if self.parameters:
            out["Parameters"] = _jsonable(self.parameters)
        return out

    @classmethod
    def from_dict(cls, description: dict) -> ResponseEstimate:
        """Rebuild an estimate written by :meth:`to_dict`.

        Only ``Eigenvalues`` is required (plus ``ZonalCoefficients`` and ``S0``
        for a ``zsh`` response); missing counts default to zero.
        """
        if not isinstance(description, dict) or "Eigenvalues" not in description:
            raise ValueError("a response description needs at least an 'Eigenvalues' entry")
        kind = description.get("Type", "eigen")
        zonal = description.get("ZonalCoefficients")
        if kind == "zsh" and (zonal is None or description.get("S0") is None):
            raise ValueError("a 'zsh' response needs 'ZonalCoefficients' and 'S0'")
        if kind not in ("eigen", "zsh"):
            raise ValueError(f"unknown response Type {kind!r}; expected 'eigen' or 'zsh'")
        evals = np.asarray(description["Eigenvalues"], dtype=np.float64)
        ratio = description.get("Ratio")
        if ratio is None:
            ratio = evals[..., 1] / evals[..., 0]
        shells = description.get("Shells")
        return cls(
            method=description.get("Method", "file"),
            evals=evals,
            S0=description.get("S0"),
            n_voxels=int(description.get("NVoxels", 0)),
            ratio=np.asarray(ratio, dtype=float) if np.ndim(ratio) else float(ratio),
            shells=None if shells is None else tuple(float(b) for b in shells),
            n_iterations=description.get("NIterations"),
            converged=description.get("Converged"),
            zonal_coefs=None if kind == "eigen" else np.asarray(zonal, dtype=np.float64),
            parameters=dict(description.get("Parameters", {})),
            max_change=description.get("MaxRelativeChange"),
        )


def format_shells(shells) -> str:
    """``b=1000/2000 s/mm^2`` (``no shells recorded`` for None).

    Examples
    --------
    >>> format_shells((1000.4, 2000.0))
    'b=1000/2000 s/mm^2'
    """
    if shells is None:
        return "no shells recorded"
    return "b=" + "/".join(f"{round(float(b)):d}" for b in shells) + " s/mm^2"


def shells_match(first, second, *, tolerance: float = DEFAULT_SHELL_TOLERANCE) -> bool:
    """Whether two sets of non-zero b-values are the same shells (within ``tolerance``).

    Examples
    --------
    >>> shells_match((1000.0, 2000.0), (995.0, 2010.0)), shells_match((1000.0,), (2000.0,))
    (True, False)
    """
    first = np.sort(np.asarray(first, dtype=float).ravel())
    second = np.sort(np.asarray(second, dtype=float).ravel())
    return first.shape == second.shape and bool(np.all(np.abs(first - second) <= tolerance))


def response_shells_problem(
    estimate: ResponseEstimate, data_shells, *, tolerance: float = DEFAULT_SHELL_TOLERANCE
) -> str | None:
    """Why ``estimate`` cannot be used on data with ``data_shells``, or None when it can.

    A response applies only to data with the shells it was estimated on
    (:func:`shells_match`): zonal-SH and per-shell responses are signals at
    their b-values, and a tensor measured at one b-value differs from one
    measured at another (non-Gaussian diffusion).  A response without
    recorded shells is accepted only when it is a single tensor (the default
    response, eigenvalues given by hand: b-independent by construction);
    zonal-SH and per-shell responses without shells are refused.

    Parameters
    ----------
    estimate : ResponseEstimate
    data_shells : array_like of float
        Non-zero shells of the data (s/mm^2).
    tolerance : float
        b-values closer than this (s/mm^2) are the same shell (the gradient
        table's shell tolerance).

    Returns
    -------
    str or None
        One sentence naming both shell sets.

    Examples
    --------
    >>> response_shells_problem(default_response(), (1000.0, 3000.0)) is None
    True
    """
    kind = (
        "zonal-SH"
        if estimate.zonal_coefs is not None
        else ("per-shell" if estimate.evals.ndim == 2 else "tensor")
    )
    if estimate.shells is None:
        if kind == "tensor":
            return None
        return (
            f"this {kind} response records no shells ('Shells'), but it depends on the "
            f"b-value: estimate it again on data with {format_shells(data_shells)}"
        )
    if shells_match(estimate.shells, data_shells, tolerance=tolerance):
        return None
    return (
        f"the {kind} response was estimated at {format_shells(estimate.shells)} but the "
        f"data have {format_shells(data_shells)}: a response applies only to data with "
        "the same shells"
    )


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in np.asarray(value, dtype=object).tolist()]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def default_response() -> ResponseEstimate:
    """The textbook white-matter response, (1.7, 0.2, 0.2) x 1e-3 mm^2/s.

    Examples
    --------
    >>> default_response().wm_response
    (0.0017, 0.0002, 0.0002)
    """
    evals = np.asarray(DEFAULT_WM_RESPONSE, dtype=np.float64)
    return ResponseEstimate(method="default", evals=evals, ratio=float(evals[1] / evals[0]))


# --------------------------------------------------------------------------- FA in a ROI


def roi_slices(shape, *, roi_center=None, roi_radii=10) -> tuple[slice, slice, slice]:
    """The cuboid ``center +- radii`` (inclusive), clipped to the volume.

    Parameters
    ----------
    shape : tuple of 3 int
    roi_center : array_like of 3 int, optional
        Default: ``shape // 2``.
    roi_radii : int or array_like of 3 int

    Examples
    --------
    >>> roi_slices((10, 10, 4), roi_radii=2)
    (slice(3, 8, None), slice(3, 8, None), slice(0, 4, None))
    """
    shape = np.asarray(shape[:3], dtype=int)
    center = shape // 2 if roi_center is None else np.asarray(roi_center, dtype=int).ravel()
    radii = np.broadcast_to(np.asarray(roi_radii, dtype=int), (3,))
    if center.shape != (3,) or np.any(radii < 0):
        raise ValueError("roi_center needs 3 voxel indices and roi_radii must be >= 0")
    if np.any(center < 0) or np.any(center >= shape):
        raise ValueError(f"roi_center {center.tolist()} lies outside the volume {shape.tolist()}")
    low = np.maximum(center - radii, 0)
    high = np.minimum(center + radii + 1, shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(low, high))


def fa_roi_response(
    gtab: GradientTable,
    data,
    *,
    roi_center=None,
    roi_radii=10,
    fa_thr: float = 0.7,
    mask=None,
    per_shell: bool | None = None,
) -> ResponseEstimate:
    """Mean tensor of the high-FA voxels of a cuboid ROI.

    The tensor is fitted (WLS) in the ROI (intersected with ``mask``), voxels
    with ``FA > fa_thr`` are kept, and the response is
    ``(mean l1, mean l2, mean l2)`` with S0 the mean b0 signal of those
    voxels -- DIPY's ``auto_response_ssst``.

    Parameters
    ----------
    gtab : GradientTable
    data : array_like, shape (X, Y, Z, N)
    roi_center : array_like of 3 int, optional
        Default: the centre of the volume.
    roi_radii : int or array_like of 3 int
        Half-sizes of the cuboid in voxels (the ROI is clipped to the volume).
    fa_thr : float
        FA threshold in [0, 1).
    mask : array_like of bool, shape (X, Y, Z), optional
        Brain mask: only its voxels are considered.
    per_shell : bool, optional
        One row of eigenvalues per non-zero shell, each from a tensor fitted
        to that shell and the b0s in the same voxels (which are chosen with
        the FA of the lowest shell).  Default: True for multi-shell data that
        is not a Cartesian q-space grid.

    Returns
    -------
    ResponseEstimate
        ``method='fa'``; ``evals`` of shape (3,) or (n_shells, 3).

    Raises
    ------
    ValueError
        The ROI holds no voxel of the mask, or none of its voxels has FA above
        ``fa_thr`` (the message gives the highest FA found).
    """
    data = np.asarray(data)
    if data.ndim != 4 or data.shape[-1] != len(gtab):
        raise ValueError(
            f"data must be 4D with {len(gtab)} volumes on the last axis, got shape {data.shape}"
        )
    if not 0 <= fa_thr < 1:
        raise ValueError(f"fa_thr must be in [0, 1), got {fa_thr}")
    if per_shell is None:
        per_shell = gtab.n_shells > 1 and not gtab.is_cartesian_grid
    box = roi_slices(data.shape, roi_center=roi_center, roi_radii=roi_radii)
    roi = np.zeros(data.shape[:3], dtype=bool)
    roi[box] = True
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != data.shape[:3]:
            raise ValueError(f"mask shape {mask.shape} differs from the data's {data.shape[:3]}")
        roi &= mask
    if not roi.any():
        raise ValueError(
            f"the response ROI {[(s.start, s.stop) for s in box]} holds no voxel of the mask: "
            "move roi_center into the brain or enlarge roi_radii"
        )
    shell_gtabs = [_shell_gtab(gtab, k) for k in range(gtab.n_shells)] if per_shell else []
    voxels = data[roi]
    if not np.all(np.isfinite(voxels)):
        raise ValueError("the data contain NaN or inf inside the response ROI")
    select_gtab = shell_gtabs[0] if per_shell else gtab
    select_data = voxels[:, _shell_volumes(gtab, 0)] if per_shell else voxels
    fa = fit_tensor(select_gtab, select_data).fa
    chosen = fa > fa_thr
    if not chosen.any():
        raise ValueError(
            f"no voxel of the response ROI ({int(roi.sum())} voxels) has FA above "
            f"fa_thr={fa_thr:g} (highest FA there: {fa.max():.3f}): lower fa_thr, enlarge "
            "roi_radii or move roi_center into the white matter"
        )
    selected = voxels[chosen]
    S0 = float(selected[:, gtab.b0s_mask].mean())
    parameters = {
        "roi_center": (np.asarray(data.shape[:3]) // 2 if roi_center is None else roi_center),
        "roi_radii": np.broadcast_to(np.asarray(roi_radii), (3,)).tolist(),
        "fa_thr": float(fa_thr),
        "per_shell": bool(per_shell),
    }
    if not per_shell:
        evals = _mean_prolate_evals(fit_tensor(gtab, selected).evals)
        return ResponseEstimate(
            method="fa",
            evals=evals,
            S0=S0,
            n_voxels=int(chosen.sum()),
            ratio=float(evals[1] / evals[0]),
            shells=tuple(float(b) for b in gtab.shells),
            parameters=parameters,
        )
    rows = []
    for shell, shell_gtab in enumerate(shell_gtabs):
        volumes = _shell_volumes(gtab, shell)
        rows.append(_mean_prolate_evals(fit_tensor(shell_gtab, selected[:, volumes]).evals))
    evals = np.array(rows)
    return ResponseEstimate(
        method="fa",
        evals=evals,
        S0=S0,
        n_voxels=int(chosen.sum()),
        ratio=evals[:, 1] / evals[:, 0],
        shells=tuple(float(b) for b in gtab.shells),
        parameters=parameters,
    )


def _shell_volumes(gtab: GradientTable, shell: int) -> np.ndarray:
    return gtab.b0s_mask | (gtab.shell_index == shell)


def _shell_gtab(gtab: GradientTable, shell: int) -> GradientTable:
    sub = gtab.subset(_shell_volumes(gtab, shell))
    if np.linalg.matrix_rank(sub.bvecs[~sub.b0s_mask]) < 3 or (~sub.b0s_mask).sum() < 6:
        raise ValueError(
            f"shell b={gtab.shells[shell]:g} has too few directions for a tensor fit "
            "(needs 6 non-coplanar): use per_shell=False"
        )
    return sub


def _mean_prolate_evals(evals: np.ndarray) -> np.ndarray:
    """(mean l1, mean l2, mean l2) of per-voxel eigenvalues (V, 3)."""
    l1, l2 = evals[:, 0].mean(), evals[:, 1].mean()
    return np.array([l1, l2, l2])


# --------------------------------------------------------------------------- recursive


def fa_trace_to_evals(fa: float, trace: float) -> np.ndarray:
    """Eigenvalues ``(l1, l2, l2)`` of the axially symmetric tensor with given FA and trace.

    Examples
    --------
    >>> from rumba_bids.core.tensor import fractional_anisotropy
    >>> evals = fa_trace_to_evals(0.08, 0.0021)
    >>> round(float(fractional_anisotropy(evals)), 6), round(float(evals.sum()), 6)
    (0.08, 0.0021)
    """
    if not 0 <= fa < 1 or not trace > 0:
        raise ValueError(f"need 0 <= fa < 1 and trace > 0, got fa={fa}, trace={trace}")
    root = np.sqrt(3.0 - 2.0 * fa**2)
    return (trace / 3.0) * np.array([1 + 2 * fa / root, 1 - fa / root, 1 - fa / root])


def zonal_fit_aligned(gtab: GradientTable, signal, directions, *, sh_order: int = 8):
    """Per-voxel least-squares zonal SH fit of the signal about each voxel's direction.

    Voxel ``v``'s diffusion-weighted signal is fitted with
    ``sum_k c_k Y_{2k}^0(g . d_v)`` (orthonormal zonal harmonics about ``d_v``).

    Parameters
    ----------
    gtab : GradientTable
    signal : ndarray, shape (V, N)
    directions : ndarray, shape (V, 3)
        Unit vectors in the frame of ``gtab.bvecs``.

    Returns
    -------
    ndarray, shape (V, sh_order / 2 + 1)
    """
    dwi = ~gtab.b0s_mask
    cosines = np.clip(np.asarray(directions) @ gtab.bvecs[dwi].T, -1.0, 1.0)  # (V, Nd)
    design = _even_legendre(cosines, sh_order)  # (V, Nd, K)
    design *= np.sqrt((4 * np.arange(sh_order // 2 + 1) + 1) / (4 * np.pi))
    normal = np.matmul(design.transpose(0, 2, 1), design)
    signal = np.asarray(signal, dtype=np.float64)[:, dwi]
    rhs = np.matmul(signal[:, None, :], design)[:, 0]
    return np.linalg.solve(normal, rhs[..., None])[..., 0]


def _even_legendre(x: np.ndarray, degree: int) -> np.ndarray:
    """Legendre polynomials ``P_0, P_2, ..., P_degree`` at ``x``, shape x.shape + (K,).

    Bonnet's recurrence ``(l + 1) P_{l+1} = (2 l + 1) x P_l - l P_{l-1}``.
    """
    out = np.empty(x.shape + (degree // 2 + 1,))
    previous, current = np.ones_like(x), x
    out[..., 0] = previous
    for order in range(1, degree):
        previous, current = (
            current,
            ((2 * order + 1) * x * current - order * previous) / (order + 1),
        )
        if (order + 1) % 2 == 0:
            out[..., (order + 1) // 2] = current
    return out


def recursive_response(
    gtab: GradientTable,
    data,
    *,
    mask=None,
    sh_order: int = 8,
    peak_thr: float = 0.01,
    init_fa: float = 0.08,
    init_trace: float = 0.0021,
    n_iter: int = 8,
    convergence: float = 0.001,
    sphere="repulsion724",
    reg_sphere="symmetric362",
    require_convergence: bool = False,
    n_threads: int | None = None,
    sh_order_max: int | None = None,
    iter: int | None = None,  # noqa: A002 (DIPY's name)
    parallel: bool | None = None,
    num_processes: int | None = None,
) -> ResponseEstimate:
    """Recursive calibration of the response function (Tax et al. 2014).

    Starting from a fat tensor response (``init_fa``, ``init_trace``), each
    iteration runs CSD on the current voxels, keeps those whose second fODF
    peak is below ``peak_thr`` times the first, and sets the response to the
    mean of their zonal SH fits, each aligned with its voxel's peak.  It stops
    when no zonal coefficient changes by more than ``convergence`` (relative),
    or after ``n_iter`` iterations: then, as DIPY does, it returns the last
    estimate, with a ``UserWarning`` and ``converged=False`` (and the last
    change in ``max_change``) in the result.

    DIPY's ``recursive_response`` arguments are accepted under DIPY's names:
    ``sh_order_max`` is ``sh_order``, ``iter`` is ``n_iter``, and
    ``parallel``/``num_processes`` set ``n_threads`` (``parallel=False``: one
    thread; ``parallel=True``: ``num_processes`` threads, None for all).
    ``peak_thr``, ``init_fa``, ``init_trace``, ``convergence``, ``mask`` and
    ``sphere`` have DIPY's names and meaning.  With DIPY's spheres
    (``sphere=dipy.data.default_sphere``, ``reg_sphere=dipy.data.small_sphere``)
    the result is DIPY's to round-off; it returns a :class:`ResponseEstimate`
    where DIPY returns an ``AxSymShResponse`` (see :attr:`ResponseEstimate.wm_response`).

    Parameters
    ----------
    gtab : GradientTable
        One non-zero shell (plus b0s).
    data : array_like, shape (..., N)
    mask : array_like of bool, shape (...), optional
        Voxels to start from (e.g. a white-matter or brain mask).
    sh_order : int
        SH degree of the CSD and of the response.
    peak_thr : float
        Relative size of a second peak below which a voxel is single-fibre.
    init_fa, init_trace : float
        FA and trace (mm^2/s) of the initial response.
    n_iter : int
        Maximum iterations.
    convergence : float
        Largest relative change of the zonal coefficients at convergence.
    sphere : sphere-like
        Directions of the peak search (its upper hemisphere is used).
    reg_sphere : sphere-like
        Directions of the CSD non-negativity constraint.
    require_convergence : bool
        Raise if the response has not converged after ``n_iter`` iterations;
        by default the last estimate is returned with a warning and
        ``converged=False``.
    n_threads : int, optional
        Threads of the CSD (see :func:`rumba_bids.core.csd.deconvolve`).
    sh_order_max, iter, parallel, num_processes
        DIPY's names, see above; giving both names of one setting with
        different values is an error.

    Returns
    -------
    ResponseEstimate
        ``method='recursive'``: ``zonal_coefs`` and ``S0`` (the response
        used by :attr:`ResponseEstimate.wm_response`), plus the mean tensor
        eigenvalues of the final voxels, their number, and ``n_iterations``.
    """
    sh_order = _dipy_alias("sh_order", sh_order, "sh_order_max", sh_order_max, default=8)
    n_iter = _dipy_alias("n_iter", n_iter, "iter", iter, default=8)
    if parallel is not None or num_processes is not None:
        threads = (num_processes if parallel or parallel is None else 1) or None
        n_threads = _dipy_alias("n_threads", n_threads, "parallel/num_processes", threads)
    gtab = as_gradient_table(gtab)
    data = np.asarray(data)
    if data.shape[-1:] != (len(gtab),):
        raise ValueError(f"data must have {len(gtab)} volumes on its last axis, got {data.shape}")
    if gtab.n_shells != 1:
        raise ValueError(
            f"the recursive response needs single-shell data, got shells "
            f"{[round(b) for b in gtab.shells]}: pass one shell and the b0s "
            "(gtab.subset and the matching volumes), or use the FA method"
        )
    n_dirs = int((~gtab.b0s_mask).sum())
    if n_sh_coefficients(sh_order) > n_dirs:
        raise ValueError(
            f"sh_order={sh_order} needs {n_sh_coefficients(sh_order)} diffusion directions, "
            f"the data have {n_dirs}: lower sh_order (6 needs 28, 4 needs 15)"
        )
    if n_iter < 1:
        raise ValueError(f"n_iter must be at least 1, got {n_iter}")
    if mask is None:
        voxels = data.reshape(-1, data.shape[-1])
    else:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != data.shape[:-1]:
            raise ValueError(f"mask shape {mask.shape} differs from the data's {data.shape[:-1]}")
        voxels = data[mask]
    voxels = voxels.astype(np.float64, copy=False)
    if len(voxels) == 0:
        raise ValueError("the mask holds no voxel: give a mask of the white matter or the brain")
    if not np.all(np.isfinite(voxels)):
        raise ValueError("the data contain NaN or inf in the voxels used for the response")
    peak_sphere = hemisphere(sphere)
    response = (fa_trace_to_evals(init_fa, init_trace), 1.0)
    previous = np.ones(sh_order // 2 + 1)
    converged = False
    for iteration in range(1, n_iter + 1):
        model = CsdModel(gtab, response, sh_order=sh_order, reg_sphere=reg_sphere)
        single, directions = _single_fibre_voxels(
            model, voxels, peak_sphere, peak_thr, n_threads=n_threads
        )
        if not single.any():
            raise ValueError(
                f"no single-fibre voxel left at iteration {iteration} (second peak below "
                f"peak_thr={peak_thr:g} of the first): raise peak_thr or give a larger mask "
                "holding white matter with non-zero signal"
            )
        voxels = voxels[single]
        zonal = zonal_fit_aligned(gtab, voxels, directions, sh_order=sh_order).mean(axis=0)
        S0 = float(voxels[:, gtab.b0s_mask].mean())
        if not S0 > 0:
            raise ValueError("the single-fibre voxels have no positive b0 signal: check the data")
        response = AxisymmetricResponse(zonal, S0)
        change = np.abs((previous - zonal) / previous)
        previous = zonal
        if np.all(change < convergence):
            converged = True
            break
    if not converged:
        message = (
            f"the recursive response did not converge in n_iter={n_iter} iterations "
            f"(largest relative change {change.max():.2g} > convergence={convergence:g}, "
            f"{len(voxels)} single-fibre voxels)"
        )
        if require_convergence:
            raise ValueError(message + ": raise n_iter or convergence")
        warnings.warn(message + "; the last estimate is returned", UserWarning, stacklevel=2)
    evals = _mean_prolate_evals(fit_tensor(gtab, voxels).evals)
    return ResponseEstimate(
        method="recursive",
        evals=evals,
        S0=S0,
        n_voxels=len(voxels),
        ratio=float(evals[1] / evals[0]),
        shells=tuple(float(b) for b in gtab.shells),
        n_iterations=iteration,
        converged=converged,
        max_change=float(change.max()),
        zonal_coefs=zonal,
        parameters={
            "sh_order": sh_order,
            "peak_thr": peak_thr,
            "init_fa": init_fa,
            "init_trace": init_trace,
            "n_iter": n_iter,
            "convergence": convergence,
        },
    )


def _dipy_alias(name, value, dipy_name, dipy_value, *, default=None):
    """The value of a setting given under our name or DIPY's (not both, unless equal)."""
    if dipy_value is None:
        return default if value is None else value
    if value is not None and value != default and value != dipy_value:
        raise ValueError(
            f"{name}={value!r} and DIPY's {dipy_name}={dipy_value!r} disagree: give one of them"
        )
    return dipy_value


def _single_fibre_voxels(model: CsdModel, voxels, sphere, peak_thr, *, n_threads):
    """Which voxels have one fODF peak, and that peak's direction (V_kept, 3)."""
    single = np.zeros(len(voxels), dtype=bool)
    directions = []
    for start in range(0, len(voxels), _CHUNK):
        block = voxels[start : start + _CHUNK]
        odf = model.fit(block, n_threads=n_threads).odf(sphere)
        # vertex peaks, as DIPY's recursive_response (its results are reproduced exactly)
        peaks = extract_peaks(
            odf,
            sphere,
            relative_peak_threshold=peak_thr,
            min_separation_angle=25,
            npeaks=2,
            refine=False,
        )
        first, second = peaks.values[:, 0], peaks.values[:, 1]
        keep = (first > 0) & (second < peak_thr * first)
        single[start : start + len(block)] = keep
        directions.append(peaks.directions[keep, 0])
    return single, np.concatenate(directions)
