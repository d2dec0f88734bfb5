"""FitRumba on DIPY's small_64D (against DIPY's RUMBA-SD) and on synthetic phantoms."""

import re
import warnings

import nibabel as nib
import numpy as np
import pytest

from rumba_bids.core.sphere import get_sphere
from rumba_bids.interfaces.errors import InputDataError, InputMissingError
from rumba_bids.interfaces.gradients import CheckGradients
from rumba_bids.interfaces.masking import BrainMask
from rumba_bids.interfaces.response import EstimateResponse
from rumba_bids.interfaces.rumba import (
    FitRumba,
    ProgressLogger,
    create_nifti,
    resolve_isotropic,
    resolve_sphere,
    write_fod_volumes,
)


def _prepare(files, directory, *, response="default", mask_file=None):
    """Checked gradients, a mask and a response, as the workflow makes them."""
    directory.mkdir(parents=True, exist_ok=True)
    cwd = str(directory)
    checked = (
        CheckGradients(
            dwi_file=files.dwi_file, bval_file=files.bval_file, bvec_file=files.bvec_file
        )
        .run(cwd=cwd)
        .outputs
    )
    if mask_file is None:
        mask_file = (
            BrainMask(dwi_file=files.dwi_file, bval_file=checked.bval_file)
            .run(cwd=cwd)
            .outputs.out_mask
        )
    data = (
        {}
        if response == "default"
        else {
            "dwi_file": files.dwi_file,
            "bval_file": checked.bval_file,
            "bvec_file": checked.bvec_file,
            "mask_file": mask_file,
        }
    )
    estimate = EstimateResponse(method=response, **data).run(cwd=cwd).outputs
    return {
        "dwi_file": files.dwi_file,
        "bval_file": checked.bval_file,
        "bvec_file": checked.bvec_file,
        "mask_file": mask_file,
        "response_file": estimate.response_file,
    }


def _fit(tmp_path, **inputs):
    tmp_path.mkdir(parents=True, exist_ok=True)
    return FitRumba(**inputs).run(cwd=str(tmp_path)).outputs


@pytest.fixture(scope="module")
def small_64d_inputs(small_64d, tmp_path_factory):
    return _prepare(small_64d, tmp_path_factory.mktemp("small64d_inputs"))


@pytest.fixture(scope="module")
def synthetic_inputs(synthetic_dwi, tmp_path_factory):
    return _prepare(
        synthetic_dwi,
        tmp_path_factory.mktemp("synthetic_inputs"),
        mask_file=synthetic_dwi.mask_file,
    )


def test_small_64d_fit_matches_dipy(small_64d, small_64d_inputs, tmp_path):
    from dipy.core.gradients import gradient_table
    from dipy.core.sphere import Sphere as DipySphere
    from dipy.io.gradients import read_bvals_bvecs
    from dipy.reconst.rumba import RumbaSDModel as DipyRumba

    # DIPY's RumbaFit.odf() is the per-direction weights: the app's --fod-scale weights
    outputs = _fit(
        tmp_path, sphere="repulsion200", n_iter=20, fod_scale="weights", **small_64d_inputs
    )
    dwi = nib.load(small_64d.dwi_file)
    fod = nib.load(outputs.fod_amplitudes)
    assert fod.shape == (10, 10, 10, 200) and fod.get_data_dtype() == np.float32
    np.testing.assert_array_equal(fod.affine, dwi.affine)
    mask = nib.load(small_64d_inputs["mask_file"]).get_fdata().astype(bool)
    bvals, bvecs = read_bvals_bvecs(small_64d.bval_file, small_64d.bvec_file)
    bvecs[np.isnan(bvecs)] = 0  # the b0's b-vector; negative determinant: no flip
    sphere = get_sphere("repulsion200")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = DipyRumba(
            gradient_table(bvals, bvecs=bvecs),
            gm_response=None,
            n_iter=20,
            sphere=DipySphere(xyz=sphere.vertices),
        )
        theirs = model.fit(dwi.get_fdata(), mask=mask)
    np.testing.assert_allclose(fod.get_fdata()[mask], theirs.odf()[mask], rtol=0, atol=2e-5)
    np.testing.assert_array_equal(np.loadtxt(outputs.directions_file), sphere.vertices)
    for name in ("f_wm", "f_csf", "f_iso"):
        ours = nib.load(getattr(outputs, name)).get_fdata()
        np.testing.assert_allclose(ours[mask], getattr(theirs, name)[mask], atol=1e-4)
        assert np.all(ours[~mask] == 0)
    assert np.all(nib.load(outputs.f_gm).get_fdata() == 0)  # one shell: GM off ('auto')
    snr = nib.load(outputs.snr).get_fdata()[mask]
    assert np.all((snr >= 8) & (snr <= 80))  # the noise estimate's bounds
    parameters = outputs.metadata["Model"]["Parameters"]
    assert parameters["FittedVoxels"] == mask.sum() and parameters["Sphere"] == "repulsion200"
    assert parameters["GMChoice"].startswith("auto: off")


