"""Derivative sinks: BIDS names, atomic writes, sidecars, the pybids config."""

import json
import os

import nibabel as nib
import numpy as np
import pytest
from bids import BIDSLayout
from nipype.pipeline import engine as pe

from rumba_bids.interfaces.derivatives import (
    DerivativesBundleSink,
    DerivativesDataSink,
    atomic_copy,
    atomic_write_json,
    bids_path,
    config_path,
    json_safe,
    parse_entities,
    pybids_config,
    save_derivative,
    select_encoding,
)

SOURCE = "/data/sub-01/ses-2/dwi/sub-01_ses-2_acq-hi_dir-AP_run-03_dwi.nii.gz"


@pytest.fixture
def image(tmp_path):
    path = tmp_path / "map.nii"
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), str(path))
    return path


def test_names_keep_the_run_entities_in_bids_order():
    assert parse_entities(SOURCE)["run"] == "03"
    assert bids_path(SOURCE, model="rumba", param="fod", suffix="dwimap", extension=".nii.gz") == (
        "sub-01/ses-2/dwi/sub-01_ses-2_acq-hi_dir-AP_run-03_model-rumba_param-fod_dwimap.nii.gz"
    )
    assert bids_path(
        SOURCE, model="rumba", param="fod", desc="amplitudes", suffix="dwimap", extension=".json"
    ).endswith("_run-03_model-rumba_param-fod_desc-amplitudes_dwimap.json")
    assert bids_path(SOURCE, desc="brain", suffix="mask", extension=".nii.gz") == (
        "sub-01/ses-2/dwi/sub-01_ses-2_acq-hi_dir-AP_run-03_desc-brain_mask.nii.gz"
    )
    space = "/d/sub-x/dwi/sub-x_space-T1w_desc-preproc_dwi.nii.gz"
    assert bids_path(space, model="rumba", suffix="response", extension=".json") == (
        "sub-x/dwi/sub-x_space-T1w_model-rumba_response.json"
    )


def test_unknown_combination_is_refused():
    with pytest.raises(ValueError, match="no BIDS name pattern"):
        bids_path(SOURCE, suffix="dwimap", extension=".nii.gz")  # dwimap needs model+param


def test_json_is_strict(tmp_path):
    content = {"a": np.float32(1.5), "b": [np.nan, np.inf], "c": np.arange(2)}
    assert json_safe(content) == {"a": 1.5, "b": ["NaN", "Infinity"], "c": [0, 1]}
    target = atomic_write_json(tmp_path / "x.json", content)
    assert json.loads(target.read_text()) == {"a": 1.5, "b": ["NaN", "Infinity"], "c": [0, 1]}


def test_atomic_copy_compresses_and_casts(tmp_path, image):
    target = atomic_copy(image, tmp_path / "out" / "mask.nii.gz", dtype="uint8")
    loaded = nib.load(str(target))
    assert target.read_bytes()[:2] == b"\x1f\x8b"  # gzip
    assert loaded.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(loaded.affine, np.diag([2.0, 2.0, 2.0, 1.0]))
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch, image):
    target = tmp_path / "out" / "map.nii.gz"
    target.parent.mkdir()
    target.write_bytes(b"old")

    def broken_replace(source, destination):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_copy(image, target)
    assert target.read_bytes() == b"old"  # the previous version is intact
    assert [p.name for p in target.parent.iterdir()] == ["map.nii.gz"]  # no temp file left


def test_encoding_selection():
    encodings = {"sh": {"Type": "sh"}, "peaks": {"Type": "3vector"}}
    assert select_encoding(encodings, "peaks") == {"Type": "3vector"}
    assert select_encoding(encodings, "gfa") is None
    assert select_encoding({"Type": "sh"}, "sh") == {"Type": "sh"}
    assert select_encoding(encodings, None) is None


def test_save_derivative_sidecar_merges_workflow_and_build_time_metadata(tmp_path, image):
    meta = {
        "Model": {"Parameters": {"Iterations": 5}},
        "OrientationEncoding": {"sh": {"Type": "sh", "Reference": "ijk"}},
        "Description": "from the workflow",
    }
    out_file, out_meta = save_derivative(
        image,
        base_directory=tmp_path,
        source_file=SOURCE,
        model="rumba",
        param="fod",
        meta=meta,
        extra_meta={"Description": "fODF", "OrientationEncoding": {"Type": "fallback"}},
        encoding="sh",
    )
    assert out_file.endswith("_run-03_model-rumba_param-fod_dwimap.nii.gz")
    sidecar = json.loads(open(out_meta).read())
    assert sidecar == {
        "Model": {"Parameters": {"Iterations": 5}},
        "Description": "fODF",
        "OrientationEncoding": {"Type": "sh", "Reference": "ijk"},
    }
    _, gfa_meta = save_derivative(
        image, base_directory=tmp_path, source_file=SOURCE, model="rumba", param="gfa", meta=meta
    )
    assert "OrientationEncoding" not in json.loads(open(gfa_meta).read())


