"""The pre-flight check and the interfaces accept and refuse the same files.

Each case changes a small valid run, then runs the pre-flight
(:func:`rumba_bids.inputs.check.check_run`) and the graph's own checks (the
``CheckGradients`` and ``BrainMask`` interfaces, run for real): both must accept
it, or both refuse it with the same exit code and, apart from a missing file,
the same message.  Before the two paths were one, they disagreed on 3-column
b-vectors (graph yes, pre-flight no) and non-binary masks (the reverse).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from rumba_bids.inputs.check import check_run
from rumba_bids.inputs.record import DwiRun
from rumba_bids.interfaces.errors import RumbaInputError
from rumba_bids.interfaces.gradients import CheckGradients
from rumba_bids.interfaces.masking import BrainMask

SHAPE = (6, 6, 4)
BVALS = [0, 1000, 1000, 1000, 0, 1000, 1000, 1000]
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])


@pytest.fixture
def run_files(tmp_path):
    rng = np.random.default_rng(4)
    directions = rng.normal(size=(len(BVALS), 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    directions[np.asarray(BVALS) == 0] = 0
    data = (rng.random((*SHAPE, len(BVALS))) * 400 + 100).astype(np.int16)
    files = {
        "dwi": tmp_path / "sub-01_dwi.nii.gz",
        "bval": tmp_path / "sub-01_dwi.bval",
        "bvec": tmp_path / "sub-01_dwi.bvec",
        "mask": tmp_path / "sub-01_desc-brain_mask.nii.gz",
    }
    nib.save(nib.Nifti1Image(data, AFFINE), str(files["dwi"]))
    files["bval"].write_text(" ".join(map(str, BVALS)) + "\n")
    np.savetxt(files["bvec"], directions.T, fmt="%.6f")
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.uint8), AFFINE), str(files["mask"]))
    return files


def _bvecs(files):
    return np.loadtxt(files["bvec"])


def _mask(files, data, affine=AFFINE):
    nib.save(nib.Nifti1Image(data, affine), str(files["mask"]))


def _nan_voxel(files):
    image = nib.load(str(files["dwi"]))
    data = image.get_fdata(dtype=np.float32)
    data[1, 2, 3, 5] = np.nan
    nib.save(nib.Nifti1Image(data, AFFINE), str(files["dwi"]))


def _set_bvec(files, volume, value):
    bvecs = _bvecs(files)
    bvecs[:, volume] = value
    np.savetxt(files["bvec"], bvecs, fmt="%.6f")


#: (id, change(files), accepted, exit code when refused)
CASES = [
    ("valid", lambda f: None, True, None),
    ("bvec_three_columns", lambda f: np.savetxt(f["bvec"], _bvecs(f).T, fmt="%.6f"), True, None),
    ("bval_one_per_line", lambda f: f["bval"].write_text("\n".join(map(str, BVALS))), True, None),
    ("bvec_nan_on_b0", lambda f: _set_bvec(f, 0, np.nan), True, None),
    ("bvec_nan_weighted", lambda f: _set_bvec(f, 2, np.nan), False, 65),
    ("bvec_not_unit", lambda f: _set_bvec(f, 2, 2.0), False, 65),
    ("bvec_two_rows", lambda f: np.savetxt(f["bvec"], _bvecs(f)[:2], fmt="%.6f"), False, 65),
    ("bval_count", lambda f: f["bval"].write_text("0 1000 1000\n"), False, 65),
    ("no_b0", lambda f: f["bval"].write_text(" ".join(["1000"] * 8)), False, 65),
    ("bvec_missing", lambda f: f["bvec"].unlink(), False, 66),
    ("nan_voxel", _nan_voxel, False, 65),
    ("mask_float_binary", lambda f: _mask(f, np.ones(SHAPE, np.float32)), True, None),
    ("mask_not_binary", lambda f: _mask(f, np.full(SHAPE, 0.7, np.float32)), False, 65),
    ("mask_empty", lambda f: _mask(f, np.zeros(SHAPE, np.uint8)), False, 65),
    ("mask_other_shape", lambda f: _mask(f, np.ones((6, 6, 5), np.uint8)), False, 65),
    (
        "mask_other_affine",
        lambda f: _mask(f, np.ones(SHAPE, np.uint8), np.diag([2.5, 2.0, 2.0, 1.0])),
        False,
        65,
    ),
]


def _preflight(files, convention):
    run = DwiRun(
        str(files["dwi"]),
        str(files["bval"]),
        str(files["bvec"]),
        (("subject", "01"),),
        mask_file=str(files["mask"]),
        bvec_convention=convention,
    )
    try:
        check_run(run)
    except RumbaInputError as error:
        return error
    return None


def _graph(files, convention, cwd: Path):
    """The checks the graph runs: CheckGradients, then BrainMask reading the given mask."""
    try:
        checked = CheckGradients(
            dwi_file=str(files["dwi"]),
            bval_file=str(files["bval"]),
            bvec_file=str(files["bvec"]),
            bvec_convention=convention,
        ).run(cwd=str(cwd))
        BrainMask(
            dwi_file=str(files["dwi"]),
            bval_file=checked.outputs.bval_file,
            in_mask=str(files["mask"]),
        ).run(cwd=str(cwd))
    except RumbaInputError as error:
        return error
    return None


@pytest.mark.parametrize("convention", ["fsl", "ijk"])
@pytest.mark.parametrize("case", CASES, ids=[case[0] for case in CASES])
def test_preflight_and_graph_agree(case, convention, run_files, tmp_path):
    name, change, accepted, code = case
    change(run_files)
    up_front = _preflight(run_files, convention)
    in_graph = _graph(run_files, convention, tmp_path)
    assert (up_front is None) == (in_graph is None) == accepted, (up_front, in_graph)
    if accepted:
        return
    assert up_front.exit_code == in_graph.exit_code == code
    if name != "bvec_missing":  # the pre-flight names the run, the interface the file
        assert str(up_front) == str(in_graph)


def test_the_conventions_differ_only_by_the_fsl_flip(run_files, tmp_path):
    """Same files, both conventions, through the interface: x negated (det > 0) or not."""
    outputs = {}
    for convention in ("fsl", "ijk"):
        (tmp_path / convention).mkdir()
        result = CheckGradients(
            dwi_file=str(run_files["dwi"]),
            bval_file=str(run_files["bval"]),
            bvec_file=str(run_files["bvec"]),
            bvec_convention=convention,
        ).run(cwd=str(tmp_path / convention))
        outputs[convention] = np.loadtxt(result.outputs.bvec_file)
    np.testing.assert_allclose(outputs["fsl"], outputs["ijk"] * np.array([[-1], [1], [1]]))
    np.testing.assert_allclose(outputs["ijk"], _bvecs(run_files), atol=1e-6)
