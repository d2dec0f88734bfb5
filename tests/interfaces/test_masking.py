"""BrainMask: median_otsu on real and synthetic data, and given masks checked against the grid."""

import re

import nibabel as nib
import numpy as np
import pytest

from rumba_bids.core.masking import median_otsu
from rumba_bids.interfaces.errors import InputDataError
from rumba_bids.interfaces.masking import BrainMask


def _run(files, tmp_path, **inputs):
    interface = BrainMask(dwi_file=files.dwi_file, bval_file=files.bval_file, **inputs)
    return interface.run(cwd=str(tmp_path)).outputs


def test_small_64d_mask_matches_dipy_median_otsu(small_64d, tmp_path):
    from dipy.segment.mask import median_otsu as dipy_median_otsu

    outputs = _run(small_64d, tmp_path)
    assert outputs.method == "median_otsu"
    mask_image = nib.load(outputs.out_mask)
    dwi = nib.load(small_64d.dwi_file)
    assert mask_image.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(mask_image.affine, dwi.affine)
    data = dwi.get_fdata()
    b0s = np.flatnonzero(np.loadtxt(small_64d.bval_file) <= 50)
    _, expected = dipy_median_otsu(data, vol_idx=b0s, median_radius=4, numpass=4)
    mask = np.asarray(mask_image.dataobj).astype(bool)
    assert 0 < mask.sum() < mask.size
    np.testing.assert_array_equal(mask, expected)


def test_synthetic_mask_uses_the_options(synthetic_dwi, tmp_path):
    outputs = _run(synthetic_dwi, tmp_path, median_radius=1, numpass=1, dilate=1)
    data = nib.load(synthetic_dwi.dwi_file).get_fdata()
    _, expected = median_otsu(data[..., :3].mean(axis=-1), median_radius=1, numpass=1, dilate=1)
    mask = nib.load(outputs.out_mask).get_fdata().astype(bool)
    np.testing.assert_array_equal(mask, expected)
    brain = nib.load(synthetic_dwi.mask_file).get_fdata().astype(bool)
    assert mask[2, 2, 2] and mask[brain].mean() > 0.5


def test_given_mask_is_checked_like_the_preflight(synthetic_dwi, tmp_path):
    """A 0/1 float mask is used (saved as uint8); weights are refused, as up front."""
    brain = nib.load(synthetic_dwi.mask_file)
    as_float = tmp_path / "float_mask.nii.gz"
    nib.Nifti1Image(brain.get_fdata().astype(np.float32), brain.affine).to_filename(as_float)
    outputs = _run(synthetic_dwi, tmp_path, in_mask=str(as_float))
    assert outputs.method == "given"
    mask = nib.load(outputs.out_mask)
    assert mask.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asarray(mask.dataobj), brain.get_fdata())
    weights = tmp_path / "weights.nii.gz"
    nib.Nifti1Image(brain.get_fdata() * 0.7, brain.affine).to_filename(weights)
    with pytest.raises(
        InputDataError, match=re.escape(f"{weights}: the brain mask is not binary")
    ):
        _run(synthetic_dwi, tmp_path, in_mask=str(weights))


def test_given_mask_on_another_grid_is_refused(synthetic_dwi, tmp_path):
    brain = nib.load(synthetic_dwi.mask_file)
    shifted = tmp_path / "shifted_mask.nii.gz"
    affine = brain.affine.copy()
    affine[0, 3] += 2.0
    nib.Nifti1Image(brain.get_fdata(), affine).to_filename(shifted)
    with pytest.raises(InputDataError, match=re.escape(f"{shifted}: mask affine")):
        _run(synthetic_dwi, tmp_path, in_mask=str(shifted))
    smaller = tmp_path / "small_mask.nii.gz"
    nib.Nifti1Image(np.ones((4, 5, 5), np.uint8), brain.affine).to_filename(smaller)
    with pytest.raises(InputDataError, match=rf"{re.escape(str(smaller))}: .*shape \(4, 5, 5\)"):
        _run(synthetic_dwi, tmp_path, in_mask=str(smaller))
    empty = tmp_path / "empty_mask.nii.gz"
    nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), brain.affine).to_filename(empty)
    with pytest.raises(InputDataError, match=re.escape(f"{empty}: the brain mask is empty")):
        _run(synthetic_dwi, tmp_path, in_mask=str(empty))
