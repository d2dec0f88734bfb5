"""Phantoms with ground truth: voxel populations, the coherent phantom, responses."""

import numpy as np
import pytest

from rumba_bids.core.csd import zonal_from_tensor
from rumba_bids.core.kernel import AxisymmetricResponse
from rumba_bids.core.phantoms import (
    CSF_DIFFUSIVITY,
    GM_DIFFUSIVITY,
    MAX_FIBRES,
    fibre_configuration,
    make_acquisition,
    make_coherent_phantom,
    make_voxel_population,
    multi_tensor_signal,
    random_rotations,
    tensor_response_zonal,
)
from rumba_bids.core.scoring import axis_angle


@pytest.fixture(scope="module")
def gtab():
    return make_acquisition(n_b0=4, n_dirs=60, bvals=(2000.0,))


def pairwise_angles(directions):
    """Angles between every pair of rows, shape (..., F, F)."""
    return axis_angle(directions[..., :, None, :], directions[..., None, :, :])


@pytest.mark.parametrize("n_fibres", [2, 3])
@pytest.mark.parametrize("angle", [30.0, 60.0, 90.0])
def test_fibre_configuration_has_the_crossing_angle(n_fibres, angle):
    dirs = fibre_configuration(n_fibres, angle)
    assert dirs.shape == (n_fibres, 3)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0)
    off_diagonal = pairwise_angles(dirs)[~np.eye(n_fibres, dtype=bool)]
    np.testing.assert_allclose(off_diagonal, angle, atol=1e-9)


