"""Real clients track our fODF: MRtrix3 (``tckgen``, ``fod2fixel``, ``sh2peaks``) and DIPY's
``LocalTracking``, on the demo phantom, whose true fibre directions are known.

The README's "Using the outputs" blocks are extracted and run exactly as written (in a
directory holding ``demo/`` with the app's outputs); their outputs are then scored against
the ground truth: streamline tangents in single-fibre white matter, and the number of
fixels in single-fibre and crossing voxels.  The demo is smaller than the default one and
fitted with 200 iterations so that the module runs in about a minute.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rumba_bids.cli.demo import make_demo_dataset
from rumba_bids.core.gradients import voxel_to_world

nib = pytest.importorskip("nibabel")
pytestmark = pytest.mark.slow  # the fixture runs the app (about a minute of CPU)
README = Path(__file__).parents[1] / "README.md"
SHAPE = (32, 36, 26)
N_ITER = "200"
MRTRIX = ("tckgen", "fod2fixel", "sh2peaks", "mrconvert")
needs_mrtrix = pytest.mark.skipif(
    any(shutil.which(tool) is None for tool in MRTRIX),
    reason="MRtrix3 binaries (tckgen, fod2fixel, sh2peaks, mrconvert) not installed",
)
#: Runs of the test demo: (label, folder, file prefix); sub-02 is LAS and multi-shell.
RUNS = {"sub-01": ("sub-01/dwi", "sub-01"), "sub-02": ("sub-02/dwi", "sub-02")}


def readme_blocks(section: str = "Using the outputs") -> dict:
    """The fenced code blocks of a README section, by language."""
    text = README.read_text()
    start = text.index(f"\n## {section}\n")
    end = text.find("\n## ", start + 1)
    body = text[start : end if end > 0 else None]
    blocks: dict[str, list[str]] = {}
    for language, code in re.findall(r"```(\w+)\n(.*?)```", body, flags=re.S):
        blocks.setdefault(language, []).append(code)
    return blocks


def _env() -> dict:
    return {**os.environ, "PYTHONWARNINGS": "ignore", "NIPYPE_NO_ET": "1"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """``demo/`` with the app's outputs in ``demo/derivatives/rumba`` (2 runs, 200 iterations)."""
    root = tmp_path_factory.mktemp("tractography")
    make_demo_dataset(root / "demo", n_subjects=2, n_sessions=1, seed=2, shape=SHAPE)
    script = shutil.which("rumba-bids", path=str(Path(sys.executable).parent))
    launcher = [script] if script else [sys.executable, "-m", "rumba_bids.cli.run"]
    completed = subprocess.run(
        [*launcher, "demo", "demo/derivatives/rumba", "participant", "--n-iter", N_ITER,
         "--skip-bids-validation", "--nprocs", "2", "-w", "work"],
        cwd=root, capture_output=True, text=True, timeout=900, env=_env(),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    return root


@pytest.fixture(scope="module")
def readme_run(demo) -> Path:
    """The README's bash and Python blocks, run as written in the folder holding ``demo/``."""
    blocks = readme_blocks()
    assert len(blocks.get("bash", [])) == 1 and len(blocks.get("python", [])) == 1
    if shutil.which("tckgen"):
        completed = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", blocks["bash"][0]],
            cwd=demo, capture_output=True, text=True, timeout=600, env=_env(),
        )  # fmt: skip
        assert completed.returncode == 0, completed.stderr
    try:
        import dipy  # noqa: F401
    except ImportError:
        pass
    else:
        completed = subprocess.run(
            [sys.executable, "-c", blocks["python"][0]],
            cwd=demo, capture_output=True, text=True, timeout=600, env=_env(),
        )  # fmt: skip
        assert completed.returncode == 0, completed.stderr
    return demo


