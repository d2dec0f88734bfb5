"""Interrupted runs: SIGKILL at seeded points of the fit and of the derivative writing,
then a rerun with the same work directory; SIGINT / SIGTERM stop cleanly.

After a kill, every visible file of the output directory is complete (derivatives are
written to hidden temporary names and renamed into place); the rerun finishes and its
derivatives are byte for byte those of an uninterrupted run (gzip streams carry no time
stamp or name), and the temporary files left by the kill are gone.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from rumba_bids.cli.outputs import remove_stale_temporaries

from .helpers import (
    derivative_files,
    run_app,
    start_app,
    temporary_files,
    visible_files_are_complete,
)

#: Enough iterations for the fit to last about a second on the phantom.
N_ITER = 1500
OPTIONS = ("--skip-bids-validation", "--n-iter", N_ITER, "--nprocs", "1")
#: Steps of a run, in the order they start; "anywhere" kills while a random one runs.
STEPS = ("brain_mask", "estimate_response", "fit_rumba", "fod_to_sh", "extract_peaks")


def _command(root: Path) -> list:
    return [root / "bids", root / "out", "participant", *OPTIONS, "-w", root / "work"]


@pytest.fixture(scope="module")
def reference(phantom_template, tmp_path_factory):
    """The derivatives of an uninterrupted run."""
    root = tmp_path_factory.mktemp("reference")
    shutil.copytree(phantom_template, root / "bids")
    completed = run_app(*_command(root))
    assert completed.returncode == 0, completed.stderr
    return {"files": derivative_files(root / "out")}


@pytest.fixture
def fresh(phantom_template, tmp_path):
    shutil.copytree(phantom_template, tmp_path / "bids")
    return tmp_path


def _wait_for(predicate, process, timeout=120.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert process.poll() is None, "the run ended before the point to interrupt it"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def _started(root: Path, step: str):
    return lambda: bool(list((root / "work").glob(f"*/sub_01_wf/rumba_wf/{step}")))


def _writing_started(root: Path):
    return lambda: (root / "out" / "sub-01" / "dwi").is_dir()


def _workers(pid: int) -> list[int]:
    """Child processes of ``pid`` (Linux /proc)."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return children


