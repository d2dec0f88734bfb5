"""Check b-values and b-vectors against the DWI image; b-vectors to the voxel frame.

BIDS (FSL convention) b-vectors live in the image's voxel axes with the first
axis flipped when the affine has a positive determinant; QSIPrep's are along
the image axes, never flipped (``bvec_convention='ijk'``).
:class:`CheckGradients` reads them in the convention it is given, undoes the
flip where there is one (:func:`rumba_bids.core.bvecs_fsl_to_voxel`) and writes
the b-vectors in the voxel (ijk) frame used by every later step.
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

from ..core.gradients import DEFAULT_B0_THRESHOLD, GradientTable
from .errors import InputDataError
from .files import output_path
from .validation import BVEC_CONVENTIONS, check_dwi_files, read_bvals, read_bvecs

logger = logging.getLogger("nipype.interface")


def check_gradient_files(
    dwi_file,
    bval_file,
    bvec_file,
    *,
    bvec_convention="fsl",
    b0_threshold=DEFAULT_B0_THRESHOLD,
    check_data=True,
):
    """Validate a DWI series with its b-values and b-vectors.

    The checks of the pre-flight (:func:`rumba_bids.interfaces.validation.check_dwi_files`).

    Parameters
    ----------
    dwi_file, bval_file, bvec_file : str
        4D NIfTI image; ``.bval`` (one row or one value per line) and ``.bvec``
        (3 rows) text files.
    bvec_convention : {'fsl', 'ijk'}
        ``fsl``: FSL/BIDS b-vectors (x negated when det(affine) > 0); ``ijk``:
        vectors along the image axes (QSIPrep's ``.bvec``), used as they are.
    b0_threshold : float
        Volumes with b <= this (s/mm^2) are b0 volumes.
    check_data : bool
        Also check the image values (NaN, empty volumes, negative data).

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
    return check_dwi_files(
        dwi_file,
        bval_file,
        bvec_file,
        bvec_convention=bvec_convention,
        b0_threshold=b0_threshold,
        check_data=check_data,
    ).gtab


def load_gradient_table(bval_file, bvec_file, *, b0_threshold=DEFAULT_B0_THRESHOLD):
    """GradientTable from checked files (b-vectors already in the voxel frame)."""
    bvals = read_bvals(bval_file)
    bvecs = read_bvecs(bvec_file)
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
    bvec_file = File(resolve=True, mandatory=True, desc="b-vectors (3 rows, in bvec_convention)")
    bvec_convention = traits.Enum(
        *BVEC_CONVENTIONS,
        usedefault=True,
        desc="fsl: FSL/BIDS b-vectors (x negated when det(affine) > 0); "
        "ijk: along the image axes (QSIPrep), used as they are",
    )
    b0_threshold = traits.Float(
        DEFAULT_B0_THRESHOLD, usedefault=True, desc="b-values <= this are b0 volumes (s/mm^2)"
    )
    check_data = traits.Bool(
        True, usedefault=True, desc="also check the image values (NaN, empty volumes, sign)"
    )


class _CheckGradientsOutputSpec(TraitedSpec):
    bval_file = File(exists=True, desc="validated b-values, one row")
    bvec_file = File(exists=True, desc="unit b-vectors in the voxel (ijk) frame, 3 rows")
    b0_mask = traits.List(traits.Bool, desc="True for the b0 volumes")
    shells = traits.List(traits.Float, desc="mean b-value of each non-zero shell, ascending")
    n_volumes = traits.Int(desc="number of volumes")


class CheckGradients(SimpleInterface):
    """Check b-values, b-vectors and the DWI image agree; b-vectors to the voxel frame.

    Runs the pre-flight's checks (:func:`rumba_bids.interfaces.validation.check_dwi_files`).
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
            bvec_convention=self.inputs.bvec_convention,
            b0_threshold=self.inputs.b0_threshold,
            check_data=self.inputs.check_data,
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
