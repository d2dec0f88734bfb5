"""init_rumba_wf: build-time checks, embedding in a parent workflow (Linear and MultiProc),
caching, and bad inputs reported with the file name."""

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nipype.interfaces import io as nio
from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from rumba_bids.core.peaks import mrtrix_to_peaks
from rumba_bids.workflows.rumba import (
    INPUT_FIELDS,
    OUTPUT_FIELDS,
    estimate_mem_gb,
    init_rumba_wf,
)

FAST = {"n_iter": 20, "sphere": "repulsion100"}
NODES = (
    "check_gradients",
    "brain_mask",
    "estimate_response",
    "fit_rumba",
    "fod_to_sh",
    "extract_peaks",
    "merge_metadata",
)


def summarise(f_wm, mask, peaks, fod_sh, metadata, response):
    """Consumer node of the parent workflow: reads what init_rumba_wf produced."""
    import json

    import nibabel as nib
    import numpy as np

    inside = np.asarray(nib.load(mask).dataobj) > 0
    with open(response) as handle:
        response_type = json.load(handle)["Type"]
    return {
        "mean_f_wm": float(nib.load(f_wm).get_fdata()[inside].mean()),
        "n_brain": int(inside.sum()),
        "peaks_shape": list(nib.load(peaks).shape),
        "sh_shape": list(nib.load(fod_sh).shape),
        "iterations": metadata["Model"]["Parameters"]["Iterations"],
        "encodings": sorted(metadata["OrientationEncoding"]),
        "response_type": response_type,
    }


def _parent_wf(base_dir, source, *, name="parent", **options):
    """A parent pipeline: ``source`` node -> init_rumba_wf -> a consumer node."""
    parent = pe.Workflow(name=name, base_dir=str(base_dir))
    rumba_wf = init_rumba_wf(**{**FAST, **options})
    consumer = pe.Node(
        niu.Function(
            function=summarise,
            input_names=["f_wm", "mask", "peaks", "fod_sh", "metadata", "response"],
            output_names=["summary"],
        ),
        name="summarise",
    )
    fields = [f"outputnode.{name}" for name in ("f_wm", "mask", "peaks", "fod_sh", "metadata")]
    parent.connect([
        (source, rumba_wf, [("dwi", "inputnode.dwi_file"),
                            ("bval", "inputnode.bval_file"),
                            ("bvec", "inputnode.bvec_file")]),
        (rumba_wf, consumer, [(field, field.split(".")[1]) for field in fields]
         + [("outputnode.response", "response")]),
    ])  # fmt: skip
    return parent


def _grabber(data_dir):
    grabber = pe.Node(
        nio.DataGrabber(outfields=["dwi", "bval", "bvec"], sort_filelist=True), name="grabber"
    )
    grabber.inputs.base_directory = str(data_dir)
    grabber.inputs.template = "*"
    grabber.inputs.field_template = {
        "dwi": "small_64D.nii",
        "bval": "small_64D.bval",
        "bvec": "small_64D.bvec",
    }
    grabber.inputs.template_args = {"dwi": [[]], "bval": [[]], "bvec": [[]]}
    return grabber


def _identity(files):
    source = pe.Node(niu.IdentityInterface(fields=["dwi", "bval", "bvec"]), name="source")
    source.inputs.dwi = files.dwi_file
    source.inputs.bval = files.bval_file
    source.inputs.bvec = files.bvec_file
    return source


def _summary(graph):
    return next(n for n in graph.nodes() if n.name == "summarise").result.outputs.summary


def _result_times(workflow_dir: Path) -> dict:
    """Modification time of every node's result file (rewritten only when it reruns)."""
    return {
        name: (workflow_dir / name / f"result_{name}.pklz").stat().st_mtime_ns for name in NODES
    }


# --------------------------------------------------------------------------- build time


