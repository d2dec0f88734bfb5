"""RumbaSDModel as a drop-in for DIPY's: DIPY objects in, DIPY functions on the results;
core consistency checks (NaN b0 vectors, duplicate vertices, folding, bessel_ratio)."""

import warnings

import numpy as np
import pytest
from dipy_lazy import LazyModule
from scipy.special import ive

from rumba_bids.core import GradientTable, RumbaSDModel, Sphere, get_sphere
from rumba_bids.core.gradients import as_gradient_table
from rumba_bids.core.kernel import AxisymmetricResponse, as_wm_response
from rumba_bids.core.phantoms import make_acquisition, multi_tensor_signal
from rumba_bids.core.rumba import _antipodal_kept, bessel_ratio

dipy_gradients = LazyModule("dipy.core.gradients")
dipy_sphere = LazyModule("dipy.core.sphere")
dipy_data = LazyModule("dipy.data")  # default_sphere: a HemiSphere of 362 vertices
dipy_peaks = LazyModule("dipy.direction.peaks")
dipy_csdeconv = LazyModule("dipy.reconst.csdeconv")
dipy_rumba = LazyModule("dipy.reconst.rumba")
dipy_shm = LazyModule("dipy.reconst.shm")


@pytest.fixture(scope="module")
def gtab():
    return make_acquisition(n_b0=4, n_dirs=60, bvals=(2000.0,))


@pytest.fixture(scope="module")
def dipy_gtab(gtab):
    return dipy_gradients.gradient_table(np.array(gtab.bvals), bvecs=np.array(gtab.bvecs))


@pytest.fixture(scope="module")
def crossing(gtab):
    """(3, 2, 1, N): x fibres, x/y crossings, y fibres."""
    directions = np.zeros((3, 2, 1, 2, 3))
    directions[..., 0, :] = [1, 0, 0]
    directions[..., 1, :] = [0, 1, 0]
    fractions = np.zeros((3, 2, 1, 2))
    fractions[0, ..., 0] = 0.9
    fractions[1] = 0.45
    fractions[2, ..., 1] = 0.9
    return multi_tensor_signal(
        gtab, directions, fractions, iso_fractions=np.full((3, 2, 1, 1), 0.1), S0=100.0
    )


def test_dipy_gradient_table_gives_the_same_fit(gtab, dipy_gtab, crossing):
    ours = RumbaSDModel(gtab, n_iter=20).fit(crossing)
    theirs = RumbaSDModel(dipy_gtab, n_iter=20).fit(crossing)
    np.testing.assert_array_equal(ours.model_params, theirs.model_params)
    np.testing.assert_allclose(
        theirs.predict(dipy_gtab, S0=100.0), ours.predict(gtab, S0=100.0), rtol=1e-13
    )


def test_gradient_table_like_objects_are_checked(gtab):
    with pytest.raises(TypeError, match="bvals, bvecs and b0s_mask"):
        RumbaSDModel(np.zeros((10, 4)))

    class Table:  # a DIPY-like table whose b0 mask contradicts its b-values
        bvals = np.array(gtab.bvals)
        bvecs = np.array(gtab.bvecs)
        b0s_mask = np.zeros(len(gtab), dtype=bool)
        b0_threshold = 50

    with pytest.raises(ValueError, match="b0s_mask does not match"):
        as_gradient_table(Table())
    Table.b0s_mask = np.array(gtab.b0s_mask)
    assert as_gradient_table(Table()).b0s_mask.tolist() == gtab.b0s_mask.tolist()


def test_axsymsh_response_gives_dipy_kernel(dipy_gtab):
    dipy_response = dipy_csdeconv.AxSymShResponse(
        480.0, np.array([570.35, -262.82, 80.23, -16.94, 2.58])
    )
    ours = as_wm_response(dipy_response)
    assert isinstance(ours, AxisymmetricResponse) and ours.S0 == 480.0
    model = RumbaSDModel(dipy_gtab, wm_response=dipy_response, sphere=dipy_data.default_sphere)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit_gtab = dipy_gradients.gradient_table(
            np.array(model.fit_gtab.bvals), bvecs=np.array(model.fit_gtab.bvecs)
        )
        expected = dipy_rumba.generate_kernel(
            fit_gtab, dipy_data.default_sphere, dipy_response, 0.8e-3, 3e-3
        )
    np.testing.assert_allclose(model.kernel, expected, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="axially symmetric"):
        as_wm_response(type("R", (), {"S0": 1.0, "dwi_response": [1.0], "m_values": [1]})())


