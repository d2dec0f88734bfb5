"""The pre-flight check of one run: the validation the interfaces run, before any graph.

:func:`check_run` calls :func:`rumba_bids.interfaces.validation.check_dwi_files`
(the function :class:`~rumba_bids.interfaces.gradients.CheckGradients` and the
mask-reading interfaces call), with the run's own b-vector convention, and
returns the record with what it learnt.  Errors name the file and the problem:
:class:`~rumba_bids.interfaces.errors.InputMissingError` (exit 66) or
:class:`~rumba_bids.interfaces.errors.InputDataError` (exit 65).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..core.gradients import DEFAULT_B0_THRESHOLD
from ..interfaces.errors import InputMissingError
from ..interfaces.validation import check_dwi_files
from .record import DwiRun


def _sibling(dwi_file: Path, extension: str) -> str:
    name = dwi_file.name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)] + extension
    return name + extension


def _require_gradient_file(run: DwiRun, path, extension: str) -> None:
    dwi_file = Path(run.dwi_file)
    if path is not None and Path(path).is_file():
        return
    expected = _sibling(dwi_file, extension) if path is None else str(path)
    raise InputMissingError(dwi_file, f"no {extension} file for this run (expected {expected})")


def check_run(
    run: DwiRun, *, b0_threshold: float = DEFAULT_B0_THRESHOLD, check_data: bool = True
) -> DwiRun:
    """Check a run's files, gradients, values and mask; return the record with its facts.

    Parameters
    ----------
    run : DwiRun
        As found by its layout (``mask_file`` already replaced by ``--mask-file``).
    b0_threshold : float
    check_data : bool
        Also read the image values.

    Returns
    -------
    DwiRun
        ``shape``, ``n_b0``, ``shells``, ``bvals`` and ``mask_voxels`` filled in.
    """
    if not Path(run.dwi_file).is_file():
        raise InputMissingError(run.dwi_file, "DWI image does not exist")
    _require_gradient_file(run, run.bval_file, ".bval")
    _require_gradient_file(run, run.bvec_file, ".bvec")
    checked = check_dwi_files(
        run.dwi_file,
        run.bval_file,
        run.bvec_file,
        mask_file=run.mask_file,
        bvec_convention=run.bvec_convention,
        b0_threshold=b0_threshold,
        check_data=check_data,
    )
    gtab = checked.gtab
    return dataclasses.replace(
        run,
        shape=checked.shape,
        n_b0=int(gtab.b0s_mask.sum()),
        shells=tuple(float(b) for b in gtab.shells),
        bvals=tuple(float(b) for b in gtab.bvals),
        mask_voxels=checked.mask_voxels,
    )
