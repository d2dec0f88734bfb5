"""Tests of rumba_bids.core.tensor against dipy.reconst.dti (WLS)."""

import os

import numpy as np
import pytest
from dipy_lazy import LazyModule

from rumba_bids.core.gradients import GradientTable
from rumba_bids.core.phantoms import (
    add_rician_noise,
    make_acquisition,
    multi_tensor_signal,
    random_directions,
    tensor_from_direction,
)
from rumba_bids.core.tensor import (
    fit_tensor,
    fractional_anisotropy,
    mean_diffusivity,
    tensor_design_matrix,
)

dti = LazyModule("dipy.reconst.dti")
dipy_gradients = LazyModule("dipy.core.gradients")


def dipy_fit(gtab, data, mask=None):
    dgtab = dipy_gradients.gradient_table(gtab.bvals, bvecs=gtab.bvecs)
    return dti.TensorModel(dgtab, fit_method="WLS").fit(data, mask=mask)


@pytest.fixture(scope="module")
def noisy_voxels():
    rng = np.random.default_rng(0)
    gtab = make_acquisition(n_b0=5, n_dirs=60, bvals=(1000.0, 2000.0))
    n = 3000
    directions = random_directions(2 * n, rng=rng).reshape(n, 2, 3)
    fractions = rng.dirichlet([1, 1], size=n) * rng.uniform(0.5, 1, (n, 1))
    signal = multi_tensor_signal(
        gtab,
        directions,
        fractions,
        iso_fractions=1 - fractions.sum(axis=1, keepdims=True),
        iso_diffusivities=[3e-3],
        S0=100.0,
    )
    signal[-100:] = 0.0  # background: noise only, tiny or negative fitted diffusivities
    noisy = add_rician_noise(signal, snr=20, rng=rng, S0=100.0)
    # a nearly flat signal: eigenvalues (1e-8, 0, 0) meet DIPY's diffusivity floor
    noisy[-1] = 100.0 * np.exp(-gtab.bvals * 1e-8 * gtab.bvecs[:, 0] ** 2)
    return gtab, noisy


def test_matches_dipy_wls(noisy_voxels):
    gtab, data = noisy_voxels
    ours = fit_tensor(gtab, data)
    theirs = dipy_fit(gtab, data)
    np.testing.assert_allclose(ours.fa, theirs.fa, atol=1e-4)
    np.testing.assert_allclose(ours.md, theirs.md, atol=1e-4 * 1e-3)
    np.testing.assert_allclose(ours.evals, theirs.evals, atol=1e-8)
    # principal directions agree up to sign
    cos = np.abs(np.einsum("vi,vi->v", ours.directions, theirs.evecs[..., 0]))
    assert np.all(cos[:-100][ours.fa[:-100] > 0.2] > 1 - 1e-6)
    np.testing.assert_allclose(ours.quadratic_form, theirs.quadratic_form, atol=1e-9)


def test_noise_free_tensor_recovered_exactly():
    gtab = make_acquisition(n_b0=2, n_dirs=30, bvals=(1000.0,))
    direction = np.array([0.3, -0.5, 0.8])
    direction /= np.linalg.norm(direction)
    tensor = tensor_from_direction(direction, (1.5e-3, 0.4e-3, 0.4e-3))
    signal = 250.0 * np.exp(-gtab.bvals * np.einsum("ni,ij,nj->n", gtab.bvecs, tensor, gtab.bvecs))
    fit = fit_tensor(gtab, signal[None, None])
    np.testing.assert_allclose(fit.evals[0, 0], [1.5e-3, 0.4e-3, 0.4e-3], rtol=1e-9)
    np.testing.assert_allclose(fit.S0[0, 0], 250.0, rtol=1e-9)
    np.testing.assert_allclose(np.abs(fit.directions[0, 0] @ direction), 1.0, rtol=1e-9)
    assert fit.evals.shape == (1, 1, 3) and fit.evecs.shape == (1, 1, 3, 3)
    np.testing.assert_allclose(fit.ad, 1.5e-3) and np.testing.assert_allclose(fit.rd, 0.4e-3)


