"""Layout detection and the QSIPrep / HCP-YA layouts, on the demo phantom written their way."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from rumba_bids.cli.demo import make_demo_dataset
from rumba_bids.core.gradients import bvecs_fsl_to_voxel, voxel_to_world
from rumba_bids.inputs.check import check_run
from rumba_bids.inputs.detect import detect_layout
from rumba_bids.inputs.errors import ExitCode, InputMissingError, RumbaBidsError, UsageError
from rumba_bids.inputs.layouts import find_runs

SHAPE = (16, 18, 16)
QSIPREP_DWI = "sub-02/dwi/sub-02_space-ACPC_desc-preproc_dwi"


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """The demo (sub-01 RAS+ single-shell, sub-02 LAS multi-shell) in every layout."""
    root = tmp_path_factory.mktemp("layouts")
    for layout in ("bids", "qsiprep", "qsiprep-legacy", "hcpya"):
        make_demo_dataset(
            root / layout, n_subjects=2, n_sessions=1, seed=2, shape=SHAPE, layout=layout
        )
    return root


def _copy(trees, layout, tmp_path) -> Path:
    target = tmp_path / layout
    shutil.copytree(trees / layout, target)
    return target


def test_detection(trees):
    raw = detect_layout(trees / "bids")
    assert (raw.layout, raw.derivative, raw.dataset_name) == ("bids", False, "raw")
    new = detect_layout(trees / "qsiprep")
    assert (new.layout, new.pipeline, new.pipeline_version) == ("qsiprep", "qsiprep", "1.0.1")
    # QSIPrep 0.19-0.23: no DatasetType, only PipelineDescription, under <out>/qsiprep/
    for given in (trees / "qsiprep-legacy", trees / "qsiprep-legacy" / "qsiprep"):
        legacy = detect_layout(given)
        assert (legacy.layout, legacy.derivative) == ("qsiprep", True)
        assert legacy.root == trees / "qsiprep-legacy" / "qsiprep"
        assert legacy.generated_by() == [{"Name": "qsiprep", "Version": "0.21.4"}]
    hcp = detect_layout(trees / "hcpya")
    assert (hcp.layout, hcp.derivative, hcp.dataset_name) == ("hcpya", True, "hcpya")
    for dataset in (raw, new, legacy, hcp):
        assert detect_layout(dataset.root, dataset.layout) == dataset
        assert dataset.layout in dataset.summary()


def test_a_named_pipeline_without_dataset_type_is_a_derivative(tmp_path):
    (tmp_path / "dataset_description.json").write_text(
        json.dumps({"Name": "x", "BIDSVersion": "1.4.0", "GeneratedBy": [{"Name": "eddyprep"}]})
    )
    dataset = detect_layout(tmp_path)
    assert (dataset.layout, dataset.derivative, dataset.pipeline) == ("bids", True, "eddyprep")


@pytest.mark.parametrize(
    ("layout", "forced", "message"),
    [
        ("bids", "qsiprep", "names rumba-bids-demo (raw dataset), not QSIPrep"),
        ("bids", "hcpya", "no <subject>/T1w/Diffusion/ folder"),
        ("qsiprep", "bids", "names QSIPrep, whose .bvec hold image-axis vectors"),
        ("qsiprep-legacy", "hcpya", "no <subject>/T1w/Diffusion/ folder"),
    ],
)
def test_a_forced_layout_the_dataset_contradicts_is_refused(trees, layout, forced, message):
    with pytest.raises(UsageError, match=re.escape(message)) as info:
        detect_layout(trees / layout, forced)
    assert info.value.exit_code == ExitCode.USAGE


def test_an_hcp_tree_forced_as_qsiprep_has_no_description(trees):
    with pytest.raises(InputMissingError, match="dataset_description.json is missing"):
        detect_layout(trees / "hcpya", "qsiprep")


def test_qsiprep_runs(trees):
    runs = find_runs(detect_layout(trees / "qsiprep"))
    assert [run.label for run in runs] == ["sub-01_space-ACPC", "sub-02_space-ACPC"]
    run = runs[1]
    assert (run.layout, run.bvec_convention, run.dataset_name) == ("qsiprep", "ijk", "qsiprep")
    assert run.mask_file.endswith("sub-02_space-ACPC_desc-brain_mask.nii.gz")
    assert run.sources[0] == f"bids:qsiprep:{QSIPREP_DWI}.nii.gz"
    assert run.name_source == "sub-02/dwi/sub-02_space-ACPC_dwi.nii.gz"
    checked = check_run(run)  # one b-value per line
    assert checked.n_volumes == 100 and checked.shells == (1000.0, 2000.0, 3000.0)
    legacy = find_runs(detect_layout(trees / "qsiprep-legacy"))
    assert [r.label for r in legacy] == ["sub-01_space-T1w", "sub-02_space-T1w"]


def test_qsiprep_series_are_kept_apart_and_the_anat_mask_is_never_used(trees, tmp_path):
    root = _copy(trees, "qsiprep", tmp_path)
    folder = root / "sub-02" / "dwi"
    for entities in ("acq-hi_rec-mag_dir-AP_run-2", "run-3"):
        for path in folder.glob("sub-02_space-ACPC_desc-preproc_dwi.*"):
            new = path.name.replace("sub-02_", f"sub-02_{entities}_")
            shutil.copy(path, folder / new)
    (root / "sub-02" / "anat").mkdir()
    shutil.copy(
        folder / "sub-02_space-ACPC_desc-brain_mask.nii.gz",
        root / "sub-02" / "anat" / "sub-02_space-ACPC_desc-brain_mask.nii.gz",
    )
    runs = find_runs(detect_layout(root), participant_label=["02"])
    assert [run.label for run in runs] == [
        "sub-02_acq-hi_rec-mag_dir-AP_run-2_space-ACPC",
        "sub-02_run-3_space-ACPC",
        "sub-02_space-ACPC",
    ]
    assert runs[0].bvec_file.endswith(
        "sub-02_acq-hi_rec-mag_dir-AP_run-2_space-ACPC_desc-preproc_dwi.bvec"
    )
    assert runs[0].mask_file is None  # no DWI-grid mask of its own: masked by median Otsu
    assert "/dwi/" in runs[2].mask_file
    filtered = find_runs(detect_layout(root), filters={"run": 3})
    assert [run.label for run in filtered] == ["sub-02_run-3_space-ACPC"]


def test_a_qsiprep_tree_without_preprocessed_series(trees, tmp_path):
    root = _copy(trees, "qsiprep", tmp_path)
    for path in root.glob("sub-*/dwi/*desc-preproc_dwi.nii.gz"):
        path.unlink()
    with pytest.raises(InputMissingError, match="without any desc-preproc DWI") as info:
        find_runs(detect_layout(root))
    assert info.value.exit_code == ExitCode.NO_INPUT


def test_hcpya_runs_and_labels(trees):
    dataset = detect_layout(trees / "hcpya")
    runs = find_runs(dataset)
    assert [run.label for run in runs] == ["sub-100307", "sub-100308"]
    run = runs[0]
    assert (run.layout, run.bvec_convention) == ("hcpya", "fsl")
    assert run.mask_file.endswith("100307/T1w/Diffusion/nodif_brain_mask.nii.gz")
    assert run.sources[1] == "bids:hcpya:100307/T1w/Diffusion/bvals"
    assert run.name_source == "sub-100307/dwi/sub-100307_dwi.nii.gz"
    assert [r.label for r in find_runs(dataset, participant_label=["100308"])] == ["sub-100308"]
    with pytest.raises(UsageError, match="unknown participant label"):
        find_runs(dataset, participant_label=["100309"])
    with pytest.raises(UsageError, match="no sessions"):
        find_runs(dataset, session_label=["1"])
    with pytest.raises(UsageError, match="does not apply to an HCP-YA tree"):
        find_runs(dataset, filters={"run": 1})


def test_every_layout_encodes_the_same_world_gradients(trees):
    """The acquisition in RAS+ world coordinates is the same whichever way it is written:
    raw BIDS (FSL), QSIPrep (.bvec along the LPS+ image axes, and its MRtrix .b file) and
    HCP-YA (FSL).  Reading QSIPrep's .bvec with the FSL rule mirrors x on the LPS+ grid."""
    image = nib.load(str(trees / "bids/sub-02/dwi/sub-02_dwi.nii.gz"))
    fsl = np.loadtxt(trees / "bids/sub-02/dwi/sub-02_dwi.bvec").T
    world = voxel_to_world(bvecs_fsl_to_voxel(fsl, image.affine), image.affine)
    qsiprep = trees / "qsiprep" / QSIPREP_DWI
    lps = nib.load(f"{qsiprep}.nii.gz")
    assert nib.aff2axcodes(lps.affine) == ("L", "P", "S")
    ijk = np.loadtxt(f"{qsiprep}.bvec").T
    np.testing.assert_allclose(voxel_to_world(ijk, lps.affine), world, atol=1e-5)
    np.testing.assert_allclose(np.loadtxt(f"{qsiprep}.b")[:, :3], world, atol=1e-5)
    assert np.loadtxt(f"{qsiprep}.bval").ndim == 1 and Path(f"{qsiprep}.b_table.txt").is_file()
    wrong = voxel_to_world(bvecs_fsl_to_voxel(ijk, lps.affine), lps.affine)
    weighted = np.linalg.norm(world, axis=1) > 0
    assert np.abs(np.sum(wrong * world, axis=1))[weighted].min() < 0.9
    hcp = trees / "hcpya/100308/T1w/Diffusion"
    hcp_fsl = np.loadtxt(hcp / "bvecs").T
    hcp_affine = nib.load(str(hcp / "data.nii.gz")).affine
    np.testing.assert_allclose(
        voxel_to_world(bvecs_fsl_to_voxel(hcp_fsl, hcp_affine), hcp_affine), world, atol=1e-5
    )


def test_the_record_refuses_what_cannot_be_named():
    from rumba_bids.inputs.record import DwiRun

    with pytest.raises(ValueError, match="not a BIDS label"):
        DwiRun("x.nii.gz", None, None, (("subject", "10_03"),))
    with pytest.raises(ValueError, match="bvec_convention"):
        DwiRun("x.nii.gz", None, None, (("subject", "1"),), bvec_convention="ras")
    assert issubclass(UsageError, RumbaBidsError)
