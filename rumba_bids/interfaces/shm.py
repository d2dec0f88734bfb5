"""fODF amplitudes on the sphere to spherical-harmonic coefficients."""

from __future__ import annotations

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from ..core.gradients import voxel_to_world
from ..core.shm import DEFAULT_SH_BASIS, DEFAULT_SH_ORDER, SH_BASES, sh_fit_matrix
from .errors import InputDataError
from .files import image_values, load_image, output_path, require_file, save_like, slab_volumes

#: Frames of output directions: voxel axes, or world (scanner, RAS+) axes of the affine.
REFERENCES = ("ijk", "xyz")
#: Voxels processed at once when reading a 4D fODF image slab by slab.
SLAB_VOXELS = 65536
#: Laplace-Beltrami regularisation of the fODF's SH fit, per steradian (see
#: :func:`sphere_smooth`).  RUMBA-SD's fODF is sharper than degree-8 SH can hold,
#: and a plain least-squares fit rings: side lobes of ~10 % of the peak that
#: MRtrix3's ``fod2fixel`` (peak threshold 0.1) counted as extra fixels in every
#: single-fibre voxel of the demo phantom.  On the demo (600 iterations) the count
#: of single-fibre voxels with exactly one fixel rose from 0 % (no regularisation)
#: over 42 % (0.7e-4) and 87 % (0.85e-4) to 100 % from 1e-4; this default keeps a
#: factor 2 of margin, costs about 3 % of tckgen tangents within 20 degrees, and
#: leaves the integral (c00) unchanged.
DEFAULT_SH_SMOOTHING = 2e-4


def read_directions(path, n_expected: int) -> np.ndarray:
    """Sphere directions (M, 3) written by :class:`FitRumba`, checked against M volumes."""
    require_file(path, "directions file")
    directions = np.loadtxt(path, ndmin=2)
    if directions.shape != (n_expected, 3):
        raise InputDataError(
            path, f"{directions.shape[0]} directions for an fODF image of {n_expected} volumes"
        )
    return directions


def directions_in(reference: str, directions, affine) -> np.ndarray:
    """Voxel-frame ``directions`` in the requested frame (``'ijk'`` or ``'xyz'``)."""
    if reference not in REFERENCES:
        raise ValueError(f"reference must be 'ijk' or 'xyz', got {reference!r}")
    return directions if reference == "ijk" else voxel_to_world(directions, affine)