def test_degenerate_voxels_give_zeros_not_nans(noisy_voxels):
    gtab, data = noisy_voxels
    data = data[:20].copy()
    data[0] = 0.0
    data[1] = -5.0
    data[2, gtab.b0s_mask] = 0.0
    data[3, ~gtab.b0s_mask] = 0.0  # dwi all zero: fitted with the minimum signal
    fit = fit_tensor(gtab, data)
    for array in (fit.evals, fit.evecs, fit.fa, fit.md, fit.S0):
        assert np.all(np.isfinite(array))
    assert np.all(fit.fa[:3] == 0) and np.all(fit.md[:3] == 0) and np.all(fit.S0[:3] == 0)
    assert fit.mask.tolist() == [False] * 3 + [True] * 17
    assert np.all(fit.fa[4:] > 0)


def test_mask_and_shapes(noisy_voxels):
    gtab, data = noisy_voxels
    volume = data[:24].reshape(2, 3, 4, -1)
    mask = np.zeros((2, 3, 4), dtype=bool)
    mask[0, 1:, :2] = True
    fit = fit_tensor(gtab, volume, mask=mask, chunk_size=2)
    theirs = dipy_fit(gtab, volume, mask=mask)
    assert fit.fa.shape == (2, 3, 4)
    np.testing.assert_allclose(fit.fa, theirs.fa, atol=1e-4)
    assert np.all(fit.fa[~mask] == 0) and np.all(fit.S0[~mask] == 0)
    np.testing.assert_array_equal(fit.mask, mask)


def test_real_scan_matches_dipy():
    nib = pytest.importorskip("nibabel")
    dipy = pytest.importorskip("dipy")

    files = os.path.join(os.path.dirname(dipy.__file__), "data", "files")
    data = np.asarray(nib.load(os.path.join(files, "small_64D.nii")).dataobj).astype(float)
    bvals = np.loadtxt(os.path.join(files, "small_64D.bval"))
    bvecs = np.nan_to_num(np.loadtxt(os.path.join(files, "small_64D.bvec")))  # b0 row is NaN
    gtab = GradientTable(bvals, bvecs)
    mask = data[..., gtab.b0s_mask].mean(-1) > 0
    ours = fit_tensor(gtab, data, mask=mask)
    theirs = dipy_fit(gtab, data, mask=mask)
    np.testing.assert_allclose(ours.fa, theirs.fa, atol=1e-4)
    np.testing.assert_allclose(ours.md, theirs.md, atol=1e-7)


def test_fa_md_helpers():
    evals = np.array([[1.7e-3, 0.2e-3, 0.2e-3], [1e-3, 1e-3, 1e-3], [0, 0, 0]])
    np.testing.assert_allclose(fractional_anisotropy(evals), dti.fractional_anisotropy(evals))
    np.testing.assert_allclose(mean_diffusivity(evals), dti.mean_diffusivity(evals))
    with pytest.raises(ValueError, match="length 3"):
        fractional_anisotropy([1.0, 2.0])


def test_design_matrix_and_bad_input():
    gtab = GradientTable([0, 1000, 1000], [[0, 0, 0], [1, 0, 0], [0, 1, 0]])
    assert tensor_design_matrix(gtab).shape == (3, 7)
    with pytest.raises(ValueError, match="six"):
        fit_tensor(gtab, np.ones((2, 3)))
    good = make_acquisition(n_b0=1, n_dirs=10)
    with pytest.raises(ValueError, match="volumes"):
        fit_tensor(good, np.ones((2, 5)))
    with pytest.raises(ValueError, match="mask shape"):
        fit_tensor(good, np.ones((2, 11)), mask=np.ones(3, dtype=bool))
    with pytest.raises(ValueError, match="min_signal"):
        fit_tensor(good, np.ones((2, 11)), min_signal=0)
