"""Choosing slices and windows: mosaics, the slice with most crossings, glyph windows."""

from __future__ import annotations

import numpy as np
import pytest

from rumba_bids.reports.selection import (
    bounding_region,
    central_index,
    check_axis,
    glyph_region,
    mosaic_indices,
    most_crossing_slice,
    parse_region,
)


def test_mosaic_indices_stay_inside_the_mask():
    mask = np.zeros((10, 10, 30), dtype=bool)
    mask[2:8, 2:8, 5:25] = True
    indices = mosaic_indices(mask, 2, 5)
    assert len(indices) == 5 and min(indices) > 5 and max(indices) < 24
    assert indices == sorted(indices)
    assert mosaic_indices(np.zeros((4, 4, 4), bool), 0, 2) == [1, 2]
    with pytest.raises(ValueError, match="n_slices must be at least 1"):
        mosaic_indices(mask, 2, 0)


def test_most_crossing_slice_prefers_crossings_then_the_centre():
    mask = np.zeros((8, 8, 20), dtype=bool)
    mask[1:7, 1:7, 2:18] = True
    n_peaks = np.where(mask, 1, 0)
    assert most_crossing_slice(n_peaks, 2, mask=mask) == central_index(mask, 2) == 10
    n_peaks[3:5, 3:5, 15] = 2
    n_peaks[3:5, 3, 4] = 3
    assert most_crossing_slice(n_peaks, 2, mask=mask) == 15
    n_peaks[3:5, 4, 4] = 2  # 4 crossing voxels in slices 4 and 15: the one nearer 10 wins
    assert most_crossing_slice(n_peaks, 2, mask=mask) == 15
    assert most_crossing_slice(n_peaks, 0, mask=mask) in (3, 4)


def test_glyph_region_is_the_box_or_the_window_with_most_crossings():
    mask = np.zeros((60, 50), dtype=bool)
    mask[5:55, 4:46] = True
    n_peaks = np.where(mask, 1, 0)
    n_peaks[40:50, 30:40] = 2
    small = glyph_region(n_peaks, mask, max_side=64)
    assert small == bounding_region(mask) == (slice(5, 55), slice(4, 46))
    window = glyph_region(n_peaks, mask, max_side=20)
    assert [s.stop - s.start for s in window] == [20, 20]
    inside = np.zeros_like(mask)
    inside[window] = True
    assert inside[40:50, 30:40].all()
    assert window[0].start >= 5 and window[1].stop <= 46


def test_parse_region_and_axis_names():
    assert parse_region("3:7, 2:", (10, 12)) == (slice(3, 7), slice(2, 12))
    with pytest.raises(ValueError, match="region must look like 'A0:A1,B0:B1'"):
        parse_region("3:7", (10, 12))
    with pytest.raises(ValueError, match="bounds must be integers"):
        parse_region("a:7,1:2", (10, 12))
    with pytest.raises(ValueError, match=r"range 8:20 is empty or outside the slice \(size 12\)"):
        parse_region("1:2,8:20", (10, 12))
    assert [check_axis(a) for a in ("sagittal", "coronal", "axial", 2)] == [0, 1, 2, 2]
    with pytest.raises(ValueError, match="axis must be 0, 1, 2 or one of"):
        check_axis("oblique")
