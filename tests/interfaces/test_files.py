import nibabel as nib
import numpy as np
import pytest

from rumba_bids.interfaces.files import limit_threads, output_path, same_grid, save_like


def test_output_path_drops_every_extension(tmp_path):
    assert output_path("/data/sub-01_dwi.nii.gz", "_fwm", tmp_path) == str(
        tmp_path / "sub-01_dwi_fwm.nii.gz"
    )
    assert output_path("sub-01_dwi.bvec", "_ijk", tmp_path, ext=".bvec") == str(
        tmp_path / "sub-01_dwi_ijk.bvec"
    )


def test_save_like_keeps_the_header_and_resets_scaling(tmp_path):
    affine = np.diag([2.0, 2.0, 2.5, 1.0])
    reference = nib.Nifti1Image(np.ones((3, 4, 5, 6), np.int16), affine)
    reference.header.set_slope_inter(3.0, 1.0)
    reference.header.set_xyzt_units("mm", "sec")
    path = save_like(np.full((3, 4, 5), 0.25), reference, tmp_path / "map.nii.gz")
    image = nib.load(path)
    assert image.shape == (3, 4, 5) and image.get_data_dtype() == np.float32
    np.testing.assert_array_equal(image.affine, affine)
    assert image.header.get_xyzt_units() == ("mm", "sec")
    np.testing.assert_array_equal(image.get_fdata(), 0.25)  # no int16 scaling carried over
    assert same_grid(image, reference)
    moved = nib.Nifti1Image(np.zeros((3, 4, 5)), affine + np.eye(4) * 0.01)
    assert not same_grid(image, moved)


def test_limit_threads_caps_blas_inside_the_context():
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def threads():
        return [pool["num_threads"] for pool in threadpoolctl.threadpool_info()]

    before = threads()
    with limit_threads(1):
        inside = threads()
    assert inside and all(n == 1 for n in inside)
    assert threads() == before  # restored on exit
    with limit_threads(None):  # no limit requested: nothing changes
        assert threads() == before


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_slab_volumes_read_each_volume_in_order(tmp_path, suffix):
    """A memory-mapped (.nii) or compressed (.nii.gz, read lazily) 4D image gives, slab
    by slab, its volumes as rows and its voxels in Fortran order: the same values as a
    C-ordered copy of the slab."""
    from rumba_bids.interfaces.files import image_values, slab_volumes

    data = np.random.default_rng(0).random((5, 4, 6, 7)).astype(np.float32)
    path = tmp_path / f"fod{suffix}"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    image = nib.load(path)
    values = image_values(image, path, lazy=True)
    assert isinstance(values, np.memmap) == (suffix == ".nii")
    for rows in (slice(0, 2), slice(2, 6)):
        volumes = slab_volumes(values, rows)
        expected = data[:, :, rows].reshape(-1, 7, order="F").T
        np.testing.assert_array_equal(volumes, expected)