def truth(root: Path, run: str) -> dict:
    folder, prefix = RUNS[run]
    gt = root / "demo" / "derivatives" / "groundtruth" / folder

    def load(name):
        return np.asarray(nib.load(str(gt / f"{prefix}_{name}.nii.gz")).dataobj)

    return {
        "directions": load("model-groundtruth_param-peaks_dwimap"),  # voxel frame
        "n_fibres": load("model-groundtruth_param-nfibers_dwimap"),
        "white_matter": load("desc-tissue_dseg") == 1,
    }


def output(root: Path, run: str, name: str) -> str:
    folder, prefix = RUNS[run]
    return str(root / "demo" / "derivatives" / "rumba" / folder / f"{prefix}_{name}")


def tangent_errors(streamlines, affine, known: dict) -> np.ndarray:
    """Angles (degrees) between streamline segments and the true fibre of the voxel they
    cross, for segments in single-fibre white matter (streamlines in world mm)."""
    inverse = np.linalg.inv(affine)
    tracks = [np.asarray(s, dtype=float) for s in streamlines if len(s) > 1]
    steps = np.concatenate([s[1:] - s[:-1] for s in tracks])
    middles = np.concatenate([(s[1:] + s[:-1]) / 2 for s in tracks])
    voxels = np.rint(middles @ inverse[:3, :3].T + inverse[:3, 3]).astype(int)
    inside = np.all((voxels >= 0) & (voxels < known["n_fibres"].shape), axis=1)
    i, j, k = voxels[inside].T
    single = (known["n_fibres"][i, j, k] == 1) & known["white_matter"][i, j, k]
    true = voxel_to_world(known["directions"][i, j, k][single][:, :3], affine)
    steps = steps[inside][single]
    steps /= np.linalg.norm(steps, axis=1, keepdims=True)
    return np.degrees(np.arccos(np.clip(np.abs((steps * true).sum(axis=1)), 0.0, 1.0)))


