"""Which slices and regions to show: mosaics, the slice with most crossings, glyph windows.

Arrays are in display order (see :class:`rumba_bids.reports.outputs.DisplayFrame`);
a slice along ``axis`` keeps the two other axes in increasing order.
"""

from __future__ import annotations

import numpy as np

AXIS_NAMES = {0: "sagittal", 1: "coronal", 2: "axial"}
#: Largest glyph window side (voxels) chosen by default: glyphs stay readable.
MAX_GLYPH_SIDE = 32


def check_axis(axis) -> int:
    """``axis`` as 0, 1 or 2; names ``'sagittal'``, ``'coronal'``, ``'axial'`` are accepted."""
    names = {name: index for index, name in AXIS_NAMES.items()}
    if isinstance(axis, str) and axis in names:
        return names[axis]
    if axis in (0, 1, 2) and not isinstance(axis, bool):
        return int(axis)
    raise ValueError(f"axis must be 0, 1, 2 or one of {', '.join(names)}; got {axis!r}")


def in_plane_axes(axis: int) -> tuple[int, int]:
    """The two axes of a slice along ``axis``, in increasing order."""
    return tuple(a for a in range(3) if a != axis)


def extent_along(mask, axis: int) -> tuple[int, int]:
    """First and last index along ``axis`` where ``mask`` has voxels (whole axis if empty)."""
    mask = np.asarray(mask, dtype=bool)
    present = np.flatnonzero(mask.any(axis=in_plane_axes(axis)))
    if len(present) == 0:
        return 0, mask.shape[axis] - 1
    return int(present[0]), int(present[-1])


def mosaic_indices(mask, axis: int, n_slices: int) -> list[int]:
    """``n_slices`` indices spread evenly inside the mask's extent along ``axis``.

    Examples
    --------
    >>> mask = np.zeros((4, 4, 12), bool); mask[:, :, 2:10] = True
    >>> mosaic_indices(mask, 2, 3)
    [4, 6, 7]
    """
    if n_slices < 1:
        raise ValueError(f"n_slices must be at least 1, got {n_slices}")
    first, last = extent_along(mask, axis)
    positions = np.linspace(first, last, n_slices + 2)[1:-1]
    return sorted({int(round(p)) for p in positions})


def central_index(mask, axis: int) -> int:
    """Index along ``axis`` through the mask's centre of mass (middle if empty)."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask.shape[axis] // 2
    counts = mask.sum(axis=in_plane_axes(axis))
    return int(round(float(np.average(np.arange(len(counts)), weights=counts))))


def most_crossing_slice(n_peaks, axis: int, *, mask=None) -> int:
    """The slice along ``axis`` with the most voxels holding 2 or more fODF peaks.

    Ties go to the slice nearest the mask's centre; without any crossing,
    the central slice of the mask.

    Parameters
    ----------
    n_peaks : array_like of int, shape (X, Y, Z)
    axis : int
    mask : array_like of bool, shape (X, Y, Z), optional
    """
    n_peaks = np.asarray(n_peaks)
    mask = n_peaks > 0 if mask is None else np.asarray(mask, dtype=bool)
    crossing = (n_peaks >= 2) & mask
    counts = crossing.sum(axis=in_plane_axes(axis))
    centre = central_index(mask, axis)
    if counts.max() == 0:
        return centre
    best = np.flatnonzero(counts == counts.max())
    return int(best[np.argmin(np.abs(best - centre))])


def bounding_region(mask2d) -> tuple[slice, slice]:
    """Bounding box of a 2D mask (the whole slice if empty)."""
    mask2d = np.asarray(mask2d, dtype=bool)
    if not mask2d.any():
        return slice(0, mask2d.shape[0]), slice(0, mask2d.shape[1])
    rows = np.flatnonzero(mask2d.any(axis=1))
    cols = np.flatnonzero(mask2d.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def glyph_region(n_peaks2d, mask2d, *, max_side: int = MAX_GLYPH_SIDE) -> tuple[slice, slice]:
    """Default window of the glyph figure in a slice.

    The mask's bounding box, cut down to at most ``max_side`` voxels per side
    by choosing the window with the most crossing voxels (2+ peaks), then
    the most masked voxels.

    Parameters
    ----------
    n_peaks2d : array_like of int, shape (A, B) or None
    mask2d : array_like of bool, shape (A, B)
    max_side : int
    """
    mask2d = np.asarray(mask2d, dtype=bool)
    box = bounding_region(mask2d)
    sizes = [s.stop - s.start for s in box]
    if max(sizes) <= max_side:
        return box
    crossing = np.zeros(mask2d.shape) if n_peaks2d is None else np.asarray(n_peaks2d) >= 2
    # crossings dominate, masked voxels break ties
    score = (crossing & mask2d) * (mask2d.size + 1.0) + mask2d
    window = [min(size, max_side) for size in sizes]
    integral = np.zeros((score.shape[0] + 1, score.shape[1] + 1))
    integral[1:, 1:] = score.cumsum(axis=0).cumsum(axis=1)
    starts_a = np.arange(box[0].start, box[0].stop - window[0] + 1)
    starts_b = np.arange(box[1].start, box[1].stop - window[1] + 1)
    a0, b0 = np.meshgrid(starts_a, starts_b, indexing="ij")
    a1, b1 = a0 + window[0], b0 + window[1]
    totals = integral[a1, b1] - integral[a0, b1] - integral[a1, b0] + integral[a0, b0]
    best = np.unravel_index(np.argmax(totals), totals.shape)
    start_a, start_b = int(a0[best]), int(b0[best])
    return slice(start_a, start_a + window[0]), slice(start_b, start_b + window[1])


def parse_region(text: str, shape2d) -> tuple[slice, slice]:
    """``'A0:A1,B0:B1'`` (Python-style, ends excluded, either side may be empty) -> slices.

    Examples
    --------
    >>> parse_region("2:10,:5", (20, 30))
    (slice(2, 10, None), slice(0, 5, None))
    """
    parts = text.replace(" ", "").split(",")
    if len(parts) != 2 or any(part.count(":") != 1 for part in parts):
        raise ValueError(f"region must look like 'A0:A1,B0:B1' (e.g. '10:30,5:25'), got {text!r}")
    region = []
    for part, size in zip(parts, shape2d):
        start_text, stop_text = part.split(":")
        try:
            start = int(start_text) if start_text else 0
            stop = int(stop_text) if stop_text else size
        except ValueError:
            raise ValueError(f"region bounds must be integers, got {text!r}") from None
        region.append((start, stop))
    return check_region(tuple(slice(a, b) for a, b in region), shape2d)


def check_region(region, shape2d) -> tuple[slice, slice]:
    """Validate a (slice, slice) window against a slice of shape ``shape2d``."""
    if region is None:
        return slice(0, shape2d[0]), slice(0, shape2d[1])
    if len(region) != 2:
        raise ValueError(f"region must hold 2 ranges (one per in-plane axis), got {region!r}")
    out = []
    for part, size in zip(region, shape2d):
        start, stop = (part.start or 0, size if part.stop is None else part.stop)
        if not 0 <= start < stop <= size:
            raise ValueError(
                f"region range {start}:{stop} is empty or outside the slice (size {size}); "
                f"use 0 <= start < stop <= {size}"
            )
        out.append(slice(int(start), int(stop)))
    return tuple(out)
