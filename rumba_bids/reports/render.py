"""The figures of one run, made from its output files.

Each ``*_figure(run, ...)`` function loads what it needs from a
:class:`~rumba_bids.reports.outputs.RunOutputs`, calls the array-level
``plot_*`` function of :mod:`rumba_bids.reports.figures` and returns the
figure with its caption.  :func:`render_figures` saves them under BIDS-like
names (``<run>_model-rumba_desc-odfs_dwimap.png``) and carries on past a
figure that cannot be made, reporting why.

Slices and regions a user picks are in the file's voxel indices (what a
viewer such as FSLeyes or MRView shows); internally they are converted to
the display (RAS) order.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.kernel import DEFAULT_WM_RESPONSE
from ..core.sphere import NAMED_SPHERES, as_sphere
from .canvas import save_figure
from .figures import (
    plot_fractions,
    plot_mask_contour,
    plot_odf_glyphs,
    plot_peaks,
    plot_response,
    plot_snr,
)
from .outputs import RunOutputs
from .selection import (
    AXIS_NAMES,
    MAX_GLYPH_SIDE,
    bounding_region,
    check_axis,
    check_region,
    glyph_region,
    in_plane_axes,
    most_crossing_slice,
)

logger = logging.getLogger("rumba_bids.reports")

#: Figures of a run, in page order.
FIGURES = ("mask", "response", "fractions", "odfs", "peaks", "snr")
FIGURE_TITLES = {
    "mask": "Brain mask",
    "response": "Response function",
    "fractions": "Volume fractions",
    "odfs": "fODF glyphs",
    "peaks": "Peak directions",
    "snr": "Noise and SNR",
}
SOURCE_AXIS_LETTERS = "ijk"
#: b-value assumed for drawing a tensor response when the shells are not recorded.
FALLBACK_BVALUE = 1000.0


def figure_name(label: str, figure: str, *, extension: str = ".png") -> str:
    """File name of figure ``figure`` of run ``label``.

    Examples
    --------
    >>> figure_name("sub-01_ses-1", "odfs")
    'sub-01_ses-1_model-rumba_desc-odfs_dwimap.png'
    >>> figure_name("sub-01", "mask", extension=".svg")
    'sub-01_desc-brain_mask.svg'
    """
    if figure not in FIGURES:
        raise ValueError(f"unknown figure {figure!r}; choose from {', '.join(FIGURES)}")
    if figure == "mask":
        return f"{label}_desc-brain_mask{extension}"
    return f"{label}_model-rumba_desc-{figure}_dwimap{extension}"


@dataclass(frozen=True)
class SliceView:
    """Where the glyph and peak figures look: a display slice and a window in it."""

    axis: int
    index: int
    region: tuple
    n_crossing: int

    def describe(self, run: RunOutputs) -> str:
        """The slice and window in the file's voxel indices, e.g. ``axial slice k=14``."""
        frame = run.frame
        letters = {a: SOURCE_AXIS_LETTERS[frame.source_axis(a)] for a in range(3)}
        index = frame.convert_index(self.axis, self.index)
        ranges = []
        for axis, part in zip(in_plane_axes(self.axis), self.region):
            start, stop = frame.convert_range(axis, part.start, part.stop)
            ranges.append(f"{letters[axis]}={start}:{stop}")
        return (
            f"{AXIS_NAMES[self.axis]} slice {letters[self.axis]}={index}, "
            f"region {', '.join(ranges)} (file voxel indices)"
        )


