"""FodToSH on fits of small_64D and of the synthetic phantom, against DIPY's sf_to_sh."""

import re

import nibabel as nib
import numpy as np
import pytest

from rumba_bids.core.gradients import voxel_to_world
from rumba_bids.core.shm import sh_to_sf
from rumba_bids.interfaces.errors import InputDataError
from rumba_bids.interfaces.rumba import fit_rumba_files
from rumba_bids.interfaces.shm import FodToSH, slabs

from .test_rumba import _prepare


@pytest.fixture(scope="module")
def small_64d_fit(small_64d, tmp_path_factory):
    directory = tmp_path_factory.mktemp("small64d_fit")
    inputs = _prepare(small_64d, directory)
    return fit_rumba_files(**{**inputs, "out_dir": str(directory)}, n_iter=20)


def _to_sh(fit, tmp_path, **inputs):
    return (
        FodToSH(
            fod_amplitudes=fit["fod_amplitudes"], directions_file=fit["directions_file"], **inputs
        )
        .run(cwd=str(tmp_path))
        .outputs
    )


@pytest.mark.parametrize("smoothing", [0.0, 2e-4])
@pytest.mark.parametrize(
    ("basis", "dipy_basis"), [("mrtrix3", "tournier07"), ("descoteaux", "descoteaux07")]
)
def test_matches_dipy_sf_to_sh(small_64d_fit, tmp_path, basis, dipy_basis, smoothing):
    """Plain least squares, and the regularised fit: DIPY's smooth = smoothing x M / (4 pi)."""
    from dipy.core.sphere import Sphere as DipySphere
    from dipy.reconst.shm import sf_to_sh

    outputs = _to_sh(small_64d_fit, tmp_path, sh_basis=basis, sh_order=6, smoothing=smoothing)
    image = nib.load(outputs.out_file)
    fod = nib.load(small_64d_fit["fod_amplitudes"])
    assert image.shape == (10, 10, 10, 28) and image.get_data_dtype() == np.float32
    np.testing.assert_array_equal(image.affine, fod.affine)
    vertices = np.loadtxt(small_64d_fit["directions_file"])
    expected = sf_to_sh(
        fod.get_fdata(),
        DipySphere(xyz=vertices),
        sh_order_max=6,
        basis_type=dipy_basis,
        legacy=False,
        smooth=smoothing * len(vertices) / (4 * np.pi),
    )
    np.testing.assert_allclose(image.get_fdata(), expected, rtol=0, atol=1e-6)
    assert outputs.encoding == {
        "Type": "sh",
        "SphericalHarmonicBasis": basis,
        "SphericalHarmonicDegree": 6,
        "EncodingAxis": 3,
        "Reference": "ijk",
        "LaplaceBeltramiSmoothing": smoothing,
    }


def test_world_frame_coefficients_describe_the_same_function(small_64d_fit, tmp_path):
    voxel = nib.load(_to_sh(small_64d_fit, tmp_path).out_file)
    (tmp_path / "xyz").mkdir()
    world = _to_sh(small_64d_fit, tmp_path / "xyz", reference="xyz")
    assert world.encoding["Reference"] == "xyz"
    vertices = np.loadtxt(small_64d_fit["directions_file"])
    rotated = voxel_to_world(vertices, voxel.affine)  # small_64D's affine is oblique
    assert np.abs(rotated - vertices).max() > 0.1
    in_voxel = sh_to_sf(voxel.get_fdata()[5, 5, 5], vertices)
    in_world = sh_to_sf(nib.load(world.out_file).get_fdata()[5, 5, 5], rotated)
    np.testing.assert_allclose(in_world, in_voxel, atol=1e-6)


def test_slab_by_slab_equals_whole_volume(small_64d_fit, tmp_path, monkeypatch):
    whole = nib.load(_to_sh(small_64d_fit, tmp_path).out_file).get_fdata()
    monkeypatch.setattr("rumba_bids.interfaces.shm.SLAB_VOXELS", 150)
    assert len(slabs((10, 10, 10), max_voxels=150)) == 10
    (tmp_path / "slabs").mkdir()
    sliced = nib.load(_to_sh(small_64d_fit, tmp_path / "slabs").out_file).get_fdata()
    np.testing.assert_array_equal(sliced, whole)


