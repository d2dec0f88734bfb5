"""Several ``rumba-bids`` processes writing into one output directory at once.

The dataset-level files are merged under an exclusive lock (``.rumba-bids.lock``):
after two participant runs started together, ``dataset_description.json`` and the
citation are valid and describe both runs.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import sys
import time

import pytest

from rumba_bids.cli.demo import make_demo_dataset
from rumba_bids.cli.outputs import LOCK_NAME, RUNS_RECORD, output_lock, write_dataset_files
from rumba_bids.cli.parser import parse_settings
from rumba_bids.inputs.detect import InputDataset
from rumba_bids.inputs.record import DwiRun

from .helpers import (
    PHANTOM_SHAPE,
    derivative_files,
    start_app,
    temporary_files,
    visible_files_are_complete,
)


@pytest.fixture(scope="module")
def two_subjects(tmp_path_factory):
    root = tmp_path_factory.mktemp("two") / "bids"
    make_demo_dataset(root, n_subjects=2, n_sessions=1, seed=5, shape=PHANTOM_SHAPE)
    shutil.rmtree(root / "derivatives")
    return root


def test_two_participants_at_once_into_one_output_dir(two_subjects, tmp_path):
    """sub-01 (single shell) and sub-02 (three shells, GM compartment) run concurrently,
    sharing the output and the (default) work directory."""
    bids = tmp_path / "bids"
    shutil.copytree(two_subjects, bids)
    out = tmp_path / "derivatives" / "rumba"
    processes = []
    for label in ("01", "02"):
        log = open(tmp_path / f"stderr-{label}.txt", "w")  # noqa: SIM115
        arguments = [bids, out, "participant", "--participant-label", label]
        options = ["--skip-bids-validation", "--n-iter", "30", "--nprocs", "1"]
        processes.append((start_app(*arguments, *options, stderr=log), log))
    for process, log in processes:
        process.wait(timeout=300)
        log.close()
    for label, (process, _) in zip(("01", "02"), processes):
        stderr = (tmp_path / f"stderr-{label}.txt").read_text()
        assert process.returncode == 0, stderr
        assert "Traceback" not in stderr
    description = json.loads((out / "dataset_description.json").read_text())
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "rumba-bids"
    record = json.loads((out / RUNS_RECORD).read_text())["Runs"]
    assert set(record) == {"sub-01", "sub-02"}
    assert record["sub-02"]["GMCompartment"] and not record["sub-01"]["GMCompartment"]
    citation = (out / "logs" / "CITATION.md").read_text()
    assert "for 2 diffusion-weighted run(s) of 2 participant(s)" in citation
    assert "for the 1 run(s) acquired with at least three non-zero shells" in citation
    assert (out / "logs" / "CITATION.bib").read_text().startswith("@article")
    files = derivative_files(out)
    for label in ("01", "02"):
        assert f"sub-{label}/dwi/sub-{label}_model-rumba_param-fod_dwimap.nii.gz" in files
        assert (out / f"sub-{label}.html").is_file()
    assert (out / LOCK_NAME).is_file() and temporary_files(out) == []
    visible_files_are_complete(out)
    assert not list(bids.rglob("*work*")) and (tmp_path / "derivatives" / "work").is_dir()


def _write_many(settings, label: str, rounds: int, barrier) -> None:
    run = DwiRun(
        dwi_file="/raw/x_dwi.nii.gz",
        bval_file="x.bval",
        bvec_file="x.bvec",
        entities=(("subject", label[len("sub-") :]),),
    )
    dataset = InputDataset(settings.bids_dir, "bids", {"Name": "raw"})
    barrier.wait()
    for _ in range(rounds):
        write_dataset_files(settings, dataset, [run], {label: True})


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="forks the writers"
)
def test_dataset_files_merge_every_writer(tiny_bids, tmp_path):
    """Eight processes rewrite the dataset-level files 15 times each, all at once: the
    record of processed runs keeps every run (a read-modify-write without the lock loses
    some), and every file stays valid."""
    out = tmp_path / "out"
    settings = parse_settings(
        [str(tiny_bids), str(out), "participant", "-w", str(tmp_path / "work")]
    )
    labels = [f"sub-{index:02d}" for index in range(1, 9)]
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(len(labels))
    writers = [
        context.Process(target=_write_many, args=(settings, label, 15, barrier))
        for label in labels
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=120)
        assert writer.exitcode == 0
    record = json.loads((out / RUNS_RECORD).read_text())["Runs"]
    assert sorted(record) == labels
    citation = (out / "logs" / "CITATION.md").read_text()
    assert "for 8 diffusion-weighted run(s) of 8 participant(s)" in citation
    assert "for the 8 run(s) acquired with at least three non-zero shells" in citation
    json.loads((out / "dataset_description.json").read_text())
    assert temporary_files(out) == []


def test_a_writer_waits_for_the_lock(tmp_path):
    """While one process holds the lock, another one's writing blocks."""
    code = (
        "import sys, time; from pathlib import Path; "
        "from rumba_bids.cli.outputs import output_lock\n"
        "start = time.monotonic()\n"
        "with output_lock(Path(sys.argv[1])): print(round(time.monotonic() - start, 1))"
    )
    with output_lock(tmp_path):
        waiting = subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
        )
        time.sleep(1.0)
        assert waiting.poll() is None
    assert float(waiting.communicate(timeout=60)[0]) >= 0.9
