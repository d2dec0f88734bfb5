"""The BIDS-App graph: one sub-workflow per run, named from its entities, with sinks."""

import nibabel as nib
import numpy as np
import pytest

from rumba_bids.workflows.bids import DwiRun, init_rumba_bids_wf, workflow_name


@pytest.fixture
def runs(tmp_path):
    paths = []
    for rel in ("sub-01/ses-1/dwi/sub-01_ses-1_run-1_dwi", "sub-02/dwi/sub-02_acq-hi_dwi"):
        stem = tmp_path / "bids" / rel
        stem.parent.mkdir(parents=True)
        nib.save(
            nib.Nifti1Image(np.ones((4, 4, 4, 3), np.float32), np.eye(4)),
            str(stem) + ".nii.gz",
        )
        paths.append(str(stem))
    return [
        DwiRun(
            dwi_file=paths[0] + ".nii.gz",
            bval_file=paths[0] + ".bval",
            bvec_file=paths[0] + ".bvec",
            entities=(("subject", "01"), ("session", "1"), ("run", "1")),
            dataset_root=str(tmp_path / "bids"),
        ),
        DwiRun(
            dwi_file=paths[1] + ".nii.gz",
            bval_file=paths[1] + ".bval",
            bvec_file=paths[1] + ".bvec",
            entities=(("subject", "02"), ("acquisition", "hi")),
            layout="qsiprep",
            bvec_convention="ijk",
        ),
    ]


def build(runs, tmp_path, **kwargs):
    options = {"response": "default", "n_iter": 10, "sh_order": 6}
    return init_rumba_bids_wf(
        runs=runs,
        output_dir=tmp_path / "out",
        run_uuid="UUID",
        rumba_options=options,
        version="1.2.3",
        **kwargs,
    )


RUN_WFS = ("sub_01_ses_1_run_1_wf", "sub_02_acq_hi_wf")


def test_one_named_sub_workflow_per_run(runs, tmp_path):
    workflow = build(runs, tmp_path, gm_by_run={"sub-01_ses-1_run-1": False})
    assert workflow.name == workflow_name("1.2.3") == "rumba_bids_1_2_3_wf"
    assert runs[0].workflow_name == RUN_WFS[0] and runs[1].subject == "02"
    names = workflow.list_node_names()
    assert {name.split(".")[0] for name in names} == set(RUN_WFS)
    fits = [workflow.get_node(f"{run_wf}.rumba_wf.fit_rumba") for run_wf in RUN_WFS]
    assert {node.inputs.n_iter for node in fits} == {10}
    first = workflow.get_node(f"{RUN_WFS[0]}.rumba_wf.inputnode")
    assert first.inputs.dwi_file == runs[0].dwi_file


def test_crash_files_go_to_the_subject_log(runs, tmp_path):
    workflow = build(runs, tmp_path)
    for run_wf, subject in zip(RUN_WFS, ("01", "02")):
        nodes = workflow.get_node(run_wf)._get_all_nodes()
        assert len(nodes) > 5
        expected = str(tmp_path / "out" / f"sub-{subject}" / "log" / "UUID")
        assert {node.config["execution"]["crashdump_dir"] for node in nodes} == {expected}


def _params(sink):
    return [spec.get("param") or spec["suffix"] for spec in sink.inputs.outputs]


def test_sinks_describe_every_output(runs, tmp_path):
    workflow = build(
        runs,
        tmp_path,
        gm_by_run={"sub-01_ses-1_run-1": False, "sub-02_acq-hi": True},
        write_amplitudes=True,
    )
    first, second = (workflow.get_node(f"{w}.ds_derivatives") for w in RUN_WFS)
    assert first.run_without_submitting and second.run_without_submitting
    assert _params(first) == [
        "fod", "peaks", "peakvals", "gfa", "fwm", "fcsf", "fiso", "snr", "fod", "mask", "response",
    ]  # fmt: skip
    assert "fgm" in _params(second)
    fod = first.inputs.outputs[0]
    assert fod["extra_meta"]["OrientationEncoding"]["SphericalHarmonicDegree"] == 6
    assert fod["extra_meta"]["Sources"][-1] == (
        "bids::sub-01/ses-1/dwi/sub-01_ses-1_run-1_desc-brain_mask.nii.gz"
    )
    assert fod["extra_meta"]["Sources"][0] == (
        "bids:raw:sub-01/ses-1/dwi/sub-01_ses-1_run-1_dwi.nii.gz"
    )
    amplitudes = first.inputs.outputs[8]
    assert amplitudes["desc"] == "amplitudes" and amplitudes["encoding"] == "amplitudes"
    assert first.inputs.source_file == "sub-01/ses-1/dwi/sub-01_ses-1_run-1_dwi.nii.gz"
    # the input layout and b-vector convention of each run reach its sidecars and its graph
    for sink, expected in ((first, ("bids", "fsl")), (second, ("qsiprep", "ijk"))):
        for spec in sink.inputs.outputs:
            if "extra_meta" in spec:
                meta = spec["extra_meta"]
                assert (meta["InputLayout"], meta["BvecConvention"]) == expected
    check = workflow.get_node(f"{RUN_WFS[1]}.rumba_wf.check_gradients")
    assert check.inputs.bvec_convention == "ijk"
    merge = workflow.get_node(f"{RUN_WFS[1]}.rumba_wf.merge_metadata")
    assert merge.inputs.bvec_convention == "ijk"


def test_two_runs_never_share_outputs(runs, tmp_path):
    with pytest.raises(ValueError, match="write the same outputs"):
        build([runs[0], runs[0]], tmp_path)