def choose_view(
    run: RunOutputs, *, axis=2, index=None, region=None, max_side: int = MAX_GLYPH_SIDE
) -> SliceView:
    """The slice (default: most crossing fibres) and glyph window (default: around them).

    Parameters
    ----------
    run : RunOutputs
    axis : int or str
        Display axis: 0/'sagittal', 1/'coronal', 2/'axial'.
    index : int, optional
        Slice index in the file's voxel indices along the file axis shown
        as ``axis``.
    region : (slice, slice), optional
        Window of the slice, in file voxel indices of the two in-plane axes
        (horizontal then vertical axis of the figure).
    max_side : int
        Largest side of the default window (voxels).
    """
    axis = check_axis(axis)
    frame = run.frame
    mask = run.mask()
    n_peaks = run.n_peaks()
    if index is None:
        index = most_crossing_slice(
            n_peaks if n_peaks is not None else mask.astype(int), axis, mask=mask
        )
    else:
        if not 0 <= int(index) < frame.shape[axis]:
            raise ValueError(
                f"slice {index} is outside the image: the {AXIS_NAMES[axis]} axis has "
                f"{frame.shape[axis]} slices (0 to {frame.shape[axis] - 1})"
            )
        index = frame.convert_index(axis, int(index))
    mask2d = np.take(mask, index, axis=axis)
    peaks2d = None if n_peaks is None else np.take(n_peaks, index, axis=axis)
    if region is None:
        window = glyph_region(peaks2d, mask2d, max_side=max_side)
    else:
        region = check_region(region, mask2d.shape)
        window = tuple(
            slice(*frame.convert_range(a, part.start, part.stop))
            for a, part in zip(in_plane_axes(axis), region)
        )
    crossing = 0 if peaks2d is None else int(((peaks2d >= 2) & mask2d)[window].sum())
    return SliceView(axis=axis, index=int(index), region=window, n_crossing=crossing)


# --------------------------------------------------------------------------- one per figure


def mask_figure(run: RunOutputs, *, bids_dir=None):
    """Mask contour over the mean b0 (or over GFA / f_wm when the DWI is unreachable)."""
    mask = run.mask()
    background = run.mean_b0(bids_dir)
    what = "the mean b=0 image"
    if background is None:
        for name, label in (("gfa", "the fODF's GFA"), ("f_wm", "the WM fraction")):
            background = run.volume(name)
            if background is not None:
                what = f"{label} (the source DWI series was not found; give --bids-dir)"
                break
    if background is None:
        raise ValueError("no background image: neither the source DWI nor GFA/f_wm were found")
    figure = plot_mask_contour(background, mask, zooms=run.frame.zooms, title=run.label)
    n_voxels = int(mask.sum())
    volume_ml = n_voxels * float(np.prod(run.frame.zooms)) / 1000.0
    caption = (
        f"Brain mask ({n_voxels} voxels, {volume_ml:.0f} mL) outlined in red over {what}: "
        "sagittal, coronal and axial slices spread over the mask. The outline should follow "
        "the brain's edge, without holes or pieces of scalp."
    )
    description = run.sidecar("mask").get("Description")
    if description:
        caption += f" {description}."
    return figure, caption


def _response_bvalues(run: RunOutputs, response: dict, evals) -> tuple[list, bool]:
    shells = response.get("Shells")
    if shells and (np.ndim(evals) == 1 or len(shells) == len(evals)):
        return [float(b) for b in shells], True
    shells = run.parameters.get("Shells")
    if shells and np.ndim(evals) == 1:
        return [float(b) for b in shells], True
    return [FALLBACK_BVALUE], False


