"""BIDS querying with pybids: labels, filters, runs, derivative inputs."""

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from rumba_bids.cli.collect import (
    collect_runs,
    dwi_query,
    is_derivative_dataset,
    load_layout,
    read_dataset_description,
)
from rumba_bids.cli.errors import DataError, ExitCode, InputMissingError, RumbaBidsError


def add_run(root, source_stem, new_stem):
    """Copy a run's four files under new entities."""
    for ext in (".nii.gz", ".bval", ".bvec", ".json"):
        shutil.copy(root / (source_stem + ext), root / (new_stem + ext))


def labels(root, **kwargs):
    layout = load_layout(root, derivative=False)
    _, files = dwi_query(layout, **kwargs)
    return [run.label for run in collect_runs(layout, files, derivative=False)]


def test_every_run_and_its_entities(demo_copy):
    add_run(demo_copy, "sub-02/dwi/sub-02_dwi", "sub-02/dwi/sub-02_acq-hi_dir-AP_run-2_dwi")
    layout = load_layout(demo_copy, derivative=False)
    _, files = dwi_query(layout)
    runs = collect_runs(layout, files, derivative=False)
    assert [run.label for run in runs] == [
        "sub-01_ses-1",
        "sub-01_ses-2",
        "sub-02_acq-hi_dir-AP_run-2",
        "sub-02",
    ]
    extra = runs[2]
    assert extra.bval_file.name == "sub-02_acq-hi_dir-AP_run-2_dwi.bval"
    assert extra.bvec_file.name == "sub-02_acq-hi_dir-AP_run-2_dwi.bvec"
    assert dict(extra.metadata)["PhaseEncodingDirection"] == "j-"
    assert extra.mask_file is None


def test_labels_and_filters(demo_copy, tmp_path):
    assert labels(demo_copy, participant_label=["02"]) == ["sub-02"]
    assert labels(demo_copy, session_label=["2"]) == ["sub-01_ses-2"]
    assert labels(demo_copy, filters={"session": None}) == ["sub-02"]
    assert labels(demo_copy, filters={"session": "*"}) == ["sub-01_ses-1", "sub-01_ses-2"]
    with pytest.raises(RumbaBidsError, match="unknown participant label") as info:
        labels(demo_copy, participant_label=["03"])
    assert info.value.exit_code == ExitCode.USAGE
    with pytest.raises(RumbaBidsError, match="unknown session label") as info:
        labels(demo_copy, session_label=["7"])
    assert info.value.exit_code == ExitCode.USAGE
    with pytest.raises(RumbaBidsError, match="no DWI run matching") as info:
        labels(demo_copy, filters={"acquisition": "nothing"})
    assert info.value.exit_code == ExitCode.NO_RUNS_SELECTED
    with pytest.raises(RumbaBidsError, match="not a recognized entity") as info:
        labels(demo_copy, filters={"colour": "red"})
    assert info.value.exit_code == ExitCode.USAGE


def test_misnamed_bval_is_not_found(demo_copy):
    stem = demo_copy / "sub-02/dwi/sub-02_dwi"
    stem.with_name("sub-02_dwi.bval").rename(stem.with_name("sub-02_dwi.bvals"))
    layout = load_layout(demo_copy, derivative=False)
    _, files = dwi_query(layout, participant_label=["02"])
    (run,) = collect_runs(layout, files, derivative=False)
    assert run.bval_file is None and run.bvec_file is not None


def test_dataset_description(tmp_path, demo_copy):
    with pytest.raises(InputMissingError, match="not a BIDS dataset"):
        read_dataset_description(tmp_path)
    (tmp_path / "dataset_description.json").write_text("{oops")
    with pytest.raises(DataError, match="not valid JSON"):
        read_dataset_description(tmp_path)
    assert not is_derivative_dataset(read_dataset_description(demo_copy))


def test_preprocessed_derivatives_with_their_masks(demo_copy, tmp_path):
    """A QSIPrep-like dataset: desc-preproc DWI in T1w space with a brain mask."""
    root = tmp_path / "qsiprep"
    (root / "sub-02" / "dwi").mkdir(parents=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "prep", "BIDSVersion": "1.10.0", "DatasetType": "derivative"})
    )
    stem = root / "sub-02/dwi/sub-02_space-T1w_desc-preproc_dwi"
    for ext in (".nii.gz", ".bval", ".bvec"):
        shutil.copy(demo_copy / ("sub-02/dwi/sub-02_dwi" + ext), str(stem) + ext)
    img = nib.load(str(stem) + ".nii.gz")
    mask = np.zeros(img.shape[:3], np.uint8)
    mask[8:-8, 8:-8, 6:-6] = 1
    nib.save(
        nib.Nifti1Image(mask, img.affine),
        str(root / "sub-02/dwi/sub-02_space-T1w_desc-brain_mask.nii.gz"),
    )
    description = read_dataset_description(root)
    assert is_derivative_dataset(description)
    layout = load_layout(root, derivative=True)
    _, files = dwi_query(layout)
    (run,) = collect_runs(layout, files, derivative=True)
    assert run.label == "sub-02_space-T1w"
    assert run.mask_file.name == "sub-02_space-T1w_desc-brain_mask.nii.gz"
    assert run.bval_file.name == "sub-02_space-T1w_desc-preproc_dwi.bval"
