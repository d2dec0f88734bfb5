"""Helpers of the robustness tests: tiny BIDS datasets and ways to run the app.

``tiny_bids`` is a handwritten one-subject dataset (12x12x8 grid, 2 b0 + 6
directions, random positive int16 signals): enough for every pre-flight check,
never fitted.  ``phantom_bids`` is a one-subject demo dataset small enough to be
fitted in seconds.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

TINY_SHAPE = (12, 12, 8)
TINY_BVALS = (0, 1000, 1000, 1000, 0, 1000, 1000, 1000)
TINY_STEM = "sub-01/dwi/sub-01_dwi"
#: Grid of the fitted phantom: a few thousand brain voxels.
PHANTOM_SHAPE = (24, 28, 20)
SCRIPT = shutil.which("rumba-bids", path=str(Path(sys.executable).parent))


def write_tiny_dataset(root: Path) -> Path:
    """The one-subject dataset described in the module docstring; returns ``root``."""
    rng = np.random.default_rng(0)
    folder = root / "sub-01" / "dwi"
    folder.mkdir(parents=True)
    (root / "dataset_description.json").write_text(
        json.dumps({"Name": "tiny", "BIDSVersion": "1.10.0", "DatasetType": "raw"})
    )
    directions = rng.normal(size=(len(TINY_BVALS), 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    directions[np.asarray(TINY_BVALS) == 0] = 0.0
    data = (rng.random((*TINY_SHAPE, len(TINY_BVALS))) * 500 + 100).astype(np.int16)
    image = nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0]))
    nib.save(image, str(root / f"{TINY_STEM}.nii.gz"))
    (root / f"{TINY_STEM}.bval").write_text(" ".join(map(str, TINY_BVALS)) + "\n")
    rows = [" ".join(f"{v:.6f}" for v in directions[:, axis]) for axis in range(3)]
    (root / f"{TINY_STEM}.bvec").write_text("\n".join(rows) + "\n")
    return root


def snapshot(root: Path) -> dict:
    """Every file and folder under ``root`` with its size and modification time."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else None
        for p in sorted(root.rglob("*"))
    }


def run_in_process(args, monkeypatch) -> tuple[int, str]:
    """``rumba_bids.cli.run.main(args)``: (exit code, stderr), BLAS limits left alone."""
    from rumba_bids.cli import run

    monkeypatch.setattr(run, "limit_blas_threads", lambda n_threads: None)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
        code = run.main([str(a) for a in args])
    return code, stderr.getvalue()


def launcher() -> list[str]:
    return [SCRIPT] if SCRIPT else [sys.executable, "-m", "rumba_bids.cli.run"]


def app_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    return {**env, "PYTHONWARNINGS": "ignore", "NIPYPE_NO_ET": "1", **extra}


def run_app(*args, timeout=300) -> subprocess.CompletedProcess:
    """The console script in a subprocess; fails the test on a traceback."""
    completed = subprocess.run(
        [*launcher(), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=app_env(),
    )
    assert "Traceback" not in completed.stderr, completed.stderr
    return completed


def start_app(*args, **popen) -> subprocess.Popen:
    """The console script started in its own process group (stderr piped to a file)."""
    return subprocess.Popen(
        [*launcher(), *map(str, args)], env=app_env(), start_new_session=True, **popen
    )


def derivative_files(out: Path) -> dict[str, bytes]:
    """Contents of the per-run derivatives (images, sidecars, response, mask)."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.glob("sub-*/**/dwi/*"))
        if p.is_file() and not p.name.startswith(".")
    }


def visible_files_are_complete(out: Path) -> list[str]:
    """Check every non-hidden file under ``out`` is whole; return their relative paths.

    NIfTI images must load and yield all their data; JSON must parse.
    """
    checked = []
    for path in sorted(out.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(out).parts):
            continue
        if path.name.endswith((".nii", ".nii.gz")):
            image = nib.load(str(path))
            data = np.asanyarray(image.dataobj)
            assert data.shape == image.shape, path
        elif path.suffix == ".json":
            json.loads(path.read_text())
        checked.append(str(path.relative_to(out)))
    return checked


def temporary_files(root: Path) -> list[Path]:
    from rumba_bids.cli.outputs import TEMPORARY

    return [p for p in root.rglob(".*") if TEMPORARY.match(p.name)]
