"""Fibre matching and challenge metrics on hand-made cases."""

import numpy as np
import pytest

from rumba_bids.core import get_sphere
from rumba_bids.core.peaks import extract_peaks
from rumba_bids.core.scoring import (
    axis_angle,
    match_fibres,
    prune_peaks,
    summarise_matches,
)

NAN3 = [np.nan] * 3


def in_plane(*degrees):
    """Unit vectors in the xy-plane at the given azimuths, shape (n, 3)."""
    t = np.radians(degrees)
    return np.stack([np.cos(t), np.sin(t), np.zeros_like(t)], axis=1)


def test_axis_angle_ignores_sign_and_propagates_nan():
    a = in_plane(0, 0, 0)
    b = np.array([[-1.0, 0, 0], [0, 1.0, 0], NAN3])
    angles = axis_angle(a, b)
    np.testing.assert_allclose(angles[:2], [0.0, 90.0], atol=1e-12)
    assert np.isnan(angles[2])
    np.testing.assert_allclose(axis_angle(in_plane(10), -in_plane(130)), [60.0])


def test_perfect_match_is_a_success_with_zero_error():
    true = np.concatenate([in_plane(0, 70), [NAN3]])
    peaks = np.concatenate([-in_plane(70, 0), [NAN3, NAN3, NAN3]])
    m = match_fibres(peaks, true)
    assert m.success and m.n_matched == 2
    assert m.false_positives == 0 and m.false_negatives == 0
    np.testing.assert_allclose(m.angular_error, 0.0, atol=1e-6)
    assert np.isnan(m.angles[2])  # padding row


def test_extra_missing_and_distant_peaks_are_counted():
    true = np.stack([np.concatenate([in_plane(0, 90), [NAN3]])] * 3)
    peaks = np.full((3, 4, 3), np.nan)
    peaks[0, :3] = in_plane(2, 88, 45)  # one extra peak
    peaks[1, :1] = in_plane(3)  # one fibre missed
    peaks[2, :2] = in_plane(0, 60)  # second peak 30 degrees off
    m = match_fibres(peaks, true, max_angle=20)
    np.testing.assert_array_equal(m.false_positives, [1, 0, 1])
    np.testing.assert_array_equal(m.false_negatives, [0, 1, 1])
    np.testing.assert_array_equal(m.success, [False, False, False])
    np.testing.assert_allclose(m.angular_error, [2.0, 3.0, 0.0], atol=1e-9)


def test_pairing_maximises_the_number_of_pairs_before_the_angle():
    # greedy nearest-first would pair 0 deg with 10 deg and leave 35 deg unpaired
    true = in_plane(0, 35)
    peaks = in_plane(10, -15)
    m = match_fibres(peaks, true, max_angle=26)
    assert m.success
    np.testing.assert_allclose(np.sort(m.angles), [15.0, 25.0], atol=1e-9)
    # with a tighter cone only one pair can be made, the closest one
    m = match_fibres(peaks, true, max_angle=20)
    assert m.n_matched == 1 and m.false_positives == 1 and m.false_negatives == 1
    np.testing.assert_allclose(m.angular_error, 10.0, atol=1e-9)


def test_more_true_fibres_than_peak_slots_and_empty_voxels():
    true = np.concatenate([in_plane(0, 60, 120)])
    peaks = in_plane(1)
    m = match_fibres(peaks, true)
    assert (m.n_matched, m.false_positives, m.false_negatives) == (1, 0, 2)
    empty = match_fibres(np.full((1, 3), np.nan), np.full((2, 3), np.nan))
    assert empty.success and empty.n_matched == 0 and np.isnan(empty.angular_error)


def test_match_keeps_the_voxel_shape():
    rng = np.random.default_rng(0)
    true = rng.normal(size=(2, 3, 2, 3))
    true /= np.linalg.norm(true, axis=-1, keepdims=True)
    m = match_fibres(true[..., ::-1, :], true)
    assert m.success.shape == (2, 3) and m.angles.shape == (2, 3, 2)
    assert m.success.all()


def test_match_rejects_bad_input():
    with pytest.raises(ValueError, match="different voxels"):
        match_fibres(np.zeros((2, 1, 3)), np.zeros((3, 1, 3)))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., n, 3\)"):
        match_fibres(np.zeros((2, 2)), np.zeros((2, 1, 3)))
    with pytest.raises(ValueError, match="max_angle"):
        match_fibres(in_plane(0), in_plane(0), max_angle=0)


