"""fODF peaks (MRtrix3 ``sh2peaks`` layout), peak values and GFA."""

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

from ..core.peaks import extract_peaks, peaks_to_mrtrix
from ..core.sphere import Sphere
from .files import image_values, load_image, load_mask, output_path, save_like, slab_volumes
from .shm import REFERENCES, directions_in, read_directions, slabs

#: Defaults of the peak search, taken from :func:`extract_peaks`.
PEAK_DEFAULTS = {
    name: parameter.default
    for name, parameter in inspect.signature(extract_peaks).parameters.items()
    if name in ("relative_peak_threshold", "min_separation_angle", "npeaks", "refine")
}


def extract_peaks_file(
    fod_file,
    directions_file,
    out_dir,
    *,
    mask_file=None,
    reference="ijk",
    **options,
) -> dict:
    """Peaks of the fODF image ``fod_file``, slab by slab; write three images.

    Parameters
    ----------
    fod_file : str
        fODF amplitudes (X, Y, Z, M).
    directions_file : str
        The M sphere directions in the voxel frame.
    out_dir : str
    mask_file : str, optional
        Voxels to search (default: every voxel with a non-zero fODF).
    reference : {'ijk', 'xyz'}
        Frame of the peak directions.
    **options
        ``npeaks``, ``relative_peak_threshold``, ``min_separation_angle``,
        ``refine`` of :func:`rumba_bids.core.peaks.extract_peaks`.

    Returns
    -------
    dict
        ``peaks`` (X, Y, Z, 3 npeaks; direction x value, NaN where no peak),
        ``peak_values`` (X, Y, Z, npeaks; 0 where no peak), ``gfa`` (X, Y, Z).
    """
    image = load_image(fod_file, "fODF amplitude image")
    vertices = read_directions(directions_file, image.shape[-1])
    sphere = Sphere(vertices, name="fod")
    mask = None if mask_file is None else load_mask(mask_file, image, fod_file)
    npeaks = int(options.get("npeaks", PEAK_DEFAULTS["npeaks"]))
    peaks = np.full(image.shape[:3] + (3 * npeaks,), np.nan, dtype=np.float32)
    values = np.zeros(image.shape[:3] + (npeaks,), dtype=np.float32)
    gfa = np.zeros(image.shape[:3], dtype=np.float32)
    data = image_values(image, fod_file, lazy=True)
    for rows in slabs(image.shape):
        volumes = slab_volumes(data, rows, fod_file)  # (M, voxels of the slab, Fortran order)
        slab_shape = gfa[:, :, rows].shape
        if mask is None:
            inside = (volumes != 0).any(axis=0)
        else:
            inside = mask[:, :, rows].ravel(order="F")
        picked = np.flatnonzero(inside)
        # the voxels' fODFs as rows, gathered volume by volume
        odf = np.ascontiguousarray(volumes[:, picked].T, dtype=np.float32)
        found = extract_peaks(odf, sphere, **options)
        directions = directions_in(reference, found.directions, image.affine)
        where = np.unravel_index(picked, slab_shape, order="F")
        peaks[:, :, rows][where] = peaks_to_mrtrix(directions, found.values)
        values[:, :, rows][where] = found.values
        gfa[:, :, rows][where] = found.gfa
    return {
        "peaks": save_like(peaks, image, output_path(fod_file, "_peaks", out_dir)),
        "peak_values": save_like(values, image, output_path(fod_file, "_peakvalues", out_dir)),
        "gfa": save_like(gfa, image, output_path(fod_file, "_gfa", out_dir)),
    }


PEAK_REFINEMENT = {
    True: "log-quadratic fit over the vertex and its neighbours (between vertices)",
    False: "none (sphere vertices)",
}


def peaks_encoding(*, reference: str, refine: bool = PEAK_DEFAULTS["refine"]) -> dict:
    """``OrientationEncoding`` of the peak and peak-value images (BEP016 draft).

    Returns ``{'peaks': ..., 'peakvals': ...}``: the peaks (sh2peaks layout)
    are NaN where a voxel has fewer peaks, the values 0; ``Refinement`` says
    whether directions were refined between the sphere's vertices.
    """
    return {
        "peaks": {
            "Type": "3vector",
            "EncodingAxis": 3,
            "Reference": reference,
            "FillValue": "NaN",
            "Refinement": PEAK_REFINEMENT[bool(refine)],
        },
        "peakvals": {"Type": "scalar", "EncodingAxis": 3, "FillValue": 0},
    }


class _ExtractPeaksInputSpec(BaseInterfaceInputSpec):
    fod_amplitudes = File(resolve=True, mandatory=True, desc="fODF amplitudes (X, Y, Z, M)")
    directions_file = File(
        resolve=True, mandatory=True, desc="the M sphere directions, voxel frame"
    )
    mask_file = File(resolve=True, desc="voxels to search (default: non-zero fODF)")
    npeaks = traits.Int(PEAK_DEFAULTS["npeaks"], usedefault=True, desc="peaks per voxel")
    relative_peak_threshold = traits.Range(
        0.0, 1.0, PEAK_DEFAULTS["relative_peak_threshold"], usedefault=True, desc="of the largest"
    )
    min_separation_angle = traits.Range(
        0.0, 90.0, float(PEAK_DEFAULTS["min_separation_angle"]), usedefault=True, desc="degrees"
    )
    reference = traits.Enum(*REFERENCES, usedefault=True, desc="frame of the directions")
    refine = traits.Bool(
        PEAK_DEFAULTS["refine"], usedefault=True, desc="directions between the sphere's vertices"
    )


class _ExtractPeaksOutputSpec(TraitedSpec):
    peaks = File(exists=True, desc="MRtrix sh2peaks layout, 3 volumes per peak, NaN fill")
    peak_values = File(exists=True, desc="fODF value of each peak, 0 fill")
    gfa = File(exists=True, desc="generalised fractional anisotropy of the fODF")
    encoding = traits.Dict(desc="OrientationEncoding of 'peaks' and 'peakvals'")


class ExtractPeaks(SimpleInterface):
    """Local maxima of the fODF on its sphere, with GFA (see :func:`extract_peaks_file`)."""

    input_spec = _ExtractPeaksInputSpec
    output_spec = _ExtractPeaksOutputSpec

    def _run_interface(self, runtime):
        inputs = self.inputs
        self._results.update(
            extract_peaks_file(
                inputs.fod_amplitudes,
                inputs.directions_file,
                runtime.cwd,
                mask_file=inputs.mask_file if isdefined(inputs.mask_file) else None,
                reference=inputs.reference,
                npeaks=inputs.npeaks,
                relative_peak_threshold=inputs.relative_peak_threshold,
                min_separation_angle=inputs.min_separation_angle,
                refine=inputs.refine,
            ),
            encoding=peaks_encoding(reference=inputs.reference, refine=inputs.refine),
        )
        return runtime
