"""Scoring fibre directions against ground truth, as the HARDI challenges do.

Per voxel the estimated fibre directions (peaks) are paired one-to-one with
the true fibres (ISBI 2012/2013 HARDI reconstruction challenges; Daducci et
al., IEEE TMI 33(2), 2014).  A pairing is accepted when the two axes are at
most ``max_angle`` degrees apart; among all one-to-one pairings the one with
the most accepted pairs, then the smallest total angle, is used.  Then:

* ``n+`` (false positives): estimated peaks left unpaired;
* ``n-`` (false negatives): true fibres left unpaired;
* success: ``n+ = n- = 0`` (the number of fibres is right and every true
  fibre has its own peak within ``max_angle``);
* angular error: angle between paired axes (degrees), averaged over all
  paired fibres.

Directions are axes: ``v`` and ``-v`` are the same fibre.  Arrays of
directions are NaN-padded, as returned by
:func:`rumba_bids.core.peaks.extract_peaks` and in
:class:`rumba_bids.core.phantoms.GroundTruth`.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np

#: Default largest angle (degrees) between a peak and the true fibre it is paired with.
DEFAULT_MAX_ANGLE = 20.0


def axis_angle(a, b) -> np.ndarray:
    """Angle in degrees between the axes of unit vectors ``a`` and ``b`` (0 to 90).

    Broadcasts over leading dimensions; NaN where either vector is NaN.

    Examples
    --------
    >>> float(axis_angle([1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]))
    0.0
    >>> round(float(axis_angle([1.0, 0.0, 0.0], [1.0, 1.0, 0.0] / np.sqrt(2))), 6)
    45.0
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    cosine = np.abs(np.sum(a * b, axis=-1))
    return np.degrees(np.arccos(np.clip(cosine, 0.0, 1.0)))


class FibreMatch(NamedTuple):
    """Pairing of estimated peaks with true fibres, per voxel.

    Attributes
    ----------
    angles : ndarray, shape (..., T)
        Angle (degrees) between each true fibre and its peak; NaN for
        unpaired fibres and padding rows.
    n_matched : ndarray of int, shape (...)
    false_positives : ndarray of int, shape (...)
        ``n+``: peaks without a true fibre.
    false_negatives : ndarray of int, shape (...)
        ``n-``: true fibres without a peak.
    """

    angles: np.ndarray
    n_matched: np.ndarray
    false_positives: np.ndarray
    false_negatives: np.ndarray

    @property
    def success(self) -> np.ndarray:
        """True where every fibre is found and nothing else, shape (...)."""
        return (self.false_positives == 0) & (self.false_negatives == 0)

    @property
    def angular_error(self) -> np.ndarray:
        """Mean angle of the voxel's paired fibres (degrees), NaN if none, shape (...)."""
        total = np.nansum(self.angles, axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n_matched > 0, total / self.n_matched, np.nan)


def _as_direction_array(directions, name: str) -> np.ndarray:
    directions = np.asarray(directions, dtype=np.float64)
    if directions.ndim < 2 or directions.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (..., n, 3), got {directions.shape}")
    return directions


def match_fibres(estimated, true, *, max_angle: float = DEFAULT_MAX_ANGLE) -> FibreMatch:
    """Pair estimated peaks with true fibres one-to-one (see the module docstring).

    Parameters
    ----------
    estimated : array_like, shape (..., P, 3)
        Peak directions, NaN rows for missing peaks.
    true : array_like, shape (..., T, 3)
        True fibre directions, NaN rows for padding.
    max_angle : float
        Largest accepted angle (degrees) between paired axes, in (0, 90].

    Returns
    -------
    FibreMatch

    Examples
    --------
    >>> true = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    >>> peaks = np.array([[0, -1.0, 0], [0, 0, 1.0], [np.nan] * 3])
    >>> m = match_fibres(peaks, true)
    >>> int(m.n_matched), int(m.false_positives), int(m.false_negatives), bool(m.success)
    (1, 1, 1, False)
    """
    estimated = _as_direction_array(estimated, "estimated")
    true = _as_direction_array(true, "true")
    if estimated.shape[:-2] != true.shape[:-2]:
        raise ValueError(
            f"estimated {estimated.shape} and true {true.shape} directions cover different voxels"
        )
    if not 0 < max_angle <= 90:
        raise ValueError(f"max_angle must be in (0, 90] degrees, got {max_angle!r}")
    shape = true.shape[:-2]
    n_true_slots, n_peak_slots = true.shape[-2], estimated.shape[-2]
    est = estimated.reshape(-1, n_peak_slots, 3)
    tru = true.reshape(-1, n_true_slots, 3)
    valid_est = np.isfinite(est).all(axis=-1)
    valid_true = np.isfinite(tru).all(axis=-1)
    n_slots = max(n_peak_slots, n_true_slots)
    # extra (empty) peak slots let every true fibre have a slot of its own
    angles = np.full((len(tru), n_true_slots, n_slots), np.inf)
    pair_angles = axis_angle(tru[:, :, None], est[:, None])
    angles[:, :, :n_peak_slots] = np.where(np.isnan(pair_angles), np.inf, pair_angles)
    rows = np.arange(n_true_slots)
    best_key = np.full(len(tru), -np.inf)
    best_angles = np.full((len(tru), n_true_slots), np.nan)
    # every injective map true fibre -> peak slot (at most 5!/2! = 60 for 3 fibres, 5 peaks)
    for assignment in itertools.permutations(range(n_slots), n_true_slots):
        paired = angles[:, rows, list(assignment)]
        accepted = paired <= max_angle
        # more pairs first, then the smaller total angle (angles sum to < 1e4)
        key = accepted.sum(axis=1) * 1e4 - np.where(accepted, paired, 0.0).sum(axis=1)
        better = key > best_key
        best_key[better] = key[better]
        best_angles[better] = np.where(accepted[better], paired[better], np.nan)
    n_matched = np.isfinite(best_angles).sum(axis=1)
    return FibreMatch(
        angles=best_angles.reshape(shape + (n_true_slots,)),
        n_matched=n_matched.reshape(shape),
        false_positives=(valid_est.sum(axis=1) - n_matched).reshape(shape),
        false_negatives=(valid_true.sum(axis=1) - n_matched).reshape(shape),
    )