def test_results_are_float64_and_work_in_dipy_functions(dipy_gtab, crossing):
    model = RumbaSDModel(dipy_gtab, n_iter=50, sphere=dipy_data.default_sphere, voxelwise=False)
    fit = model.fit(crossing)
    assert fit.model_params.dtype == np.float32  # arithmetic of the fit
    for array in (fit.odf(), fit.f_wm, fit.f_iso, fit.f_gm, fit.f_csf, fit.combined_odf_iso):
        assert array.dtype == np.float64
    assert fit.odf(dtype=None).dtype == np.float32
    directions, _, _ = dipy_peaks.peak_directions(
        fit.odf(dipy_data.default_sphere)[1, 0, 0],
        dipy_data.default_sphere,
        relative_peak_threshold=0.5,
        min_separation_angle=25,
    )
    assert len(directions) == 2
    sh = dipy_shm.sf_to_sh(fit.odf(), dipy_data.default_sphere, sh_order_max=8)
    assert sh.shape == (3, 2, 1, 45) and np.isfinite(sh).all()


def test_peaks_from_model_with_our_voxelwise_model(dipy_gtab, crossing):
    model = RumbaSDModel(dipy_gtab, n_iter=50, sphere=dipy_data.default_sphere)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DIPY's own deprecation notes
        pam = dipy_peaks.peaks_from_model(
            model,
            crossing,
            dipy_data.default_sphere,
            relative_peak_threshold=0.5,
            min_separation_angle=25,
            return_sh=True,
            sh_order_max=8,
        )
    n_peaks = (pam.peak_indices >= 0).sum(-1)
    assert n_peaks[:, :, 0].tolist() == [[1, 1], [2, 2], [1, 1]]
    odf = model.fit(crossing).odf()
    # one voxel per fit call there, six here: float32 round-off differs
    np.testing.assert_allclose(pam.peak_values[..., 0], odf.max(axis=-1), rtol=1e-5)


def test_dipy_spheres_are_taken_with_their_faces(gtab, crossing):
    hemi = dipy_data.default_sphere
    assert isinstance(hemi, dipy_sphere.HemiSphere)
    model = RumbaSDModel(gtab, n_iter=20, sphere=hemi)
    assert len(model.sphere) == len(hemi.vertices) and not model.sphere.is_antipodally_symmetric
    np.testing.assert_array_equal(model.sphere.faces, hemi.faces)
    fit = model.fit(crossing)
    assert fit.odf().shape == (3, 2, 1, len(hemi.vertices))
    dipy724 = dipy_data.get_sphere(name="repulsion724")
    with pytest.raises(ValueError, match="only on the sphere"):
        fit.odf(dipy724)
    full = RumbaSDModel(gtab, n_iter=20, sphere=dipy_sphere.Sphere(xyz=dipy724.vertices))
    assert full.sphere.is_antipodally_symmetric and full.fit_columns == 362 + 2
    np.testing.assert_allclose(full.sphere.vertices, dipy724.vertices, rtol=0, atol=1e-15)


def test_verbose_voxelwise_warns_once_like_dipy(gtab):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        RumbaSDModel(gtab, verbose=True)
        RumbaSDModel(gtab, verbose=True, voxelwise=False)
    assert [w.category for w in caught] == [UserWarning]
    assert "logs progress only" in str(caught[0].message)


# ----------------------------------------------------------------- core consistency