def slabs(shape, *, max_voxels: int = SLAB_VOXELS):
    """Slices along the last spatial axis covering ``shape[:3]`` in slabs of bounded size.

    Examples
    --------
    >>> list(slabs((10, 10, 3), max_voxels=150))
    [slice(0, 1, None), slice(1, 2, None), slice(2, 3, None)]
    """
    per_slice = int(np.prod(shape[:2]))
    step = max(1, max_voxels // max(per_slice, 1))
    return [slice(k, min(k + step, shape[2])) for k in range(0, shape[2], step)]


def fod_to_sh_file(
    fod_file,
    directions_file,
    out_file,
    *,
    sh_order=DEFAULT_SH_ORDER,
    basis=DEFAULT_SH_BASIS,
    smoothing=DEFAULT_SH_SMOOTHING,
    reference="ijk",
) -> str:
    """Fit SH to the fODF amplitudes of ``fod_file`` slab by slab; write float32 SH.

    ``smoothing`` is the Laplace-Beltrami weight per steradian
    (:func:`sphere_smooth`): the same filter whatever the number of directions.
    """
    image = load_image(fod_file, "fODF amplitude image")
    directions = directions_in(
        reference, read_directions(directions_file, image.shape[-1]), image.affine
    )
    # the matrix of sf_to_sh, computed once for all slabs
    smooth = sphere_smooth(smoothing, len(directions))
    to_sh = sh_fit_matrix(directions, sh_order=sh_order, basis=basis, smooth=smooth)
    to_sh = np.ascontiguousarray(to_sh, dtype=np.float32)  # (S, M)
    values = image_values(image, fod_file, lazy=True)
    sh = np.zeros(image.shape[:3] + (to_sh.shape[0],), dtype=np.float32)
    for rows in slabs(image.shape):
        # (S, M) @ (M, voxels): each volume of the file is read once, in order
        volumes = slab_volumes(values, rows, fod_file).astype(np.float32, copy=False)
        coefficients = to_sh @ volumes
        slab_shape = sh[:, :, rows].shape[:3]
        sh[:, :, rows] = coefficients.reshape((-1,) + slab_shape[::-1]).T
    return save_like(sh, image, out_file)


def sphere_smooth(smoothing: float, n_directions: int) -> float:
    """``smooth`` of :func:`sf_to_sh` (DIPY's) for a weight ``smoothing`` per steradian.

    The least-squares term of :func:`sf_to_sh` sums over the ``M`` directions,
    about ``M / (4 pi)`` times the integral over the sphere; scaling the
    regularisation weight by the same factor gives every sphere the same
    filter (degree ``l`` damped by about ``1 / (1 + smoothing l^2 (l+1)^2)``).

    Examples
    --------
    >>> round(sphere_smooth(2e-4, 724), 5)
    0.01152
    """
    if not np.isfinite(smoothing) or smoothing < 0:
        raise ValueError(f"smoothing must be a finite number >= 0, got {smoothing!r}")
    return float(smoothing) * int(n_directions) / (4 * np.pi)


def sh_encoding(*, sh_order: int, basis: str, reference: str, smoothing=None) -> dict:
    """``OrientationEncoding`` of an SH image (BEP016 draft), with the fit's
    Laplace-Beltrami ``smoothing`` (per steradian) when given."""
    encoding = {
        "Type": "sh",
        "SphericalHarmonicBasis": basis,
        "SphericalHarmonicDegree": int(sh_order),
        "EncodingAxis": 3,
        "Reference": reference,
    }
    if smoothing is not None:
        encoding["LaplaceBeltramiSmoothing"] = float(smoothing)
    return encoding


class _FodToSHInputSpec(BaseInterfaceInputSpec):
    fod_amplitudes = File(resolve=True, mandatory=True, desc="fODF amplitudes (X, Y, Z, M)")
    directions_file = File(
        resolve=True, mandatory=True, desc="the M sphere directions, voxel frame"
    )
    sh_order = traits.Int(DEFAULT_SH_ORDER, usedefault=True, desc="maximum even SH degree")
    sh_basis = traits.Enum(
        DEFAULT_SH_BASIS,
        *(b for b in SH_BASES if b != DEFAULT_SH_BASIS),
        usedefault=True,
        desc="real symmetric SH basis",
    )
    smoothing = traits.Float(
        DEFAULT_SH_SMOOTHING,
        usedefault=True,
        desc="Laplace-Beltrami weight per steradian (sphere-independent; 0: plain least "
        "squares, DIPY's sf_to_sh smooth = smoothing x M / (4 pi))",
    )
    reference = traits.Enum(*REFERENCES, usedefault=True, desc="frame of the SH: ijk or xyz")


class _FodToSHOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="SH coefficients (X, Y, Z, n_coef), float32")
    encoding = traits.Dict(desc="OrientationEncoding of the SH image")


class FodToSH(SimpleInterface):
    """Least-squares SH fit (basis, order) of fODF amplitudes sampled on the sphere."""

    input_spec = _FodToSHInputSpec
    output_spec = _FodToSHOutputSpec

    def _run_interface(self, runtime):
        inputs = self.inputs
        self._results["out_file"] = fod_to_sh_file(
            inputs.fod_amplitudes,
            inputs.directions_file,
            output_path(inputs.fod_amplitudes, "_sh", runtime.cwd),
            sh_order=inputs.sh_order,
            basis=inputs.sh_basis,
            smoothing=inputs.smoothing,
            reference=inputs.reference,
        )
        self._results["encoding"] = sh_encoding(
            sh_order=inputs.sh_order,
            basis=inputs.sh_basis,
            reference=inputs.reference,
            smoothing=inputs.smoothing,
        )
        return runtime