def response_figure(run: RunOutputs):
    """The response used beside the default one."""
    response = run.response
    evals = response.get("Eigenvalues")
    values = response.get("Values")
    if evals is None and response.get("Type", "eigen") == "eigen" and values is not None:
        evals = np.asarray(values, dtype=float)[..., :3]
    if evals is None:
        raise ValueError("no response description (response JSON or sidecar ResponseFunction)")
    evals = np.asarray(evals, dtype=float)
    zonal = response.get("ZonalCoefficients")
    if zonal is None and response.get("Type") == "zsh":
        zonal = values
    bvalues, known = _response_bvalues(run, response, evals)
    if zonal is not None:
        bvalues = [max(bvalues)]
    method = response.get("Method")
    figure = plot_response(
        evals,
        bvalues=bvalues,
        zonal_coefs=zonal,
        S0=response.get("S0"),
        method=method,
        n_voxels=response.get("NVoxels"),
        title=f"{run.label}: white-matter response",
    )
    caption = (
        "Signal of the white-matter fibre response (S/S0, fibre along x) used for the "
        f"deconvolution ({method or 'unknown method'}), beside the default response "
        f"({', '.join(f'{1e3 * v:.1f}' for v in DEFAULT_WM_RESPONSE)}) x 10^-3 mm^2/s, and "
        "the signal against the angle to the fibre. A good single-fibre response has "
        "lambda2/lambda1 of about 0.1-0.25; a much fatter disc than the default suggests "
        "the estimate picked up crossing or grey-matter voxels."
    )
    if not known:
        caption += f" The b-values were not recorded: drawn at b={FALLBACK_BVALUE:g} s/mm^2."
    return figure, caption


def fractions_figure(run: RunOutputs):
    """WM and isotropic fractions (plus GM and CSF when fitted)."""
    parameters = run.parameters
    maps = {"f_wm": run.volume("f_wm"), "f_iso": run.volume("f_iso")}
    if parameters.get("GMCompartment", "f_gm" in run.files):
        maps["f_gm"] = run.volume("f_gm")
    if parameters.get("CSFCompartment", "f_csf" in run.files):
        maps["f_csf"] = run.volume("f_csf")
    maps = {name: value for name, value in maps.items() if value is not None}
    if not maps:
        raise ValueError("no volume-fraction map found")
    figure = plot_fractions(
        maps, mask=run.mask(), zooms=run.frame.zooms, title=f"{run.label}: volume fractions"
    )
    caption = (
        "Signal fractions of white matter (the integral of the fODF) and of the isotropic "
        "compartments"
        + (" (grey matter and CSF shown separately)" if len(maps) > 2 else "")
        + ", axial and coronal slices through the centre of the brain mask. White matter "
        "should be bright in the deep white matter and the isotropic fraction in the "
        "ventricles and at the cortex."
    )
    return figure, caption


def odf_figure(run: RunOutputs, view: SliceView, *, sphere=None):
    """fODF glyphs (combined with the isotropic part, normalised) in the chosen window."""
    if sphere is None:
        # the fit's sphere when it is a named one (a custom vertex file may be gone)
        fitted = run.parameters.get("Sphere")
        sphere = fitted if fitted in NAMED_SPHERES else None
    sphere = as_sphere(sphere)
    odfs = run.odf_slice(view.axis, view.index, sphere)
    mask2d = np.take(run.mask(), view.index, axis=view.axis)
    figure = plot_odf_glyphs(
        odfs,
        sphere,
        axis=view.axis,
        region=view.region,
        mask=mask2d,
        zooms=run.frame.zooms,
        title=f"{run.label}: {view.describe(run)}",
    )
    caption = (
        f"fODF glyphs, {view.describe(run)}: each voxel's fODF plus its isotropic fraction, "
        "scaled to its maximum, coloured by direction (red: left-right, green: "
        "anterior-posterior, blue: inferior-superior). "
        + (
            f"The slice was chosen for its crossing fibres ({view.n_crossing} voxels with 2 or "
            "more peaks in the window). "
            if view.n_crossing
            else ""
        )
        + "Sharp lobes along the expected tracts and round glyphs in CSF indicate a good "
        "fit; other regions: rumba-bids-plot --region."
    )
    return figure, caption