def test_nan_bvecs_allowed_on_b0_rows_only():
    bvecs = np.array([[np.nan] * 3, [1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    table = GradientTable([0, 1000, 1000, 1000], bvecs)
    assert table.bvecs[0].tolist() == [0.0, 0.0, 0.0]
    bvecs[2, 1] = np.nan
    with pytest.raises(ValueError, match="1 diffusion-weighted b-vectors are not finite"):
        GradientTable([0, 1000, 1000, 1000], bvecs)


def test_dipy_small_64d_bvec_file_loads():
    get_fnames = dipy_data.get_fnames

    _, fbval, fbvec = get_fnames(name="small_64D")
    bvecs = np.loadtxt(fbvec)
    assert np.isnan(bvecs[0]).all()  # the file does hold NaN on its b0 row
    table = GradientTable(np.loadtxt(fbval), bvecs)
    assert table.b0s_mask.sum() == 1 and np.all(table.bvecs[0] == 0)


@pytest.mark.parametrize("offset", [0.0, 1e-5, 5e-4])
def test_duplicate_and_near_duplicate_vertices_refused(offset):
    vertices = np.array(get_sphere("repulsion100").vertices)
    moved = vertices[3] + offset * np.cross(vertices[3], [0.0, 0.0, 1.0])
    vertices = np.vstack([vertices, moved / np.linalg.norm(moved)])
    with pytest.raises(ValueError, match="duplicate or near-duplicate vertices.*first: 3 and 100"):
        Sphere(vertices)


def test_named_spheres_have_no_duplicates_and_fold():
    for name in ("repulsion100", "repulsion200", "symmetric362", "repulsion724"):
        sphere = get_sphere(name)
        assert len(_antipodal_kept(sphere.antipodal_partner)) * 2 == len(sphere)


@pytest.mark.parametrize(
    "partner",
    [[1, 0, 3, 2, 5, 4], [1, 2, 0, 4, 5, 3], [0, 1, 3, 2, 5, 4], [1, 0, 3, 2, -1, 4]],
)
def test_folding_needs_an_involution(partner):
    partner = np.array(partner)
    kept = _antipodal_kept(partner)
    if partner.tolist() == [1, 0, 3, 2, 5, 4]:
        assert kept.tolist() == [0, 2, 4]
    else:
        assert kept is None


def test_folded_fit_is_deterministic(gtab, crossing):
    model = RumbaSDModel(gtab, n_iter=10, sphere="repulsion100")
    first, second = model.fit(crossing), model.fit(crossing)
    np.testing.assert_array_equal(first.model_params, second.model_params)
    np.testing.assert_allclose(first.model_params.sum(-1), 1, rtol=1e-6)


BESSEL_GRID = np.concatenate([np.linspace(0, 50, 100001)[1:], np.geomspace(50, 1e6, 10000)])
#: Largest relative error of bessel_ratio per order, as its docstring states.
BESSEL_DOCUMENTED = {1: 1.15e-2, 2: 5.6e-3, 4: 3.0e-3, 16: 1.5e-3, 32: 1.3e-3}


@pytest.mark.parametrize("order", sorted(BESSEL_DOCUMENTED))
def test_bessel_ratio_error_is_the_documented_one(order):
    reference = ive(order, BESSEL_GRID) / ive(order - 1, BESSEL_GRID)
    approx = bessel_ratio(order, BESSEL_GRID)
    error = np.abs(approx - reference) / reference
    # the bound holds, and is tight (within 10 %)
    assert 0.9 * BESSEL_DOCUMENTED[order] < error.max() <= BESSEL_DOCUMENTED[order]
    np.testing.assert_allclose(approx, dipy_rumba.mbessel_ratio(order, BESSEL_GRID), rtol=1e-12)


def test_core_peaks_from_model_fits_once_and_takes_the_global_fit(gtab, crossing):
    from rumba_bids.core import extract_peaks, peaks_from_model

    for voxelwise in (True, False):
        model = RumbaSDModel(gtab, n_iter=30, sphere="symmetric362", voxelwise=voxelwise)
        peaks = peaks_from_model(model, crossing, None, 0.5, 25)
        expected = extract_peaks(model.fit(crossing).odf(), model.sphere)
        np.testing.assert_array_equal(peaks.indices, expected.indices)
        assert (peaks.indices >= 0).sum(-1)[:, :, 0].tolist() == [[1, 1], [2, 2], [1, 1]]
