"""Quality-control figures of a RUMBA-SD reconstruction, from arrays.

Each ``plot_*`` function takes numpy arrays (3D maps in display order, see
:mod:`rumba_bids.reports.outputs`; slices keep their two axes in increasing
order and are drawn with the first axis to the right and the second up) and
returns a :class:`matplotlib.figure.Figure` on an Agg canvas; save it with
:func:`rumba_bids.reports.canvas.save_figure`.  Nothing touches pyplot.

``zooms`` are voxel sizes in mm (display order), so anisotropic voxels keep
their shape.
"""

from __future__ import annotations

import numpy as np

from ..core.kernel import DEFAULT_WM_RESPONSE, AxisymmetricResponse
from ..core.rumba import SIGMA2_BOUNDS
from ..core.sphere import get_sphere
from .canvas import DPI, new_figure
from .glyphs import DEFAULT_SCALE, direction_colours, draw_glyphs, oblique_camera, slice_camera
from .selection import AXIS_NAMES, check_axis, check_region, in_plane_axes, mosaic_indices

#: SNR range the RUMBA-SD noise estimate is confined to (S0 / sigma).
SNR_BOUNDS = (1.0 / np.sqrt(SIGMA2_BOUNDS[1]), 1.0 / np.sqrt(SIGMA2_BOUNDS[0]))
FRACTION_LABELS = {
    "f_wm": "white matter  $f_{WM}$",
    "f_iso": "isotropic  $f_{iso}$",
    "f_gm": "grey matter  $f_{GM}$",
    "f_csf": "CSF  $f_{CSF}$",
}
GLYPH_BACKGROUND = "black"
#: Brightest grey of the background under peak segments.
BACKGROUND_BRIGHTNESS = 0.6
_TITLE_IN = 0.35


def _zooms(zooms) -> np.ndarray:
    zooms = np.ones(3) if zooms is None else np.asarray(zooms, dtype=np.float64)
    if zooms.shape != (3,) or np.any(zooms <= 0):
        raise ValueError(f"zooms must be 3 positive voxel sizes (mm), got {zooms}")
    return zooms


def _check_volume(volume, name: str, shape=None) -> np.ndarray:
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"{name} must be a 3D array, got shape {volume.shape}")
    if shape is not None and volume.shape != tuple(shape):
        raise ValueError(f"{name} has shape {volume.shape}, expected {tuple(shape)}")
    return volume


def tile_slices(volume, axis: int, indices, *, gap: int = 1, fill=np.nan) -> np.ndarray:
    """Slices of ``volume`` side by side, ready for ``imshow(..., origin='lower')``.

    Returns
    -------
    ndarray, shape (B, n * A + (n - 1) * gap)
        Rows follow the slice's second axis, columns its first.
    """
    volume = np.asarray(volume, dtype=np.float64)
    tiles = []
    for number, index in enumerate(indices):
        if number:
            tiles.append(np.full((volume.shape[in_plane_axes(axis)[1]], gap), fill))
        tiles.append(np.take(volume, index, axis=axis).T)
    return np.concatenate(tiles, axis=1)


def _display_range(values, *, low=0.5, high=99.5) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    vmin, vmax = np.percentile(values, [low, high])
    return float(vmin), float(vmax if vmax > vmin else vmin + 1.0)


def _image_axes(ax, *, facecolor="black"):
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_facecolor(facecolor)
    for spine in ax.spines.values():
        spine.set_visible(False)


# --------------------------------------------------------------------------- 1. mask