def test_synthetic_sh_reproduces_the_smooth_fod(synthetic_dwi, tmp_path):
    inputs = _prepare(synthetic_dwi, tmp_path / "inputs", mask_file=synthetic_dwi.mask_file)
    fit = fit_rumba_files(**inputs, out_dir=str(tmp_path), n_iter=10, sphere="repulsion200")
    sh = nib.load(_to_sh(fit, tmp_path, sh_order=8, smoothing=0.0).out_file).get_fdata()
    fod = nib.load(fit["fod_amplitudes"]).get_fdata()
    vertices = np.loadtxt(fit["directions_file"])
    # after 10 iterations the fODF is still smooth: order 8 represents it closely
    back = sh_to_sf(sh[2, 2, 2], vertices)
    assert np.abs(back - fod[2, 2, 2]).max() < 0.05 * fod[2, 2, 2].max()
    assert abs(sh[2, 2, 2, 0] * np.sqrt(4 * np.pi) - fod[2, 2, 2].mean() * 4 * np.pi) < 1e-3


def test_directions_must_match_the_volumes(small_64d_fit, tmp_path):
    wrong = tmp_path / "directions.txt"
    np.savetxt(wrong, np.loadtxt(small_64d_fit["directions_file"])[:-2])
    with pytest.raises(InputDataError, match=re.escape(f"{wrong}: 722 directions for an fODF")):
        _to_sh({**small_64d_fit, "directions_file": str(wrong)}, tmp_path)


def test_default_regularised_sh_does_not_depend_on_the_sphere(synthetic_dwi, tmp_path):
    """Density amplitudes and the per-steradian smoothing: the same SH on 200 and 724
    directions (the plain weights, DIPY's scale, differ by the ratio of the sphere sizes)."""
    from rumba_bids.core.shm import real_sh_basis

    inputs = _prepare(synthetic_dwi, tmp_path / "inputs", mask_file=synthetic_dwi.mask_file)
    brain = nib.load(synthetic_dwi.mask_file).get_fdata().astype(bool)
    along_fibre = real_sh_basis(synthetic_dwi.fibre_direction)
    amplitude = {}
    for sphere in ("repulsion200", "repulsion724"):
        (tmp_path / sphere).mkdir()
        fit = fit_rumba_files(**inputs, out_dir=str(tmp_path / sphere), n_iter=100, sphere=sphere)
        sh = nib.load(_to_sh(fit, tmp_path / sphere).out_file).get_fdata()[brain]
        amplitude[sphere] = sh @ along_fibre
        f_wm = nib.load(fit["f_wm"]).get_fdata()[brain]
        np.testing.assert_allclose(sh[:, 0] * np.sqrt(4 * np.pi), f_wm, rtol=0.02)
    ratio = amplitude["repulsion724"] / amplitude["repulsion200"]
    assert np.all(np.abs(ratio - 1) < 0.05), ratio
    assert amplitude["repulsion724"].min() > 0.5  # far above MRtrix3's 0.1 thresholds


def test_a_compressed_amplitude_file_gives_the_same_sh(small_64d_fit, tmp_path):
    """The fODF amplitudes are read volume by volume from a memory map; a .nii.gz
    (read slab by slab through nibabel) gives the same coefficients."""
    image = nib.load(small_64d_fit["fod_amplitudes"])
    compressed = tmp_path / "fod.nii.gz"
    nib.save(nib.Nifti1Image(np.asanyarray(image.dataobj), image.affine, image.header), compressed)
    mapped = nib.load(_to_sh(small_64d_fit, tmp_path).out_file).get_fdata()
    (tmp_path / "gz").mkdir()
    gz = _to_sh({**small_64d_fit, "fod_amplitudes": str(compressed)}, tmp_path / "gz")
    np.testing.assert_array_equal(nib.load(gz.out_file).get_fdata(), mapped)


@pytest.mark.parametrize("step", ["sh", "peaks"])
def test_a_truncated_compressed_amplitude_file_is_one_clear_error(small_64d_fit, tmp_path, step):
    """A .nii.gz read lazily, slab by slab, fails only when a slab is read: the error
    still names the file (exit code 65), for SH and for peaks alike."""
    from rumba_bids.interfaces.peaks import ExtractPeaks

    image = nib.load(small_64d_fit["fod_amplitudes"])
    whole = tmp_path / "whole.nii.gz"
    nib.save(nib.Nifti1Image(np.asanyarray(image.dataobj), image.affine, image.header), whole)
    truncated = tmp_path / "fod.nii.gz"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    inputs = {
        "fod_amplitudes": str(truncated),
        "directions_file": small_64d_fit["directions_file"],
    }
    interface = FodToSH(**inputs) if step == "sh" else ExtractPeaks(**inputs)
    with pytest.raises(
        InputDataError, match=re.escape(f"{truncated}: cannot read the image data")
    ) as info:
        interface.run(cwd=str(tmp_path))
    assert info.value.exit_code == 65
