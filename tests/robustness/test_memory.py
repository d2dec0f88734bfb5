"""Memory limits: the fit's memory model, fitting in blocks within ``--mem`` (with
identical results), and runs that cannot fit refused up front."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from rumba_bids.cli.resources import InsufficientMemoryError, check_memory, format_gb
from rumba_bids.cli.settings import ModelOptions
from rumba_bids.core.memory import choose_block_voxels
from rumba_bids.core.memory import process_bytes as fit_memory_bytes
from rumba_bids.core.phantoms import make_acquisition
from rumba_bids.core.rumba import RumbaSDModel
from rumba_bids.inputs.record import DwiRun
from rumba_bids.interfaces.rumba import fit_voxelwise_blocks, memory_model
from rumba_bids.workflows.rumba import minimum_mem_gb

from .helpers import derivative_files, run_app, run_in_process


def _series(rng, shape, gtab, *, dtype=np.int16):
    data = rng.random((*shape, len(gtab))) * 400 + 50
    data[..., gtab.b0s_mask] += 400
    return data.astype(dtype)


@pytest.mark.parametrize(
    "options",
    [{}, {"voxelwise": False}, {"voxelwise": False, "use_tv": True}, {"sphere": "repulsion100"}],
    ids=["voxelwise", "global", "tv", "repulsion100"],
)
@pytest.mark.parametrize("bvals", [(2000.0,), (1000.0, 2000.0, 3000.0)], ids=["1shell", "3shells"])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_fit_memory_bounds_what_the_fit_allocates(options, bvals, n_threads):
    """:meth:`RumbaSDModel.fit_memory` against tracemalloc's peak: never below it, at
    most 10 % above without TV and 30 % with TV on one thread.  With two threads the
    work arrays of two chunks may be alive at once, or not, from run to run (measured:
    the same fit peaks at 3.7 or 5.3 MB): never below, and above by at most the
    bound of one thread plus the second thread's work arrays."""
    rng = np.random.default_rng(0)
    gtab = make_acquisition(n_b0=6, n_dirs=40, bvals=bvals)
    model = RumbaSDModel(gtab, n_iter=2, n_threads=n_threads, **options)
    shape = (18, 16, 12)
    data = _series(rng, shape, gtab, dtype=np.float32)
    mask = rng.random(shape) < 0.6
    model.fit(data[:2, :2, :2], mask=mask[:2, :2, :2])  # numba compiles outside the trace
    tracemalloc.start()
    try:
        model.fit(data, mask=mask)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    estimate = model.fit_memory(int(mask.sum()), grid_shape=shape)
    upper = 1.3 if model.use_tv else 1.1
    one_thread = RumbaSDModel(gtab, n_iter=2, n_threads=1, **options)
    second_worker = estimate - one_thread.fit_memory(int(mask.sum()), grid_shape=shape)
    assert peak <= estimate <= upper * peak + second_worker, (peak, estimate)


def test_block_voxels_is_the_largest_multiple_of_the_chunk_that_fits():
    model = RumbaSDModel(make_acquisition(n_b0=5, n_dirs=30), n_iter=1)
    limit = 60e6
    block = model.block_voxels(limit, data_itemsize=4, extra_per_voxel=100)
    assert block > 1024 and block % 1024 == 0
    assert model.block_memory(block, data_itemsize=4, extra_per_voxel=100) <= limit
    assert model.block_memory(block + 1024, data_itemsize=4, extra_per_voxel=100) > limit
    assert model.block_voxels(model.block_memory(1024) - 1) == 0
    assert RumbaSDModel(model.gtab, chunk_size=100).block_voxels(limit) % 100 == 0


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """A 20x22x14 int16 series (2 shells) on disk, a mask, a voxel with no b0 signal."""
    rng = np.random.default_rng(1)
    gtab = make_acquisition(n_b0=6, n_dirs=40, bvals=(1000.0, 2500.0))
    shape = (20, 22, 14)
    data = _series(rng, shape, gtab)
    data[3, 4, 5, gtab.b0s_mask] = 0  # excluded from the fit
    path = tmp_path_factory.mktemp("series") / "dwi.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), str(path))
    return {"path": path, "gtab": gtab, "mask": rng.random(shape) < 0.8}


