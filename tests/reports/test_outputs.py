"""Reading a derivatives folder: runs, display frame (RAS order), fODF slices, the raw data."""

from __future__ import annotations

import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from rumba_bids.core import get_sphere
from rumba_bids.reports.outputs import DisplayFrame, RunOutputs, find_runs, find_subjects


def test_find_runs_and_subjects(fake_dataset):
    assert find_subjects(fake_dataset.output_dir) == ["01"]
    runs = find_runs(fake_dataset.output_dir, "sub-01")
    assert [run.label for run in runs] == list(fake_dataset.labels)
    assert [run.session for run in runs] == ["1", "2"]
    expected = {"fod", "peaks", "peak_values", "gfa", "f_wm", "f_csf", "f_iso", "snr", "mask",
                "response"}  # fmt: skip
    assert set(runs[0].files) == expected  # no f_gm: GM was not fitted
    assert runs[0].parameters["SphereDirections"] == 724
    assert runs[0].response["Method"] == "default"
    assert find_runs(fake_dataset.output_dir, "02") == []


def test_display_frame_of_a_flipped_affine():
    affine = np.diag([-2.0, 3.0, 2.0, 1.0])
    frame = DisplayFrame(affine, (4, 5, 6))
    volume = np.arange(4 * 5 * 6).reshape(4, 5, 6)
    np.testing.assert_array_equal(frame.volume(volume), volume[::-1])
    assert frame.zooms == (2.0, 3.0, 2.0)
    np.testing.assert_allclose(frame.vectors([1.0, 2.0, 3.0]), [-1.0, 2.0, 3.0])
    np.testing.assert_allclose(frame.source_vectors(frame.vectors([1.0, 2.0, 3.0])), [1, 2, 3])
    assert frame.convert_index(0, 0) == 3 and frame.convert_index(1, 0) == 0
    assert frame.convert_range(0, 1, 3) == (1, 3) and frame.convert_range(0, 0, 1) == (3, 4)


def test_display_frame_of_permuted_axes(tmp_path):
    # voxel axes (j, k, i) ~ world (y, z, x): display order is (x, y, z)
    affine = np.array([[0, 0, 2.0, 0], [2.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 0, 1]])
    data = np.random.default_rng(0).normal(size=(5, 6, 4, 2)).astype(np.float32)
    path = tmp_path / "img.nii.gz"
    nib.Nifti1Image(data, affine).to_filename(path)
    frame = DisplayFrame(affine, data.shape)
    assert frame.shape == (4, 5, 6) and frame.zooms == (2.0, 2.0, 3.0)
    display = frame.volume(data)
    assert display.shape == (4, 5, 6, 2)
    np.testing.assert_array_equal(display[1, 2, 3], data[2, 3, 1])
    image = nib.load(path)
    for axis in range(3):
        np.testing.assert_array_equal(
            frame.read_slice(image, axis, 2), np.take(display, 2, axis=axis)
        )
    np.testing.assert_allclose(frame.vectors([1.0, 0.0, 0.0]), [0.0, 1.0, 0.0])


@pytest.mark.parametrize("session", [0, 1])
def test_displayed_odf_peaks_agree_with_the_peak_image(fake_dataset, session):
    """The glyphs (SH evaluated on display-frame directions) and the peak image
    (vectors reoriented) point the same way, with and without an x flip."""
    run = find_runs(fake_dataset.output_dir, "01")[session]
    sphere = get_sphere("repulsion724")
    directions, values = run.peaks()
    mask = run.mask()
    k = run.frame.shape[2] // 2
    odf = run.odf_slice(2, k, sphere, with_isotropic=False)
    single = mask[:, :, k] & (values[:, :, k, 0] > 0) & (values[:, :, k, 1] == 0)
    assert single.sum() > 20
    best = sphere.vertices[np.argmax(odf[single], axis=-1)]
    cosines = np.abs(np.einsum("vi,vi->v", best, directions[:, :, k][single][:, 0]))
    assert np.median(cosines) > 0.98
    # the isotropic part adds f_iso / 724 everywhere
    combined = run.odf_slice(2, k, sphere)
    f_iso = run.volume("f_iso")[:, :, k]
    np.testing.assert_allclose((combined - odf)[..., 0], f_iso / 724, rtol=1e-4, atol=1e-7)


def test_sessions_with_mirrored_affines_show_mirrored_anatomy(fake_dataset):
    first, second = find_runs(fake_dataset.output_dir, "01")
    np.testing.assert_array_equal(first.mask(), second.mask()[::-1])
    assert first.frame.convert_index(0, 2) == 2 and second.frame.convert_index(0, 2) == 15


def test_mean_b0_and_acquisition_from_the_sources(fake_dataset, tmp_path):
    run = find_runs(fake_dataset.output_dir, "01")[1]
    dwi, bval = run.source_files()
    assert dwi.name == "sub-01_ses-2_dwi.nii.gz" and bval.name == "sub-01_ses-2_dwi.bval"
    b0 = run.mean_b0()
    assert b0.shape == run.frame.shape
    assert b0[run.mask()].mean() > 5 * b0[~run.mask()].mean()
    facts = run.acquisition()
    assert facts["n_volumes"] == 54 and facts["n_b0"] == 6 and facts["shells"] == [2000.0]

    # a copy of the outputs whose DatasetLinks lead nowhere: only --bids-dir finds the raw data
    copy = tmp_path / "out"
    shutil.copytree(fake_dataset.output_dir, copy)
    description = json.loads((copy / "dataset_description.json").read_text())
    description["DatasetLinks"]["raw"] = (tmp_path / "moved").as_uri()
    (copy / "dataset_description.json").write_text(json.dumps(description))
    moved = find_runs(copy, "01")[1]
    assert moved.mean_b0() is None
    np.testing.assert_allclose(moved.mean_b0(fake_dataset.bids_dir), b0)


def test_run_outputs_from_explicit_files(fake_dataset):
    run = find_runs(fake_dataset.output_dir, "01")[0]
    snr_only = RunOutputs("x", {"subject": "x"}, {"snr": run.files["snr"]}, run.output_dir)
    np.testing.assert_array_equal(snr_only.mask(), run.volume("snr") > 0)
    assert snr_only.peaks() == (None, None) and snr_only.n_peaks() is None
    assert snr_only.parameters == {} and snr_only.response == {}
