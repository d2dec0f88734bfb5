"""ExtractPeaks: peaks of real and synthetic fits, against DIPY and the phantom's truth."""

import nibabel as nib
import numpy as np
import pytest

from rumba_bids.core.gradients import voxel_to_world
from rumba_bids.core.peaks import mrtrix_to_peaks
from rumba_bids.interfaces.peaks import ExtractPeaks
from rumba_bids.interfaces.rumba import fit_rumba_files

from .test_rumba import _prepare


@pytest.fixture(scope="module")
def synthetic_fit(synthetic_dwi, tmp_path_factory):
    directory = tmp_path_factory.mktemp("synthetic_fit")
    inputs = _prepare(synthetic_dwi, directory, response="fa", mask_file=synthetic_dwi.mask_file)
    return fit_rumba_files(**inputs, out_dir=str(directory), n_iter=50)


def _peaks(fit, tmp_path, **inputs):
    tmp_path.mkdir(parents=True, exist_ok=True)
    return (
        ExtractPeaks(
            fod_amplitudes=fit["fod_amplitudes"], directions_file=fit["directions_file"], **inputs
        )
        .run(cwd=str(tmp_path))
        .outputs
    )


def test_synthetic_peaks_follow_the_fibre(synthetic_dwi, synthetic_fit, tmp_path):
    """End to end from BIDS b-vectors: a wrong FSL x-flip would tilt every peak."""
    outputs = _peaks(synthetic_fit, tmp_path, mask_file=synthetic_dwi.mask_file, npeaks=3)
    brain = nib.load(synthetic_dwi.mask_file).get_fdata().astype(bool)
    peaks = nib.load(outputs.peaks)
    assert peaks.shape == (5, 5, 5, 9) and peaks.get_data_dtype() == np.float32
    directions, values = mrtrix_to_peaks(peaks.get_fdata())
    cosines = np.abs(directions[brain][:, 0] @ synthetic_dwi.fibre_direction)
    assert np.degrees(np.arccos(cosines.min())) < 10
    assert np.isnan(peaks.get_fdata()[~brain]).all()  # FillValue NaN outside the mask
    np.testing.assert_allclose(
        nib.load(outputs.peak_values).get_fdata()[..., 0][brain], values[brain][:, 0], rtol=1e-6
    )
    gfa = nib.load(outputs.gfa).get_fdata()
    assert np.all(gfa[brain] > 0.1) and np.all(gfa[~brain] == 0)
    assert outputs.encoding["peaks"]["Type"] == "3vector"
    assert outputs.encoding["peakvals"] == {"Type": "scalar", "EncodingAxis": 3, "FillValue": 0}


def test_small_64d_peaks_match_dipy(small_64d, tmp_path):
    from dipy.core.sphere import Sphere as DipySphere
    from dipy.direction.peaks import peak_directions
    from dipy.reconst.odf import gfa as dipy_gfa

    inputs = _prepare(small_64d, tmp_path / "inputs")
    fit = fit_rumba_files(**inputs, out_dir=str(tmp_path), n_iter=20, sphere="repulsion200")
    outputs = _peaks(fit, tmp_path, mask_file=inputs["mask_file"], refine=False)
    odf = nib.load(fit["fod_amplitudes"]).get_fdata()
    mask = nib.load(inputs["mask_file"]).get_fdata().astype(bool)
    sphere = DipySphere(xyz=np.loadtxt(fit["directions_file"]))
    directions, values = mrtrix_to_peaks(nib.load(outputs.peaks).get_fdata())
    for index in zip(*np.nonzero(mask)):
        # nibabel arrays are Fortran-ordered; DIPY's peak values need a contiguous ODF
        expected, expected_values, _ = peak_directions(np.ascontiguousarray(odf[index]), sphere)
        found = values[index] > 0
        assert found.sum() == len(expected)
        np.testing.assert_allclose(directions[index][found], expected, atol=1e-6)
        np.testing.assert_allclose(values[index][found], expected_values, rtol=1e-5)
    gfa = nib.load(outputs.gfa).get_fdata()
    np.testing.assert_allclose(gfa[mask], dipy_gfa(odf[mask]), atol=1e-6)


def test_world_frame_peaks_are_rotated(synthetic_dwi, synthetic_fit, tmp_path):
    voxel = _peaks(synthetic_fit, tmp_path / "ijk")
    world = _peaks(synthetic_fit, tmp_path / "xyz", reference="xyz")
    assert world.encoding["peaks"]["Reference"] == "xyz"
    affine = nib.load(synthetic_dwi.dwi_file).affine
    ijk, _ = mrtrix_to_peaks(nib.load(voxel.peaks).get_fdata())
    xyz, _ = mrtrix_to_peaks(nib.load(world.peaks).get_fdata())
    np.testing.assert_allclose(xyz, voxel_to_world(ijk, affine), atol=1e-6)


def test_without_mask_only_nonzero_fods_are_searched(synthetic_fit, tmp_path):
    outputs = _peaks(
        synthetic_fit, tmp_path, npeaks=2, relative_peak_threshold=0.9, min_separation_angle=40
    )
    values = nib.load(outputs.peak_values).get_fdata()
    fitted = nib.load(synthetic_fit["f_wm"]).get_fdata() > 0
    assert values.shape[-1] == 2
    assert np.all(values[fitted][:, 0] > 0) and np.all(values[~fitted] == 0)


def test_refined_peaks_are_those_of_extract_peaks(small_64d, tmp_path):
    """``refine`` (the default) reaches the core: its peaks, between the vertices."""
    from rumba_bids.core.peaks import extract_peaks, peaks_to_mrtrix
    from rumba_bids.core.sphere import Sphere

    inputs = _prepare(small_64d, tmp_path / "inputs")
    fit = fit_rumba_files(**inputs, out_dir=str(tmp_path), n_iter=20, sphere="repulsion200")
    refined = _peaks(fit, tmp_path / "refined", mask_file=inputs["mask_file"])
    vertex = _peaks(fit, tmp_path / "vertex", mask_file=inputs["mask_file"], refine=False)
    image = nib.load(fit["fod_amplitudes"])
    mask = nib.load(inputs["mask_file"]).get_fdata().astype(bool)
    sphere = Sphere(np.loadtxt(fit["directions_file"]))
    expected = extract_peaks(image.get_fdata(dtype=np.float32), sphere, mask=mask)
    packed = peaks_to_mrtrix(expected.directions, expected.values)
    np.testing.assert_allclose(nib.load(refined.peaks).get_fdata(), packed, atol=1e-6)
    ours, _ = mrtrix_to_peaks(nib.load(refined.peaks).get_fdata()[mask])
    on_vertex, _ = mrtrix_to_peaks(nib.load(vertex.peaks).get_fdata()[mask])
    # each refined peak against the nearest vertex peak (refined values may reorder them)
    cosines = np.nan_to_num(np.abs(np.einsum("vpk,vqk->vpq", ours, on_vertex))).max(axis=-1)
    moved = np.degrees(np.arccos(np.clip(cosines, 0, 1)))[np.isfinite(ours[..., 0])]
    assert np.median(moved) > 1.0 and moved.max() < 15  # off the vertices, within a ring
    # the sidecar says which directions these are
    assert refined.encoding["peaks"]["Refinement"].startswith("log-quadratic")
    assert vertex.encoding["peaks"]["Refinement"] == "none (sphere vertices)"
