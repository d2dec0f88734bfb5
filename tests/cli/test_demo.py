"""rumba-bids-demo: a valid BIDS dataset with its ground truth."""

import json
import subprocess

import nibabel as nib
import numpy as np
import pytest
from bids import BIDSLayout

from rumba_bids.cli.demo import main
from rumba_bids.cli.validation import find_validator
from rumba_bids.core.gradients import GradientTable, bvecs_fsl_to_voxel
from rumba_bids.core.head_phantom import demo_gradient_table
from rumba_bids.interfaces.derivatives import pybids_config


def test_layout(demo_template):
    layout = BIDSLayout(str(demo_template), validate=False)
    assert layout.get_subjects() == ["01", "02"]
    runs = layout.get(suffix="dwi", extension=".nii.gz", return_type="filename")
    assert [p.split("/bids/")[1] for p in runs] == [
        "sub-01/ses-1/dwi/sub-01_ses-1_dwi.nii.gz",
        "sub-01/ses-2/dwi/sub-01_ses-2_dwi.nii.gz",
        "sub-02/dwi/sub-02_dwi.nii.gz",
    ]
    description = json.loads((demo_template / "dataset_description.json").read_text())
    assert description["DatasetType"] == "raw"
    participants = (demo_template / "participants.tsv").read_text().splitlines()
    assert participants == [
        "participant_id\tacquisition",
        "sub-01\tsingle-shell",
        "sub-02\tmulti-shell",
    ]


@pytest.mark.parametrize(
    ("stem", "shells", "flipped"),
    [
        ("sub-01/ses-1/dwi/sub-01_ses-1_dwi", (2000.0,), True),
        ("sub-02/dwi/sub-02_dwi", (1000.0, 2000.0, 3000.0), False),
    ],
)
def test_gradients_follow_the_fsl_convention(demo_template, stem, shells, flipped):
    img = nib.load(str(demo_template / (stem + ".nii.gz")))
    assert (np.linalg.det(img.affine[:3, :3]) > 0) == flipped
    bvals = np.loadtxt(demo_template / (stem + ".bval"))
    bvecs = np.loadtxt(demo_template / (stem + ".bvec")).T
    assert img.shape[3] == len(bvals) == len(bvecs)
    assert img.get_data_dtype() == np.int16
    gtab = GradientTable(bvals, bvecs_fsl_to_voxel(bvecs, img.affine))
    expected = demo_gradient_table(n_b0=10, n_dirs=64 if flipped else 90, bvals=shells)
    np.testing.assert_allclose(gtab.bvecs, expected.bvecs, atol=1e-6)
    assert tuple(gtab.shells) == shells


def test_ground_truth(demo_template):
    gt = demo_template / "derivatives" / "groundtruth"
    layout = BIDSLayout(str(gt), config=pybids_config(), validate=False)
    peaks = layout.get(subject="02", model="groundtruth", param="peaks", extension=".nii.gz")
    assert len(peaks) == 1
    directions = nib.load(peaks[0].path).get_fdata()
    n_fibres = nib.load(
        layout.get(subject="02", param="nfibers", extension=".nii.gz")[0].path
    ).get_fdata()
    assert directions.shape[3] == 9
    present = np.isfinite(directions.reshape(directions.shape[:3] + (3, 3))[..., 0])
    assert np.array_equal(present.sum(-1), n_fibres)
    sidecar = json.loads(open(peaks[0].path.replace(".nii.gz", ".json")).read())
    assert sidecar["OrientationEncoding"]["Reference"] == "ijk"
    fractions = [
        nib.load(layout.get(subject="02", param=p, extension=".nii.gz")[0].path).get_fdata()
        for p in ("fwm", "fgm", "fcsf")
    ]
    brain = (
        nib.load(
            layout.get(subject="02", desc="brain", suffix="mask", extension=".nii.gz")[0].path
        ).get_fdata()
        > 0
    )
    np.testing.assert_allclose(sum(fractions)[brain], 1.0, atol=1e-6)
    assert (gt / "desc-tissue_dseg.tsv").read_text().startswith("index\tname\n0\tbackground")


def test_bids_validator_accepts_the_demo(demo_template):
    validator = find_validator()
    if validator is None:
        pytest.skip("bids-validator-deno is not installed (pip install bids-validator-deno)")
    completed = subprocess.run(
        [validator, str(demo_template), "--format", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    issues = json.loads(completed.stdout)["issues"]["issues"]
    assert [i for i in issues if i["severity"] == "error"] == []
    assert completed.returncode == 0


def test_main_refuses_a_non_empty_directory(tmp_path, capsys):
    (tmp_path / "x").write_text("")
    assert main([str(tmp_path), "--subjects", "1"]) == 73
    assert "exists and is not an empty directory" in capsys.readouterr().err
    assert main([str(tmp_path / "new"), "--shape", "8", "8", "8"]) == 64
    assert main([str(tmp_path / "new"), "--subjects", "zero"]) == 64


def test_main_writes_sessionless_single_subject(tmp_path, capsys):
    target = tmp_path / "one"
    assert (
        main([str(target), "--subjects", "1", "--sessions", "1", "--shape", "20", "22", "18"]) == 0
    )
    assert "wrote 1 DWI runs" in capsys.readouterr().out
    assert (target / "sub-01/dwi/sub-01_dwi.nii.gz").is_file()
    assert not list(target.glob("sub-01/ses-*"))


@pytest.mark.parametrize(
    ("layout", "written"),
    [
        ("qsiprep", "sub-01/ses-2/dwi/sub-01_ses-2_space-ACPC_desc-preproc_dwi.nii.gz"),
        ("qsiprep-legacy", "qsiprep/sub-01/ses-1/dwi/sub-01_ses-1_space-T1w_desc-preproc_dwi.b"),
        ("hcpya", "100307/T1w/Diffusion/bvecs"),
    ],
)
def test_main_writes_the_preprocessed_layouts(tmp_path, capsys, layout, written):
    target = tmp_path / layout
    arguments = [str(target), "--subjects", "1", "--shape", "16", "16", "16", "--layout", layout]
    assert main(arguments) == 0
    assert (target / written).is_file()
    assert (target / "derivatives" / "groundtruth" / "dataset_description.json").is_file()
    assert main([str(tmp_path / "x"), "--layout", "fsl"]) == 64