def test_fitting_in_blocks_changes_nothing(series, tmp_path):
    """Blocks of 1024 voxels (the chunk), 3072 and all of them give bit-identical maps,
    equal to one :meth:`RumbaSDModel.fit` call on the volume up to float32 rounding (the
    blocks take voxels in file order, x fastest, so its chunks group other voxels)."""
    model = RumbaSDModel(series["gtab"], n_iter=20)
    image = nib.load(str(series["path"]))
    reference = model.fit(image.get_fdata(dtype=np.float32), mask=series["mask"])
    assert reference.n_excluded == 1
    results = {}
    for block in (1024, 3072, None):
        fod_path = tmp_path / f"fod-{block}.nii"
        maps, result = fit_voxelwise_blocks(
            model, image, "dwi.nii.gz", series["mask"], str(fod_path), block_voxels=block
        )
        expected_blocks = 1 if block is None else -(-int(reference.mask.sum()) // block)
        assert result.n_blocks == expected_blocks and result.n_excluded == 1
        np.testing.assert_array_equal(result.mask, reference.mask)
        fod = nib.load(str(fod_path))
        np.testing.assert_array_equal(fod.affine, image.affine)
        maps["fod"] = np.asanyarray(fod.dataobj)
        results[block] = maps
    for block in (3072, None):
        for name, values in results[1024].items():
            np.testing.assert_array_equal(results[block][name], values, err_msg=name)
    np.testing.assert_allclose(results[None]["fod"], reference.odf(), rtol=0, atol=1e-6)
    for name in ("f_wm", "f_gm", "f_csf", "f_iso"):
        np.testing.assert_allclose(results[None][name], getattr(reference, name), atol=1e-5)
    np.testing.assert_allclose(results[None]["snr"], reference.snr, rtol=1e-4)


def test_block_size_follows_the_memory_limit(series):
    image = nib.load(str(series["path"]))
    model = RumbaSDModel(series["gtab"])
    least = fit_memory_bytes(model, image.shape, block_voxels=1024)
    assert choose_block_voxels(model, image.shape, max_bytes=least + 1) == 1024
    everything = fit_memory_bytes(model, image.shape)
    assert choose_block_voxels(model, image.shape, max_bytes=everything) == 20 * 22 * 14
    message = r"needs at least 0\.\d\d GB but only 0\.10 GB"
    with pytest.raises(InsufficientMemoryError, match=message):
        choose_block_voxels(model, image.shape, max_bytes=0.1e9)
    global_model = memory_model(image.shape[3], fit="global")
    with pytest.raises(InsufficientMemoryError, match="the global fit of 6160 voxels needs"):
        choose_block_voxels(global_model, image.shape, max_bytes=0.21e9)


#: Peak RSS from VmHWM (ru_maxrss would include the RSS of the forking parent).
PEAK_RSS = """
import json, sys
from rumba_bids.interfaces.rumba import fit_rumba_files
limit = None if sys.argv[5] == "none" else float(sys.argv[5])
out = fit_rumba_files(*sys.argv[1:5], sys.argv[6], n_iter=2, max_memory_gb=limit)
status = open("/proc/self/status").read().split("VmHWM:")[1].split()
print(json.dumps({"peak_gb": int(status[0]) * 1024 / 1e9, "fod": out["fod_amplitudes"]}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_the_fit_process_stays_within_its_limit(tmp_path):
    """Peak RSS of a whole fit process (a 44x44x32 series, 48 volumes): within
    ``max_memory_gb`` when given (blocks), above it without (one block); same result."""
    rng = np.random.default_rng(2)
    gtab = make_acquisition(n_b0=4, n_dirs=44, bvals=(2000.0,))
    data = _series(rng, (44, 44, 32), gtab)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "dwi.nii.gz"))
    np.savetxt(tmp_path / "dwi.bval", gtab.bvals[None], fmt="%g")
    np.savetxt(tmp_path / "dwi.bvec", gtab.bvecs.T, fmt="%.8f")
    (tmp_path / "response.txt").write_text("1.7e-3 0.2e-3 0.2e-3\n")
    files = [str(tmp_path / name) for name in ("dwi.nii.gz", "dwi.bval", "dwi.bvec")]
    files.append(str(tmp_path / "response.txt"))
    model = memory_model(data.shape[3], bvals=gtab.bvals)
    full_gb = fit_memory_bytes(model, data.shape) / 1e9
    limit_gb = 0.35
    assert full_gb > limit_gb + 0.2  # the limit matters
    measured = {}
    for limit in (limit_gb, None):
        out_dir = tmp_path / f"out-{limit}"
        out_dir.mkdir()
        completed = subprocess.run(
            [sys.executable, "-c", PEAK_RSS, *files, str(limit or "none"), str(out_dir)],
            capture_output=True,
            text=True,
            check=True,
        )
        measured[limit] = json.loads(completed.stdout.strip().splitlines()[-1])
    assert measured[limit_gb]["peak_gb"] <= limit_gb, measured
    assert measured[None]["peak_gb"] > limit_gb + 0.1, measured
    limited, unlimited = (nib.load(measured[k]["fod"]) for k in (limit_gb, None))
    np.testing.assert_array_equal(np.asanyarray(limited.dataobj), np.asanyarray(unlimited.dataobj))


#: A whole fit process (the FitRumba node's function) reporting its peak RSS and the estimate.
FIT_RSS = """
import json, sys
import nibabel as nib
from rumba_bids.core.memory import process_bytes
from rumba_bids.interfaces.rumba import fit_rumba_files, memory_model, values_itemsize
dwi, bval, bvec, response, mask, out, fit, use_tv, threads = sys.argv[1:10]
use_tv = use_tv == "1"
fit_rumba_files(dwi, bval, bvec, response, out, mask_file=mask, fit=fit, use_tv=use_tv,
                n_iter=2, n_threads=int(threads))
status = open("/proc/self/status").read().split("VmHWM:")[1].split()
image = nib.load(dwi)
model = memory_model(image.shape[3], bvals=[float(b) for b in open(bval).read().split()],
                     fit=fit, use_tv=use_tv)
model.n_threads = int(threads)
n_voxels = int(nib.load(mask).get_fdata().astype(bool).sum())
estimate = process_bytes(model, image.shape, values_itemsize=values_itemsize(image),
                         n_voxels=n_voxels)
print(json.dumps({"peak": int(status[0]) * 1024, "estimate": estimate}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
@pytest.mark.parametrize(
    ("fit", "use_tv"), [("voxelwise", False), ("global", False), ("global", True)]
)
def test_estimate_holds_for_real_fit_processes(tmp_path, fit, use_tv):
    """Peak RSS (VmHWM; ``ru_maxrss`` would count the forking parent) of real fit
    processes on an int16 NIfTI series, which nibabel loads in Fortran order, with a
    brain-like mask of 38 % of the grid, against :func:`process_bytes`: never above the
    estimate, and the estimate at most 35 % above it (measured 1.18x voxel-wise, 1.25x
    global, 1.26x TV; the fODF file is written through a buffer of direction volumes)."""
    rng = np.random.default_rng(3)
    gtab = make_acquisition(n_b0=6, n_dirs=60, bvals=(2000.0,))
    shape = (56, 56, 40)
    data = _series(rng, shape, gtab)
    grid = np.indices(shape) - (np.array(shape) - 1)[:, None, None, None] / 2
    mask = ((grid / (0.45 * np.array(shape))[:, None, None, None]) ** 2).sum(axis=0) <= 1
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "dwi.nii.gz"))
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), np.eye(4)), str(tmp_path / "mask.nii.gz"))
    np.savetxt(tmp_path / "dwi.bval", gtab.bvals[None], fmt="%g")
    np.savetxt(tmp_path / "dwi.bvec", gtab.bvecs.T, fmt="%.8f")
    (tmp_path / "response.txt").write_text("1.7e-3 0.2e-3 0.2e-3\n")
    names = ("dwi.nii.gz", "dwi.bval", "dwi.bvec", "response.txt", "mask.nii.gz")
    argv = [str(tmp_path / name) for name in names]
    argv += [str(tmp_path), fit, str(int(use_tv)), "2"]
    completed = subprocess.run(
        [sys.executable, "-c", FIT_RSS, *argv], capture_output=True, text=True, check=True
    )
    measured = json.loads(completed.stdout.strip().splitlines()[-1])
    assert measured["peak"] <= measured["estimate"] <= 1.35 * measured["peak"], measured