def summarise_matches(match: FibreMatch, *, mask=None, f_iso=None, true_f_iso=None) -> dict:
    """Challenge metrics over a set of voxels.

    Parameters
    ----------
    match : FibreMatch
    mask : array_like of bool, optional
        Voxels to include (default all).
    f_iso, true_f_iso : array_like, optional
        Estimated and true isotropic fractions, same shape as the voxels.

    Returns
    -------
    dict
        ``n_voxels``; ``success_rate`` (fraction of voxels with ``n+ = n- =
        0``); ``angular_error`` (degrees, mean over all paired fibres, NaN if
        none); ``n_plus`` and ``n_minus`` (means per voxel); ``f_iso_error``
        (mean absolute error, NaN unless both fractions are given).
    """
    success = match.success
    selected = np.ones(success.shape, dtype=bool) if mask is None else np.asarray(mask, bool)
    if selected.shape != success.shape:
        raise ValueError(f"mask shape {selected.shape} differs from the voxels' {success.shape}")
    n_voxels = int(selected.sum())
    angles = match.angles[selected]
    paired = np.isfinite(angles)
    summary = {
        "n_voxels": n_voxels,
        "success_rate": float(success[selected].mean()) if n_voxels else np.nan,
        "angular_error": float(angles[paired].mean()) if paired.any() else np.nan,
        "n_plus": float(match.false_positives[selected].mean()) if n_voxels else np.nan,
        "n_minus": float(match.false_negatives[selected].mean()) if n_voxels else np.nan,
        "f_iso_error": np.nan,
    }
    if f_iso is not None and true_f_iso is not None and n_voxels:
        error = np.abs(np.asarray(f_iso, np.float64) - np.asarray(true_f_iso, np.float64))
        summary["f_iso_error"] = float(np.broadcast_to(error, selected.shape)[selected].mean())
    return summary


def prune_peaks(
    directions,
    values,
    *,
    relative_peak_threshold: float = 0.5,
    min_separation_angle: float = 25.0,
    npeaks: int | None = None,
):
    """Apply peak-extraction thresholds to peaks found elsewhere (e.g. MRtrix3 ``sh2peaks``).

    The rules of :func:`rumba_bids.core.peaks.extract_peaks` for peak lists:
    peaks are sorted by value (largest first); those below
    ``relative_peak_threshold`` times the largest value are dropped (the
    floor ``max(0, min(odf))`` of ``extract_peaks`` is taken as 0, the ODF's
    minimum being unknown here); going down the list, a peak within
    ``min_separation_angle`` of a kept one is dropped.

    Parameters
    ----------
    directions : array_like, shape (..., P, 3)
        Unit vectors, NaN for missing peaks.
    values : array_like, shape (..., P)
        Peak amplitudes.
    relative_peak_threshold : float in [0, 1]
    min_separation_angle : float in [0, 90]
        Degrees.
    npeaks : int, optional
        Slots in the result (default P).

    Returns
    -------
    directions : ndarray, shape (..., npeaks, 3)
        NaN-padded, largest first.
    values : ndarray, shape (..., npeaks)
        0-padded.
    """
    directions = _as_direction_array(directions, "directions")
    values = np.asarray(values, dtype=np.float64)
    if values.shape != directions.shape[:-1]:
        raise ValueError(
            f"values {values.shape} must match directions {directions.shape} without the last axis"
        )
    if not 0 <= relative_peak_threshold <= 1:
        raise ValueError(
            f"relative_peak_threshold must be in [0, 1], got {relative_peak_threshold!r}"
        )
    if not 0 <= min_separation_angle <= 90:
        raise ValueError(
            f"min_separation_angle must be in [0, 90] degrees, got {min_separation_angle!r}"
        )
    shape, n_in = values.shape[:-1], values.shape[-1]
    npeaks = n_in if npeaks is None else int(npeaks)
    dirs = directions.reshape(-1, n_in, 3)
    vals = values.reshape(-1, n_in)
    present = np.isfinite(dirs).all(axis=-1) & np.isfinite(vals)
    order = np.argsort(np.where(present, -vals, np.inf), axis=1, kind="stable")
    dirs = np.take_along_axis(dirs, order[..., None], axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    present = np.take_along_axis(present, order, axis=1)
    largest = np.where(present[:, 0], vals[:, 0], 0.0)
    keep = present & (vals >= relative_peak_threshold * largest[:, None])
    cos_limit = np.cos(np.radians(min_separation_angle))
    for slot in range(1, n_in):
        near = np.abs(np.einsum("vk,vpk->vp", dirs[:, slot], dirs[:, :slot])) > cos_limit
        keep[:, slot] &= ~np.any(near & keep[:, :slot], axis=1)
    out_dirs = np.full((len(vals), npeaks, 3), np.nan)
    out_vals = np.zeros((len(vals), npeaks))
    rank = np.cumsum(keep, axis=1) - 1
    voxel, slot = np.nonzero(keep & (rank < npeaks))
    out_dirs[voxel, rank[voxel, slot]] = dirs[voxel, slot]
    out_vals[voxel, rank[voxel, slot]] = vals[voxel, slot]
    return out_dirs.reshape(shape + (npeaks, 3)), out_vals.reshape(shape + (npeaks,))
