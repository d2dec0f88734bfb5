"""Shared fixtures: small DWI datasets on disk (synthetic 5x5x5, DIPY's small_64D, the demo)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from rumba_bids.cli.demo import make_demo_dataset
from rumba_bids.core.phantoms import add_rician_noise, make_acquisition, multi_tensor_signal

#: Demo grid of the command-line and input tests: small enough to be fast, large enough
#: for median_otsu to find the brain.
TEST_SHAPE = (32, 36, 26)

#: Fibre direction of the synthetic phantom in the voxel (ijk) frame; oblique in x and y
#: so that a wrong FSL x-flip would show as a wrong peak direction.
SYNTHETIC_FIBRE = np.array([2.0, 1.0, 0.5]) / np.linalg.norm([2.0, 1.0, 0.5])


def pytest_configure(config):
    # no network in tests: Nipype's interfaces would otherwise ask etelemetry for its latest
    # version the first time one is created in each process (MultiProc workers inherit this)
    os.environ["NIPYPE_NO_ET"] = "1"
    # pytest-xdist runs one worker per core: one BLAS thread each, or the workers'
    # OpenBLAS threads busy-wait against each other (measured 7x slower)
    if os.environ.get("PYTEST_XDIST_WORKER"):
        from threadpoolctl import threadpool_limits

        config._rumba_blas_limit = threadpool_limits(1)


@dataclass(frozen=True)
class DwiFiles:
    """Paths of one DWI dataset, and the ground truth where it is known."""

    dwi_file: str
    bval_file: str
    bvec_file: str
    mask_file: str | None = None
    fibre_direction: np.ndarray | None = None  # voxel frame, synthetic data only


def write_synthetic_dwi(directory, *, bvals=(1000.0,), n_dirs=30, seed=0) -> DwiFiles:
    """A seeded 5x5x5 phantom: a 3x3x3 block of single fibres along
    :data:`SYNTHETIC_FIBRE` (with a little CSF) in a shell of noise-only
    background, Rician noise at SNR 30, S0 = 1000, affine diag(2, 2, 2) (positive
    determinant, so the BIDS b-vectors are written with x flipped)."""
    import nibabel as nib

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    gtab = make_acquisition(n_b0=3, n_dirs=n_dirs, bvals=bvals)
    rng = np.random.default_rng(seed)
    shape = (5, 5, 5)
    brain = np.zeros(shape, dtype=bool)
    brain[1:4, 1:4, 1:4] = True
    fibre = np.broadcast_to(SYNTHETIC_FIBRE, (*shape, 1, 3))
    signal = multi_tensor_signal(
        gtab,
        fibre,
        np.full((*shape, 1), 0.9),
        iso_fractions=np.full((*shape, 1), 0.1),
        iso_diffusivities=[3e-3],
        S0=1000.0,
    )
    signal[~brain] = 0.0
    data = add_rician_noise(signal, snr=30, rng=rng, S0=1000.0).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-4.0, -4.0, -4.0]
    files = DwiFiles(
        dwi_file=str(directory / "sub-01_dwi.nii.gz"),
        bval_file=str(directory / "sub-01_dwi.bval"),
        bvec_file=str(directory / "sub-01_dwi.bvec"),
        mask_file=str(directory / "sub-01_desc-brain_mask.nii.gz"),
        fibre_direction=SYNTHETIC_FIBRE,
    )
    nib.Nifti1Image(data, affine).to_filename(files.dwi_file)
    nib.Nifti1Image(brain.astype(np.uint8), affine).to_filename(files.mask_file)
    fsl_bvecs = np.array(gtab.bvecs)
    fsl_bvecs[:, 0] *= -1  # positive determinant: FSL flips x
    np.savetxt(files.bval_file, gtab.bvals[None], fmt="%g")
    np.savetxt(files.bvec_file, fsl_bvecs.T, fmt="%.8f")
    return files


@pytest.fixture(scope="session")
def synthetic_dwi(tmp_path_factory) -> DwiFiles:
    """Single-shell (b=1000, 3 b0 + 30 directions) 5x5x5 phantom (:func:`write_synthetic_dwi`)."""
    return write_synthetic_dwi(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture(scope="session")
def synthetic_multishell_dwi(tmp_path_factory) -> DwiFiles:
    """Three-shell (b=1000/2000/3000, 3 b0 + 3 x 20 directions) 5x5x5 phantom."""
    return write_synthetic_dwi(
        tmp_path_factory.mktemp("multishell"), bvals=(1000.0, 2000.0, 3000.0), n_dirs=20, seed=1
    )


@pytest.fixture(scope="session")
def dipy_data_dir() -> Path:
    """DIPY's installed test data (``dipy/data/files``); skips when DIPY is absent."""
    dipy = pytest.importorskip("dipy")
    return Path(os.path.dirname(dipy.__file__)) / "data" / "files"


@pytest.fixture(scope="session")
def small_64d(dipy_data_dir) -> DwiFiles:
    """DIPY's real ``small_64D`` scan: 10x10x10, 1 b0 + 64 directions at b~1000.

    Its b-vector file is N x 3 with NaN for the b0 volume, as some converters write.
    """
    return DwiFiles(
        dwi_file=str(dipy_data_dir / "small_64D.nii"),
        bval_file=str(dipy_data_dir / "small_64D.bval"),
        bvec_file=str(dipy_data_dir / "small_64D.bvec"),
    )


@pytest.fixture(scope="session")
def demo_template(tmp_path_factory):
    """The demo dataset (2 subjects, sub-01 with 2 sessions, sub-02 multi-shell); read only."""
    root = tmp_path_factory.mktemp("demo") / "bids"
    make_demo_dataset(root, n_subjects=2, n_sessions=2, seed=1, shape=TEST_SHAPE)
    return root


@pytest.fixture
def demo_copy(demo_template, tmp_path):
    """A private, modifiable copy of the demo dataset (without the ground truth)."""
    target = tmp_path / "bids"
    shutil.copytree(demo_template, target, ignore=shutil.ignore_patterns("derivatives"))
    return target
