"""The built image, run the strict way users and clusters run it (podman or docker).

Needs an image built from this checkout: ``.ci/run`` builds one with ``tools/build_image.sh``
and names it in ``RUMBA_BIDS_TEST_IMAGE``; by hand::

    bash tools/build_image.sh localhost/rumba-bids:dev
    RUMBA_BIDS_TEST_IMAGE=localhost/rumba-bids:dev python -m pytest tests/test_container_image.py

(``RUMBA_BIDS_CONTAINER_ENGINE=docker`` to use docker). Every run is read-only, as an
arbitrary non-root uid, without network and with ``HOME`` pointing at a directory that does
not exist, so any write outside the mounted output and the ``/tmp`` tmpfs fails the run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

import rumba_bids

REPO = Path(__file__).resolve().parents[1]
EXPECTED_OUTPUTS = REPO / "tests" / "data" / "expected_outputs.txt"
ENGINE = os.environ.get("RUMBA_BIDS_CONTAINER_ENGINE", "podman")
IMAGE = os.environ.get("RUMBA_BIDS_TEST_IMAGE")
#: The demo of the CLI tests (tests/cli/conftest.py) and few iterations: ~1 min, not ~3.
DEMO_ARGS = ("--shape", "32", "36", "26", "--seed", "1")
RUN_ARGS = ("participant", "--n-iter", "50", "--nprocs", "2")
USER = "12345:12345"
STRICT = (
    "--rm",
    "--network", "none",
    "--read-only",
    "--tmpfs", "/tmp:mode=1777",
    "--user", USER,
    "--env", "HOME=/nonexistent/home",
)  # fmt: skip
#: Prints the OpenBLAS kernels (threadpoolctl's "architecture") of numpy and scipy.
BLAS_CORES = (
    "import json, numpy, scipy.linalg, threadpoolctl; print(json.dumps(sorted({"
    "i['architecture'] for i in threadpoolctl.threadpool_info() if i['internal_api'] == 'openblas'"
    "})))"
)


def _check_outputs():
    spec = importlib.util.spec_from_file_location("check_outputs", REPO / "tools/check_outputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def container(*args, timeout=900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [ENGINE, "run", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def image() -> str:
    if not IMAGE:
        pytest.skip(
            "no image to test: RUMBA_BIDS_TEST_IMAGE is unset (.ci/run builds one with "
            "tools/build_image.sh where podman can be installed)"
        )
    if shutil.which(ENGINE) is None:
        pytest.skip(f"RUMBA_BIDS_TEST_IMAGE is set but {ENGINE} is not installed")
    inspect = subprocess.run(
        [ENGINE, "image", "inspect", IMAGE], capture_output=True, text=True, check=False
    )
    # The variable names an image that must exist: a failed build must not pass as a skip.
    assert inspect.returncode == 0, f"{ENGINE} has no image {IMAGE}: {inspect.stderr}"
    return IMAGE


@pytest.fixture(scope="module")
def strict_run(image, tmp_path_factory):
    """Demo dataset made in the container, then the participant level on it (bids mounted
    read-only, work directory on the /tmp tmpfs as ``-w $TMPDIR/work`` on a cluster)."""
    root = tmp_path_factory.mktemp("container")
    bids, out = root / "bids", root / "out"
    for directory in (bids, out):
        directory.mkdir()
        directory.chmod(0o777)  # writable for the container's arbitrary uid
    demo = container(*STRICT, "-v", f"{bids}:/data", "--entrypoint", "rumba-bids-demo",
                     image, "/data", *DEMO_ARGS)  # fmt: skip
    assert demo.returncode == 0, demo.stderr
    return {"root": root, "bids": bids, "out": out, "run": _participant_run(image, bids, out)}


def _participant_run(image, bids, out, *options) -> subprocess.CompletedProcess:
    """The participant level, strict, on ``bids`` (read-only) into ``out``; ``options`` go to
    the engine (e.g. ``--env``)."""
    return container(*STRICT, *options, "-v", f"{bids}:/data:ro", "-v", f"{out}:/out",
                     image, "/data", "/out", *RUN_ARGS, "-w", "/tmp/work")  # fmt: skip


def test_image_is_this_version_and_not_root(image):
    version = container("--rm", "--network", "none", image, "--version")
    assert version.stdout.strip() == f"rumba-bids {rumba_bids.__version__}", version
    uid = container("--rm", "--network", "none", "--entrypoint", "id", image, "-u")
    assert uid.returncode == 0 and uid.stdout.strip() not in ("", "0"), uid


def test_strict_flags_make_any_other_write_fail(image):
    """Negative control: under STRICT, writing to HOME or into the image fails, so a
    successful strict run wrote nowhere but its mounts and /tmp."""
    for target in ("$HOME/x", "/x", "/usr/local/x"):
        touched = container(*STRICT, "--entrypoint", "sh", image, "-c", f"touch {target}")
        assert touched.returncode != 0, f"{target} was writable"
    touched = container(*STRICT, "--entrypoint", "sh", image, "-c", "touch /tmp/x")
    assert touched.returncode == 0, touched.stderr


def test_strict_run_writes_the_expected_outputs(strict_run):
    run = strict_run["run"]
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    check_outputs = _check_outputs()
    files = check_outputs.list_files(strict_run["out"])
    patterns = check_outputs.read_expected(EXPECTED_OUTPUTS)
    assert check_outputs.compare(files, patterns) == ([], [])
    if ENGINE == "podman" and os.geteuid() == 0:  # rootful: the uid is the host's uid
        owners = {(p.stat().st_uid, p.stat().st_gid) for p in strict_run["out"].rglob("*")}
        assert owners == {(12345, 12345)}, owners


def _blas_cores(done: subprocess.CompletedProcess) -> list[str]:
    """What :data:`BLAS_CORES` printed."""
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_container_outputs_equal_the_host_run(strict_run, image):
    """The image computes what this checkout computes: the same derivatives, voxel by voxel,
    with the same OpenBLAS kernel.

    float32 products round differently in OpenBLAS's AVX2 (Haswell, Zen) and AVX-512
    (SkylakeX, Cooperlake, SapphireRapids) kernels: the derivatives then differ by float32
    round-off (measured here, Haswell against SkylakeX kernels: 2.4e-7 in the fractions,
    13 % of their voxels). Where OpenBLAS picks another kernel in the image than here on the
    same CPU (seen once in CI), the run is repeated with the image pinned to this checkout's
    kernel (``OPENBLAS_CORETYPE``) and a warning names both."""
    assert strict_run["run"].returncode == 0, "the strict run failed"
    host_out = strict_run["root"] / "host_out"
    script = shutil.which("rumba-bids", path=str(Path(sys.executable).parent))
    launcher = [script] if script else [sys.executable, "-m", "rumba_bids.cli.run"]
    host = subprocess.run(
        [*launcher, str(strict_run["bids"]), str(host_out), *RUN_ARGS,
         "-w", str(strict_run["root"] / "host_work")],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert host.returncode == 0, host.stderr[-3000:]
    here = _blas_cores(
        subprocess.run(
            [sys.executable, "-c", BLAS_CORES], capture_output=True, text=True, timeout=300,
            check=False,
        )
    )  # fmt: skip

    def probe(*env):
        return _blas_cores(container("--rm", "--network", "none", *env, "--entrypoint", "python",
                                     image, "-c", BLAS_CORES))  # fmt: skip

    image_out, there = strict_run["out"], probe()
    if there != here:
        assert len(here) == 1, f"numpy and scipy use different OpenBLAS kernels here: {here}"
        pinned = ("--env", f"OPENBLAS_CORETYPE={here[0]}")
        warnings.warn(
            f"OpenBLAS picks {there} in the image but {here} here: "
            f"the image's run is compared with {' '.join(pinned)}",
            stacklevel=1,
        )
        assert probe(*pinned) == here
        image_out = strict_run["root"] / "pinned_out"
        image_out.mkdir()
        image_out.chmod(0o777)  # writable for the container's arbitrary uid
        pinned_run = _participant_run(image, strict_run["bids"], image_out, *pinned)
        assert pinned_run.returncode == 0, pinned_run.stderr[-3000:]
    images = sorted(p.relative_to(host_out) for p in host_out.rglob("*.nii.gz"))
    assert len(images) > 20
    for relative in images:
        ours, theirs = nib.load(host_out / relative), nib.load(image_out / relative)
        np.testing.assert_array_equal(ours.affine, theirs.affine, err_msg=str(relative))
        # Bit-identical (measured): same pinned wheels, settings and BLAS kernel; NaN = no peak.
        np.testing.assert_array_equal(
            np.asarray(theirs.dataobj), np.asarray(ours.dataobj), err_msg=str(relative)
        )


def test_apptainer_like_run(strict_run, image):
    """As Apptainer/BABS run it: the caller's uid, HOME unset, a read-only /tmp (no tmpfs), the
    job directory bound and current, ``-w $TMPDIR/work``, ``--participant-label sub-XX``.
    Only the job directory is written."""
    job = strict_run["root"] / "job"
    (job / "tmp").mkdir(parents=True)
    for directory in (job, job / "tmp"):
        directory.chmod(0o777)
    no_tmpfs = ("--read-only-tmpfs=false",) if ENGINE == "podman" else ()
    run = container(
        "--rm", "--network", "none", "--read-only", *no_tmpfs, "--user", "23456:23456",
        "--unsetenv", "HOME", "--env", "TMPDIR=/job/tmp", "--workdir", "/job",
        "-v", f"{strict_run['bids']}:/data:ro", "-v", f"{job}:/job", image,
        "/data", "/job/outputs/rumba", *RUN_ARGS, "--participant-label", "sub-01",
        "-w", "/job/tmp/work",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(p.name for p in job.iterdir()) == ["outputs", "tmp"]
    assert (job / "outputs" / "rumba" / "sub-01.html").is_file()
    assert not (job / "outputs" / "rumba" / "sub-02").exists()
