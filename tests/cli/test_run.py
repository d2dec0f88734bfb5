"""The BIDS-App end to end, in subprocesses: outputs, sidecars, reruns, group level,
bad inputs and their exit codes.

The demo dataset has 2 subjects: sub-01 with 2 single-shell sessions (RAS+ affine),
sub-02 multi-shell without sessions (LAS affine).  Fits use few iterations.
"""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bids import BIDSLayout

from rumba_bids.core import world_to_voxel
from rumba_bids.interfaces.derivatives import pybids_config

EXPECTED = Path(__file__).parents[1] / "data" / "expected_outputs.txt"
UUID = re.compile(r"log/\d{8}-\d{6}_[0-9a-f-]{36}/")


SCRIPT = shutil.which("rumba-bids", path=str(Path(sys.executable).parent))


def rumba_bids(*args, timeout=600):
    """Run the installed console script (or the module) and check for tracebacks."""
    launcher = [SCRIPT] if SCRIPT else [sys.executable, "-m", "rumba_bids.cli.run"]
    command = [*launcher, *map(str, args)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    assert "Traceback" not in completed.stderr, completed.stderr
    return completed


def snapshot(root: Path, *, skip: Path | None = None) -> dict:
    """Files (size, mtime) and folders under ``root``, apart from ``skip``."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None
        for p in root.rglob("*")
        if skip is None or skip not in p.parents and p != skip
    }


def relative_files(root: Path) -> list[str]:
    return sorted(
        UUID.sub("log/<run_uuid>/", str(p.relative_to(root)))
        for p in root.rglob("*")
        if p.is_file()
    )


def sidecar(out: Path, rel: str) -> dict:
    return json.loads((out / rel).read_text())


@pytest.fixture(scope="module")
def app(tmp_path_factory, demo_template):
    """One participant-level run on the demo dataset, output under bids/derivatives/."""
    root = tmp_path_factory.mktemp("app")
    bids = root / "bids"
    shutil.copytree(demo_template, bids)
    out = bids / "derivatives" / "rumba"
    before = snapshot(bids)
    plugin = root / "multiproc.yml"
    plugin.write_text("plugin: MultiProc\nplugin_args: {n_procs: 2}\n")
    completed = rumba_bids(
        bids, out, "participant", "--n-iter", "50", "-w", root / "work", "--use-plugin", plugin
    )
    return {"root": root, "bids": bids, "out": out, "before": before, "run": completed}


def test_success_and_progress(app):
    completed = app["run"]
    assert completed.returncode == 0, completed.stderr
    lines = completed.stderr.strip().splitlines()
    assert "rumba-bids finished successfully" in lines[-1]
    log = completed.stderr
    assert "BIDS validation passed" in log
    assert "sub-02: GM compartment on (3 non-zero shell(s)" in log
    for label in ("sub-01_ses-1", "sub-01_ses-2", "sub-02"):
        assert f"{label} | fit_rumba done" in log
        assert f"{label} | extract_peaks done" in log
    assert re.search(r"RUMBA-SD fit of sub-02_dwi.nii.gz: 100.0% done, \d+ s elapsed", log)


def test_every_output_file(app):
    expected = [
        line for line in EXPECTED.read_text().splitlines() if line and not line.startswith("#")
    ]
    assert relative_files(app["out"]) == sorted(expected)


def test_nothing_written_in_bids_dir(app):
    after = snapshot(app["bids"], skip=app["bids"] / "derivatives" / "rumba")
    assert after == app["before"]


def test_sidecars(app):
    out = app["out"]
    fod = sidecar(out, "sub-01/ses-1/dwi/sub-01_ses-1_model-rumba_param-fod_dwimap.json")
    parameters = fod["Model"]["Parameters"]
    assert parameters["Iterations"] == 50 and parameters["Fit"] == "voxelwise"
    assert parameters["TotalVariation"] is False and parameters["Sphere"] == "repulsion724"
    assert parameters["GMCompartment"] is False and parameters["CSFCompartment"] is True
    assert fod["Model"]["URL"].startswith("https://doi.org/10.1371")
    response = fod["ResponseFunction"]
    assert response["Type"] == "eigen" and len(response["Values"]) == 4
    encoding = fod["OrientationEncoding"]
    assert encoding["Type"] == "sh" and encoding["SphericalHarmonicBasis"] == "mrtrix3"
    assert encoding["SphericalHarmonicDegree"] == 8 and encoding["EncodingAxis"] == 3
    assert fod["SkullStripped"] is True
    assert fod["Sources"][0] == "bids:raw:sub-01/ses-1/dwi/sub-01_ses-1_dwi.nii.gz"
    peaks = sidecar(out, "sub-02/dwi/sub-02_model-rumba_param-peaks_dwimap.json")
    assert peaks["OrientationEncoding"]["Type"] == "3vector"
    assert peaks["OrientationEncoding"]["Reference"] == "xyz"
    assert peaks["Model"]["Parameters"]["GMCompartment"] is True
    gfa = sidecar(out, "sub-02/dwi/sub-02_model-rumba_param-gfa_dwimap.json")
    assert "OrientationEncoding" not in gfa and "Model" in gfa
    mask = sidecar(out, "sub-02/dwi/sub-02_desc-brain_mask.json")
    assert mask["Type"] == "Brain" and "Model" not in mask
    description = sidecar(out, "dataset_description.json")
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "rumba-bids"
    assert description["DatasetLinks"]["raw"] == app["bids"].resolve().as_uri()
    citation = (out / "logs" / "CITATION.md").read_text()
    assert "RUMBA-SD" in citation and "50 iterations" in citation
    assert "Canales-Rodríguez" in citation and "## References" in citation
    (settings_file,) = out.glob("sub-01/log/*/rumba_bids_settings.json")
    assert json.loads(settings_file.read_text())["model"]["n_iter"] == 50


def test_images(app):
    out = app["out"]
    source = nib.load(str(app["bids"] / "sub-02/dwi/sub-02_dwi.nii.gz"))
    fod = nib.load(str(out / "sub-02/dwi/sub-02_model-rumba_param-fod_dwimap.nii.gz"))
    assert fod.shape == source.shape[:3] + (45,)
    np.testing.assert_allclose(fod.affine, source.affine)
    peaks = nib.load(str(out / "sub-02/dwi/sub-02_model-rumba_param-peaks_dwimap.nii.gz"))
    assert peaks.shape == source.shape[:3] + (15,)
    mask = nib.load(str(out / "sub-02/dwi/sub-02_desc-brain_mask.nii.gz"))
    assert mask.get_data_dtype() == np.uint8 and mask.get_fdata().sum() > 1000


def test_pybids_indexes_every_output(app):
    layout = BIDSLayout(str(app["out"]), config=pybids_config(), validate=False)
    maps = layout.get(model="rumba", suffix="dwimap", extension=".nii.gz")
    assert len(maps) == 8 + 8 + 9
    by_run = {}
    for bids_file in maps:
        entities = bids_file.entities
        by_run.setdefault((entities["subject"], entities.get("session")), set()).add(
            entities["param"]
        )
    common = {"fod", "peaks", "peakvals", "gfa", "fwm", "fcsf", "fiso", "snr"}
    assert by_run == {("01", "1"): common, ("01", "2"): common, ("02", None): common | {"fgm"}}
    assert len(layout.get(suffix="mask", desc="brain", extension=".nii.gz")) == 3
    assert len(layout.get(suffix="response", model="rumba", extension=".json")) == 3
    sidecars = layout.get(model="rumba", suffix="dwimap", extension=".json")
    assert len(sidecars) == len(maps)


def _angles(estimated, truth):
    cosine = np.abs(np.sum(estimated * truth, axis=-1))
    return np.degrees(np.arccos(np.clip(cosine, 0, 1)))


@pytest.mark.parametrize("stem", ["sub-01/ses-1/dwi/sub-01_ses-1", "sub-02/dwi/sub-02"])
def test_peaks_match_the_ground_truth(app, stem):
    """Single-fibre WM voxels: the first peak points along the true fibre, for an RAS+
    (FSL x flip) and an LAS acquisition.  Peaks are written in the world frame
    (``Reference: xyz``, as MRtrix3 reads them); the ground truth is in the voxel frame."""
    gt = app["bids"] / "derivatives" / "groundtruth" / Path(stem).parent
    name = Path(stem).name
    truth = nib.load(str(gt / f"{name}_model-groundtruth_param-peaks_dwimap.nii.gz")).get_fdata()
    n_fibres = nib.load(
        str(gt / f"{name}_model-groundtruth_param-nfibers_dwimap.nii.gz")
    ).get_fdata()
    tissue = nib.load(str(gt / f"{name}_desc-tissue_dseg.nii.gz")).get_fdata()
    peaks_img = nib.load(str(app["out"] / f"{stem}_model-rumba_param-peaks_dwimap.nii.gz"))
    sidecar = json.loads((app["out"] / f"{stem}_model-rumba_param-peaks_dwimap.json").read_text())
    assert sidecar["OrientationEncoding"]["Reference"] == "xyz"
    peaks = world_to_voxel(
        peaks_img.get_fdata().reshape(*peaks_img.shape[:3], -1, 3), peaks_img.affine
    ).reshape(peaks_img.shape)
    single = (n_fibres == 1) & (tissue == 1) & np.isfinite(peaks[..., 0])
    assert single.sum() > 200
    first = peaks[single][:, :3]
    first /= np.linalg.norm(first, axis=-1, keepdims=True)
    errors = _angles(first, truth[single][:, :3])
    assert np.median(errors) < 12, np.percentile(errors, [50, 90])


def test_rerun_reuses_finished_steps(app):
    completed = rumba_bids(
        app["bids"], app["out"], "participant", "--n-iter", "50", "-w", app["root"] / "work",
        "--skip-bids-validation", "--nprocs", "2",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr.count("| fit_rumba (cached)") == 3
    assert "fit_rumba done" not in completed.stderr


def test_group_response_feeds_a_participant_run(app, tmp_path):
    completed = rumba_bids(app["bids"], app["out"], "group", "--participant-label", "01")
    assert completed.returncode == 0, completed.stderr
    group = app["out"] / "model-rumba_desc-group_response.json"
    content = json.loads(group.read_text())
    assert content["NRuns"] == 2 and len(content["Sources"]) == 2
    completed = rumba_bids(
        app["bids"], tmp_path / "out", "participant", "--participant-label", "sub-01",
        "--session-label", "1", "--n-iter", "10", "--response", "file", "--response-file", group,
        "--skip-bids-validation", "-w", tmp_path / "work",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    fod = sidecar(
        tmp_path / "out", "sub-01/ses-1/dwi/sub-01_ses-1_model-rumba_param-fod_dwimap.json"
    )
    np.testing.assert_allclose(fod["ResponseFunction"]["Values"][:3], content["Eigenvalues"])
    assert (
        "read from `model-rumba_desc-group_response.json`"
        in (tmp_path / "out" / "logs" / "CITATION.md").read_text()
    )


def _break(bids: Path, case: str) -> None:
    stem = bids / "sub-02/dwi/sub-02_dwi"
    image = Path(str(stem) + ".nii.gz")
    if case == "missing bval":
        Path(str(stem) + ".bval").unlink()
    elif case == "misnamed bvec":
        Path(str(stem) + ".bvec").rename(str(stem) + ".bvecs")
    elif case == "count mismatch":
        values = Path(str(stem) + ".bval").read_text().split()
        Path(str(stem) + ".bval").write_text(" ".join(values[:-1]) + "\n")
    elif case == "no b0":
        values = ["1000" if v == "0" else v for v in Path(str(stem) + ".bval").read_text().split()]
        Path(str(stem) + ".bval").write_text(" ".join(values) + "\n")
    elif case == "3D image":
        nib.save(nib.load(str(image)).slicer[..., 0], str(image))
    elif case == "truncated":
        data = image.read_bytes()
        image.write_bytes(data[: len(data) // 2])
    elif case == "NaNs":
        img = nib.load(str(image))
        data = img.get_fdata(dtype=np.float32)
        data[10, 10, 10, 3] = np.nan
        nib.save(nib.Nifti1Image(data, img.affine), str(image))


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("missing bval", 66, "no .bval file for this run"),
        ("misnamed bvec", 66, "no .bvec file for this run"),
        ("count mismatch", 65, "99 b-values but sub-02_dwi.nii.gz has 100 volumes"),
        ("no b0", 65, "no b0 volume"),
        ("3D image", 65, "is a 3D image"),
        ("truncated", 65, "truncated or corrupt"),
        ("NaNs", 65, "NaN or infinite values"),
    ],
)
def test_bad_run(demo_copy, tmp_path, case, code, message):
    _break(demo_copy, case)
    before = snapshot(demo_copy)
    completed = rumba_bids(
        demo_copy,
        tmp_path / "out",
        "participant",
        "--participant-label",
        "02",
        "-w",
        tmp_path / "w",
    )
    assert completed.returncode == code, completed.stderr
    errors = [line for line in completed.stderr.splitlines() if "rumba-bids: error:" in line]
    assert message in errors[0] and "sub-02" in errors[0]
    assert snapshot(demo_copy) == before
    assert not (tmp_path / "out").exists()


def test_usage_and_input_errors(demo_template, tmp_path):
    out = tmp_path / "out"
    filters = tmp_path / "filters.json"
    filters.write_text('{"dwi": {"acquisition": "nothing"}}')
    not_bids = tmp_path / "not_bids"
    not_bids.mkdir()
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cases = [
        ((tmp_path / "missing", out, "participant"), 66, "bids_dir does not exist"),
        ((not_bids, out, "participant"), 66, "not a BIDS dataset"),
        ((demo_template, out, "everything"), 17, "unknown analysis level"),
        ((demo_template, demo_template, "participant"), 64, "must differ from bids_dir"),
        ((demo_template, demo_template / "sub-01", "participant"), 64, "inside bids_dir"),
        (
            (demo_template, out, "participant", "--participant-label", "09"),
            64,
            "unknown participant",
        ),
        ((demo_template, out, "participant", "--session-label", "5"), 64, "unknown session"),
        ((demo_template, out, "participant", "--bids-filter-file", filters), 18, "no DWI run"),
        ((demo_template, blocker / "out", "participant"), 73, "inside a file"),
        ((demo_template, out, "participant", "--n-iter", "many"), 64, "invalid"),
    ]
    for args, code, message in cases:
        completed = rumba_bids(*args)
        assert completed.returncode == code, (args, completed.stderr)
        last = completed.stderr.strip().splitlines()[-1]
        assert last.startswith("rumba-bids: error:") and message in last, (args, last)
    assert not out.exists()


def test_failed_runs_do_not_stop_the_others(demo_copy, tmp_path):
    """One run lacks its bval (pre-flight), one crashes in a node (a constant image passes
    the pre-flight, but no response can be estimated from it): the third is still
    processed, crash files are written, and the exit code is 1."""
    _break(demo_copy, "missing bval")
    image = demo_copy / "sub-01/ses-2/dwi/sub-01_ses-2_dwi.nii.gz"
    img = nib.load(str(image))
    constant = np.full(img.shape, 100, np.int16)
    nib.save(nib.Nifti1Image(constant, img.affine, img.header), str(image))
    out = tmp_path / "out"
    completed = rumba_bids(demo_copy, out, "participant", "--n-iter", "10", "-w", tmp_path / "w")
    assert completed.returncode == 1, completed.stderr
    assert (out / "sub-01/ses-1/dwi/sub-01_ses-1_model-rumba_param-fod_dwimap.nii.gz").is_file()
    assert not list(out.glob("sub-01/ses-2/dwi/*param-fod*"))
    crashes = list(out.glob("sub-01/log/*/crash-*.txt"))
    assert crashes and re.match(
        r"Node: rumba_bids_\w+_wf\.sub_01_ses_2_wf\.", crashes[0].read_text()
    )
    last = completed.stderr.strip().splitlines()[-1]
    assert last.startswith("rumba-bids: error: 2 of 3 run(s) failed or were invalid")
    assert "sub-02" in last and "sub-01_ses-2" in last
    assert "crash file:" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_linear_plugin_and_preprocessed_input(demo_template, tmp_path):
    """A QSIPrep-like derivatives dataset (desc-preproc DWI with its mask), Linear plugin."""
    prep = tmp_path / "prep"
    (prep / "sub-02" / "dwi").mkdir(parents=True)
    (prep / "dataset_description.json").write_text(
        json.dumps({"Name": "prep", "BIDSVersion": "1.10.0", "DatasetType": "derivative"})
    )
    stem = prep / "sub-02/dwi/sub-02_space-T1w_desc-preproc_dwi"
    for ext in (".nii.gz", ".bval", ".bvec"):
        shutil.copy(demo_template / ("sub-02/dwi/sub-02_dwi" + ext), str(stem) + ext)
    truth = demo_template / "derivatives/groundtruth/sub-02/dwi/sub-02_desc-brain_mask.nii.gz"
    shutil.copy(truth, prep / "sub-02/dwi/sub-02_space-T1w_desc-brain_mask.nii.gz")
    plugin = tmp_path / "linear.yml"
    plugin.write_text("plugin: Linear\n")
    out = tmp_path / "out"
    completed = rumba_bids(
        prep, out, "participant", "--n-iter", "10", "--use-plugin", plugin, "-w", tmp_path / "w"
    )
    assert completed.returncode == 0, completed.stderr
    assert "derivatives dataset: BIDS validation skipped" in completed.stderr
    written = out / "sub-02/dwi/sub-02_space-T1w_desc-brain_mask.nii.gz"
    np.testing.assert_array_equal(
        nib.load(str(written)).get_fdata(), nib.load(str(truth)).get_fdata()
    )
    fod = sidecar(out, "sub-02/dwi/sub-02_space-T1w_model-rumba_param-fod_dwimap.json")
    assert fod["Sources"][-1] == "bids::sub-02/dwi/sub-02_space-T1w_desc-brain_mask.nii.gz"
    assert "bids:preprocessed:sub-02/dwi/sub-02_space-T1w_desc-brain_mask.nii.gz" in fod["Sources"]


def test_blas_threads_are_limited():
    pytest.importorskip("threadpoolctl")
    code = (
        "from rumba_bids.cli.run import limit_blas_threads; limit_blas_threads(1); "
        "import numpy, scipy.linalg; from threadpoolctl import threadpool_info; "
        "print(sorted({p['num_threads'] for p in threadpool_info()}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert completed.stdout.strip() == "[1]"


def test_execution_settings_reach_the_graph(demo_template, tmp_path):
    from rumba_bids.cli.parser import parse_settings
    from rumba_bids.cli.run import build_workflow, rumba_options
    from rumba_bids.inputs.record import DwiRun

    settings = parse_settings(
        [str(demo_template), str(tmp_path / "out"), "participant", "--stop-on-first-crash",
         "--no-csf", "--gm-response", "1e-3", "-w", str(tmp_path / "w"), "--n-iter", "7"]
    )  # fmt: skip
    options = rumba_options(settings.model)
    assert options["csf_response"] is None and options["gm_response"] == 1e-3
    assert options["wm_response"] is None  # only used by --response default
    stem = str(demo_template / "sub-02/dwi/sub-02_dwi")
    run = DwiRun(stem + ".nii.gz", stem + ".bval", stem + ".bvec", (("subject", "02"),))
    workflow = build_workflow(settings, [run], {"sub-02": True})
    assert workflow.base_dir == str(settings.work_dir)
    assert workflow.config["execution"]["stop_on_first_crash"] is True
    fit = workflow.get_node("sub_02_wf.rumba_wf.fit_rumba")
    assert fit.inputs.n_iter == 7 and fit.inputs.csf_response is None
    assert fit.n_procs == settings.nprocs  # a single run gets every CPU
    second = (("subject", "02"), ("run", "2"))
    two = [
        run,
        DwiRun(f"{stem}.nii.gz", f"{stem}.bval", f"{stem}.bvec", second),
    ]
    shared = build_workflow(
        dataclasses.replace(settings, nprocs=4), two, {"sub-02": True, "sub-02_run-2": True}
    )
    assert shared.get_node("sub_02_wf.rumba_wf.fit_rumba").n_procs == 2  # 4 CPUs, 2 runs
    given = build_workflow(dataclasses.replace(settings, omp_nthreads=1), [run], {"sub-02": True})
    assert given.get_node("sub_02_wf.rumba_wf.fit_rumba").n_procs == 1  # --omp-nthreads wins