def plot_mask_contour(
    background, mask, *, zooms=None, n_slices: int = 7, title=None, width_in: float = 10.0
):
    """Brain-mask contour over a background image (mean b0), three orthogonal mosaics.

    Parameters
    ----------
    background : array_like, shape (X, Y, Z)
        Usually the mean b=0 image.
    mask : array_like of bool, shape (X, Y, Z)
    zooms : array_like, shape (3,), optional
        Voxel sizes (mm).
    n_slices : int
        Slices per mosaic row (sagittal, coronal, axial), spread over the mask.
    title : str, optional
    width_in : float
        Figure width (inches); the height follows the image proportions.

    Returns
    -------
    matplotlib.figure.Figure
    """
    background = _check_volume(background, "background").astype(np.float64)
    mask = _check_volume(mask, "mask", background.shape).astype(bool)
    zooms = _zooms(zooms)
    rows = []
    for axis in (0, 1, 2):
        a, b = in_plane_axes(axis)
        indices = mosaic_indices(mask, axis, n_slices)
        image = tile_slices(background, axis, indices)
        outline = np.nan_to_num(tile_slices(mask, axis, indices, fill=0.0))
        rows.append((axis, indices, image, outline, zooms[a], zooms[b]))
    label_in = 0.22
    heights = [width_in * r[2].shape[0] * r[5] / (r[2].shape[1] * r[4]) for r in rows]
    top_in = _TITLE_IN if title else 0.05
    height_in = round(DPI * (top_in + sum(heights) + label_in * len(rows))) / DPI
    heights = [h + (height_in - top_in - sum(heights) - label_in * len(rows)) / 3 for h in heights]
    figure = new_figure(width_in, height_in, facecolor="black")
    vmin, vmax = _display_range(background[mask] if mask.any() else background)
    y = height_in - top_in
    for (axis, indices, image, outline, za, zb), h in zip(rows, heights):
        y -= label_in
        figure.text(
            0.005,
            (y + 0.04) / height_in,
            f"{AXIS_NAMES[axis]}  slices {', '.join(map(str, indices))}",
            color="white",
            fontsize=8,
        )
        y -= h
        ax = figure.add_axes((0, y / height_in, 1, h / height_in))
        _image_axes(ax)
        extent = (0, image.shape[1] * za, 0, image.shape[0] * zb)
        ax.imshow(
            image,
            cmap="gray",
            vmin=vmin,
            vmax=vmax,
            origin="lower",
            extent=extent,
            interpolation="nearest",
        )
        if outline.any():
            xs = (np.arange(outline.shape[1]) + 0.5) * za
            ys = (np.arange(outline.shape[0]) + 0.5) * zb
            ax.contour(xs, ys, outline, levels=[0.5], colors=["#ff3030"], linewidths=1.0)
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
    if title:
        figure.suptitle(title, color="white", fontsize=10, y=1 - 0.05 / height_in, va="top")
    return figure


# --------------------------------------------------------------------------- 2. response


def response_signal(directions, *, evals=None, bvalue=None, zonal_coefs=None, S0=None):
    """Normalised signal ``S/S0`` of a fibre response along x, at given directions.

    Parameters
    ----------
    directions : array_like, shape (..., 3)
        Unit vectors; the fibre lies along x.
    evals : array_like, shape (3,), optional
        Tensor eigenvalues (mm^2/s) along x, y, z (the tensor response).
    bvalue : float, optional
        b-value (s/mm^2) of the tensor response.
    zonal_coefs : array_like, optional
        Zonal SH coefficients of an axially symmetric response (instead of
        ``evals``), in the unit of ``S0``.
    S0 : float, optional
        b=0 signal of the zonal response.

    Returns
    -------
    ndarray, shape (...)

    Examples
    --------
    >>> float(response_signal([1.0, 0, 0], evals=(1e-3, 0, 0), bvalue=1000))
    0.36787944117144233
    """
    directions = np.asarray(directions, dtype=np.float64)
    if zonal_coefs is not None:
        if S0 is None or not S0 > 0:
            raise ValueError("a zonal response needs its b=0 signal S0 > 0")
        return AxisymmetricResponse(zonal_coefs, S0).on_cosines(directions[..., 0]) / S0
    if evals is None or bvalue is None:
        raise ValueError("give evals and bvalue (tensor response) or zonal_coefs and S0")
    evals = np.asarray(evals, dtype=np.float64)
    return np.exp(-float(bvalue) * (directions**2 @ evals))


def _format_evals(evals) -> str:
    return "(" + ", ".join(f"{1e3 * v:.2f}" for v in evals) + r") $\times 10^{-3}$ mm$^2$/s"


