"""Tests of rumba_bids.core.masking (median_otsu), side by side with DIPY."""

import os

import numpy as np
import pytest
from dipy_lazy import LazyModule

from rumba_bids.core.gradients import GradientTable
from rumba_bids.core.head_phantom import make_head_phantom
from rumba_bids.core.masking import (
    bounding_box,
    largest_component,
    median_otsu,
    multi_median,
    otsu_threshold,
)
from rumba_bids.core.phantoms import make_acquisition

nib = pytest.importorskip("nibabel")
dipy_mask = LazyModule("dipy.segment.mask")


def dipy_file(name):
    """A file of DIPY's installed test data (skips without DIPY)."""
    dipy = pytest.importorskip("dipy", reason="needs DIPY's test data (pip install -e .[test])")
    return os.path.join(os.path.dirname(dipy.__file__), "data", "files", name)


def dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def load_scan(name):
    path = dipy_file(name)
    if not os.path.exists(path):
        pytest.skip(f"DIPY data file {name} not installed")
    return np.asarray(nib.load(path).dataobj)


def b0_indices(name, n_volumes):
    stem = name.split(".")[0]
    bval_path = dipy_file(stem + ".bval")
    if not os.path.exists(bval_path):
        return [0]
    bvals = np.loadtxt(bval_path).ravel()
    assert len(bvals) == n_volumes
    return np.flatnonzero(bvals <= 50)


PARAMETER_SETS = [
    {},
    {"median_radius": 2, "numpass": 1},
    {"median_radius": 3, "numpass": 2, "dilate": 1},
]


@pytest.mark.parametrize(
    "name", ["small_64D.nii", "small_101D.nii.gz", "small_25.nii.gz", "S0_10slices.nii.gz"]
)
@pytest.mark.parametrize("params", PARAMETER_SETS)
def test_real_scans_match_dipy(name, params):
    data = load_scan(name)
    vol_idx = b0_indices(name, data.shape[-1]) if data.ndim == 4 else None
    _, expected = dipy_mask.median_otsu(data, vol_idx=vol_idx, **params)
    masked, mask = median_otsu(data, vol_idx=vol_idx, **params)
    assert mask.dtype == bool and mask.shape == data.shape[:3]
    assert mask.any()
    assert dice(mask, expected) >= 0.99
    assert masked.shape == data.shape
    assert np.all(masked[~mask] == 0)
    assert np.array_equal(masked[mask], data[mask])


@pytest.fixture(scope="module")
def head():
    gtab = make_acquisition(n_b0=4, n_dirs=30)
    return make_head_phantom(gtab, shape=(36, 40, 22), snr=20, rng=3)


def test_synthetic_head_matches_dipy_and_truth(head):
    b0s = np.flatnonzero(head.gtab.b0s_mask)
    _, expected = dipy_mask.median_otsu(head.signal, vol_idx=b0s, median_radius=2, numpass=2)
    _, mask = median_otsu(head.signal, gtab=head.gtab, median_radius=2, numpass=2)
    assert dice(mask, expected) >= 0.99
    # and it finds the simulated head: all of the brain, hardly any air
    assert (mask & head.brain_mask).sum() > 0.98 * head.brain_mask.sum()
    assert (mask & ~head.head_mask).sum() < 0.02 * mask.sum()


