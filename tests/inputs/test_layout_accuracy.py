"""The app on QSIPrep (new and old layout) and HCP-YA trees is as accurate as on raw BIDS.

The demo phantom (sub-01: single shell, RAS+; sub-02: three shells, LAS) is
written as raw BIDS, as QSIPrep >= 0.24 and 0.19-0.23 write it (LPS+ grid,
image-axis ``.bvec``, ``.b`` and ``.b_table.txt`` beside them, one b-value per
line) and as an HCP-YA tree; the app runs on each (few iterations) and the first
peak of every single-fibre white-matter voxel is compared with the truth.

Negative control: the same QSIPrep tree with a ``dataset_description.json``
naming another pipeline is read as a BIDS derivative, i.e. with the FSL rule;
on the LPS+ grid (det > 0) that rule negates x, and the fibres come out mirrored.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rumba_bids.cli.demo import make_demo_dataset

from .scoring import first_peak_accuracy

pytestmark = pytest.mark.slow

SHAPE = (24, 28, 20)
LAYOUTS = ("bids", "qsiprep", "qsiprep-legacy", "hcpya", "wrong-flip")
SUBJECTS = {"hcpya": ("100307", "100308")}


def _app(*args) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env.update(PYTHONWARNINGS="ignore", NIPYPE_NO_ET="1")
    command = [sys.executable, "-m", "rumba_bids.cli.run", *map(str, args)]
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert "Traceback" not in completed.stderr, completed.stderr
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("accuracy")
    results = {}
    for layout in LAYOUTS:
        data = root / layout
        written = "qsiprep" if layout == "wrong-flip" else layout
        make_demo_dataset(data, n_subjects=2, n_sessions=1, seed=1, shape=SHAPE, layout=written)
        if layout == "wrong-flip":
            description = data / "dataset_description.json"
            content = json.loads(description.read_text())
            content["GeneratedBy"] = [{"Name": "otherprep", "Version": "1.0"}]
            description.write_text(json.dumps(content))
        out = root / f"out-{layout}"
        completed = _app(
            data, out, "participant", "--n-iter", "50", "--nprocs", "2", "--skip-bids-validation",
            "-w", root / f"work-{layout}",
        )  # fmt: skip
        scores = {}
        for label in SUBJECTS.get(layout, ("01", "02")):
            (peaks,) = (out / f"sub-{label}" / "dwi").glob(
                "*_model-rumba_param-peaks_dwimap.nii.gz"
            )
            truth = data / "derivatives" / "groundtruth" / f"sub-{label}" / "dwi"
            scores[label] = {**first_peak_accuracy(peaks, truth, f"sub-{label}"), "peaks": peaks}
        results[layout] = {"out": out, "log": completed.stderr, "scores": scores}
    print({k: {s: (round(v["fraction"], 3), round(v["median"], 2)) for s, v in r["scores"].items()}
           for k, r in results.items()})  # fmt: skip
    return results


@pytest.mark.parametrize("layout", ["qsiprep", "qsiprep-legacy", "hcpya"])
def test_as_accurate_as_raw_bids(results, layout):
    raw = list(results["bids"]["scores"].values())
    for index, score in enumerate(results[layout]["scores"].values()):
        assert score["voxels"] > 200
        assert score["fraction"] >= 0.95, score
        assert score["median"] < 6.0, score
        assert abs(score["median"] - raw[index]["median"]) < 2.0, (score, raw[index])
    assert all(score["fraction"] >= 0.95 for score in raw)


def test_the_fsl_rule_on_qsiprep_vectors_mirrors_the_fibres(results):
    """The check above can fail: the FSL reading of QSIPrep's .bvec is far off."""
    for score in results["wrong-flip"]["scores"].values():
        assert score["fraction"] < 0.7 and score["median"] > 15.0, score
    assert "input layout bids" in results["wrong-flip"]["log"]


@pytest.mark.parametrize(
    ("layout", "convention", "name"),
    [
        ("bids", "fsl", "sub-02_model-rumba_param-fod_dwimap.json"),
        ("qsiprep", "ijk", "sub-02_space-ACPC_model-rumba_param-fod_dwimap.json"),
        ("qsiprep-legacy", "ijk", "sub-02_space-T1w_model-rumba_param-fod_dwimap.json"),
    ],
)
def test_layout_and_convention_are_logged_and_recorded(results, layout, convention, name):
    out = results[layout]["out"]
    sidecar = json.loads((out / "sub-02" / "dwi" / name).read_text())
    assert (sidecar["InputLayout"], sidecar["BvecConvention"]) == (
        layout.split("-")[0],
        convention,
    )
    log = results[layout]["log"]
    assert f"input layout {layout.split('-')[0]}" in log
    assert f"{layout.split('-')[0]} layout, b-vectors {convention}" in log


def test_hcpya_outputs_and_provenance(results):
    out = results["hcpya"]["out"]
    sidecar = json.loads(
        (out / "sub-100307/dwi/sub-100307_model-rumba_param-peaks_dwimap.json").read_text()
    )
    assert (sidecar["InputLayout"], sidecar["BvecConvention"]) == ("hcpya", "fsl")
    assert sidecar["Sources"][0] == "bids:hcpya:100307/T1w/Diffusion/data.nii.gz"
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["GeneratedBy"][1]["Name"] == "HCP minimal preprocessing pipelines"
    assert list(description["DatasetLinks"]) == ["hcpya"]


def test_qsiprep_provenance_and_pybids_indexing(results):
    from bids import BIDSLayout

    from rumba_bids.interfaces.derivatives import pybids_config

    out = results["qsiprep"]["out"]
    description = json.loads((out / "dataset_description.json").read_text())
    assert [g["Name"] for g in description["GeneratedBy"]][:2] == ["rumba-bids", "qsiprep"]
    assert description["SourceDatasets"][0]["URL"].endswith("/qsiprep")
    citation = (out / "logs" / "CITATION.md").read_text()
    assert "written by QSIPrep were used as vectors along the axes of its LPS+ images" in citation
    layout = BIDSLayout(str(out), config=pybids_config(), validate=False)
    fods = layout.get(model="rumba", param="fod", extension=".nii.gz", return_type="filename")
    assert sorted(Path(f).name for f in fods) == [
        "sub-01_space-ACPC_model-rumba_param-fod_dwimap.nii.gz",
        "sub-02_space-ACPC_model-rumba_param-fod_dwimap.nii.gz",
    ]
    assert layout.get_spaces() == ["ACPC"]
    legacy = BIDSLayout(
        str(results["qsiprep-legacy"]["out"]), config=pybids_config(), validate=False
    )
    assert legacy.get_spaces() == ["T1w"]