def test_graph_fields_resources_and_options(small_64d):
    mem = estimate_mem_gb(small_64d.dwi_file, sphere="repulsion100")
    workflow = init_rumba_wf(
        omp_nthreads=3,
        mem_gb=mem,
        gm_response=None,
        n_iter=42,
        fit="global",
        use_tv=True,
        sphere="repulsion100",
        npeaks=3,
    )
    assert set(workflow.list_node_names()) == {"inputnode", "outputnode", *NODES}
    assert tuple(workflow.get_node("inputnode").inputs.copyable_trait_names()) == INPUT_FIELDS
    outputs = set(workflow.get_node("outputnode").inputs.copyable_trait_names())
    assert outputs == set(OUTPUT_FIELDS)
    assert {
        "fod_sh",
        "fod_amplitudes",
        "peaks",
        "peak_values",
        "f_wm",
        "f_gm",
        "f_csf",
        "f_iso",
        "snr",
        "mask",
        "response",
        "metadata",
    } <= outputs
    fit = workflow.get_node("fit_rumba")
    assert (fit.n_procs, fit.mem_gb) == (3, mem["fit"])
    assert (fit.inputs.n_iter, fit.inputs.fit, fit.inputs.use_tv) == (42, "global", True)
    assert fit.inputs.gm_response is None and fit.inputs.n_threads == 3
    assert workflow.get_node("brain_mask").n_procs == 3
    assert workflow.get_node("extract_peaks").inputs.npeaks == 3
    assert workflow.get_node("fod_to_sh").mem_gb == mem["fod"]


def test_memory_estimate_reads_the_header_and_scales(small_64d):
    small = estimate_mem_gb(small_64d.dwi_file)
    assert set(small) == {"dwi", "fit", "fod"} and max(small.values()) < 0.5
    reference = estimate_mem_gb()  # 2 mm whole brain, 100 volumes
    assert 3 < reference["fit"] < 12 and reference["dwi"] < reference["fit"]
    assert estimate_mem_gb(sphere="repulsion200")["fit"] < reference["fit"]
    # one block of every voxel costs about as much as the global fit; blocks cost less
    least = estimate_mem_gb(block_voxels=1024)["fit"]
    assert least < 0.1 * reference["fit"] < estimate_mem_gb(fit="global")["fit"]
    global_fit = estimate_mem_gb(fit="global")["fit"]
    assert estimate_mem_gb(fit="global", use_tv=True)["fit"] >= global_fit
    assert init_rumba_wf(mem_gb=2.5).get_node("fit_rumba").mem_gb == 2.5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"response": "magic"}, "response must be one of"),
        ({"response": "file"}, "response='file' needs response_file"),
        ({"response_file": "r.json"}, "response_file needs response='file'"),
        ({"use_tv": True}, "use_tv=True needs fit='global'"),
        ({"fit": "local"}, "fit must be one of"),
        ({"recon_type": "rss"}, "recon_type must be one of"),
        ({"n_iter": 0}, "n_iter must be an integer >= 1"),
        ({"npeaks": 2.5}, "npeaks must be an integer >= 1"),
        ({"gm_response": -1e-3}, "gm_response must be 'auto', None"),
        ({"csf_response": "on"}, "csf_response must be None"),
        ({"wm_response": (1.7e-3, 2e-4)}, "wm_response must be None or 3 eigenvalues"),
        ({"wm_response": (1.7e-3, 2e-4, 2e-4)}, "wm_response sets the eigenvalues of response="),
        ({"sphere": "football"}, "unknown sphere 'football'"),
        ({"sh_order": 7}, "sh_order must be an even integer"),
        ({"sphere": "repulsion100", "sh_order": 16}, "the sphere repulsion100 has 50 distinct"),
        ({"sphere": "repulsion100", "sh_order": 10}, "66 SH coefficients .* use sh_order <= 8"),
        ({"bvec_convention": "ras"}, "bvec_convention must be one of"),
        ({"sh_basis": "fsl"}, "sh_basis must be one of"),
        ({"reference": "ras"}, "reference must be one of"),
        ({"mem_gb": {"fit": 1.0}}, "mem_gb needs the keys"),
    ],
)
def test_bad_options_fail_at_build_time(options, message):
    with pytest.raises(ValueError, match=message):
        init_rumba_wf(**options)


# --------------------------------------------------------------------------- running


@pytest.mark.parametrize("plugin", ["Linear", "MultiProc"])
def test_parent_workflow_feeds_and_consumes_rumba_wf(plugin, dipy_data_dir, small_64d, tmp_path):
    mem = estimate_mem_gb(small_64d.dwi_file, sphere="repulsion100")
    parent = _parent_wf(tmp_path, _grabber(dipy_data_dir), mem_gb=mem, omp_nthreads=1)
    plugin_args = {"n_procs": 2, "memory_gb": 2} if plugin == "MultiProc" else {}
    parent.config["execution"] = {"poll_sleep_duration": 0.05}  # default 2 s per poll
    summary = _summary(parent.run(plugin=plugin, plugin_args=plugin_args))
    assert summary["iterations"] == 20 and summary["response_type"] == "eigen"
    assert summary["peaks_shape"] == [10, 10, 10, 15] and summary["sh_shape"] == [10, 10, 10, 45]
    assert summary["encodings"] == ["amplitudes", "peaks", "peakvals", "sh"]
    assert summary["n_brain"] > 100 and 0.2 < summary["mean_f_wm"] < 1


