"""Tests of rumba_bids.core.csd against dipy.reconst.csdeconv."""

import warnings

import numpy as np
import pytest
from dipy_lazy import LazyModule

from rumba_bids.core.csd import CsdModel, deconvolve, hemisphere, zonal_from_tensor
from rumba_bids.core.kernel import AxisymmetricResponse
from rumba_bids.core.peaks import extract_peaks
from rumba_bids.core.phantoms import (
    add_rician_noise,
    crossing_directions,
    make_acquisition,
    multi_tensor_signal,
    random_directions,
)
from rumba_bids.core.sphere import get_sphere

csdeconv = LazyModule("dipy.reconst.csdeconv")
dipy_data = LazyModule("dipy.data")
dipy_gradients = LazyModule("dipy.core.gradients")

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

RESPONSE = (np.array([1.7e-3, 0.3e-3, 0.3e-3]), 1.0)


@pytest.fixture(scope="module")
def acquisition():
    return make_acquisition(n_b0=6, n_dirs=90, bvals=(2000.0,))


@pytest.fixture(scope="module")
def voxels(acquisition):
    """600 noisy voxels: one fibre, two crossing fibres, and a few degenerate ones."""
    rng = np.random.default_rng(7)
    n = 600
    directions = random_directions(2 * n, rng=rng).reshape(n, 2, 3)
    fractions = np.tile([0.5, 0.5], (n, 1))
    fractions[: n // 2] = [1.0, 0.0]
    signal = multi_tensor_signal(acquisition, directions, fractions, S0=100.0)
    signal = add_rician_noise(signal, snr=30, rng=rng, S0=100.0)
    signal[-3:] = 0.0
    return signal, directions, fractions


def dipy_csd(gtab, response, data):
    dgtab = dipy_gradients.gradient_table(gtab.bvals, bvecs=gtab.bvecs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = csdeconv.ConstrainedSphericalDeconvModel(dgtab, response, sh_order_max=8)
        return model.fit(data)


def test_matches_dipy_with_the_same_constraint_sphere(acquisition, voxels):
    data = voxels[0][:-3]
    model = CsdModel(acquisition, RESPONSE, reg_sphere=dipy_data.small_sphere.vertices)
    ours = model.fit(data)
    theirs = dipy_csd(acquisition, RESPONSE, data)
    sphere = dipy_data.default_sphere
    expected = theirs.odf(sphere)
    error = np.abs(ours.odf(sphere.vertices) - expected).max(axis=1)
    assert np.all(error <= 1e-8 * np.abs(expected).max(axis=1))
    assert ours.converged.all() and ours.n_iterations.max() > 1


def test_close_to_dipy_with_our_sphere(acquisition, voxels):
    data = voxels[0][:-3]
    ours = CsdModel(acquisition, RESPONSE).fit(data)
    theirs = dipy_csd(acquisition, RESPONSE, data)
    sphere = dipy_data.default_sphere
    expected = theirs.odf(sphere)
    relative = np.abs(ours.odf(sphere.vertices) - expected).max(axis=1) / expected.max(axis=1)
    assert np.median(relative) < 0.03 and np.percentile(relative, 95) < 0.1


def test_single_fibres_are_recovered(acquisition, voxels):
    data, directions, _ = voxels
    fit = CsdModel(acquisition, RESPONSE).fit(data[:300])
    sphere = get_sphere("repulsion724")
    peaks = extract_peaks(fit.odf(sphere), sphere, relative_peak_threshold=0.5, npeaks=2)
    cos = np.abs(np.einsum("vi,vi->v", peaks.directions[:, 0], directions[:300, 0]))
    assert np.median(np.degrees(np.arccos(np.clip(cos, 0, 1)))) < 5


def test_axisymmetric_response_equals_tensor_response(acquisition, voxels):
    data = voxels[0][:50]
    zonal = zonal_from_tensor(acquisition, RESPONSE[0], S0=1.0)
    by_tensor = CsdModel(acquisition, RESPONSE).fit(data)
    by_zonal = CsdModel(acquisition, AxisymmetricResponse(zonal, 1.0)).fit(data)
    np.testing.assert_allclose(by_zonal.sh, by_tensor.sh, rtol=1e-10, atol=1e-12)
    # the response scale only rescales the fODF
    scaled = CsdModel(acquisition, AxisymmetricResponse(3 * zonal, 3.0)).fit(data)
    np.testing.assert_allclose(scaled.sh * 3, by_tensor.sh, rtol=1e-8, atol=1e-10)


def test_bases_give_the_same_fodf(acquisition, voxels):
    data = voxels[0][:40]
    sphere = get_sphere("repulsion200")
    mrtrix = CsdModel(acquisition, RESPONSE, basis="mrtrix3").fit(data)
    descoteaux = CsdModel(acquisition, RESPONSE, basis="descoteaux").fit(data)
    np.testing.assert_allclose(mrtrix.odf(sphere), descoteaux.odf(sphere), atol=1e-8)


def test_mask_shapes_and_degenerate_voxels(acquisition, voxels):
    data = voxels[0][-12:].reshape(2, 2, 3, -1)
    mask = np.ones((2, 2, 3), dtype=bool)
    mask[0, 0, 0] = False
    fit = CsdModel(acquisition, RESPONSE).fit(data, mask=mask, chunk_size=4)
    assert fit.sh.shape == (2, 2, 3, 45) and fit.odf().shape == (2, 2, 3, 724)
    assert np.all(fit.sh[0, 0, 0] == 0)
    assert np.all(fit.sh[1, 1, -3:] == 0)  # all-zero signal: zero fODF, no NaN
    assert np.all(np.isfinite(fit.sh))


def test_non_convergence_is_reported(acquisition, voxels):
    fit = CsdModel(acquisition, RESPONSE, max_iter=1).fit(voxels[0][:100])
    assert not fit.converged.all()
    assert fit.n_iterations.max() == 1


def test_deconvolve_plain_arrays_without_gram(acquisition, voxels):
    model = CsdModel(acquisition, RESPONSE)
    signal = voxels[0][:20, model.dwi_mask]
    sh, n_iterations, converged = deconvolve(signal, model.design, model.reg_matrix)
    np.testing.assert_allclose(sh, model.fit(voxels[0][:20]).sh, rtol=1e-10, atol=1e-12)
    assert n_iterations.shape == converged.shape == (20,)


def test_hemisphere():
    half = hemisphere("symmetric362")
    assert len(half) == 181
    assert np.all(half.antipodal_partner < 0)
    lopsided = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0.6, 0.8, 0], [-1, 0, 0]])
    assert len(hemisphere(lopsided)) == 5  # not antipodally symmetric: kept whole


