"""CheckGradients: real runs on the synthetic phantom and DIPY's small_64D, and bad inputs."""

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from rumba_bids.core.phantoms import make_acquisition
from rumba_bids.interfaces.errors import InputDataError, InputMissingError
from rumba_bids.interfaces.gradients import CheckGradients, check_gradient_files


def _run(files, tmp_path, **inputs):
    interface = CheckGradients(
        dwi_file=files.dwi_file, bval_file=files.bval_file, bvec_file=files.bvec_file, **inputs
    )
    return interface.run(cwd=str(tmp_path)).outputs


def test_synthetic_bvecs_are_unflipped_into_the_voxel_frame(synthetic_dwi, tmp_path):
    outputs = _run(synthetic_dwi, tmp_path)
    truth = make_acquisition(n_b0=3, n_dirs=30, bvals=(1000.0,))  # what the phantom used
    bvecs = np.loadtxt(outputs.bvec_file)
    # the affine has a positive determinant: the FSL x flip is undone
    np.testing.assert_allclose(bvecs.T, truth.bvecs, atol=1e-8)
    np.testing.assert_allclose(np.loadtxt(outputs.bval_file), truth.bvals)
    assert outputs.b0_mask == [True] * 3 + [False] * 30
    assert outputs.shells == [1000.0]
    assert outputs.n_volumes == 33
    assert outputs.bvec_file.startswith(str(tmp_path))


def test_small_64d_matches_dipy_reading(small_64d, tmp_path):
    from dipy.io.gradients import read_bvals_bvecs

    outputs = _run(small_64d, tmp_path)
    bvals, bvecs = read_bvals_bvecs(small_64d.bval_file, small_64d.bvec_file)
    # N x 3 file with NaN for the b0: accepted, NaN -> 0; negative determinant: no flip
    assert np.isnan(bvecs[0]).all()
    assert np.linalg.det(nib.load(small_64d.dwi_file).affine[:3, :3]) < 0
    ours = np.loadtxt(outputs.bvec_file).T
    np.testing.assert_array_equal(ours[0], 0.0)
    expected = bvecs[1:] / np.linalg.norm(bvecs[1:], axis=1, keepdims=True)
    np.testing.assert_allclose(ours[1:], expected, atol=1e-9)
    np.testing.assert_allclose(np.loadtxt(outputs.bval_file), bvals, rtol=1e-6)
    assert sum(outputs.b0_mask) == 1 and len(outputs.shells) == 1


def test_flip_depends_on_the_affine_determinant(synthetic_dwi, tmp_path):
    image = nib.load(synthetic_dwi.dwi_file)
    flipped = np.diag([-2.0, 2.0, 2.0, 1.0])  # negative determinant: FSL stores as is
    radiological = tmp_path / "neg_dwi.nii.gz"
    nib.Nifti1Image(image.get_fdata(dtype=np.float32), flipped).to_filename(radiological)
    gtab = check_gradient_files(radiological, synthetic_dwi.bval_file, synthetic_dwi.bvec_file)
    np.testing.assert_allclose(gtab.bvecs, np.loadtxt(synthetic_dwi.bvec_file).T, atol=1e-7)


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_missing_files_are_named(synthetic_dwi, tmp_path):
    missing = str(tmp_path / "absent_dwi.nii.gz")
    with pytest.raises(InputMissingError, match=re.escape(f"{missing}: DWI image does not exist")):
        check_gradient_files(missing, synthetic_dwi.bval_file, synthetic_dwi.bvec_file)
    bval = str(tmp_path / "absent.bval")
    with pytest.raises(InputMissingError, match=re.escape(f"{bval}: b-value file does not exist")):
        _run(
            synthetic_dwi.__class__(synthetic_dwi.dwi_file, bval, synthetic_dwi.bvec_file),
            tmp_path,
        )


def test_count_mismatches_name_both_files(synthetic_dwi, tmp_path):
    bvals = np.loadtxt(synthetic_dwi.bval_file)
    short_bval = _write(tmp_path / "short.bval", " ".join(f"{b:g}" for b in bvals[:-1]))
    name = Path(synthetic_dwi.dwi_file).name
    expected = f"{short_bval}: 32 b-values but {name} has 33 volumes"
    with pytest.raises(InputDataError, match=re.escape(expected)):
        check_gradient_files(synthetic_dwi.dwi_file, short_bval, synthetic_dwi.bvec_file)
    bvecs = np.loadtxt(synthetic_dwi.bvec_file)
    short_bvec = tmp_path / "short.bvec"
    np.savetxt(short_bvec, bvecs[:, :-2])
    expected = f"{short_bvec}: 31 b-vectors but {name} has 33 volumes"
    with pytest.raises(InputDataError, match=re.escape(expected)):
        check_gradient_files(synthetic_dwi.dwi_file, synthetic_dwi.bval_file, short_bvec)


def test_3d_image_is_refused(synthetic_dwi, tmp_path):
    volume = tmp_path / "b0.nii.gz"
    nib.Nifti1Image(np.ones((5, 5, 5), np.float32), np.eye(4)).to_filename(volume)
    with pytest.raises(InputDataError, match=re.escape(f"{volume}: is a 3D image")):
        check_gradient_files(volume, synthetic_dwi.bval_file, synthetic_dwi.bvec_file)


def test_unreadable_and_invalid_values(synthetic_dwi, tmp_path):
    garbage = _write(tmp_path / "garbage.nii.gz", "not an image")
    with pytest.raises(
        InputDataError, match=re.escape(f"{garbage}: cannot read the NIfTI header")
    ):
        check_gradient_files(garbage, synthetic_dwi.bval_file, synthetic_dwi.bvec_file)
    words = _write(tmp_path / "words.bval", "zero thousand")
    with pytest.raises(InputDataError, match=re.escape(f"{words}: cannot parse the b-value file")):
        check_gradient_files(synthetic_dwi.dwi_file, words, synthetic_dwi.bvec_file)
    no_b0 = _write(tmp_path / "nob0.bval", " ".join(["1000"] * 33))
    with pytest.raises(InputDataError, match=re.escape(f"{no_b0}: no b0 volume")):
        check_gradient_files(synthetic_dwi.dwi_file, no_b0, synthetic_dwi.bvec_file)
    bvecs = np.loadtxt(synthetic_dwi.bvec_file)
    bvecs[:, 5] *= 3  # not a unit vector
    long_bvec = tmp_path / "long.bvec"
    np.savetxt(long_bvec, bvecs)
    with pytest.raises(InputDataError, match=re.escape(f"{long_bvec}: 1 diffusion-weighted")):
        check_gradient_files(synthetic_dwi.dwi_file, synthetic_dwi.bval_file, long_bvec)
    bvecs[:, 5] = np.nan
    nan_bvec = tmp_path / "nan.bvec"
    np.savetxt(nan_bvec, bvecs)
    with pytest.raises(
        InputDataError,
        match=re.escape(
            f"{nan_bvec}: the b-vector file holds NaN or infinite values for 1 diffusion"
        ),
    ):
        check_gradient_files(synthetic_dwi.dwi_file, synthetic_dwi.bval_file, nan_bvec)