def test_fibre_configuration_rejects_bad_input():
    np.testing.assert_array_equal(fibre_configuration(1, 500.0), [[1.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="n_fibres must be 1, 2 or 3"):
        fibre_configuration(4)
    with pytest.raises(ValueError, match=r"crossing_angle must be in \(0, 90\]"):
        fibre_configuration(2, 120.0)
    with pytest.raises(ValueError, match="crossing_angle"):
        fibre_configuration(3, 0.0)


def test_random_rotations_are_proper_and_uniform():
    rotations = random_rotations(4000, rng=0)
    identity = np.einsum("nij,nkj->nik", rotations, rotations)
    np.testing.assert_allclose(identity, np.broadcast_to(np.eye(3), identity.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rotations), 1.0, atol=1e-12)
    # rotated z axes cover the sphere evenly: mean ~0, second moment ~I/3
    z = rotations[:, :, 2]
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=0.05)
    np.testing.assert_allclose(z.T @ z / len(z), np.eye(3) / 3, atol=0.03)


def test_population_ground_truth_and_noise_free_signal(gtab):
    signals, truth = make_voxel_population(
        gtab,
        n_fibres=2,
        crossing_angle=60.0,
        fractions=(0.7, 0.3),
        csf_fraction=0.2,
        snr=None,
        n_voxels=25,
        seed=4,
    )
    assert signals.shape == (25, len(gtab.bvals))
    assert truth.directions.shape == (25, MAX_FIBRES, 3)
    np.testing.assert_array_equal(truth.n_fibres, 2)
    assert np.isnan(truth.directions[:, 2]).all()
    np.testing.assert_allclose(pairwise_angles(truth.directions[:, :2])[:, 0, 1], 60.0)
    np.testing.assert_allclose(truth.fractions, np.tile([0.56, 0.24, 0.0], (25, 1)))
    np.testing.assert_allclose(truth.fractions.sum(axis=1) + truth.f_iso, 1.0)
    # orientations differ from voxel to voxel
    assert np.abs(truth.directions[:, 0] @ truth.directions[0, 0]).min() < 0.9
    expected = multi_tensor_signal(
        gtab,
        truth.directions[:, :2],
        truth.fractions[:, :2],
        iso_fractions=truth.f_iso[:, None],
        iso_diffusivities=[CSF_DIFFUSIVITY],
        S0=100.0,
    )
    np.testing.assert_allclose(signals, expected)
    np.testing.assert_allclose(signals[:, gtab.b0s_mask], 100.0)


def test_population_is_seeded_and_noise_has_the_requested_level(gtab):
    kwargs = dict(n_fibres=1, snr=20.0, n_voxels=400, seed=11)
    a, truth_a = make_voxel_population(gtab, **kwargs)
    b, truth_b = make_voxel_population(gtab, **kwargs)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(truth_a.directions, truth_b.directions)
    c, _ = make_voxel_population(gtab, **{**kwargs, "seed": 12})
    assert not np.allclose(a, c)
    # b0 signal 100 >> sigma 5: Rician noise is nearly Gaussian with sigma = S0 / snr
    b0 = a[:, gtab.b0s_mask]
    assert b0.std() == pytest.approx(5.0, rel=0.1)
    # noncentral chi with 4 coils is biased upwards by the extra channels
    chi, _ = make_voxel_population(gtab, **kwargs, n_coils=4)
    assert chi[:, gtab.b0s_mask].mean() > b0.mean() + 0.5


def test_population_rejects_bad_input(gtab):
    base = dict(n_fibres=2, snr=20.0, n_voxels=3, seed=0)
    with pytest.raises(ValueError, match="fractions must hold 2 positive numbers"):
        make_voxel_population(gtab, **base, fractions=(0.5, 0.3, 0.2))
    with pytest.raises(ValueError, match="csf_fraction"):
        make_voxel_population(gtab, **base, csf_fraction=1.0)
    with pytest.raises(ValueError, match="snr must be positive"):
        make_voxel_population(gtab, **{**base, "snr": 0.0})
    with pytest.raises(ValueError, match="n_voxels"):
        make_voxel_population(gtab, **{**base, "n_voxels": 0})
    with pytest.raises(ValueError, match="n_coils"):
        make_voxel_population(gtab, **base, n_coils=0)


def test_coherent_phantom_geometry(gtab):
    signals, truth = make_coherent_phantom(gtab, shape=(32, 32, 2), snr=None, seed=0)
    assert signals.shape == (32, 32, 2, len(gtab.bvals))
    assert truth.directions.shape == (32, 32, 2, MAX_FIBRES, 3)
    # the slab repeats along z
    np.testing.assert_array_equal(signals[:, :, 0], signals[:, :, 1])
    counts = np.bincount(truth.n_fibres[..., 0].ravel(), minlength=3)
    assert counts[1] > 300 and counts[2] > 60 and counts[0] > 0
    # in-plane unit directions where there are fibres, crossings at 60-90 degrees
    fibres = truth.directions[..., 0, :][truth.n_fibres > 0]
    np.testing.assert_allclose(np.linalg.norm(fibres, axis=-1), 1.0)
    np.testing.assert_allclose(fibres[:, 2], 0.0)
    crossing = truth.directions[truth.n_fibres == 2]
    angles = axis_angle(crossing[:, 0], crossing[:, 1])
    assert angles.min() > 55 and angles.max() <= 90
    # fibres follow arcs about the two lower corners: each direction is tangent to one
    i, j = np.meshgrid(np.arange(32) + 0.5, np.arange(32) + 0.5, indexing="ij")
    radial_a = np.stack([i, j, 0 * i], -1)
    radial_b = np.stack([i - 32, j, 0 * i], -1)
    first = truth.directions[:, :, 0, 0]
    dot_a = np.abs(np.sum(first * radial_a, -1))
    dot_b = np.abs(np.sum(first * radial_b, -1))
    has = truth.n_fibres[:, :, 0] > 0
    assert np.all(np.minimum(dot_a, dot_b)[has] < 1e-9)
    second = truth.directions[:, :, 0, 1]
    cross = truth.n_fibres[:, :, 0] == 2
    assert np.all(dot_a[cross] < 1e-9)
    assert np.all(np.abs(np.sum(second * radial_b, -1))[cross] < 1e-9)
    # fractions and isotropic background
    np.testing.assert_allclose(truth.fractions.sum(-1) + truth.f_iso, 1.0)
    background = truth.n_fibres == 0
    np.testing.assert_allclose(truth.f_iso[background], 1.0)
    expected = 100.0 * np.exp(-gtab.bvals * GM_DIFFUSIVITY)
    np.testing.assert_allclose(
        signals[background], np.broadcast_to(expected, signals[background].shape)
    )


def test_coherent_phantom_signal_matches_its_ground_truth(gtab):
    signals, truth = make_coherent_phantom(
        gtab, shape=(12, 12, 1), snr=None, seed=0, csf_fraction=0.3
    )
    fibres = truth.n_fibres > 0
    dirs = np.nan_to_num(truth.directions[fibres], nan=1.0)
    expected = multi_tensor_signal(
        gtab,
        dirs,
        truth.fractions[fibres],
        iso_fractions=truth.f_iso[fibres][:, None],
        iso_diffusivities=[CSF_DIFFUSIVITY],
        S0=100.0,
    )
    np.testing.assert_allclose(signals[fibres], expected)
    np.testing.assert_allclose(truth.f_iso[fibres], 0.3)


def test_coherent_phantom_noise_and_errors(gtab):
    a, _ = make_coherent_phantom(gtab, shape=(8, 8, 1), snr=10.0, seed=5)
    b, _ = make_coherent_phantom(gtab, shape=(8, 8, 1), snr=10.0, seed=5)
    clean, _ = make_coherent_phantom(gtab, shape=(8, 8, 1), snr=None, seed=5)
    np.testing.assert_array_equal(a, b)
    assert (a - clean)[..., gtab.b0s_mask].std() == pytest.approx(10.0, rel=0.15)
    with pytest.raises(ValueError, match=r"shape must be \(X, Y, Z\)"):
        make_coherent_phantom(gtab, shape=(8, 8), snr=10.0, seed=0)
    with pytest.raises(ValueError, match="csf_fraction"):
        make_coherent_phantom(gtab, shape=(8, 8, 1), snr=10.0, seed=0, csf_fraction=-0.1)
    with pytest.raises(ValueError, match="radius and width"):
        make_coherent_phantom(gtab, shape=(8, 8, 1), snr=10.0, seed=0, width=0.0)


@pytest.mark.parametrize("bval", [1000.0, 3000.0])
def test_tensor_response_zonal_reproduces_the_tensor_signal(bval):
    coefs = tensor_response_zonal(bval, S0=2.0, sh_order=20)
    cosines = np.linspace(-1, 1, 41)
    expected = 2.0 * np.exp(-bval * (0.2e-3 + 1.5e-3 * cosines**2))
    response = AxisymmetricResponse(coefs, 2.0)
    np.testing.assert_allclose(response.on_cosines(cosines), expected, atol=1e-6)


def test_tensor_response_zonal_agrees_with_a_fit_on_a_shell():
    gtab = make_acquisition(n_b0=2, n_dirs=300, bvals=(1000.0,))
    exact = tensor_response_zonal(1000.0, S0=1.0, sh_order=8)
    fitted = zonal_from_tensor(gtab, (1.7e-3, 0.2e-3, 0.2e-3), S0=1.0, sh_order=8)
    np.testing.assert_allclose(fitted, exact, atol=2e-4)
    with pytest.raises(ValueError, match="even"):
        tensor_response_zonal(1000.0, sh_order=7)