def _mrtrix(*args, cwd):
    completed = subprocess.run(
        [*map(str, args), "-quiet", "-nthreads", "1"], cwd=cwd, capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr


def _tracks(root: Path, run: str) -> Path:
    """The README's ``tracks.tck`` for sub-02; the same command (defaults) for sub-01."""
    if run == "sub-02":
        return root / "tracks.tck"
    target = root / f"tracks_{run}.tck"
    if not target.exists():
        fod = output(root, run, "model-rumba_param-fod_dwimap.nii.gz")
        mask = output(root, run, "desc-brain_mask.nii.gz")
        _mrtrix("tckgen", fod, target, "-seed_image", mask, "-select", "2000", cwd=root)
    return target


def _count_fixels(root: Path, run: str) -> np.ndarray:
    fixels = root / "fixels" if run == "sub-02" else root / f"fixels_{run}"
    if not fixels.exists():
        _mrtrix("fod2fixel", output(root, run, "model-rumba_param-fod_dwimap.nii.gz"), fixels,
                cwd=root)  # fmt: skip
    index = root / f"index_{run}.nii"
    _mrtrix("mrconvert", fixels / "index.mif", index, "-force", cwd=root)
    image = nib.load(str(index))
    fod = nib.load(output(root, run, "model-rumba_param-fod_dwimap.nii.gz"))
    np.testing.assert_allclose(image.affine, fod.affine, atol=1e-4)  # same voxel order
    return np.asarray(image.dataobj)[..., 0]


@needs_mrtrix
def test_readme_mrtrix_commands_run_as_written(readme_run):
    from nibabel.streamlines import load

    assert len(load(str(readme_run / "tracks.tck")).streamlines) == 2000
    assert (readme_run / "fixels" / "index.mif").is_file()
    assert (readme_run / "fixels" / "afd.mif").is_file()
    peaks = nib.load(str(readme_run / "sh2peaks.nii.gz"))
    assert peaks.shape[:3] == SHAPE and peaks.shape[3] % 3 == 0


@needs_mrtrix
@pytest.mark.parametrize("run", sorted(RUNS))
def test_tckgen_defaults_follow_the_true_fibres(readme_run, run, record_property):
    """Default iFOD2 streamlines (cut-off 0.1 of the density) run along the true fibres."""
    from nibabel.streamlines import load

    tracks = load(str(_tracks(readme_run, run)))
    errors = tangent_errors(
        tracks.streamlines,
        nib.load(output(readme_run, run, "model-rumba_param-fod_dwimap.nii.gz")).affine,
        truth(readme_run, run),
    )
    median, within = float(np.median(errors)), float(np.mean(errors < 20))
    record_property("tckgen", {"segments": len(errors), "median": median, "within20": within})
    print(f"{run} tckgen: {len(errors)} segments, median {median:.1f} deg, <20 deg {within:.3f}")
    assert len(tracks.streamlines) == 2000 and len(errors) > 5000
    assert median < 15 and within > 0.75


@needs_mrtrix
@pytest.mark.parametrize("run", sorted(RUNS))
def test_fod2fixel_defaults_count_the_fibres(readme_run, run, record_property):
    """One fixel in single-fibre voxels, two in two-fibre crossings (most voxels)."""
    count = _count_fixels(readme_run, run)
    known = truth(readme_run, run)
    fractions = {}
    for n in (1, 2, 3):
        voxels = known["white_matter"] & (known["n_fibres"] == n)
        fractions[n] = float(np.mean(count[voxels] == n)) if voxels.any() else None
    record_property("fod2fixel", fractions)
    print(f"{run} fod2fixel: fraction of voxels with the true number of fixels {fractions}")
    assert fractions[1] > 0.9 and fractions[2] > 0.8


@needs_mrtrix
def test_sh2peaks_finds_the_true_fibres(readme_run):
    peaks = np.asarray(nib.load(str(readme_run / "sh2peaks.nii.gz")).dataobj)
    known = truth(readme_run, "sub-02")
    affine = nib.load(output(readme_run, "sub-02", "model-rumba_param-fod_dwimap.nii.gz")).affine
    single = known["white_matter"] & (known["n_fibres"] == 1) & np.isfinite(peaks[..., 0])
    first = peaks[single][:, :3]
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    true = voxel_to_world(known["directions"][single][:, :3], affine)
    errors = np.degrees(np.arccos(np.clip(np.abs((first * true).sum(axis=1)), 0, 1)))
    assert single.sum() > 500 and np.median(errors) < 8, np.percentile(errors, [50, 90])


def test_readme_dipy_tracking_follows_the_true_fibres(readme_run, record_property):
    """DIPY's LocalTracking on our SH, with the README's frame conversion, on the LAS run;
    the same code without the conversion mirrors x and loses the fibres (negative control)."""
    pytest.importorskip("dipy")
    from nibabel.streamlines import load

    affine = nib.load(output(readme_run, "sub-02", "model-rumba_param-fod_dwimap.nii.gz")).affine
    assert np.linalg.det(affine) < 0  # the LAS run: the conversion matters
    known = truth(readme_run, "sub-02")
    errors = tangent_errors(load(str(readme_run / "dipy_tracks.trk")).streamlines, affine, known)
    median, within = float(np.median(errors)), float(np.mean(errors < 20))
    record_property("dipy", {"segments": len(errors), "median": median, "within20": within})
    print(f"DIPY LocalTracking: {len(errors)} segments, median {median:.1f}, <20 deg {within:.3f}")
    assert len(errors) > 5000 and median < 8 and within > 0.8

    code = readme_blocks()["python"][0]
    assert "@ voxel_to_world.T" in code
    wrong = code.replace("@ voxel_to_world.T", "").replace("dipy_tracks.trk", "unrotated.trk")
    completed = subprocess.run(
        [sys.executable, "-c", wrong], cwd=readme_run, capture_output=True, text=True,
        timeout=600, env=_env(),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    unrotated = tangent_errors(load(str(readme_run / "unrotated.trk")).streamlines, affine, known)
    print(f"without the conversion: median {np.median(unrotated):.1f} deg")
    assert np.median(unrotated) > median + 10