@pytest.fixture
def large_header(tmp_path):
    """A 100x100x60 grid of 8 volumes (constant, so it compresses to a few kB)."""
    path = tmp_path / "sub-01_dwi.nii.gz"
    nib.save(nib.Nifti1Image(np.full((100, 100, 60, 8), 300, np.int16), np.eye(4)), str(path))
    bval = tmp_path / "sub-01_dwi.bval"
    bval.write_text("0 1000 1000 1000 0 1000 1000 1000\n")
    return DwiRun(
        str(path),
        str(bval),
        str(tmp_path / "sub-01_dwi.bvec"),
        (("subject", "01"),),
        shape=(100, 100, 60, 8),
        n_b0=2,
        shells=(1000.0,),
    )


def test_a_global_fit_too_large_is_refused_up_front(large_header):
    run = large_header
    least = check_memory(run, ModelOptions(), limit_gb=1.0, from_option=True)
    # the voxel-wise fit splits: the process (0.28 GB), the fODF writer's buffer of 55
    # direction volumes (0.13 GB) and a few chunks
    assert least["fit"] < 0.5 and least["dwi"] < 0.2
    with pytest.raises(InsufficientMemoryError) as info:
        check_memory(run, ModelOptions(fit="global"), limit_gb=1.0, from_option=True)
    line = info.value.one_line()
    assert info.value.exit_code == 64 and str(run.dwi_file) in line
    assert "for the RUMBA-SD fit but --mem is 1.00 GB: raise --mem" in line
    assert "or use --fit voxelwise (processed in blocks that fit); counted: every voxel" in line
    with pytest.raises(InsufficientMemoryError, match="this machine allows 120 MB"):
        check_memory(run, ModelOptions(), limit_gb=0.12, from_option=False)
    assert format_gb(0.05) == "50 MB"


