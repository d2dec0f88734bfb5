"""Check b-values and b-vectors against the DWI image; b-vectors to the voxel frame.

BIDS (FSL convention) b-vectors live in the image's voxel axes with the first
axis flipped when the affine has a positive determinant.  :class:`CheckGradients`
undoes the flip (:func:`rumba_bids.core.bvecs_fsl_to_voxel`) and writes the
b-vectors in the voxel (ijk) frame used by every later step.
"""

from __future__ import annotations

import logging

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from ..core.gradients import DEFAULT_B0_THRESHOLD, GradientTable, bvecs_fsl_to_voxel
from .errors import InputDataError
from .files import load_dwi, output_path, require_file

logger = logging.getLogger("nipype.interface")


def read_bvals(path) -> np.ndarray:
    """b-values (N,) from a text file (one row or one column, s/mm^2)."""
    require_file(path, "b-value file")
    try:
        bvals = np.loadtxt(path, dtype=np.float64, ndmin=1).ravel()
    except ValueError as exc:
        raise InputDataError(path, f"cannot parse the b-values as numbers: {exc}") from exc
    if bvals.size == 0:
        raise InputDataError(path, "the b-value file is empty")
    if not np.all(np.isfinite(bvals)):
        bad = np.flatnonzero(~np.isfinite(bvals))[:5].tolist()
        raise InputDataError(path, f"b-values must be finite; NaN or inf at volumes {bad}")
    return bvals


def read_bvecs(path, n_volumes: int) -> np.ndarray:
    """b-vectors (N, 3) from FSL/BIDS text (3 rows; 3 columns are also accepted)."""
    require_file(path, "b-vector file")
    try:
        bvecs = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise InputDataError(path, f"cannot parse the b-vectors as numbers: {exc}") from exc
    if bvecs.shape[0] == 3 and (bvecs.shape[1] == n_volumes or bvecs.shape[1] != 3):
        return bvecs.T
    if bvecs.shape[1] == 3:
        return bvecs
    raise InputDataError(
        path,
        f"b-vectors must be 3 rows (BIDS/FSL layout) or 3 columns, got shape {bvecs.shape}",
    )


def check_gradient_files(dwi_file, bval_file, bvec_file, *, b0_threshold=DEFAULT_B0_THRESHOLD):
    """Validate a DWI series with its b-values and b-vectors.

    Parameters
    ----------
    dwi_file, bval_file, bvec_file : str
        4D NIfTI image; BIDS/FSL ``.bval`` and ``.bvec`` text files.
    b0_threshold : float
        Volumes with b <= this (s/mm^2) are b0 volumes.

    Returns
    -------
    GradientTable
        b-vectors in the voxel (ijk) frame of ``dwi_file``.  Non-finite
        b-vectors of b0 volumes (some converters write NaN) become zero.

    Raises
    ------
    InputMissingError
        A file does not exist.
    InputDataError
        Unreadable files, a non-4D image, counts that disagree, invalid values.
    """
    image = load_dwi(dwi_file)
    n_volumes = image.shape[3]
    bvals = read_bvals(bval_file)
    if len(bvals) != n_volumes:
        raise InputDataError(
            bval_file, f"{len(bvals)} b-values but {dwi_file} has {n_volumes} volumes"
        )
    bvecs = read_bvecs(bvec_file, n_volumes)
    if len(bvecs) != n_volumes:
        raise InputDataError(
            bvec_file, f"{len(bvecs)} b-vectors but {dwi_file} has {n_volumes} volumes"
        )
    b0s = bvals <= b0_threshold
    non_finite = ~np.isfinite(bvecs).all(axis=1)
    if np.any(non_finite & ~b0s):
        bad = np.flatnonzero(non_finite & ~b0s)[:5].tolist()
        raise InputDataError(
            bvec_file, f"b-vectors of diffusion-weighted volumes {bad} are NaN or inf"
        )
    if non_finite.any():
        logger.info("%s: NaN b-vectors of %d b0 volumes set to zero", bvec_file, non_finite.sum())
        bvecs[non_finite] = 0.0
    try:
        return GradientTable(
            bvals, bvecs_fsl_to_voxel(bvecs, image.affine), b0_threshold=b0_threshold
        )
    except ValueError as exc:
        culprit = bvec_file if "b-vector" in str(exc) else bval_file
        raise InputDataError(culprit, str(exc)) from exc


def load_gradient_table(bval_file, bvec_file, *, b0_threshold=DEFAULT_B0_THRESHOLD):
    """GradientTable from checked files (b-vectors already in the voxel frame)."""
    bvals = read_bvals(bval_file)
    bvecs = read_bvecs(bvec_file, len(bvals))
    try:
        return GradientTable(bvals, bvecs, b0_threshold=b0_threshold)
    except ValueError as exc:
        raise InputDataError(bvec_file, str(exc)) from exc


def write_gradient_table(gtab: GradientTable, bval_path, bvec_path) -> tuple[str, str]:
    """Write b-values (one row) and b-vectors (3 rows) as text; return the paths."""
    np.savetxt(bval_path, gtab.bvals[None], fmt="%.10g")
    np.savetxt(bvec_path, gtab.bvecs.T, fmt="%.10f")
    return str(bval_path), str(bvec_path)


class _CheckGradientsInputSpec(BaseInterfaceInputSpec):
    dwi_file = File(resolve=True, mandatory=True, desc="4D diffusion-weighted series (NIfTI)")
    bval_file = File(resolve=True, mandatory=True, desc="b-values (BIDS/FSL text, s/mm^2)")
    bvec_file = File(
        resolve=True, mandatory=True, desc="b-vectors (BIDS/FSL text, FSL convention)"
    )
    b0_threshold = traits.Float(
        DEFAULT_B0_THRESHOLD, usedefault=True, desc="b-values <= this are b0 volumes (s/mm^2)"
    )


class _CheckGradientsOutputSpec(TraitedSpec):
    bval_file = File(exists=True, desc="validated b-values, one row")
    bvec_file = File(exists=True, desc="unit b-vectors in the voxel (ijk) frame, 3 rows")
    b0_mask = traits.List(traits.Bool, desc="True for the b0 volumes")
    shells = traits.List(traits.Float, desc="mean b-value of each non-zero shell, ascending")
    n_volumes = traits.Int(desc="number of volumes")


class CheckGradients(SimpleInterface):
    """Check b-values, b-vectors and the DWI image agree; b-vectors to the voxel frame.

    Raises :class:`~rumba_bids.interfaces.errors.RumbaInputError` naming the
    file for a missing file, a non-4D image, or b-value / b-vector / volume
    counts that disagree.
    """

    input_spec = _CheckGradientsInputSpec
    output_spec = _CheckGradientsOutputSpec

    def _run_interface(self, runtime):
        gtab = check_gradient_files(
            self.inputs.dwi_file,
            self.inputs.bval_file,
            self.inputs.bvec_file,
            b0_threshold=self.inputs.b0_threshold,
        )
        bval_out, bvec_out = write_gradient_table(
            gtab,
            output_path(self.inputs.bval_file, "_checked", runtime.cwd, ext=".bval"),
            output_path(self.inputs.bvec_file, "_ijk", runtime.cwd, ext=".bvec"),
        )
        self._results.update(
            bval_file=bval_out,
            bvec_file=bvec_out,
            b0_mask=gtab.b0s_mask.tolist(),
            shells=gtab.shells.tolist(),
            n_volumes=len(gtab),
        )
        return runtime