def _is_dead(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def _assert_dead(pids, timeout=10.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(_is_dead(pid) for pid in pids):
        assert time.monotonic() < deadline, f"worker processes still alive: {pids}"
        time.sleep(0.05)


def _rerun_matches(root: Path, reference) -> None:
    completed = run_app(*_command(root))
    assert completed.returncode == 0, completed.stderr
    assert derivative_files(root / "out") == reference["files"]
    assert temporary_files(root / "out") == []
    visible_files_are_complete(root / "out")


KILLS = [
    # (where, whom, seed): whom = the main process only, or its whole process group
    ("fit", "main", 1),
    ("fit", "group", 2),
    ("writing", "main", 3),
    ("anywhere", "group", 4),
]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
@pytest.mark.parametrize(("where", "whom", "seed"), KILLS, ids=[f"{k[0]}-{k[1]}" for k in KILLS])
def test_sigkill_then_rerun(where, whom, seed, fresh, reference):
    rng = np.random.default_rng(seed)
    with open(fresh / "stderr.txt", "w") as log:
        process = start_app(*_command(fresh), stderr=log)
        if where == "fit":  # the fit lasts about a second
            _wait_for(_started(fresh, "fit_rumba"), process)
            time.sleep(rng.uniform(0.0, 0.8))
        elif where == "writing":  # the derivatives of the run take about 0.3 s to write
            _wait_for(_writing_started(fresh), process)
            time.sleep(rng.uniform(0.0, 0.15))
        else:
            _wait_for(_started(fresh, STEPS[rng.integers(len(STEPS))]), process)
            time.sleep(rng.uniform(0.0, 0.05))
        workers = _workers(process.pid)
        if whom == "group":
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    _assert_dead(workers)  # they die with the main process (PR_SET_PDEATHSIG)
    if (fresh / "out").exists():
        visible_files_are_complete(fresh / "out")
    _rerun_matches(fresh, reference)


SIGNALS = [
    # (signal, exit code, to the whole group, where, plugin)
    (signal.SIGTERM, 143, False, "fit", "MultiProc"),
    (signal.SIGINT, 130, True, "fit", "MultiProc"),
    (signal.SIGTERM, 143, False, "writing", "Linear"),
]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
@pytest.mark.parametrize(
    ("signum", "code", "to_group", "where", "plugin"),
    SIGNALS,
    ids=["SIGTERM-fit", "SIGINT-group-fit", "SIGTERM-writing-Linear"],
)
def test_signals_stop_cleanly(signum, code, to_group, where, plugin, fresh, reference):
    """SIGTERM (a scheduler) or Ctrl-C (SIGINT to the whole group), during the fit or
    while the derivatives are written (in the main process, where Nipype would take the
    interruption for a failed step): one line, the conventional exit code, no traceback,
    no worker left, nothing half-written; the rerun resumes."""
    config = fresh / "plugin.yml"
    config.write_text(f"plugin: {plugin}\n")
    with open(fresh / "stderr.txt", "w") as log:
        process = start_app(*_command(fresh), "--use-plugin", config, stderr=log)
        if where == "fit":
            _wait_for(_started(fresh, "fit_rumba"), process)
            time.sleep(0.3)
        else:
            _wait_for(_writing_started(fresh), process)
        workers = _workers(process.pid)
        if to_group:
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
        process.wait(timeout=60)
    stderr = (fresh / "stderr.txt").read_text()
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("rumba-bids: error:")]
    name = signal.Signals(signum).name
    assert errors == [
        f"rumba-bids: error: interrupted by {name}; finished steps are kept in "
        f"{(fresh / 'work').resolve()}; rerun the same command to resume"
    ]
    assert stderr.rstrip().endswith(errors[0])
    _assert_dead(workers)
    assert not list((fresh / "out").glob("sub-01.html"))  # stopped before the reports
    assert temporary_files(fresh / "out") == []
    visible_files_are_complete(fresh / "out")
    if where == "writing" or to_group:
        _rerun_matches(fresh, reference)


WRITER = """
import sys
from rumba_bids.interfaces.derivatives import save_derivative
print("ready", flush=True)
while True:
    save_derivative(sys.argv[1], base_directory=sys.argv[2], model="rumba", param="fod",
                    source_file="/raw/sub-01/dwi/sub-01_dwi.nii.gz", meta={"Key": "value"})
"""


@pytest.mark.parametrize("seed", range(4))
def test_a_killed_writer_never_leaves_a_partial_derivative(seed, tmp_path):
    """A process rewriting a large derivative in a loop, SIGKILLed at a random time:
    the derivative is absent or whole (and its sidecar too); the hidden temporary file
    the kill may leave is removed by the next run's clean-up."""
    rng = np.random.default_rng(seed)
    data = rng.random((40, 40, 30, 45), dtype=np.float32)
    source = tmp_path / "fod.nii"
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(source))
    out = tmp_path / "out"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(source), str(out)], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout.readline().strip() == "ready"
    time.sleep(rng.uniform(0.05, 1.5))
    writer.kill()
    writer.wait()
    target = out / "sub-01/dwi/sub-01_model-rumba_param-fod_dwimap.nii.gz"
    if target.exists():
        np.testing.assert_array_equal(np.asanyarray(nib.load(str(target)).dataobj), data)
    sidecar = target.with_name(target.name.replace(".nii.gz", ".json"))
    visible = visible_files_are_complete(out)  # loads every visible image and sidecar
    assert set(visible) <= {str(p.relative_to(out)) for p in (target, sidecar)}
    removed = remove_stale_temporaries(out, ["01"])
    assert temporary_files(out) == [] and all(p.name.startswith(".") for p in removed)