def test_synthetic_fit_outputs_and_metadata(synthetic_dwi, synthetic_inputs, tmp_path):
    outputs = _fit(tmp_path, n_iter=20, sphere="repulsion100", **synthetic_inputs)
    brain = nib.load(synthetic_dwi.mask_file).get_fdata().astype(bool)
    maps = {
        name: nib.load(getattr(outputs, name)).get_fdata()
        for name in ("f_wm", "f_gm", "f_csf", "f_iso")
    }
    np.testing.assert_allclose((maps["f_wm"] + maps["f_iso"])[brain], 1, atol=1e-5)
    np.testing.assert_allclose(maps["f_iso"], maps["f_gm"] + maps["f_csf"], atol=1e-6)
    assert maps["f_wm"][brain].mean() > 0.7  # 90 % fibre
    for image in maps.values():
        assert np.all(image[~brain] == 0)
    metadata = outputs.metadata
    assert metadata["Model"]["URL"].startswith("https://doi.org/")
    expected = {
        "Iterations": 20,
        "NoiseModel": "Rician",
        "ReconType": "smf",
        "NCoils": 1,
        "AccelerationFactor": 1,
        "Fit": "voxelwise",
        "TotalVariation": False,
        "SphereDirections": 100,
        "GMCompartment": False,
        "CSFCompartment": True,
        "CSFDiffusivity": 3e-3,
        "Shells": [1000.0],
        "FittedVoxels": 27,
    }
    assert expected.items() <= metadata["Model"]["Parameters"].items()
    assert metadata["ResponseFunction"]["Type"] == "eigen"
    amplitudes = metadata["OrientationEncoding"]["amplitudes"]
    assert amplitudes["Reference"] == "ijk" and len(amplitudes["AmplitudesDirections"]) == 100


@pytest.mark.parametrize("fit", ["voxelwise", "global"])
def test_density_is_the_weights_times_directions_over_4pi(synthetic_inputs, tmp_path, fit):
    """The default unit: a density on the sphere whose integral (SH c00 sqrt(4 pi)) is f_wm."""
    from rumba_bids.core.shm import sf_to_sh

    options = {"n_iter": 20, "sphere": "repulsion200", "fit": fit, **synthetic_inputs}
    density = _fit(tmp_path / "density", **options)
    weights = _fit(tmp_path / "weights", fod_scale="weights", **options)
    assert density.metadata["Model"]["Parameters"]["FODScale"] == "density"
    assert weights.metadata["Model"]["Parameters"]["FODScale"] == "weights"
    mask = nib.load(synthetic_inputs["mask_file"]).get_fdata().astype(bool)
    d = nib.load(density.fod_amplitudes).get_fdata()[mask]
    w = nib.load(weights.fod_amplitudes).get_fdata()[mask]
    np.testing.assert_allclose(d, w * 200 / (4 * np.pi), rtol=1e-5, atol=1e-7)
    f_wm = nib.load(density.f_wm).get_fdata()[mask]
    np.testing.assert_allclose(w.sum(axis=-1), f_wm, rtol=1e-4)
    integral = sf_to_sh(d, get_sphere("repulsion200"))[:, 0] * np.sqrt(4 * np.pi)
    np.testing.assert_allclose(integral, f_wm, rtol=0.02)


def test_gm_auto_switches_on_with_three_shells(synthetic_multishell_dwi, tmp_path):
    inputs = _prepare(
        synthetic_multishell_dwi, tmp_path / "inputs", mask_file=synthetic_multishell_dwi.mask_file
    )
    outputs = _fit(tmp_path / "fit", n_iter=20, sphere="repulsion100", **inputs)
    parameters = outputs.metadata["Model"]["Parameters"]
    assert parameters["GMCompartment"] and parameters["GMDiffusivity"] == 0.8e-3
    assert parameters["GMChoice"].startswith("auto: on") and len(parameters["Shells"]) == 3
    assert nib.load(outputs.f_gm).get_fdata().max() > 0


