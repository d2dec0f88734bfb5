"""MRtrix3 reads what we write: SH basis, orientation frame and the peaks layout.

Frame convention (verified here): MRtrix3 interprets SH coefficients and peak
vectors in the world (scanner, xyz) frame of the image transform.  Our fODFs live
in the voxel (ijk) frame, so the export fits SH on world-rotated sphere vertices
(``sf_to_sh(odf, voxel_to_world(vertices, affine))``) and rotates peaks with
``PeaksResult.in_world(affine)``.  These tests run when the MRtrix3 binaries are
installed (Debian package ``mrtrix3``).
"""

import shutil
import subprocess

import numpy as np
import pytest

from rumba_bids.core.gradients import voxel_to_world
from rumba_bids.core.peaks import extract_peaks, mrtrix_to_peaks, peaks_to_mrtrix
from rumba_bids.core.shm import sf_to_sh, sh_to_sf, sh_zonal_indices, zonal_to_sh
from rumba_bids.core.sphere import get_sphere

pytestmark = pytest.mark.skipif(
    shutil.which("sh2peaks") is None, reason="MRtrix3 binaries (sh2peaks) not installed"
)
nib = pytest.importorskip("nibabel")

#: Oblique affine with a negative determinant (an x flip, as in LAS storage).
OBLIQUE_LAS = np.array(
    [
        [-1.8, 0.0, 0.6, 40.0],
        [0.0, 2.2, 0.0, -30.0],
        [-0.6, 0.0, -1.8, 20.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)
AFFINES = {
    "ras": np.diag([2.0, 2.0, 2.0, 1.0]),
    "las": np.diag([-2.0, 2.0, 2.0, 1.0]),
    "oblique-las": OBLIQUE_LAS,
}


def mrtrix(*args):
    """Run an MRtrix3 command quietly, failing the test with its message on error."""
    completed = subprocess.run(
        [*args, "-quiet", "-force", "-nthreads", "1"], capture_output=True, text=True
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def load_on_grid(path, affine):
    """Data of an MRtrix output image on the voxel grid of ``affine``.

    MRtrix may store its outputs with axes flipped or permuted (it realigns image
    axes with the scanner axes); undo that with the two affines.
    """
    image = nib.load(path)
    transform = nib.orientations.ornt_transform(
        nib.orientations.io_orientation(image.affine), nib.orientations.io_orientation(affine)
    )
    data = nib.orientations.apply_orientation(np.asarray(image.dataobj), transform)
    grid_affine = image.affine @ nib.orientations.inv_ornt_aff(transform, image.shape)
    np.testing.assert_allclose(grid_affine, affine, atol=1e-4)
    return data


def unit(vectors):
    vectors = np.asarray(vectors, dtype=float)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def rotation_towards(axis, angle_deg, rng):
    """A unit vector at ``angle_deg`` from each ``axis`` (..., 3), random azimuth."""
    helper = unit(rng.normal(size=axis.shape))
    normal = unit(np.cross(axis, helper))
    angle = np.radians(angle_deg)
    return np.cos(angle) * axis + np.sin(angle) * normal


def sharp_lobe_zonal(sphere, *, concentration=30.0):
    """Zonal SH (order 8) of a Watson lobe exp(k (cos^2 - 1)) about z."""
    lobe = np.exp(concentration * (sphere.vertices[:, 2] ** 2 - 1.0))
    return sf_to_sh(lobe, sphere)[sh_zonal_indices(8)]


@pytest.fixture(scope="module")
def phantom():
    """10 x 10 x 3 fODFs in the voxel frame: slice 0 single fibres, slice 1 crossings
    at 90 degrees, slice 2 crossings at 60 degrees; random seeded orientations."""
    sphere = get_sphere("repulsion724")
    rng = np.random.default_rng(42)
    shape = (10, 10, 3)
    first = unit(rng.normal(size=shape + (3,)))
    second = np.empty_like(first)
    second[:, :, 1] = rotation_towards(first[:, :, 1], 90, rng)
    second[:, :, 2] = rotation_towards(first[:, :, 2], 60, rng)
    second[:, :, 0] = first[:, :, 0]
    weights = np.stack([np.ones(shape), rng.uniform(0.75, 1.0, shape)], axis=-1)
    weights[:, :, 0, 1] = 0.0
    zonal = sharp_lobe_zonal(sphere)
    sh_voxel = weights[..., :1] * zonal_to_sh(zonal, first)
    sh_voxel += weights[..., 1:] * zonal_to_sh(zonal, second)
    n_fibres = np.where(np.arange(3) == 0, 1, 2)[None, None, :] * np.ones(shape, int)
    return {
        "sphere": sphere,
        "odf": sh_to_sf(sh_voxel, sphere),
        "fibres": np.stack([first, second], axis=-2),
        "n_fibres": n_fibres,
    }


def write_sh_for_mrtrix(path, odf, sphere, affine):
    """Our export convention: world-frame mrtrix3 SH, float32."""
    sh_world = sf_to_sh(odf, voxel_to_world(sphere.vertices, affine), basis="mrtrix3")
    nib.Nifti1Image(sh_world.astype(np.float32), affine).to_filename(path)
    return sh_world


@pytest.mark.parametrize("name", sorted(AFFINES))
def test_mrtrix_amp2sh_gives_our_coefficients(tmp_path, phantom, name):
    """MRtrix's own SH fit of our amplitudes equals our world-frame mrtrix3 coefficients:
    same basis, signs, ordering and frame.  The sample directions are handed over in
    MRtrix's native gradient format, which is in world (scanner) coordinates."""
    affine = AFFINES[name]
    sphere, odf = phantom["sphere"], phantom["odf"][:, :, :1]
    amplitudes = np.concatenate([np.ones(odf.shape[:3] + (1,)), odf], axis=-1)
    nib.Nifti1Image(amplitudes.astype(np.float32), affine).to_filename(tmp_path / "amp.nii")
    world_directions = voxel_to_world(sphere.vertices, affine)
    scheme = np.concatenate([np.zeros((1, 4)), np.c_[world_directions, [1000.0] * len(sphere)]])
    np.savetxt(tmp_path / "grad.b", scheme)
    mrtrix(
        "amp2sh",
        str(tmp_path / "amp.nii"),
        str(tmp_path / "sh.nii"),
        "-grad",
        str(tmp_path / "grad.b"),
        "-lmax",
        "8",
    )
    theirs = load_on_grid(tmp_path / "sh.nii", affine)
    ours = sf_to_sh(odf, world_directions)
    scale = np.abs(ours).max()
    np.testing.assert_allclose(theirs, ours, atol=1e-5 * scale)
    if name != "ras":  # the voxel-frame fit would be wrong for MRtrix
        voxel_frame = sf_to_sh(odf, sphere)
        assert np.abs(theirs - voxel_frame).max() > 0.1 * scale


@pytest.mark.parametrize("name", ["ras", "oblique-las"])
def test_sh2peaks_agrees_with_our_peaks(tmp_path, phantom, name):
    affine = AFFINES[name]
    sphere, odf = phantom["sphere"], phantom["odf"]
    write_sh_for_mrtrix(tmp_path / "fod.nii", odf, sphere, affine)
    assert mrtrix("mrinfo", "-size", str(tmp_path / "fod.nii")).split() == [
        "10",
        "10",
        "3",
        "45",
    ]
    mrtrix("sh2peaks", str(tmp_path / "fod.nii"), str(tmp_path / "peaks.nii"), "-num", "3")
    their_peaks = load_on_grid(tmp_path / "peaks.nii", affine)
    assert their_peaks.shape == (10, 10, 3, 9)
    their_directions, their_values = mrtrix_to_peaks(their_peaks)

    ours = extract_peaks(odf, sphere, npeaks=3).in_world(affine)
    n_ours = (ours.indices >= 0).sum(axis=-1)
    np.testing.assert_array_equal(n_ours, phantom["n_fibres"])
    # MRtrix peaks above half the largest amplitude (our relative threshold)
    strong = their_values >= 0.5 * their_values.max(axis=-1, keepdims=True)
    cosines = np.abs(np.einsum("...pk,...qk->...pq", ours.directions, their_directions))
    cosines = np.where(strong[..., None, :], np.nan_to_num(cosines), 0.0)
    angles = np.degrees(np.arccos(np.clip(cosines.max(axis=-1), 0, 1)))
    found = np.arange(3) < n_ours[..., None]
    within = np.where(found, angles <= 5.0, True).all(axis=-1) & (strong.sum(-1) == n_ours)
    single, crossing = within[:, :, 0], within[:, :, 1:]
    assert single.mean() >= 0.95, f"single-fibre agreement {single.mean():.2%}"
    assert crossing.mean() >= 0.95, f"two-fibre agreement {crossing.mean():.2%}"
    # and both agree with the true (world-frame) fibres to within the sphere's spacing
    truth = voxel_to_world(phantom["fibres"], affine)
    true_cosines = np.abs(np.einsum("...pk,...fk->...pf", np.nan_to_num(ours.directions), truth))
    true_angles = np.degrees(np.arccos(np.clip(true_cosines.max(axis=-1), 0, 1)))
    assert np.median(true_angles[found]) < 4.0
    # refined peaks land on sh2peaks' maxima of the same (order 8) fODF; vertices do not
    vertex = extract_peaks(odf, sphere, npeaks=3, refine=False).in_world(affine)
    vertex_cosines = np.abs(np.einsum("...pk,...qk->...pq", vertex.directions, their_directions))
    vertex_cosines = np.where(strong[..., None, :], np.nan_to_num(vertex_cosines), 0.0)
    vertex_angles = np.degrees(np.arccos(np.clip(vertex_cosines.max(axis=-1), 0, 1)))
    assert np.median(angles[found]) < 0.25 and angles[found].max() < 1.0  # measured 0.06, 0.33
    assert np.median(vertex_angles[found]) > 1.0  # measured 3.1


def test_peaks_layout_read_back_by_peaks2amp(tmp_path, phantom):
    sphere, odf = phantom["sphere"], phantom["odf"]
    affine = OBLIQUE_LAS
    ours = extract_peaks(odf, sphere, npeaks=3).in_world(affine)
    packed = peaks_to_mrtrix(ours.directions, ours.values).astype(np.float32)
    assert np.isnan(packed).any()  # single-fibre voxels leave slots empty
    nib.Nifti1Image(packed, affine).to_filename(tmp_path / "peaks.nii")
    assert mrtrix("mrinfo", "-size", str(tmp_path / "peaks.nii")).split() == [
        "10",
        "10",
        "3",
        "9",
    ]
    mrtrix("peaks2amp", str(tmp_path / "peaks.nii"), str(tmp_path / "amplitudes.nii"))
    amplitudes = load_on_grid(tmp_path / "amplitudes.nii", affine)
    assert amplitudes.shape == ours.values.shape
    # MRtrix reads each 3-vector's length as the amplitude and NaN slots as 0
    np.testing.assert_allclose(amplitudes, ours.values, rtol=1e-6)
    # and our reader inverts the layout
    directions, values = mrtrix_to_peaks(nib.load(tmp_path / "peaks.nii").get_fdata())
    np.testing.assert_allclose(values, ours.values, rtol=1e-6)
    present = ours.indices >= 0
    np.testing.assert_allclose(directions[present], ours.directions[present], atol=1e-6)
    assert np.isnan(directions[~present]).all()
