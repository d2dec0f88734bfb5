"""Pre-flight check of a DWI run record: every bad input gets its message and exit code."""

import gzip

import nibabel as nib
import numpy as np
import pytest

from rumba_bids.cli.errors import DataError, ExitCode, InputMissingError
from rumba_bids.inputs.check import check_run
from rumba_bids.inputs.record import DwiRun

STEM = "sub-02/dwi/sub-02_dwi"


@pytest.fixture
def run(demo_copy):
    stem = demo_copy / STEM
    return {
        "dwi_file": stem.with_name(stem.name + ".nii.gz"),
        "bval_file": stem.with_name(stem.name + ".bval"),
        "bvec_file": stem.with_name(stem.name + ".bvec"),
    }


def check(run, **changes):
    files = {
        key: None if value is None else str(value) for key, value in {**run, **changes}.items()
    }
    return check_run(DwiRun(entities=(("subject", "02"),), **files))


def test_valid_run(run):
    checked = check(run)
    assert checked.checked and checked.n_volumes == 100 and checked.n_b0 == 10
    assert checked.shells == (1000.0, 2000.0, 3000.0) and checked.n_shells == 3


def test_missing_files(run, tmp_path):
    with pytest.raises(InputMissingError, match="no .bval file for this run") as info:
        check(run, bval_file=None)
    assert info.value.exit_code == ExitCode.NO_INPUT
    assert "sub-02_dwi.bval" in info.value.one_line()
    with pytest.raises(InputMissingError, match="DWI image does not exist"):
        check(run, dwi_file=tmp_path / "none.nii.gz")


def test_count_mismatch(run):
    bvals = run["bval_file"].read_text().split()
    run["bval_file"].write_text(" ".join(bvals[:-1]) + "\n")
    with pytest.raises(DataError, match="99 b-values but sub-02_dwi.nii.gz has 100 volumes"):
        check(run)


def test_bvec_mismatch_and_format(run):
    rows = run["bvec_file"].read_text().splitlines()
    run["bvec_file"].write_text("\n".join(rows[:2]) + "\n")
    with pytest.raises(DataError, match="expected 3 rows of b-vectors"):
        check(run)


def test_no_b0(run):
    bvals = np.loadtxt(run["bval_file"])
    bvals[bvals == 0] = 1000
    np.savetxt(run["bval_file"], bvals[None], fmt="%d")
    with pytest.raises(DataError, match="no b0 volume") as info:
        check(run)
    assert info.value.exit_code == ExitCode.DATA


def test_unparseable_bval(run):
    run["bval_file"].write_text("zero thousand\n")
    with pytest.raises(DataError, match="cannot parse the b-value file"):
        check(run)


def test_3d_image(run):
    img = nib.load(str(run["dwi_file"]))
    nib.save(img.slicer[..., 0], str(run["dwi_file"]))
    with pytest.raises(DataError, match="is a 3D image"):
        check(run)


def test_corrupt_and_truncated_images(run):
    original = run["dwi_file"].read_bytes()
    run["dwi_file"].write_bytes(original[: len(original) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        check(run)
    run["dwi_file"].write_bytes(b"not a nifti file at all")
    with pytest.raises(DataError, match="cannot read the NIfTI header"):
        check(run)
    # a valid gzip stream of a truncated NIfTI
    raw = gzip.decompress(original)
    run["dwi_file"].write_bytes(gzip.compress(raw[: len(raw) // 3]))
    with pytest.raises(DataError):
        check(run)


def test_nans(run):
    img = nib.load(str(run["dwi_file"]))
    data = img.get_fdata(dtype=np.float32)
    data[3, 4, 5, 6] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), str(run["dwi_file"]))
    with pytest.raises(DataError, match="holds 1 NaN or infinite values"):
        check(run)


def test_mask_on_another_grid(run, tmp_path):
    img = nib.load(str(run["dwi_file"]))
    mask = tmp_path / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.uint8), img.affine), str(mask))
    with pytest.raises(DataError, match="does not match the DWI grid"):
        check(run, mask_file=mask)
    nib.save(nib.Nifti1Image(np.zeros(img.shape[:3], np.uint8), img.affine), str(mask))
    with pytest.raises(DataError, match="mask is empty"):
        check(run, mask_file=mask)