def test_finalize_keeps_largest_component_without_holes(head):
    _, mask = median_otsu(head.signal, gtab=head.gtab, median_radius=2, numpass=2)
    noisy = mask.copy()
    noisy[0:2, 0:2, 0:2] = True  # an island
    centre = tuple(s // 2 for s in mask.shape)
    noisy[centre] = False  # a hole
    cleaned = largest_component(noisy)
    assert not cleaned[0, 0, 0] and cleaned[centre]
    _, finalized = median_otsu(
        head.signal, gtab=head.gtab, median_radius=2, numpass=2, finalize=True
    )
    from scipy import ndimage

    assert ndimage.label(finalized)[1] == 1
    assert np.array_equal(ndimage.binary_fill_holes(finalized), finalized)


def test_4d_defaults_and_selection(head):
    data = head.signal
    b0s = head.gtab.b0s_mask
    _, by_gtab = median_otsu(data, gtab=head.gtab, median_radius=1, numpass=1)
    _, by_bool = median_otsu(data, vol_idx=b0s, median_radius=1, numpass=1)
    _, by_index = median_otsu(data, vol_idx=np.flatnonzero(b0s), median_radius=1, numpass=1)
    assert np.array_equal(by_gtab, by_bool) and np.array_equal(by_gtab, by_index)
    with pytest.raises(ValueError, match="pass vol_idx"):
        median_otsu(data)
    with pytest.raises(ValueError, match="one entry per volume"):
        median_otsu(data, vol_idx=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="out of range"):
        median_otsu(data, vol_idx=[data.shape[-1]])
    with pytest.raises(ValueError, match="3D or 4D"):
        median_otsu(data[0, 0])
    other = GradientTable([0, 1000, 1000, 1000], np.eye(4, 3, k=-1))
    with pytest.raises(ValueError, match="gradient table has 4 volumes"):
        median_otsu(data, gtab=other)


def test_autocrop_and_dilate():
    volume = np.zeros((30, 30, 30))
    volume[8:20, 10:22, 5:25] = 100.0
    _, mask = median_otsu(volume, median_radius=1, numpass=1)
    masked, cropped = median_otsu(volume, median_radius=1, numpass=1, autocrop=True)
    box = bounding_box(mask)
    assert cropped.shape == masked.shape == mask[box].shape
    assert cropped.sum() == mask.sum()
    _, dilated = median_otsu(volume, median_radius=1, numpass=1, dilate=2)
    assert dilated.sum() > mask.sum() and np.all(dilated[mask])


MEDIAN_CASES = {
    # shape, radius, passes, values
    "random": ((41, 23, 17), 2, 2, "random"),
    "ties": ((19, 14, 11), 2, 3, "integers"),
    "window-wider-than-axes": ((3, 2, 9), 4, 1, "random"),
    "one-slice": ((1, 7, 5), 4, 2, "integers"),
    "radius-one": ((6, 6, 6), 1, 1, "random"),
    "constant": ((5, 6, 7), 2, 1, "constant"),
}


@pytest.mark.parametrize("case", MEDIAN_CASES, ids=list(MEDIAN_CASES))
def test_multi_median_matches_scipy_and_is_thread_safe(case):
    """The rank histogram filter gives scipy's median_filter bit for bit (reflected edges,
    windows wider than the volume, ties), on any number of threads."""
    from scipy.ndimage import median_filter

    shape, radius, passes, kind = MEDIAN_CASES[case]
    rng = np.random.default_rng(0)
    volume = {
        "random": lambda: rng.random(shape),
        "integers": lambda: rng.integers(0, 4, shape).astype(float) * 0.1,
        "constant": lambda: np.full(shape, 3.5),
    }[kind]()
    expected = volume
    for _ in range(passes):
        expected = median_filter(expected, size=2 * radius + 1)
    for n_threads in (1, 2, 3):
        out = multi_median(volume, median_radius=radius, numpass=passes, n_threads=n_threads)
        assert out.dtype == np.float64
        np.testing.assert_array_equal(out, expected)
    assert np.array_equal(multi_median(volume, median_radius=radius, numpass=0), volume)


def test_multi_median_needs_a_volume():
    with pytest.raises(ValueError, match="3D volume"):
        multi_median(np.zeros((4, 4)), median_radius=1, numpass=1)


def test_otsu_threshold_matches_dipy():
    otsu = pytest.importorskip("dipy.segment.threshold").otsu

    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(10, 2, 5000), rng.normal(40, 5, 3000)])
    assert otsu_threshold(values) == pytest.approx(otsu(values))
    assert 15 < otsu_threshold(values) < 30
    with pytest.raises(ValueError, match="finite"):
        otsu_threshold([1.0, np.nan])


def test_bounding_box_empty():
    assert bounding_box(np.zeros((3, 3), dtype=bool)) == (slice(0, 0), slice(0, 0))