def test_compartments_and_noise_model_options(synthetic_inputs, tmp_path):
    outputs = _fit(
        tmp_path,
        n_iter=10,
        sphere="repulsion100",
        gm_response=1e-3,
        csf_response=None,
        recon_type="sos",
        n_coils=4,
        **synthetic_inputs,
    )
    parameters = outputs.metadata["Model"]["Parameters"]
    assert parameters["GMChoice"] == "on (requested)" and parameters["GMDiffusivity"] == 1e-3
    assert not parameters["CSFCompartment"]
    assert parameters["NoiseModel"] == "noncentral chi" and parameters["NCoils"] == 4
    assert np.all(nib.load(outputs.f_csf).get_fdata() == 0)
    assert nib.load(outputs.f_gm).get_fdata().max() > 0


def test_global_fit_with_total_variation(synthetic_inputs, tmp_path):
    outputs = _fit(
        tmp_path,
        n_iter=10,
        sphere="repulsion100",
        fit="global",
        use_tv=True,
        R=2,
        **synthetic_inputs,
    )
    parameters = outputs.metadata["Model"]["Parameters"]
    assert (parameters["Fit"], parameters["TotalVariation"]) == ("global", True)
    assert parameters["AccelerationFactor"] == 2
    assert nib.load(outputs.fod_amplitudes).shape == (5, 5, 5, 100)


@pytest.mark.parametrize("fit", ["voxelwise", "global"])
def test_n_threads_input_changes_nothing_but_the_threads(synthetic_inputs, tmp_path, fit):
    """The node's ``n_threads`` (set from the workflow's omp_nthreads) gives the same
    files, bit for bit, on 1 and 3 threads (TV included)."""
    results = {}
    for n_threads in (1, 3):
        outputs = _fit(
            tmp_path / f"{fit}-{n_threads}",
            n_iter=5,
            sphere="repulsion100",
            fit=fit,
            use_tv=fit == "global",
            chunk_size=16,
            n_threads=n_threads,
            **synthetic_inputs,
        )
        results[n_threads] = [
            np.asanyarray(nib.load(getattr(outputs, name)).dataobj)
            for name in ("fod_amplitudes", "f_wm", "snr")
        ]
    for one, three in zip(results[1], results[3]):
        np.testing.assert_array_equal(three, one)


def test_custom_sphere_file(synthetic_inputs, tmp_path):
    vertices = get_sphere("repulsion100").vertices[::-1]
    sphere_file = tmp_path / "my_directions.txt"
    np.savetxt(sphere_file, vertices)
    outputs = _fit(tmp_path / "fit", n_iter=5, sphere=str(sphere_file), **synthetic_inputs)
    np.testing.assert_allclose(np.loadtxt(outputs.directions_file), vertices, atol=1e-9)
    assert outputs.metadata["Model"]["Parameters"]["Sphere"] == "my_directions.txt"


def test_bad_inputs_name_the_file(synthetic_dwi, synthetic_inputs, tmp_path):
    image = nib.load(synthetic_dwi.dwi_file)
    data = image.get_fdata(dtype=np.float32)
    data[2, 2, 2, 7] = np.nan
    nan_dwi = tmp_path / "nan_dwi.nii.gz"
    nib.Nifti1Image(data, image.affine).to_filename(nan_dwi)
    with pytest.raises(InputDataError, match=rf"{re.escape(str(nan_dwi))}: 1 voxels contain NaN"):
        _fit(tmp_path, **{**synthetic_inputs, "dwi_file": str(nan_dwi)})
    wrong_grid = tmp_path / "mask.nii.gz"
    nib.Nifti1Image(np.ones((5, 5, 5), np.uint8), np.eye(4)).to_filename(wrong_grid)
    with pytest.raises(
        InputDataError, match=rf"{re.escape(str(wrong_grid))}: mask (of shape|affine)"
    ):
        _fit(tmp_path, **{**synthetic_inputs, "mask_file": str(wrong_grid)})
    missing = str(tmp_path / "absent_response.json")
    with pytest.raises(
        InputMissingError, match=re.escape(f"{missing}: response file does not exist")
    ):
        _fit(tmp_path, **{**synthetic_inputs, "response_file": missing})
    short = tmp_path / "short.bval"
    np.savetxt(short, np.loadtxt(synthetic_inputs["bval_file"])[None, :-1])
    short_bvec = tmp_path / "short.bvec"
    np.savetxt(short_bvec, np.loadtxt(synthetic_inputs["bvec_file"])[:, :-1])
    with pytest.raises(InputDataError, match=re.escape(f"{short}: 32 b-values but")):
        _fit(
            tmp_path, **{**synthetic_inputs, "bval_file": str(short), "bvec_file": str(short_bvec)}
        )