def peaks_figure(run: RunOutputs, view: SliceView):
    """Peak directions of the glyph slice over GFA, the glyph window outlined."""
    directions, values = run.peaks()
    if directions is None:
        raise ValueError("no peak image found")
    axis, index = view.axis, view.index
    background = run.volume("gfa")
    mask = run.mask()
    mask2d = np.take(mask, index, axis=axis)
    box = bounding_region(mask2d)
    # the brain's bounding box in this slice, one voxel wider, and the glyph window
    region = tuple(
        slice(
            max(0, min(part.start, glyphs.start) - 1), min(size, max(part.stop, glyphs.stop) + 1)
        )
        for part, glyphs, size in zip(box, view.region, mask2d.shape)
    )
    slice_text = view.describe(run).split(", region")[0]
    figure = plot_peaks(
        np.take(directions, index, axis=axis),
        np.take(values, index, axis=axis),
        axis=axis,
        background=None if background is None else np.take(background, index, axis=axis),
        mask=mask2d,
        zooms=run.frame.zooms,
        region=region,
        highlight=view.region,
        title=f"{run.label}: peaks, {slice_text}",
    )
    caption = (
        "fODF peak directions of the same slice as line segments (in-plane projection, "
        "length proportional to the peak amplitude, colours as for the glyphs) over the "
        "GFA of the fODF; the dashed box is the glyph window."
    )
    return figure, caption


def snr_figure(run: RunOutputs):
    """The SNR map and the distribution of the noise estimate."""
    snr = run.volume("snr")
    if snr is None:
        raise ValueError("no SNR image found")
    figure = plot_snr(snr, run.mask(), zooms=run.frame.zooms, title=f"{run.label}: noise")
    caption = (
        "RUMBA-SD estimates the noise level of every voxel along with its fODF. Left: "
        "S0/sigma in axial slices; right: the distribution of sigma/S0 with its median "
        "(solid) and the range the estimate is confined to (dotted, SNR 8 to 80). Many "
        "voxels at a bound mean the noise model or the mask needs attention."
    )
    return figure, caption


# --------------------------------------------------------------------------- all of a run


@dataclass(frozen=True)
class RenderedFigure:
    """A figure written to disk, or the reason it could not be made."""

    name: str
    title: str
    path: Path | None
    caption: str
    error: str | None = None


def render_figures(
    run: RunOutputs,
    out_dir,
    *,
    figures=FIGURES,
    bids_dir=None,
    view: SliceView | None = None,
    sphere=None,
    extension: str = ".png",
) -> list[RenderedFigure]:
    """Make and save the figures of one run; a failing figure is reported, not raised.

    Parameters
    ----------
    run : RunOutputs
    out_dir : path
        Folder of the figures (``<output_dir>/sub-<label>/figures`` in the app).
    figures : sequence of str
        Names from :data:`FIGURES`.
    bids_dir : path, optional
        Raw dataset, to find the source DWI (mean b0) when the sidecars'
        ``Sources`` do not lead there.
    view : SliceView, optional
        Glyph/peak slice and window (default :func:`choose_view`).
    sphere : sphere-like, optional
        Directions of the glyphs (default: the fit's sphere).
    extension : {'.png', '.svg', '.pdf'}

    Returns
    -------
    list of RenderedFigure
    """
    unknown = [name for name in figures if name not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figure(s) {unknown}; choose from {', '.join(FIGURES)}")
    out_dir = Path(out_dir)
    rendered = []
    for name in figures:
        title = FIGURE_TITLES[name]
        try:
            if name in ("odfs", "peaks") and view is None:
                view = choose_view(run)
            if name == "mask":
                figure, caption = mask_figure(run, bids_dir=bids_dir)
            elif name == "odfs":
                figure, caption = odf_figure(run, view, sphere=sphere)
            elif name == "peaks":
                figure, caption = peaks_figure(run, view)
            else:
                figure, caption = {
                    "response": response_figure,
                    "fractions": fractions_figure,
                    "snr": snr_figure,
                }[name](run)
            path = save_figure(figure, out_dir / figure_name(run.label, name, extension=extension))
        except Exception as error:  # one broken output must not cost the whole report
            logger.warning("%s: the %s figure failed: %s", run.label, name, error)
            logger.debug("%s", traceback.format_exc())
            rendered.append(
                RenderedFigure(name, title, None, "", error=f"{type(error).__name__}: {error}")
            )
            continue
        rendered.append(RenderedFigure(name, title, path, caption))
    return rendered