def test_bad_input(acquisition):
    multi = make_acquisition(n_b0=2, n_dirs=30, bvals=(1000.0, 2000.0))
    with pytest.raises(ValueError, match="single-shell"):
        CsdModel(multi, RESPONSE)
    model = CsdModel(acquisition, RESPONSE)
    with pytest.raises(ValueError, match="volumes"):
        model.fit(np.ones((3, 10)))
    bad = np.ones((2, len(acquisition)))
    bad[0, -1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(bad)
    with pytest.raises(ValueError, match="mask shape"):
        model.fit(np.ones((2, len(acquisition))), mask=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="positive mean"):
        CsdModel(acquisition, AxisymmetricResponse([-1.0, 0.5], 1.0))


def test_crossing_gives_two_peaks(acquisition):
    directions = crossing_directions(80)
    signal = multi_tensor_signal(acquisition, directions, [0.5, 0.5], S0=1.0)
    fit = CsdModel(acquisition, RESPONSE).fit(signal[None])
    sphere = get_sphere("repulsion724")
    peaks = extract_peaks(fit.odf(sphere), sphere, relative_peak_threshold=0.3, npeaks=3)
    assert (peaks.values[0] > 0).sum() == 2
    for found in peaks.directions[0, :2]:
        assert np.abs(directions @ found).max() > np.cos(np.radians(5))


def test_super_resolution_with_fewer_directions_than_coefficients():
    gtab = make_acquisition(n_b0=2, n_dirs=30)
    rng = np.random.default_rng(3)
    directions = random_directions(40, rng=rng).reshape(20, 2, 3)
    signal = multi_tensor_signal(gtab, directions, np.tile([0.6, 0.4], (20, 1)), S0=100.0)
    signal = add_rician_noise(signal, snr=50, rng=rng, S0=100.0)
    ours = CsdModel(gtab, RESPONSE, reg_sphere=dipy_data.small_sphere.vertices).fit(signal)
    theirs = dipy_csd(gtab, RESPONSE, signal)
    sphere = dipy_data.default_sphere
    expected = theirs.odf(sphere)
    error = np.abs(ours.odf(sphere.vertices) - expected).max(axis=1) / expected.max(axis=1)
    assert np.all(error < 1e-6)