def plot_response(
    evals,
    *,
    bvalues,
    zonal_coefs=None,
    S0=None,
    method: str | None = None,
    n_voxels: int | None = None,
    default_evals=DEFAULT_WM_RESPONSE,
    title=None,
):
    """The white-matter response used, as a 3D glyph beside the default response.

    The glyphs are the normalised signal ``S/S0`` of a fibre along x (red) at
    the highest b-value: a disc perpendicular to the fibre, thinner for a
    more anisotropic response.  A third panel draws both signals against the
    angle to the fibre for every shell.

    Parameters
    ----------
    evals : array_like, shape (3,) or (n_shells, 3)
        Eigenvalues (mm^2/s) of the response (for a zonal response: of the
        mean tensor of the voxels it came from, shown as text only).
    bvalues : sequence of float
        b-values (s/mm^2) of the shells, matching the rows of a 2D ``evals``.
    zonal_coefs : array_like, optional
        Zonal SH coefficients of the response actually used (recursive
        method), with its ``S0``.
    S0 : float, optional
    method : str, optional
        How the response was obtained (shown in the title).
    n_voxels : int, optional
        Voxels the estimate is based on.
    default_evals : array_like, shape (3,)
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    evals = np.atleast_2d(np.asarray(evals, dtype=np.float64))
    bvalues = [float(b) for b in np.atleast_1d(bvalues)]
    if evals.shape[-1] != 3 or not bvalues:
        raise ValueError(f"evals must be (3,) or (n_shells, 3) and bvalues non-empty: {evals}")
    if len(evals) not in (1, len(bvalues)):
        raise ValueError(f"{len(evals)} rows of eigenvalues for {len(bvalues)} shells")
    rows = np.broadcast_to(evals, (len(bvalues), 3))
    default_evals = np.asarray(default_evals, dtype=np.float64)
    top = int(np.argmax(bvalues))
    sphere = get_sphere("repulsion724")

    def used(directions, shell):
        if zonal_coefs is not None:
            return response_signal(directions, zonal_coefs=zonal_coefs, S0=S0)
        return response_signal(directions, evals=rows[shell], bvalue=bvalues[shell])

    def default(directions, shell):
        return response_signal(directions, evals=default_evals, bvalue=bvalues[shell])

    figure = new_figure(11.0, 3.8)
    gs = figure.add_gridspec(1, 3, left=0.02, right=0.98, bottom=0.14, top=0.8, wspace=0.25)
    camera = oblique_camera(azimuth=30.0, elevation=20.0)
    name = method or "estimated"
    panels = (
        (f"response used ({name})", used, rows[top] if zonal_coefs is None else evals[0]),
        ("default response", default, default_evals),
    )
    for column, (label, signal, shown_evals) in enumerate(panels):
        ax = figure.add_subplot(gs[0, column])
        _image_axes(ax, facecolor=GLYPH_BACKGROUND)
        amplitude = np.clip(signal(sphere.vertices, top), 0.0, None)[None]
        draw_glyphs(
            ax, amplitude, np.zeros((1, 3)), sphere, camera=camera, scale=1.0, normalise=False
        )
        ax.set_xlim(-1.05, 1.05)
        ax.set_ylim(-1.05, 1.05)
        ax.set_aspect("equal")
        text = f"{label}\n" + r"$\lambda$ = " + _format_evals(shown_evals)
        ax.set_title(text, fontsize=8)
    ax = figure.add_subplot(gs[0, 2])
    angles = np.linspace(0.0, 90.0, 91)
    directions = np.stack(
        [np.cos(np.radians(angles)), np.sin(np.radians(angles)), np.zeros_like(angles)], axis=-1
    )
    colours = ["C0", "C1", "C2", "C3", "C4"]
    for shell, bvalue in enumerate(bvalues):
        colour = colours[shell % len(colours)]
        if zonal_coefs is None or shell == top:
            ax.plot(angles, used(directions, shell), color=colour, label=f"used, b={bvalue:g}")
        ax.plot(
            angles, default(directions, shell), "--", color=colour, label=f"default, b={bvalue:g}"
        )
    ax.set_xlabel("angle to the fibre (degrees)", fontsize=8)
    ax.set_ylabel("S / S0", fontsize=8)
    ax.set_xlim(0, 90)
    ax.set_ylim(0, None)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("signal profile", fontsize=8)
    facts = []
    if method:
        facts.append(f"method: {method}")
    if n_voxels:
        facts.append(f"{n_voxels} voxels")
    ratio = evals[:, 1] / evals[:, 0]
    facts.append(r"$\lambda_2/\lambda_1$ = " + ", ".join(f"{r:.2f}" for r in ratio))
    if S0 is not None:
        facts.append(f"S0 = {S0:.4g}")
    figure.text(0.5, 0.03, "   ".join(facts), ha="center", fontsize=8)
    figure.suptitle(title or "White-matter response function", fontsize=10)
    return figure


# --------------------------------------------------------------------------- 3. fractions


def plot_fractions(
    fractions: dict, *, mask=None, zooms=None, indices=None, title=None, panel_in: float = 2.6
):
    """Volume-fraction maps side by side with colour bars (axial and coronal slices).

    Parameters
    ----------
    fractions : dict
        Name -> 3D map, in display order; known names (``f_wm``, ``f_iso``,
        ``f_gm``, ``f_csf``) get their tissue label.  ``None`` values are
        skipped (e.g. GM when it was not fitted).
    mask : array_like of bool, optional
        Used to place the slices (default: where any fraction is positive).
    zooms : array_like, shape (3,), optional
    indices : dict, optional
        ``{axis: index}`` of the slices to show (default: through the mask centre).
    title : str, optional
    panel_in : float
        Width of one column (inches).

    Returns
    -------
    matplotlib.figure.Figure
    """
    from .selection import central_index

    maps = {name: np.asarray(value) for name, value in fractions.items() if value is not None}
    if not maps:
        raise ValueError("no fraction map to plot")
    shape = next(iter(maps.values())).shape
    for name, volume in maps.items():
        _check_volume(volume, name, shape)
    zooms = _zooms(zooms)
    if mask is None:
        mask = np.any([np.nan_to_num(v) > 0 for v in maps.values()], axis=0)
    mask = _check_volume(mask, "mask", shape).astype(bool)
    axes_shown = (2, 1)
    indices = dict(indices or {})
    for axis in axes_shown:
        indices.setdefault(axis, central_index(mask, axis))
    figure = new_figure(panel_in * len(maps) + 0.3, 6.4)
    left = 0.3 / (panel_in * len(maps) + 0.3)
    gs = figure.add_gridspec(
        3, len(maps), height_ratios=[1, 1, 0.06], left=left, right=0.98, bottom=0.08,
        top=0.86, hspace=0.18, wspace=0.08,
    )  # fmt: skip
    for column, (name, volume) in enumerate(maps.items()):
        image = None
        for row, axis in enumerate(axes_shown):
            ax = figure.add_subplot(gs[row, column])
            _image_axes(ax)
            a, b = in_plane_axes(axis)
            plane = np.take(volume, indices[axis], axis=axis).T
            extent = (0, plane.shape[1] * zooms[a], 0, plane.shape[0] * zooms[b])
            image = ax.imshow(
                plane, cmap="viridis", vmin=0.0, vmax=1.0, origin="lower", extent=extent,
                interpolation="nearest",
            )  # fmt: skip
            if column == 0:
                ax.set_ylabel(f"{AXIS_NAMES[axis]} {indices[axis]}", fontsize=8)
            inside = volume[mask]
            if row == 0:
                mean = float(np.nanmean(inside)) if inside.size else float("nan")
                ax.set_title(f"{FRACTION_LABELS.get(name, name)}\nmean {mean:.2f}", fontsize=9)
        bar_ax = figure.add_subplot(gs[2, column])
        bar = figure.colorbar(image, cax=bar_ax, orientation="horizontal")
        bar.ax.tick_params(labelsize=7)
    figure.suptitle(title or "Volume fractions", fontsize=10)
    return figure


# --------------------------------------------------------------------------- 4. glyphs


def _slice_centres(shape2d, axis: int, zooms) -> np.ndarray:
    """3D centres (A, B, 3), in mm, of the voxels of a slice along ``axis``."""
    a, b = in_plane_axes(axis)
    grid_a, grid_b = np.meshgrid(np.arange(shape2d[0]), np.arange(shape2d[1]), indexing="ij")
    centres = np.zeros(shape2d + (3,))
    centres[..., a] = grid_a * zooms[a]
    centres[..., b] = grid_b * zooms[b]
    return centres


def _panel_size(region, axis, zooms, *, pixels, minimum, maximum):
    a, b = in_plane_axes(axis)
    width_mm = (region[0].stop - region[0].start) * zooms[a]
    height_mm = (region[1].stop - region[1].start) * zooms[b]
    px_per_mm = np.clip(pixels / max(width_mm, height_mm), minimum, maximum)
    # whole pixels, so that saved images have exactly the figure's size
    return round(width_mm * px_per_mm) / DPI, round(height_mm * px_per_mm) / DPI


def plot_odf_glyphs(
    odfs,
    sphere,
    *,
    axis=2,
    region=None,
    mask=None,
    zooms=None,
    scale: float = DEFAULT_SCALE,
    normalise: bool = True,
    title=None,
    pixels: int = 900,
):
    """fODF glyphs of one slice: shaded 3D surfaces coloured by direction.

    Parameters
    ----------
    odfs : array_like, shape (A, B, M)
        ODF amplitudes of a slice on the M vertices of ``sphere`` (e.g. a
        slice of :attr:`RumbaFit.combined_odf_iso`); directions in the frame
        of the array's axes.
    sphere : Sphere or name
    axis : int or str
        Axis the slice is taken along (0/'sagittal', 1/'coronal', 2/'axial').
    region : (slice, slice), optional
        Window of the slice to draw (default: the whole slice).
    mask : array_like of bool, shape (A, B), optional
        Voxels to draw (default: every voxel with a non-zero ODF).
    zooms : array_like, shape (3,), optional
    scale : float
        Glyph radius in voxels (of the smallest in-plane voxel size).
    normalise : bool
        Scale each glyph to its own maximum (as DIPY's ``odf_slicer(norm=True)``).
    title : str, optional
    pixels : int
        Approximate size (pixels) of the longer side of the glyph panel.

    Returns
    -------
    matplotlib.figure.Figure
    """
    axis = check_axis(axis)
    odfs = np.asarray(odfs)
    if odfs.ndim != 3:
        raise ValueError(f"odfs must be a slice of ODFs (A, B, M), got shape {odfs.shape}")
    zooms = _zooms(zooms)
    region = check_region(region, odfs.shape[:2])
    if mask is None:
        mask = np.any(odfs > 0, axis=-1)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != odfs.shape[:2]:
        raise ValueError(f"mask shape {mask.shape} does not match the slice {odfs.shape[:2]}")
    a, b = in_plane_axes(axis)
    centres = _slice_centres(odfs.shape[:2], axis, zooms)[region]
    selected = mask[region]
    width_in, height_in = _panel_size(region, axis, zooms, pixels=pixels, minimum=4, maximum=80)
    top_in = _TITLE_IN if title else 0.0
    figure = new_figure(width_in, height_in + top_in, facecolor=GLYPH_BACKGROUND)
    ax = figure.add_axes((0, 0, 1, height_in / (height_in + top_in)))
    _image_axes(ax, facecolor=GLYPH_BACKGROUND)
    radius = scale * min(zooms[a], zooms[b])
    draw_glyphs(
        ax,
        odfs[region][selected],
        centres[selected],
        sphere,
        camera=slice_camera(axis),
        scale=radius,
        normalise=normalise,
    )
    ax.set_xlim((region[0].start - 0.5) * zooms[a], (region[0].stop - 0.5) * zooms[a])
    ax.set_ylim((region[1].start - 0.5) * zooms[b], (region[1].stop - 0.5) * zooms[b])
    if title:
        figure.suptitle(title, color="white", fontsize=9, y=1 - 0.04 / (height_in + top_in))
    return figure


# --------------------------------------------------------------------------- 5. peaks


def plot_peaks(
    directions,
    values,
    *,
    axis=2,
    background=None,
    mask=None,
    zooms=None,
    region=None,
    highlight=None,
    title=None,
    pixels: int = 800,
):
    """Peak directions of one slice as direction-coloured segments over FA/GFA.

    Segments are the in-plane projections of the peaks, centred on their
    voxel; a peak as large as the median largest peak of the slice spans the
    voxel, smaller ones are proportionally shorter.

    Parameters
    ----------
    directions : array_like, shape (A, B, P, 3)
        Unit peak directions (NaN where absent), frame of the array's axes.
    values : array_like, shape (A, B, P)
        Peak amplitudes (0 where absent).
    axis : int or str
    background : array_like, shape (A, B), optional
        Grey-scale map under the peaks (e.g. GFA).
    mask : array_like of bool, shape (A, B), optional
        Voxels to draw.
    zooms : array_like, shape (3,), optional
    region : (slice, slice), optional
        Window to show (default: whole slice).
    highlight : (slice, slice), optional
        A window to outline (e.g. the glyph figure's).
    title : str, optional
    pixels : int
        Approximate size (pixels) of the longer side.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.collections import LineCollection
    from matplotlib.patches import Rectangle

    axis = check_axis(axis)
    directions = np.asarray(directions, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    if directions.ndim != 4 or directions.shape[-1] != 3 or directions.shape[:3] != values.shape:
        raise ValueError(
            "directions must be (A, B, P, 3) and values (A, B, P), got "
            f"{directions.shape} and {values.shape}"
        )
    zooms = _zooms(zooms)
    shape2d = values.shape[:2]
    region = check_region(region, shape2d)
    a, b = in_plane_axes(axis)
    present = np.isfinite(directions).all(axis=-1) & (np.nan_to_num(values) > 0)
    if mask is not None:
        present &= np.asarray(mask, dtype=bool)[..., None]
    width_in, height_in = _panel_size(region, axis, zooms, pixels=pixels, minimum=3, maximum=40)
    top_in = _TITLE_IN if title else 0.0
    figure = new_figure(width_in, height_in + top_in, facecolor="black")
    ax = figure.add_axes((0, 0, 1, height_in / (height_in + top_in)))
    _image_axes(ax)
    if background is not None:
        background = np.asarray(background, dtype=np.float64)
        if background.shape != shape2d:
            raise ValueError(f"background shape {background.shape} does not match {shape2d}")
        extent = (-0.5 * zooms[a], (shape2d[0] - 0.5) * zooms[a])
        extent += (-0.5 * zooms[b], (shape2d[1] - 0.5) * zooms[b])
        # darker than full range, so that the coloured segments stand out
        vmax = _display_range(background, low=0, high=99.5)[1] / BACKGROUND_BRIGHTNESS
        ax.imshow(background.T, cmap="gray", vmin=0, vmax=vmax, origin="lower", extent=extent,
                  interpolation="nearest")  # fmt: skip
    voxel_a, voxel_b, peak = np.nonzero(present)
    if len(voxel_a):
        # the median largest peak (and anything larger) spans the voxel
        largest = np.where(present, values, 0.0).max(axis=-1)
        reference = np.median(largest[largest > 0])
        half_length = 0.5 * min(zooms[a], zooms[b]) * np.clip(values[present] / reference, 0, 1)
        vectors = directions[voxel_a, voxel_b, peak]
        half = vectors[:, [a, b]] * half_length[:, None]
        centre = np.stack([voxel_a * zooms[a], voxel_b * zooms[b]], axis=-1)
        segments = np.stack([centre - half, centre + half], axis=1)
        lines = LineCollection(
            segments, colors=direction_colours(vectors), linewidths=1.6,
            capstyle="round",
        )  # fmt: skip
        ax.add_collection(lines, autolim=False)
    if highlight is not None:
        box = check_region(highlight, shape2d)
        ax.add_patch(
            Rectangle(
                ((box[0].start - 0.5) * zooms[a], (box[1].start - 0.5) * zooms[b]),
                (box[0].stop - box[0].start) * zooms[a],
                (box[1].stop - box[1].start) * zooms[b],
                fill=False,
                edgecolor="white",
                linestyle="--",
                linewidth=1.0,
            )  # fmt: skip
        )
    ax.set_xlim((region[0].start - 0.5) * zooms[a], (region[0].stop - 0.5) * zooms[a])
    ax.set_ylim((region[1].start - 0.5) * zooms[b], (region[1].stop - 0.5) * zooms[b])
    if title:
        figure.suptitle(title, color="white", fontsize=9, y=1 - 0.04 / (height_in + top_in))
    return figure


# --------------------------------------------------------------------------- 6. SNR


def plot_snr(snr, mask, *, zooms=None, n_slices: int = 4, bounds=SNR_BOUNDS, title=None):
    """The estimated SNR map and the distribution of the per-voxel noise estimate.

    Parameters
    ----------
    snr : array_like, shape (X, Y, Z)
        S0 / sigma of every fitted voxel (0 elsewhere).
    mask : array_like of bool, shape (X, Y, Z)
        Fitted voxels.
    zooms : array_like, shape (3,), optional
    n_slices : int
        Axial slices of the map.
    bounds : (float, float)
        SNR range the estimate is confined to (marked on the histogram;
        voxels piled up at a bound mean the estimate saturated).
    title : str, optional

    Returns
    -------
    matplotlib.figure.Figure
    """
    snr = _check_volume(snr, "snr").astype(np.float64)
    mask = _check_volume(mask, "mask", snr.shape).astype(bool) & np.isfinite(snr) & (snr > 0)
    zooms = _zooms(zooms)
    figure = new_figure(11.0, 4.2)
    gs = figure.add_gridspec(
        1, 2, width_ratios=[1.7, 1.0], left=0.02, right=0.94, bottom=0.14, top=0.84, wspace=0.12
    )
    ax = figure.add_subplot(gs[0, 0])
    _image_axes(ax)
    indices = mosaic_indices(mask, 2, n_slices)
    tiled = tile_slices(np.where(mask, snr, np.nan), 2, indices)
    low, high = bounds
    image = ax.imshow(
        tiled, cmap="magma", vmin=0.0, vmax=high, origin="lower", interpolation="nearest",
        extent=(0, tiled.shape[1] * zooms[0], 0, tiled.shape[0] * zooms[1]),
    )  # fmt: skip
    ax.set_title(f"SNR = S0/sigma, axial slices {', '.join(map(str, indices))}", fontsize=8)
    bar = figure.colorbar(image, ax=ax, fraction=0.03, pad=0.01)
    bar.ax.tick_params(labelsize=7)
    hist = figure.add_subplot(gs[0, 1])
    sigma = 1.0 / snr[mask]
    if sigma.size:
        edges = np.linspace(0.0, 1.0 / low * 1.05, 60)
        hist.hist(np.clip(sigma, 0, edges[-1]), bins=edges, color="#4060c0")
        median = float(np.median(snr[mask]))
        hist.axvline(1.0 / median, color="black", linewidth=1.0)
        tolerance = 1e-3
        at_low = float(np.mean(snr[mask] <= low * (1 + tolerance)))
        at_high = float(np.mean(snr[mask] >= high * (1 - tolerance)))
        summary = (
            f"{sigma.size} voxels, median SNR {median:.1f}\n"
            f"{100 * at_low:.1f}% at SNR {low:g}, {100 * at_high:.1f}% at SNR {high:g}"
        )
    else:
        summary = "no fitted voxel"
    for bound in bounds:
        hist.axvline(1.0 / bound, color="grey", linestyle=":", linewidth=1.0)
    hist.set_xlabel("noise estimate sigma / S0", fontsize=8)
    hist.set_ylabel("voxels", fontsize=8)
    hist.yaxis.set_label_position("right")
    hist.yaxis.tick_right()
    hist.tick_params(labelsize=7)
    hist.set_title(summary, fontsize=8)
    figure.suptitle(title or "Estimated signal-to-noise ratio", fontsize=10)
    return figure
