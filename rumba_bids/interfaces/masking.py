"""Brain mask: ``median_otsu`` on the mean b0, or a given mask checked against the DWI grid."""

from __future__ import annotations

import inspect

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..core.gradients import DEFAULT_B0_THRESHOLD
from ..core.masking import median_otsu
from .errors import InputDataError
from .files import image_values, load_dwi, load_mask, output_path, save_like
from .gradients import read_bvals

_MEDIAN_OTSU = inspect.signature(median_otsu).parameters


def brain_mask_file(
    dwi_file,
    bval_file,
    out_file,
    *,
    in_mask=None,
    b0_threshold=DEFAULT_B0_THRESHOLD,
    median_radius=_MEDIAN_OTSU["median_radius"].default,
    numpass=_MEDIAN_OTSU["numpass"].default,
    dilate=_MEDIAN_OTSU["dilate"].default,
    finalize=_MEDIAN_OTSU["finalize"].default,
    n_threads=None,
) -> tuple[str, str]:
    """Write a uint8 brain mask on the grid of ``dwi_file``; return (path, method).

    With ``in_mask`` the mask is checked against the DWI grid, binarised
    (non-zero = inside) and copied (method ``'given'``); otherwise the mean of
    the b0 volumes is thresholded by :func:`rumba_bids.core.masking.median_otsu`
    (method ``'median_otsu'``).
    """
    dwi = load_dwi(dwi_file)
    if in_mask is not None:
        mask = load_mask(in_mask, dwi, dwi_file)
        return save_like(mask, dwi, out_file, dtype=np.uint8), "given"
    bvals = read_bvals(bval_file)
    b0_volumes = np.flatnonzero(bvals <= b0_threshold)
    if len(bvals) != dwi.shape[3] or b0_volumes.size == 0:
        raise InputDataError(
            bval_file, f"needs one b-value per volume of {dwi_file} and at least one b0 volume"
        )
    # threshold the mean b0 (as median_otsu would) without a masked copy of the 4D series
    # (the series as stored, not a float copy; a NIfTI volume is contiguous in it)
    values = image_values(dwi, dwi_file)
    mean_b0 = np.zeros(dwi.shape[:3], dtype=np.float64)
    for volume in b0_volumes:
        mean_b0 += values[..., volume]
    mean_b0 /= len(b0_volumes)
    _, mask = median_otsu(
        mean_b0,
        median_radius=median_radius,
        numpass=numpass,
        dilate=dilate,
        finalize=finalize,
        n_threads=n_threads,
    )
    if not mask.any():
        raise InputDataError(dwi_file, "median_otsu found no brain voxel; give a mask file")
    return save_like(mask, dwi, out_file, dtype=np.uint8), "median_otsu"


class _BrainMaskInputSpec(BaseInterfaceInputSpec):
    dwi_file = File(resolve=True, mandatory=True, desc="4D diffusion-weighted series")
    bval_file = File(resolve=True, mandatory=True, desc="b-values (to find the b0 volumes)")
    in_mask = File(
        resolve=True, desc="a brain mask on the DWI grid; when given, used instead of median_otsu"
    )
    b0_threshold = traits.Float(DEFAULT_B0_THRESHOLD, usedefault=True, desc="b0 cut-off, s/mm^2")
    median_radius = traits.Int(
        _MEDIAN_OTSU["median_radius"].default,
        usedefault=True,
        desc="median filter radius (voxels)",
    )
    numpass = traits.Int(
        _MEDIAN_OTSU["numpass"].default, usedefault=True, desc="median filter passes"
    )
    dilate = traits.Either(
        None,
        traits.Int,
        default=_MEDIAN_OTSU["dilate"].default,
        usedefault=True,
        desc="binary dilation iterations",
    )
    finalize = traits.Bool(
        _MEDIAN_OTSU["finalize"].default,
        usedefault=True,
        desc="keep the largest connected component and fill its holes",
    )
    n_threads = traits.Int(
        nohash=True, desc="median filter threads (default: every CPU the process may use)"
    )


class _BrainMaskOutputSpec(TraitedSpec):
    out_mask = File(exists=True, desc="brain mask (uint8, 1 inside) on the DWI grid")
    method = traits.Enum("median_otsu", "given", desc="how the mask was obtained")


class BrainMask(SimpleInterface):
    """Brain mask of a DWI series (median_otsu), or a given mask checked and binarised."""

    input_spec = _BrainMaskInputSpec
    output_spec = _BrainMaskOutputSpec

    def _run_interface(self, runtime):
        in_mask = self.inputs.in_mask if isdefined(self.inputs.in_mask) else None
        out_mask, method = brain_mask_file(
            self.inputs.dwi_file,
            self.inputs.bval_file,
            output_path(self.inputs.dwi_file, "_brainmask", runtime.cwd),
            in_mask=in_mask,
            b0_threshold=self.inputs.b0_threshold,
            median_radius=self.inputs.median_radius,
            numpass=self.inputs.numpass,
            dilate=self.inputs.dilate,
            finalize=self.inputs.finalize,
            n_threads=self.inputs.n_threads if isdefined(self.inputs.n_threads) else None,
        )
        self._results.update(out_mask=out_mask, method=method)
        return runtime