def test_data_sink_in_a_workflow(tmp_path, image):
    sink = pe.Node(
        DerivativesDataSink(
            base_directory=str(tmp_path / "out"),
            source_file=SOURCE,
            model="rumba",
            param="fwm",
            in_file=str(image),
            meta_dict={"SkullStripped": True},
        ),
        name="ds_fwm",
        base_dir=str(tmp_path / "work"),
    )
    result = sink.run()
    out_file = result.outputs.out_file
    assert os.path.isfile(out_file) and out_file.endswith("param-fwm_dwimap.nii.gz")
    assert json.loads(open(result.outputs.out_meta).read()) == {"SkullStripped": True}
    os.remove(out_file)
    sink.run()  # always runs: a deleted derivative comes back
    assert os.path.isfile(out_file)


def test_bundle_sink_writes_every_output(tmp_path, image):
    response = tmp_path / "response.json"
    response.write_text('{"Eigenvalues": [1, 0.2, 0.2]}')
    sink = DerivativesBundleSink(
        3,
        base_directory=str(tmp_path / "out"),
        source_file=SOURCE,
        outputs=[
            {"model": "rumba", "param": "snr"},
            {"desc": "brain", "suffix": "mask", "data_dtype": "uint8", "shared_meta": False},
            {"model": "rumba", "suffix": "response", "extension": ".json"},
        ],
        meta_dict={"Model": {"Description": "RUMBA-SD"}},
    )
    sink.inputs.in1 = str(image)
    sink.inputs.in2 = str(image)
    sink.inputs.in3 = str(response)
    result = sink.run(cwd=str(tmp_path))
    names = [os.path.basename(f) for f in result.outputs.out_files]
    assert names == [
        "sub-01_ses-2_acq-hi_dir-AP_run-03_model-rumba_param-snr_dwimap.nii.gz",
        "sub-01_ses-2_acq-hi_dir-AP_run-03_desc-brain_mask.nii.gz",
        "sub-01_ses-2_acq-hi_dir-AP_run-03_model-rumba_response.json",
    ]
    metas = result.outputs.out_metas
    assert json.loads(open(metas[0]).read()) == {"Model": {"Description": "RUMBA-SD"}}
    assert json.loads(open(metas[1]).read()) == {}
    assert metas[2] is None


def test_bundle_sink_checks_its_description(tmp_path, image):
    sink = DerivativesBundleSink(
        1, base_directory=str(tmp_path), source_file=SOURCE, outputs=[{"parm": "x"}]
    )
    sink.inputs.in1 = str(image)
    with pytest.raises(ValueError, match="unknown keys"):
        sink.run(cwd=str(tmp_path))


def test_pybids_config_indexes_the_outputs(tmp_path, image):
    (tmp_path / "dataset_description.json").write_text(
        json.dumps({"Name": "x", "BIDSVersion": "1.10.0", "DatasetType": "derivative"})
    )
    params = ["fod", "peaks", "fwm"]
    for param in params:
        save_derivative(
            image, base_directory=tmp_path, source_file=SOURCE, model="rumba", param=param
        )
    save_derivative(
        image, base_directory=tmp_path, source_file=SOURCE, desc="brain", suffix="mask"
    )
    assert pybids_config()[-1] == str(config_path())
    for config in (pybids_config(), ["bids", "derivatives", config_path()]):
        layout = BIDSLayout(str(tmp_path), config=config, validate=False)
        found = layout.get(model="rumba", suffix="dwimap", extension=".nii.gz")
        assert sorted(f.entities["param"] for f in found) == sorted(params)
        entities = found[0].entities
        assert (entities["subject"], entities["session"], entities["acquisition"]) == (
            "01",
            "2",
            "hi",
        )
        assert (entities["direction"], str(entities["run"])) == ("AP", "03")
        assert len(layout.get(desc="brain", suffix="mask", extension=".nii.gz")) == 1
