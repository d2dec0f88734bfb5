"""Report figures as Nipype interfaces: files in, one PNG (``out_report``) out.

Each interface gathers its input files into a
:class:`~rumba_bids.reports.outputs.RunOutputs` (sidecar facts the workflow
knows are passed as inputs) and calls one figure function of
:mod:`rumba_bids.reports.render`, so a workflow draws the same figures as
``rumba-bids-plot`` and the HTML report.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..core.gradients import DEFAULT_B0_THRESHOLD, group_shells
from ..core.shm import DEFAULT_SH_BASIS, SH_BASES
from ..core.sphere import DEFAULT_SPHERE, NAMED_SPHERES, get_sphere
from ..reports.canvas import save_figure
from ..reports.outputs import RunOutputs
from ..reports.render import (
    choose_view,
    figure_name,
    fractions_figure,
    mask_figure,
    odf_figure,
    peaks_figure,
    response_figure,
    snr_figure,
)
from ..reports.selection import AXIS_NAMES


class _ReportInputSpec(BaseInterfaceInputSpec):
    label = traits.Str("run", usedefault=True, desc="run name used in titles and the file name")
    mask_file = File(exists=True, desc="brain mask (default: where the maps are non-zero)")


class _ViewInputSpec(_ReportInputSpec):
    axis = traits.Enum(*AXIS_NAMES.values(), usedefault=True, desc="slice orientation")
    slice_index = traits.Int(desc="slice (file voxel index); default: most crossing fibres")
    region = traits.List(
        traits.Int, minlen=4, maxlen=4, desc="[a0, a1, b0, b1]: window of the slice (file voxels)"
    )
    peak_values = File(exists=True, desc="peak values, to choose the slice with most crossings")
    reference = traits.Enum("ijk", "xyz", usedefault=True, desc="frame of directions")


class _ReportOutputSpec(TraitedSpec):
    out_report = File(exists=True, desc="the figure (PNG)")


def _run(inputs, files: dict, *, sidecars=None, **extra) -> RunOutputs:
    """RunOutputs of the defined input files (names -> trait values)."""
    present = {name: Path(value) for name, value in files.items() if isdefined(value)}
    if isdefined(inputs.mask_file):
        present["mask"] = Path(inputs.mask_file)
    label = inputs.label
    subject = label.split("_")[0][4:] if label.startswith("sub-") else label
    return RunOutputs(
        label=label,
        entities={"subject": subject},
        files=present,
        output_dir=Path.cwd(),
        sidecars=sidecars or {},
        **extra,
    )


def _save(figure_and_caption, label: str, name: str, cwd) -> str:
    figure, _ = figure_and_caption
    return str(save_figure(figure, Path(cwd) / figure_name(label, name)))


def _view(inputs, run: RunOutputs):
    region = None
    if isdefined(inputs.region):
        a0, a1, b0, b1 = inputs.region
        region = (slice(a0, a1), slice(b0, b1))
    index = inputs.slice_index if isdefined(inputs.slice_index) else None
    return choose_view(run, axis=inputs.axis, index=index, region=region)


class _MaskReportInputSpec(_ReportInputSpec):
    mask_file = File(exists=True, mandatory=True, desc="brain mask")
    dwi_file = File(exists=True, mandatory=True, desc="4D DWI series (for its mean b0)")
    bval_file = File(exists=True, mandatory=True, desc="b-values of the series")
    b0_threshold = traits.Float(DEFAULT_B0_THRESHOLD, usedefault=True, desc="s/mm^2")


class MaskReport(SimpleInterface):
    """Brain-mask contour over the mean b0, three orthogonal mosaics."""

    input_spec = _MaskReportInputSpec
    output_spec = _ReportOutputSpec

    def _run_interface(self, runtime):
        inputs = self.inputs
        sidecars = {"fod": {"Model": {"Parameters": {"B0Threshold": inputs.b0_threshold}}}}
        run = _run(inputs, {}, sidecars=sidecars, source_dwi=Path(inputs.dwi_file),
                   source_bval=Path(inputs.bval_file))  # fmt: skip
        self._results["out_report"] = _save(mask_figure(run), inputs.label, "mask", runtime.cwd)
        return runtime


class _ResponseReportInputSpec(_ReportInputSpec):
    response_file = File(exists=True, mandatory=True, desc="response JSON (EstimateResponse)")
    bval_file = File(exists=True, desc="b-values, for the shells the response is drawn at")
    b0_threshold = traits.Float(DEFAULT_B0_THRESHOLD, usedefault=True, desc="s/mm^2")


class ResponseReport(SimpleInterface):
    """The response function used, as a glyph beside the default response."""

    input_spec = _ResponseReportInputSpec
    output_spec = _ReportOutputSpec

    def _run_interface(self, runtime):
        inputs = self.inputs
        parameters = {}
        if isdefined(inputs.bval_file):
            bvals = np.loadtxt(inputs.bval_file, ndmin=1).ravel()
            shells, _ = group_shells(bvals, b0s_mask=bvals <= inputs.b0_threshold)
            parameters["Shells"] = [float(b) for b in shells]
        run = _run(inputs, {"response": inputs.response_file},
                   sidecars={"fod": {"Model": {"Parameters": parameters}}})  # fmt: skip
        self._results["out_report"] = _save(
            response_figure(run), inputs.label, "response", runtime.cwd
        )
        return runtime


class _FractionsReportInputSpec(_ReportInputSpec):
    f_wm = File(exists=True, mandatory=True, desc="white-matter fraction")
    f_iso = File(exists=True, mandatory=True, desc="isotropic fraction")
    f_gm = File(exists=True, desc="grey-matter fraction (when fitted)")
    f_csf = File(exists=True, desc="CSF fraction (when fitted)")


class FractionsReport(SimpleInterface):
    """Volume-fraction maps side by side with colour bars."""

    input_spec = _FractionsReportInputSpec
    output_spec = _ReportOutputSpec

    def _run_interface(self, runtime):
        inputs = self.inputs
        names = ("f_wm", "f_iso", "f_gm", "f_csf")
        run = _run(inputs, {name: getattr(inputs, name) for name in names})
        self._results["out_report"] = _save(
            fractions_figure(run), inputs.label, "fractions", runtime.cwd
        )
        return runtime


class _OdfReportInputSpec(_ViewInputSpec):
    fod_sh = File(exists=True, mandatory=True, desc="fODF as SH coefficients (X, Y, Z, C)")
    sh_basis = traits.Enum(DEFAULT_SH_BASIS, *(b for b in SH_BASES if b != DEFAULT_SH_BASIS),
                           usedefault=True, desc="SH basis of fod_sh")  # fmt: skip
    f_iso = File(exists=True, desc="isotropic fraction, added to the glyphs")
    sphere = traits.Enum(
        DEFAULT_SPHERE,
        *(s for s in NAMED_SPHERES if s != DEFAULT_SPHERE),
        usedefault=True,
        desc="sphere of the fit (and of the glyphs)",
    )


class OdfGlyphReport(SimpleInterface):
    """fODF glyphs of a slice (default: the slice with the most crossing fibres)."""

    input_spec = _OdfReportInputSpec
    output_spec = _ReportOutputSpec

    def _run_interface(self, runtime):
        inputs = self.inputs
        encoding = {"Type": "sh", "SphericalHarmonicBasis": inputs.sh_basis,
                    "Reference": inputs.reference}  # fmt: skip
        parameters = {"Sphere": inputs.sphere, "SphereDirections": len(get_sphere(inputs.sphere))}
        sidecars = {"fod": {"OrientationEncoding": encoding, "Model": {"Parameters": parameters}}}
        files = {"fod": inputs.fod_sh, "f_iso": inputs.f_iso, "peak_values": inputs.peak_values}
        run = _run(inputs, files, sidecars=sidecars)
        figure = odf_figure(run, _view(inputs, run), sphere=inputs.sphere)
        self._results["out_report"] = _save(figure, inputs.label, "odfs", runtime.cwd)
        return runtime


class _PeaksReportInputSpec(_ViewInputSpec):
    peaks_file = File(exists=True, mandatory=True, desc="peaks, MRtrix sh2peaks layout")
    gfa = File(exists=True, desc="background map (GFA)")


class PeaksReport(SimpleInterface):
    """Peak directions of a slice over GFA."""

    input_spec = _PeaksReportInputSpec
    output_spec = _ReportOutputSpec

    def _run_interface(self, runtime):
        inputs = self.inputs
        sidecars = {"peaks": {"OrientationEncoding": {"Reference": inputs.reference}}}
        files = {"peaks": inputs.peaks_file, "peak_values": inputs.peak_values, "gfa": inputs.gfa}
        run = _run(inputs, files, sidecars=sidecars)
        figure = peaks_figure(run, _view(inputs, run))
        self._results["out_report"] = _save(figure, inputs.label, "peaks", runtime.cwd)
        return runtime


class _SnrReportInputSpec(_ReportInputSpec):
    snr = File(exists=True, mandatory=True, desc="SNR map (S0 / sigma)")


class SnrReport(SimpleInterface):
    """The SNR map and the distribution of the noise estimate."""

    input_spec = _SnrReportInputSpec
    output_spec = _ReportOutputSpec

    def _run_interface(self, runtime):
        inputs = self.inputs
        run = _run(inputs, {"snr": inputs.snr})
        self._results["out_report"] = _save(snr_figure(run), inputs.label, "snr", runtime.cwd)
        return runtime