def test_summary_pools_fibres_and_voxels():
    true = np.full((3, 2, 3), np.nan)
    true[0] = in_plane(0, 90)
    true[1, 0] = in_plane(0)[0]
    true[2] = in_plane(0, 90)
    peaks = np.full((3, 3, 3), np.nan)
    peaks[0, :2] = in_plane(4, 92)  # success, errors 4 and 2
    peaks[1, :2] = in_plane(6, 90)  # one extra peak, error 6
    peaks[2, :1] = in_plane(0)  # one missed fibre, error 0
    m = match_fibres(peaks, true)
    summary = summarise_matches(m, f_iso=[0.1, 0.2, 0.3], true_f_iso=[0.0, 0.2, 0.0])
    assert summary["n_voxels"] == 3
    assert summary["success_rate"] == pytest.approx(1 / 3)
    assert summary["angular_error"] == pytest.approx((4 + 2 + 6 + 0) / 4)
    assert summary["n_plus"] == pytest.approx(1 / 3)
    assert summary["n_minus"] == pytest.approx(1 / 3)
    assert summary["f_iso_error"] == pytest.approx(0.4 / 3)
    masked = summarise_matches(m, mask=[True, False, False])
    assert masked["success_rate"] == 1.0 and masked["angular_error"] == pytest.approx(3.0)
    assert np.isnan(masked["f_iso_error"])
    with pytest.raises(ValueError, match="mask shape"):
        summarise_matches(m, mask=[True, False])


def test_prune_peaks_sorts_thresholds_and_separates():
    directions = np.concatenate([in_plane(50, 0, 10, 90), [NAN3]])
    values = np.array([0.3, 1.0, 0.8, 0.1, 0.9])
    out_dirs, out_vals = prune_peaks(
        directions, values, relative_peak_threshold=0.25, min_separation_angle=25
    )
    # 10 deg is within 25 deg of the larger 0 deg peak; 90 deg is below 0.25 x 1.0
    np.testing.assert_allclose(out_vals, [1.0, 0.3, 0, 0, 0])
    np.testing.assert_allclose(out_dirs[:2], in_plane(0, 50), atol=1e-12)
    assert np.isnan(out_dirs[2:]).all()
    out_dirs, out_vals = prune_peaks(directions, values, min_separation_angle=5, npeaks=2)
    np.testing.assert_allclose(out_vals, [1.0, 0.8])
    with pytest.raises(ValueError, match="relative_peak_threshold"):
        prune_peaks(directions, values, relative_peak_threshold=2)
    with pytest.raises(ValueError, match="min_separation_angle"):
        prune_peaks(directions, values, min_separation_angle=100)
    with pytest.raises(ValueError, match="must match"):
        prune_peaks(directions, values[:3])


def test_prune_peaks_agrees_with_extract_peaks():
    """All local maxima pruned afterwards == extract_peaks with the thresholds."""
    sphere = get_sphere("repulsion200")
    rng = np.random.default_rng(3)
    lobes = rng.normal(size=(40, 3, 3))
    lobes /= np.linalg.norm(lobes, axis=-1, keepdims=True)
    weights = rng.uniform(0.2, 1.0, size=(40, 3))
    # sums of sharp lobes, shifted so that min(odf) < 0 (extract_peaks' floor is then 0)
    odfs = np.einsum("vl,vln->vn", weights, np.abs(lobes @ sphere.vertices.T) ** 12) - 0.05
    every = extract_peaks(
        odfs, sphere, relative_peak_threshold=0, min_separation_angle=0, npeaks=20, refine=False
    )
    pruned_dirs, pruned_vals = prune_peaks(
        every.directions,
        every.values,
        relative_peak_threshold=0.3,
        min_separation_angle=25,
        npeaks=5,
    )
    direct = extract_peaks(
        odfs, sphere, relative_peak_threshold=0.3, min_separation_angle=25, npeaks=5, refine=False
    )
    np.testing.assert_allclose(pruned_vals, direct.values)
    np.testing.assert_array_equal(np.isnan(pruned_dirs), np.isnan(direct.directions))
    np.testing.assert_allclose(np.nan_to_num(pruned_dirs), np.nan_to_num(direct.directions))
