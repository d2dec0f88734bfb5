"""The BIDS layout: pybids querying, labels, filters, runs, derivative inputs."""

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from rumba_bids.cli.errors import DataError, ExitCode, InputMissingError, RumbaBidsError
from rumba_bids.inputs.bids import collect_runs, dwi_query, load_layout
from rumba_bids.inputs.detect import detect_layout, read_dataset_description


def add_run(root, source_stem, new_stem):
    """Copy a run's four files under new entities."""
    for ext in (".nii.gz", ".bval", ".bvec", ".json"):
        shutil.copy(root / (source_stem + ext), root / (new_stem + ext))


def runs_of(root, **kwargs):
    dataset = detect_layout(root)
    layout = load_layout(root, derivative=dataset.derivative)
    _, files = dwi_query(layout, **kwargs)
    return collect_runs(layout, files, dataset=dataset)


def labels(root, **kwargs):
    return [run.label for run in runs_of(root, **kwargs)]


def test_every_run_and_its_entities(demo_copy):
    add_run(demo_copy, "sub-02/dwi/sub-02_dwi", "sub-02/dwi/sub-02_acq-hi_dir-AP_run-2_dwi")
    runs = runs_of(demo_copy)
    assert [run.label for run in runs] == [
        "sub-01_ses-1",
        "sub-01_ses-2",
        "sub-02_acq-hi_dir-AP_run-2",
        "sub-02",
    ]
    extra = runs[2]
    assert Path(extra.bval_file).name == "sub-02_acq-hi_dir-AP_run-2_dwi.bval"
    assert Path(extra.bvec_file).name == "sub-02_acq-hi_dir-AP_run-2_dwi.bvec"
    assert dict(extra.metadata)["PhaseEncodingDirection"] == "j-"
    assert extra.mask_file is None
    assert (extra.layout, extra.bvec_convention, extra.dataset_name) == ("bids", "fsl", "raw")
    assert extra.sources[0] == "bids:raw:sub-02/dwi/sub-02_acq-hi_dir-AP_run-2_dwi.nii.gz"


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
    (run,) = runs_of(demo_copy, participant_label=["02"])
    assert run.bval_file is None and run.bvec_file is not None


def test_dataset_description(tmp_path, demo_copy):
    with pytest.raises(InputMissingError, match="not a BIDS dataset"):
        read_dataset_description(tmp_path)
    (tmp_path / "dataset_description.json").write_text("{oops")
    with pytest.raises(DataError, match="not valid JSON"):
        read_dataset_description(tmp_path)
    assert not detect_layout(demo_copy).derivative


def test_preprocessed_derivatives_with_their_masks(demo_copy, tmp_path):
    """A derivative that does not name QSIPrep: BIDS layout, FSL b-vectors, its brain mask."""
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
    dataset = detect_layout(root)
    assert (dataset.layout, dataset.derivative) == ("bids", True)
    (run,) = runs_of(root)
    assert run.label == "sub-02_space-T1w"
    assert Path(run.mask_file).name == "sub-02_space-T1w_desc-brain_mask.nii.gz"
    assert Path(run.bval_file).name == "sub-02_space-T1w_desc-preproc_dwi.bval"
    assert (run.bvec_convention, run.dataset_name, run.mask_from_dataset) == (
        "fsl",
        "preprocessed",
        True,
    )
