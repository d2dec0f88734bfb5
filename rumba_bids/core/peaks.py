"""Peaks of orientation distribution functions sampled on a sphere.

The semantics follow DIPY's ``dipy.direction.peak_directions``:

1. a vertex is a local maximum when its value is ``>=`` the values of all its
   neighbours on the sphere's triangulation and ``>`` at least one of them;
2. maxima are sorted by value, largest first (ties: lower vertex index first);
3. with ``m = max(0, min(odf))``, maxima with ``value - m <
   relative_peak_threshold * (largest - m)`` are dropped, unless there is a
   single maximum;
4. going down that list, a maximum is kept unless it lies within
   ``min_separation_angle`` of a kept one or of its antipode (so the two
   antipodal copies of a lobe on a symmetric sphere merge into one peak);
5. the first ``npeaks`` kept maxima are returned.

ODFs are taken to be antipodally symmetric.  Spheres holding only one
hemisphere (no antipodal pairs, all ``z >= 0``, like DIPY's ``HemiSphere``)
get the neighbourhood of the mirrored full sphere, as in DIPY.

Refinement (``refine=True``, the default): each peak is then moved off its
vertex to the maximum of a log-quadratic fitted to the ODF over the vertex's
ring of neighbours, with the amplitude there (see
:mod:`rumba_bids.core.peak_refinement`).  The peaks found (their number, and
the vertex each comes from, ``indices``) are those of the vertex search; a
refinement is held back (the peak keeps its vertex direction and value) when
it leaves the vertex's neighbourhood or brings two peaks within
``min_separation_angle``.  Peaks are then sorted by their refined values.
``refine=False`` returns DIPY's vertex directions and values exactly.

Direction frame: peak directions are in the frame of the sphere; for ODFs
fitted by rumba-bids that is the voxel (ijk) frame of the gradient table.
:meth:`PeaksResult.in_world` (or :func:`rumba_bids.core.gradients.voxel_to_world`)
rotates them into world (xyz, RAS+) coordinates with the image affine.

How it is fast: in cache-sized blocks of voxels, one pass each gives the
minimum, maximum, sum and sum of squares (for GFA) of every ODF; only vertices
above ``relative_peak_threshold * max`` can become peaks, so only those (a few
percent) are compared with their neighbours; the pruning then works on a small
table of maxima per voxel, npeaks vectorised rounds of "take the largest, drop
everything within the separation angle", which keeps exactly what DIPY's
sorted pass keeps.  No Python loop runs over voxels.

The only known difference from DIPY: when local maxima are negative, DIPY's
sort can return spurious zero-valued peaks at vertex 0; here negative maxima are
treated like any others.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .defaults import (
    DEFAULT_MIN_SEPARATION_ANGLE,
    DEFAULT_NPEAKS,
    DEFAULT_PEAK_REFINE,
    DEFAULT_PEAK_THRESHOLD,
)
from .gradients import voxel_to_world
from .peak_refinement import keep_separated, refine_peaks, refinement_geometry
from .sphere import Sphere, as_sphere

DEFAULT_CHUNK_SIZE = 8192
#: Voxels per step of the local-maximum search (a few hundred kB: stays in cache).
_CACHE_BLOCK = 128


class PeaksResult(NamedTuple):
    """Peaks of many ODFs.

    Attributes
    ----------
    directions : ndarray, shape (..., npeaks, 3)
        Unit vectors in the sphere's frame, largest peak first; NaN where a
        voxel has fewer peaks (or is outside the mask).
    values : ndarray, shape (..., npeaks)
        ODF value at each peak (the ODF's unit); 0 where there is no peak.
    indices : ndarray of int32, shape (..., npeaks)
        Sphere vertex each peak was found at (refined directions lie within
        its neighbourhood); -1 where there is no peak.
    gfa : ndarray, shape (...)
        Generalised fractional anisotropy of the ODF (see :func:`gfa`); 0
        outside the mask, NaN for ODFs with non-finite values.
    """

    directions: np.ndarray
    values: np.ndarray
    indices: np.ndarray
    gfa: np.ndarray

    def in_world(self, affine) -> PeaksResult:
        """The same peaks with directions rotated from voxel (ijk) to world (xyz).

        Parameters
        ----------
        affine : array_like, shape (4, 4)
            Voxel-to-world affine of the image the ODFs belong to.
        """
        directions = voxel_to_world(self.directions, affine).astype(self.directions.dtype)
        return self._replace(directions=directions)


def gfa(odf) -> np.ndarray:
    """Generalised fractional anisotropy (Tuch 2004) of sampled ODFs.

    ``sqrt(N * sum((odf - mean)^2) / ((N - 1) * sum(odf^2)))`` over the N
    samples, as ``dipy.reconst.odf.gfa``, except that an all-zero ODF gives 0
    (DIPY: NaN).

    Parameters
    ----------
    odf : array_like, shape (..., N)

    Returns
    -------
    ndarray, shape (...), float64
        NaN where the ODF has non-finite values.

    Examples
    --------
    >>> float(gfa([1.0, 1.0, 1.0, 1.0])), float(gfa([0.0, 0.0, 0.0, 2.0]))
    (0.0, 1.0)
    """
    odf = np.asarray(odf, dtype=np.float64)
    total = odf.sum(axis=-1)
    total_squares = np.einsum("...i,...i->...", odf, odf)
    return _gfa_from_sums(total, total_squares, odf.shape[-1])


def _gfa_from_sums(total, total_squares, n_samples):
    """GFA from per-voxel sums of values and of squares (arrays of the same shape)."""
    total = np.asarray(total, dtype=np.float64)
    total_squares = np.asarray(total_squares, dtype=np.float64)
    # N * sum((x - mean)^2) = N * sum(x^2) - (sum x)^2, clipped against rounding
    numerator = np.maximum(n_samples * total_squares - total * total, 0.0)
    denominator = (n_samples - 1) * total_squares
    ratio = np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)
    ratio = np.where(np.isfinite(denominator) & np.isfinite(total), ratio, np.nan)
    return np.sqrt(ratio)


def _neighbour_table(sphere: Sphere) -> np.ndarray:
    """Neighbours of each vertex (N, K), padded with the vertex itself."""
    vertices = sphere.vertices
    is_hemisphere = np.all(sphere.antipodal_partner < 0) and np.all(vertices[:, 2] >= -1e-12)
    if not is_hemisphere:
        return sphere.neighbours
    n = len(vertices)
    mirrored = Sphere(np.concatenate([vertices, -vertices]), name=f"{sphere.name}-mirrored")
    table = mirrored.neighbours % n
    return np.concatenate([table[:n], table[n:]], axis=1)


def _check_parameters(relative_peak_threshold, min_separation_angle, npeaks):
    if not 0 <= relative_peak_threshold <= 1:
        raise ValueError(
            f"relative_peak_threshold must be in [0, 1], got {relative_peak_threshold!r}"
        )
    if not 0 <= min_separation_angle <= 90:
        raise ValueError(
            f"min_separation_angle must be in [0, 90] degrees, got {min_separation_angle!r}"
        )
    if npeaks is not None and (int(npeaks) != npeaks or npeaks < 1):
        raise ValueError(f"npeaks must be a positive integer, got {npeaks!r}")


def _candidate_maxima(odfs, rows, neighbours, relative_peak_threshold):
    """Local maxima that may pass the relative threshold, and per-voxel statistics.

    ``odfs`` is (n_voxels_total, N); ``rows`` (a slice or an index array)
    selects the V voxels processed, in sub-blocks small enough to stay in the
    CPU cache.  A vertex is a candidate when ``value >=
    relative_peak_threshold * max(odf)`` (minus a rounding margin), which
    every maximum passing the exact threshold does (see
    :func:`_select_peaks`); voxels whose maximum is negative keep every vertex
    so that their single-maximum rule is exact.

    Returns
    -------
    voxel, vertex : ndarray of intp, shape (M,)
        Local maxima (voxel counted within ``rows``), grouped by voxel, vertex
        index ascending within a voxel.
    value : ndarray, shape (M,), float64
    lowest, highest, total, total_squares : ndarray, shape (V,), float64
        Per-voxel minimum, maximum, sum and sum of squares (NaN if non-finite).
    """
    n_vertices = odfs.shape[1]
    n_voxels = len(range(len(odfs))[rows]) if isinstance(rows, slice) else len(rows)
    eps = np.finfo(odfs.dtype).eps
    neighbours_by_column = np.ascontiguousarray(neighbours.T)
    pieces = []
    stats = np.empty((4, n_voxels))
    for start in range(0, n_voxels, _CACHE_BLOCK):
        if isinstance(rows, slice):
            block = odfs[rows.start + start : rows.start + min(start + _CACHE_BLOCK, n_voxels)]
        else:
            block = odfs[rows[start : start + _CACHE_BLOCK]]
        flat = block.ravel()
        lowest = block.min(axis=1).astype(np.float64)
        highest = block.max(axis=1).astype(np.float64)
        stop = start + len(block)
        stats[0, start:stop] = lowest
        stats[1, start:stop] = highest
        stats[2, start:stop] = block.sum(axis=1, dtype=np.float64)
        stats[3, start:stop] = np.einsum("ij,ij->i", block, block, dtype=np.float64)
        margin = 4 * eps * (np.abs(highest) + np.abs(lowest))
        level = relative_peak_threshold * highest - margin
        level[highest < 0] = -np.inf
        level[~(np.isfinite(lowest) & np.isfinite(highest))] = np.nan
        candidates = np.flatnonzero(block >= level.astype(odfs.dtype)[:, None])
        row, vertex = np.divmod(candidates, n_vertices)
        own = flat[candidates]
        around_index = np.take(neighbours_by_column, vertex, axis=1)
        around_index += row * n_vertices
        around = flat[around_index]
        # >= every neighbour and > at least one (the table's self-padding is neutral)
        is_max = (own >= around.max(axis=0)) & (own > around.min(axis=0))
        pieces.append((row[is_max] + start, vertex[is_max], own[is_max]))
    voxel, vertex, value = (np.concatenate(parts) for parts in zip(*pieces))
    return voxel, vertex, value.astype(np.float64), stats


def _select_peaks(
    voxel,
    vertex,
    value,
    lowest,
    highest,
    vertices,
    cos_separation,
    relative_peak_threshold,
    npeaks,
):
    """Apply the exact threshold and the greedy separation to local maxima.

    Returns peak vertices (V, npeaks) (-1 fill) and values (V, npeaks) (0 fill).
    """
    n_voxels = len(lowest)
    n_maxima = np.bincount(voxel, minlength=n_voxels)
    # DIPY: value - m >= threshold * (largest maximum - m), m = max(0, min(odf)); the
    # largest local maximum is the global maximum (any non-constant ODF reaches it at a
    # vertex with a smaller neighbour)
    floor = np.maximum(lowest, 0.0)[voxel]
    keep = (value - floor) >= relative_peak_threshold * (highest[voxel] - floor)
    keep |= n_maxima[voxel] == 1
    voxel, vertex, value = voxel[keep], vertex[keep], value[keep]

    counts = np.bincount(voxel, minlength=n_voxels)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    width = max(int(counts.max(initial=0)), 1)
    table_vertex = np.zeros((n_voxels, width), dtype=np.intp)
    table_value = np.full((n_voxels, width), -np.inf)
    rank = np.arange(len(voxel)) - first[voxel]
    table_vertex[voxel, rank] = vertex
    table_value[voxel, rank] = value

    # Taking the largest remaining maximum and discarding everything near it, npeaks
    # times, keeps exactly what DIPY's pass down the sorted list keeps.  argmax picks
    # the lowest vertex among equal values, like DIPY's stable sort.
    peak_vertex = np.full((n_voxels, npeaks), -1, dtype=np.intp)
    peak_value = np.zeros((n_voxels, npeaks))
    active = np.flatnonzero(counts > 0)
    for slot in range(npeaks):
        if len(active) == 0:
            break
        best = np.argmax(table_value[active], axis=1)
        best_value = table_value[active, best]
        found = best_value > -np.inf
        active, best, best_value = active[found], best[found], best_value[found]
        best_vertex = table_vertex[active, best]
        peak_vertex[active, slot] = best_vertex
        peak_value[active, slot] = best_value
        # |cos| between the new peak and the remaining maxima, summed left to right
        # as in DIPY so that angles at the limit are decided identically
        kept = vertices[best_vertex][:, None, :]
        others = vertices[table_vertex[active]]
        similarity = np.abs(
            kept[..., 0] * others[..., 0]
            + kept[..., 1] * others[..., 1]
            + kept[..., 2] * others[..., 2]
        )
        rows = table_value[active]
        rows[similarity > cos_separation] = -np.inf
        table_value[active] = rows
    return peak_vertex, peak_value


def _peaks_of_block(odfs, rows, geometry, relative_peak_threshold, npeaks):
    """Peak vertices, values and GFA of the ODFs ``odfs[rows]`` (V, N)."""
    vertices, neighbours, cos_separation = geometry
    voxel, vertex, value, stats = _candidate_maxima(
        odfs, rows, neighbours, relative_peak_threshold
    )
    lowest, highest, total, total_squares = stats
    peak_vertex, peak_value = _select_peaks(
        voxel,
        vertex,
        value,
        lowest,
        highest,
        vertices,
        cos_separation,
        relative_peak_threshold,
        npeaks,
    )
    return peak_vertex, peak_value, _gfa_from_sums(total, total_squares, odfs.shape[1])


def _prepare(sphere, relative_peak_threshold, min_separation_angle, npeaks):
    """The sphere and the (vertices, neighbour table, separation cosine) of the search."""
    _check_parameters(relative_peak_threshold, min_separation_angle, npeaks)
    sphere = as_sphere(sphere)
    # math.cos (libm) and left-to-right dot products reproduce DIPY's arithmetic
    cos_separation = math.cos(math.pi / 180 * float(min_separation_angle))
    # antipodes always merge, even for a zero separation angle
    cos_separation = min(cos_separation, 1.0 - 1e-12)
    return sphere, (sphere.vertices, _neighbour_table(sphere), cos_separation)


def _refinement(sphere, geometry):
    """The sphere's refinement operators (built once per sphere object)."""
    cached = getattr(sphere, "_peak_refinement", None)
    if cached is None:
        cached = refinement_geometry(sphere.vertices, geometry[1])
        sphere._peak_refinement = cached
    return cached


def _refine_block(flat, rows, peak_vertex, peak_value, geometry, refinement):
    """Refined directions (V, P, 3) and values (V, P), re-sorted, with the vertices.

    ``peak_vertex``/``peak_value`` are the vertex search's result for the rows
    ``rows`` (index array) of ``flat``; ``refinement`` is the sphere's
    :class:`~rumba_bids.core.peak_refinement.RefinementGeometry`.
    """
    vertices, _, cos_separation = geometry
    present = peak_vertex >= 0
    vertex_dirs = np.where(present[..., None], vertices[np.maximum(peak_vertex, 0)], 0.0)
    directions, values = vertex_dirs.copy(), peak_value.copy()
    voxel, slot = np.nonzero(present)
    moved, moved_value, _ = refine_peaks(
        flat, rows[voxel], peak_vertex[voxel, slot], refinement, vertices
    )
    directions[voxel, slot] = moved
    values[voxel, slot] = moved_value
    keep = keep_separated(directions, vertex_dirs, present, cos_separation)
    directions = np.where(keep[..., None], directions, vertex_dirs)
    values = np.where(keep, values, peak_value)
    # largest refined value first; empty slots (-inf) last, ties in the vertex order
    order = np.argsort(np.where(present, -values, np.inf), axis=1, kind="stable")
    directions = np.take_along_axis(directions, order[..., None], axis=1)
    directions[~np.take_along_axis(present, order, axis=1)] = np.nan
    return (
        np.take_along_axis(peak_vertex, order, axis=1),
        np.take_along_axis(values, order, axis=1),
        directions,
    )


def peak_directions(
    odf,
    sphere=None,
    *,
    relative_peak_threshold: float = 0.5,
    min_separation_angle: float = 25,
    npeaks: int | None = 5,
    refine: bool = DEFAULT_PEAK_REFINE,
):
    """Peaks of one ODF (see the module docstring for the rules).

    Parameters
    ----------
    odf : array_like, shape (N,)
        ODF values at the sphere's vertices (finite).
    sphere : Sphere, str, array_like (N, 3) or DIPY sphere, optional
        Default ``'repulsion724'``.  Pass a :class:`Sphere` object when calling
        repeatedly, so its neighbourhood graph is built once.
    relative_peak_threshold : float in [0, 1]
    min_separation_angle : float in [0, 90]
        Degrees.
    npeaks : int or None
        Maximum number of peaks returned; None for all.
    refine : bool
        Move each peak between the vertices (see the module docstring);
        False: the vertex directions and values, as DIPY's ``peak_directions``.

    Returns
    -------
    directions : ndarray, shape (P, 3)
        Unit vectors in the sphere's frame, largest peak first.
    values : ndarray, shape (P,)
    indices : ndarray of intp, shape (P,)
        Sphere vertex each peak was found at.
    """
    odf = np.asarray(odf)
    sphere, geometry = _prepare(sphere, relative_peak_threshold, min_separation_angle, npeaks)
    if odf.shape != (len(sphere),):
        raise ValueError(
            f"odf must have shape ({len(sphere)},) to match the sphere, got {odf.shape}"
        )
    if not np.all(np.isfinite(odf)):
        raise ValueError("odf contains NaN or inf values")
    limit = len(sphere) if npeaks is None else int(npeaks)
    flat = odf[None].astype(np.float64)
    indices, values, _ = _peaks_of_block(
        flat, slice(0, 1), geometry, relative_peak_threshold, limit
    )
    if refine:
        refinement = _refinement(sphere, geometry)
        indices, values, directions = _refine_block(
            flat, np.zeros(1, dtype=np.intp), indices, values, geometry, refinement
        )
    else:
        directions = sphere.vertices[np.maximum(indices, 0)]
    found = indices[0] >= 0
    return directions[0, found], values[0, found], indices[0, found]


def extract_peaks(
    odfs,
    sphere=None,
    *,
    mask=None,
    relative_peak_threshold: float = DEFAULT_PEAK_THRESHOLD,
    min_separation_angle: float = DEFAULT_MIN_SEPARATION_ANGLE,
    npeaks: int = DEFAULT_NPEAKS,
    refine: bool = DEFAULT_PEAK_REFINE,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> PeaksResult:
    """Peaks and GFA of many ODFs, vectorised over voxels.

    Parameters
    ----------
    odfs : array_like, shape (..., N)
        ODF values at the sphere's vertices.  Voxels with NaN or inf values
        get no peaks and a NaN GFA.
    sphere : Sphere, str, array_like (N, 3) or DIPY sphere, optional
        Default ``'repulsion724'``; its frame is the frame of the directions.
    mask : array_like of bool, shape (...), optional
        Voxels to process; the others get no peaks and GFA 0.
    relative_peak_threshold : float in [0, 1]
    min_separation_angle : float in [0, 90]
        Degrees.
    npeaks : int
        Number of peak slots per voxel.
    refine : bool
        Move each peak between the vertices, with the amplitude there (see
        the module docstring); False: vertex directions and values, exactly
        as DIPY's ``peak_directions``.
    chunk_size : int
        Voxels whose local maxima are pruned together; the extra memory is a
        few kB per voxel of the chunk (the local-maximum search itself runs in
        cache-sized blocks of 128 voxels).

    Returns
    -------
    PeaksResult
        ``directions`` (..., npeaks, 3) NaN-filled, ``values`` (..., npeaks)
        0-filled, ``indices`` (..., npeaks) -1-filled, ``gfa`` (...).  Float
        outputs are float32 for float32 ODFs, float64 otherwise.
    """
    odfs = np.asarray(odfs)
    sphere, geometry = _prepare(sphere, relative_peak_threshold, min_separation_angle, npeaks)
    if npeaks is None:
        raise ValueError("npeaks must be a positive integer for batched extraction")
    npeaks = int(npeaks)
    if odfs.ndim < 1 or odfs.shape[-1] != len(sphere):
        raise ValueError(
            f"odfs must have shape (..., {len(sphere)}) to match the sphere, got {odfs.shape}"
        )
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    spatial_shape = odfs.shape[:-1]
    if mask is None:
        selected = np.arange(int(np.prod(spatial_shape)))
    else:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != spatial_shape:
            raise ValueError(
                f"mask shape {mask.shape} does not match the ODF grid {spatial_shape}"
            )
        selected = np.flatnonzero(mask)
    if odfs.dtype not in (np.float32, np.float64):
        odfs = odfs.astype(np.float64)
    flat = odfs.reshape(-1, len(sphere))
    n_total = flat.shape[0]
    out_dtype = odfs.dtype
    indices = np.full((n_total, npeaks), -1, dtype=np.int32)
    values = np.zeros((n_total, npeaks), dtype=out_dtype)
    gfa_map = np.zeros(n_total, dtype=out_dtype)
    refinement = _refinement(sphere, geometry) if refine else None
    if refine:
        directions = np.full((n_total, npeaks, 3), np.nan, dtype=out_dtype)
    n_selected = len(selected)
    for start in range(0, n_selected, int(chunk_size)):
        stop = min(start + int(chunk_size), n_selected)
        rows = slice(start, stop) if mask is None else selected[start:stop]
        chunk_indices, chunk_values, chunk_gfa = _peaks_of_block(
            flat, rows, geometry, relative_peak_threshold, npeaks
        )
        if refine:
            row_numbers = np.arange(start, stop) if mask is None else rows
            chunk_indices, chunk_values, directions[rows] = _refine_block(
                flat, row_numbers, chunk_indices, chunk_values, geometry, refinement
            )
        indices[rows] = chunk_indices
        values[rows] = chunk_values
        gfa_map[rows] = chunk_gfa
    if not refine:
        # one extra NaN row serves the -1 indices
        vertex_table = np.concatenate([sphere.vertices, np.full((1, 3), np.nan)])
        directions = vertex_table.astype(out_dtype)[np.where(indices < 0, len(sphere), indices)]
    return PeaksResult(
        directions=directions.reshape(spatial_shape + (npeaks, 3)),
        values=values.reshape(spatial_shape + (npeaks,)),
        indices=indices.reshape(spatial_shape + (npeaks,)),
        gfa=gfa_map.reshape(spatial_shape),
    )


def peaks_to_mrtrix(directions, values) -> np.ndarray:
    """Pack peaks into MRtrix3's ``sh2peaks`` layout.

    Parameters
    ----------
    directions : array_like, shape (..., npeaks, 3)
        Unit vectors, NaN for missing peaks.  MRtrix3 reads peak images in
        the world (scanner) frame: rotate voxel-frame peaks first
        (:meth:`PeaksResult.in_world`).
    values : array_like, shape (..., npeaks)
        Peak amplitudes.

    Returns
    -------
    ndarray, shape (..., 3 * npeaks)
        ``[x1, y1, z1, x2, y2, z2, ...]`` = direction * amplitude; NaN for
        missing peaks (MRtrix's fill value).
    """
    directions = np.asarray(directions)
    values = np.asarray(values)
    if directions.shape[-1:] != (3,) or directions.shape[:-1] != values.shape:
        raise ValueError(
            f"directions (..., npeaks, 3) and values (..., npeaks) disagree: "
            f"{directions.shape} vs {values.shape}"
        )
    vectors = directions * values[..., None]
    missing = ~np.isfinite(directions).all(axis=-1)
    vectors[missing] = np.nan
    return vectors.reshape(values.shape[:-1] + (3 * values.shape[-1],))


def mrtrix_to_peaks(peaks):
    """Unpack an MRtrix3 ``sh2peaks``-layout array.

    Parameters
    ----------
    peaks : array_like, shape (..., 3 * npeaks)

    Returns
    -------
    directions : ndarray, shape (..., npeaks, 3)
        Unit vectors, NaN for missing (NaN or zero-length) peaks.
    values : ndarray, shape (..., npeaks)
        Vector lengths, 0 for missing peaks.
    """
    peaks = np.asarray(peaks)
    if peaks.ndim < 1 or peaks.shape[-1] % 3:
        raise ValueError(
            f"the last axis must hold 3 values per peak, got {peaks.shape[-1:]} values"
        )
    vectors = peaks.reshape(peaks.shape[:-1] + (peaks.shape[-1] // 3, 3))
    lengths = np.linalg.norm(vectors, axis=-1)
    present = np.isfinite(lengths) & (lengths > 0)
    safe = np.where(present, lengths, 1.0)
    directions = np.where(present[..., None], vectors / safe[..., None], np.nan)
    return directions, np.where(present, lengths, 0.0).astype(directions.dtype)


def peaks_from_model(
    model,
    data,
    sphere=None,
    relative_peak_threshold: float = DEFAULT_PEAK_THRESHOLD,
    min_separation_angle: float = DEFAULT_MIN_SEPARATION_ANGLE,
    *,
    mask=None,
    npeaks: int = DEFAULT_NPEAKS,
) -> PeaksResult:
    """Fit ``model`` to ``data`` and extract the peaks of its ODFs.

    The model-level call of DIPY's ``peaks_from_model`` (same positional
    arguments), for any model whose ``fit(data, mask=...)`` returns an object
    with ``odf(sphere)``, e.g. :class:`~rumba_bids.core.RumbaSDModel` (voxel-wise
    or global, which DIPY's cannot take) or :class:`~rumba_bids.core.CsdModel`.
    The fit runs once on all voxels; no SH coefficients are computed (use
    :func:`~rumba_bids.core.sf_to_sh` on ``fit.odf()``).

    Parameters
    ----------
    model : fODF model
    data : ndarray, shape (..., N)
    sphere : sphere-like, optional
        Default: the model's sphere.
    relative_peak_threshold, min_separation_angle, npeaks
        See :func:`extract_peaks`.
    mask : ndarray of bool, shape (...), optional

    Returns
    -------
    PeaksResult
    """
    fit = model.fit(data, mask=mask)
    sphere = getattr(model, "sphere", None) if sphere is None else sphere
    return extract_peaks(
        fit.odf(sphere),
        sphere,
        mask=mask,
        relative_peak_threshold=relative_peak_threshold,
        min_separation_angle=min_separation_angle,
        npeaks=npeaks,
    )