def test_rerun_reuses_the_cache_and_an_option_change_reruns_downstream(small_64d, tmp_path):
    workflow_dir = tmp_path / "parent" / "rumba_wf"
    _parent_wf(tmp_path, _identity(small_64d)).run()
    first = _result_times(workflow_dir)
    fod_file = next(workflow_dir.glob("fit_rumba/*_fodamplitudes.nii"))
    fod_time = fod_file.stat().st_mtime_ns

    _parent_wf(tmp_path, _identity(small_64d)).run()  # same graph, same base_dir
    assert _result_times(workflow_dir) == first
    assert fod_file.stat().st_mtime_ns == fod_time  # no refit

    summary = _summary(_parent_wf(tmp_path, _identity(small_64d), n_iter=25).run())
    assert summary["iterations"] == 25
    third = _result_times(workflow_dir)
    rerun = {name for name in NODES if third[name] != first[name]}
    assert rerun == {"fit_rumba", "fod_to_sh", "extract_peaks", "merge_metadata"}


def collect(peaks, metadata):
    """Consumer node handing the peak file and metadata back to the test."""
    return peaks, metadata


def test_synthetic_phantom_end_to_end(synthetic_dwi, tmp_path):
    """Given mask, FA response, world-frame peaks: the fibre comes out where it went in."""
    rumba_wf = init_rumba_wf(n_iter=50, reference="xyz", npeaks=2)
    for field in INPUT_FIELDS:
        setattr(rumba_wf.inputs.inputnode, field, getattr(synthetic_dwi, field))
    consumer = pe.Node(
        niu.Function(
            function=collect, input_names=["peaks", "metadata"], output_names=["peaks", "metadata"]
        ),
        name="collect",
    )
    parent = pe.Workflow(name="phantom", base_dir=str(tmp_path))
    parent.connect(rumba_wf, "outputnode.peaks", consumer, "peaks")
    parent.connect(rumba_wf, "outputnode.metadata", consumer, "metadata")
    graph = parent.run()
    outputs = next(n for n in graph.nodes() if n.name == "collect").result.outputs
    image = nib.load(outputs.peaks)
    directions, _ = mrtrix_to_peaks(image.get_fdata())
    brain = nib.load(synthetic_dwi.mask_file).get_fdata().astype(bool)
    truth = image.affine[:3, :3] @ synthetic_dwi.fibre_direction  # voxel -> world
    truth /= np.linalg.norm(truth)
    cosines = np.abs(directions[brain][:, 0] @ truth)
    assert np.degrees(np.arccos(cosines.min())) < 10
    metadata = outputs.metadata
    assert metadata["Model"]["Parameters"]["BrainMask"] == "given"
    assert metadata["OrientationEncoding"]["peaks"]["Reference"] == "xyz"
    assert metadata["ResponseFunction"]["Method"] == "fa"


def test_bad_input_crash_names_the_file(synthetic_dwi, tmp_path):
    volume = tmp_path / "b0_only.nii.gz"
    nib.Nifti1Image(np.ones((5, 5, 5), np.float32), np.eye(4)).to_filename(volume)
    workflow = init_rumba_wf(**FAST)
    workflow.base_dir = str(tmp_path / "work")
    workflow.config["execution"] = {
        "crashdump_dir": str(tmp_path / "crash"),
        "crashfile_format": "txt",
    }
    workflow.inputs.inputnode.dwi_file = str(volume)
    workflow.inputs.inputnode.bval_file = synthetic_dwi.bval_file
    workflow.inputs.inputnode.bvec_file = synthetic_dwi.bvec_file
    problem = f"{volume}: is a 3D image of shape (5, 5, 5)"
    with pytest.raises(RuntimeError, match=re.escape(problem)):
        workflow.run()
    crash = "\n".join(path.read_text() for path in (tmp_path / "crash").glob("crash-*.txt"))
    assert problem in crash