def test_the_command_line_refuses_it_before_processing(large_header, tmp_path, monkeypatch):
    run = large_header
    bids = tmp_path / "bids"
    (bids / "sub-01" / "dwi").mkdir(parents=True)
    (bids / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')
    for path in (run.dwi_file, run.bval_file):
        shutil.copy(path, bids / "sub-01" / "dwi" / Path(path).name)
    directions = "\n".join(" ".join(["0", "1", "0", "0", "0", "0", "1", "0"]) for _ in range(1))
    (bids / "sub-01" / "dwi" / "sub-01_dwi.bvec").write_text(
        "0 1 0 0 0 0.6 0 0.8\n0 0 1 0 0 0.8 0.6 0\n0 0 0 1 0 0 0.8 0.6\n" if directions else ""
    )
    args = [bids, tmp_path / "out", "participant", "--skip-bids-validation", "--fit", "global"]
    code, stderr = run_in_process([*args, "--mem", "2", "-w", tmp_path / "work"], monkeypatch)
    assert code == 64 and "use --fit voxelwise" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_mem_makes_the_app_fit_in_blocks_with_identical_outputs(phantom_template, tmp_path):
    """--mem just above the fit's least memory: the log reports several blocks and the
    derivatives equal those of a run without --mem, byte for byte (a mask of half the
    grid, 6,720 voxels, makes several blocks)."""
    shutil.copytree(phantom_template, tmp_path / "bids")
    stem = Path(tmp_path / "bids" / "sub-01" / "dwi" / "sub-01_dwi")
    image = nib.load(f"{stem}.nii.gz")
    mask = tmp_path / "mask.nii.gz"
    half = np.zeros(image.shape[:3], np.uint8)
    half[..., image.shape[2] // 2 :] = 1
    nib.save(nib.Nifti1Image(half, image.affine), str(mask))
    least = minimum_mem_gb(f"{stem}.nii.gz", bval_file=f"{stem}.bval")
    limit = max(least.values()) + 0.002  # blocks of one or two chunks
    outputs = {}
    for mem in (None, limit):
        extra = [] if mem is None else ["--mem", f"{mem:.3f}"]
        completed = run_app(
            tmp_path / "bids", tmp_path / f"out-{mem}", "participant", "--skip-bids-validation",
            "--n-iter", "10", "--nprocs", "1", "--mask-file", mask,
            "-w", tmp_path / f"work-{mem}", *extra,
        )  # fmt: skip
        assert completed.returncode == 0, completed.stderr
        outputs[mem] = derivative_files(tmp_path / f"out-{mem}")
        match = re.search(r"RUMBA-SD fitted in (\d+) blocks of (\d+) voxels", completed.stderr)
        assert (match is not None) == (mem is not None), completed.stderr
    assert int(match.group(1)) >= 3 and int(match.group(2)) % 1024 == 0
    assert outputs[limit] == outputs[None]


def test_mem_reaches_every_node_of_the_graph(phantom_template, tmp_path):
    """Each node reserves at most --mem, and the fit is told its share as a hard limit."""
    from rumba_bids.cli.parser import parse_settings
    from rumba_bids.cli.run import build_workflow

    stem = str(phantom_template / "sub-01" / "dwi" / "sub-01_dwi")
    run = DwiRun(f"{stem}.nii.gz", f"{stem}.bval", f"{stem}.bvec", (("subject", "01"),))
    for mem, expected in ((0.25, 0.25), (None, None)):
        argv = [str(phantom_template), str(tmp_path / "out"), "participant"]
        argv += ["-w", str(tmp_path / "work")]
        settings = parse_settings(argv + ([] if mem is None else ["--mem", str(mem)]))
        workflow = build_workflow(settings, [run], {"sub-01": False})
        fit = workflow.get_node("sub_01_wf.rumba_wf.fit_rumba")
        nodes = [
            workflow.get_node(f"sub_01_wf.rumba_wf.{name}") for name in ("brain_mask", "fod_to_sh")
        ]
        if expected is None:  # the machine's memory: far more than this small series needs
            assert fit.inputs.max_memory_gb == fit.mem_gb < 1
        else:
            assert fit.inputs.max_memory_gb == fit.mem_gb == expected
            assert all(node.mem_gb <= expected for node in nodes)