@pytest.mark.parametrize("byte_order", ["<", ">"], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize("with_rows", [False, True], ids=["blocks", "grid"])
def test_write_fod_volumes_puts_each_voxel_where_nifti_reads_it(
    tmp_path, monkeypatch, with_rows, byte_order
):
    """Buffers of 7 directions (not dividing 17) scattered into the direction volumes:
    nibabel reads back every voxel's amplitudes times the factor, zeros elsewhere.  The
    voxels come in two blocks of rows (the voxel-wise fit: the first into the new file, not
    read, the second keeping the first's values) or as rows of a C-order grid (the global
    fit); a big-endian file stays one."""
    from rumba_bids.core import memory

    rng = np.random.default_rng(5)
    shape, n_dir = (5, 4, 3), 17
    monkeypatch.setattr(memory, "FOD_BUFFER_BYTES", 7 * 60 * 4)
    header = nib.Nifti1Header()
    header.set_data_dtype(np.dtype(byte_order + "i2"))
    header = header.as_byteswapped(byte_order) if byte_order == ">" else header
    reference = nib.Nifti1Image(np.zeros((*shape, 2), np.int16), np.diag([2, 2, 2, 1.0]), header)
    mask = rng.random(shape) < 0.6
    grid = np.zeros((*shape, n_dir + 2), np.float32)
    grid[mask] = rng.random((int(mask.sum()), n_dir + 2))
    c_order = np.flatnonzero(mask)
    voxels = np.ravel_multi_index(np.unravel_index(c_order, shape), shape, order="F")
    path = str(tmp_path / "fod.nii")
    fod_file = create_nifti(reference, path, n_dir)
    assert np.dtype(fod_file["dtype"]).isnative == (byte_order == "<")
    if with_rows:
        odf = grid[..., :n_dir].reshape(-1, n_dir)
        write_fod_volumes(fod_file, odf, voxels, 0.5, rows=c_order, fresh=True)
    else:
        rows = grid[mask]
        for part, fresh in ((slice(0, 9), True), (slice(9, None), False)):
            write_fod_volumes(fod_file, rows[part, :n_dir], voxels[part], 0.5, fresh=fresh)
    image = nib.load(path)
    np.testing.assert_array_equal(image.affine, reference.affine)
    np.testing.assert_array_equal(image.get_fdata(dtype=np.float32), grid[..., :n_dir] * 0.5)


def test_resolve_isotropic_and_sphere():
    assert resolve_isotropic(None, None, 3) == (None, None, "off (requested)")
    assert resolve_isotropic(1e-3, 3e-3, 1)[:2] == (1e-3, 3e-3)
    assert resolve_isotropic("auto", 3e-3, 2)[0] is None
    assert len(resolve_sphere("symmetric362")) == 362
    with pytest.raises(ValueError, match="unknown sphere 'sphere9'.*repulsion724"):
        resolve_sphere("sphere9")


class _Recorder:
    def __init__(self):
        self.messages = []

    def info(self, message, *args):
        self.messages.append(message % args)


def test_progress_logger_throttles_and_reports_eta():
    recorder = _Recorder()
    progress = ProgressLogger("fit", interval=3600, log=recorder)
    for fraction in (0.25, 0.5, 0.75, 1.0):
        progress(fraction, 10 * fraction)
    # the first call and the last (100 %) only: the interval has not passed in between
    assert recorder.messages == [
        "fit:  25.0% done, 2 s elapsed, ETA 8 s",
        "fit: 100.0% done, 10 s elapsed, ETA 0 s",
    ]
    every = _Recorder()
    progress = ProgressLogger("fit", interval=0, log=every)
    for fraction in (0.5, 1.0):
        progress(fraction, fraction)
    assert len(every.messages) == 2
