import numpy as np
import pytest
from dipy_lazy import LazyModule

from rumba_bids.core.gradients import voxel_to_world
from rumba_bids.core.shm import (
    SH_BASES,
    laplace_beltrami_eigenvalues,
    legendre_at_zero,
    n_sh_coefficients,
    real_sh_basis,
    sf_to_sh,
    sh_degree_order,
    sh_fit_matrix,
    sh_order_from_n_coefficients,
    sh_to_sf,
    sh_zonal_indices,
    zonal_to_rotational,
    zonal_to_sh,
)
from rumba_bids.core.sphere import get_sphere

dipy_shm = LazyModule("dipy.reconst.shm")
dipy_sphere_module = LazyModule("dipy.core.sphere")

#: Our basis names and their DIPY (legacy=False) equivalents.
DIPY_BASIS = {"mrtrix3": "tournier07", "descoteaux": "descoteaux07"}


def random_directions(n, seed):
    vectors = np.random.default_rng(seed).normal(size=(n, 3))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def sphere():
    return get_sphere("repulsion724")


@pytest.fixture(scope="module")
def dipy_sphere(sphere):
    return dipy_sphere_module.Sphere(xyz=sphere.vertices)


def test_coefficient_counts_round_trip():
    for order in range(0, 21, 2):
        n = n_sh_coefficients(order)
        assert n == (order + 1) * (order + 2) // 2
        assert sh_order_from_n_coefficients(n) == order
    with pytest.raises(ValueError, match="even"):
        n_sh_coefficients(3)
    with pytest.raises(ValueError, match="non-negative even integer"):
        n_sh_coefficients(-2)
    with pytest.raises(ValueError, match="not the number of coefficients"):
        sh_order_from_n_coefficients(10)
    with pytest.raises(ValueError, match="not the number of coefficients"):
        sh_order_from_n_coefficients(0)


def test_degree_order_matches_dipy_and_mrtrix_ordering():
    degrees, orders = sh_degree_order(8)
    dipy_m, dipy_l = dipy_shm.sph_harm_ind_list(8)
    np.testing.assert_array_equal(degrees, dipy_l)
    np.testing.assert_array_equal(orders, dipy_m)
    # MRtrix3 index of (l, m) is l (l + 1) / 2 + m
    np.testing.assert_array_equal(np.arange(45), degrees * (degrees + 1) // 2 + orders)
    np.testing.assert_array_equal(sh_zonal_indices(8), [0, 3, 10, 21, 36])
    np.testing.assert_array_equal(orders[sh_zonal_indices(8)], 0)


@pytest.mark.parametrize("basis", SH_BASES)
@pytest.mark.parametrize("sh_order", [0, 2, 4, 8, 12])
def test_basis_matches_dipy_non_legacy(basis, sh_order):
    directions = random_directions(200, seed=sh_order)
    ours = real_sh_basis(directions, sh_order=sh_order, basis=basis)
    r, polar, azimuth = dipy_sphere_module.cart2sphere(*directions.T)
    dipy_function = {
        "mrtrix3": dipy_shm.real_sh_tournier,
        "descoteaux": dipy_shm.real_sh_descoteaux,
    }[basis]
    theirs, _, _ = dipy_function(sh_order, polar, azimuth, legacy=False)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_basis_closed_forms_and_orthonormality(sphere):
    z = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    basis = real_sh_basis(z, sh_order=2)
    np.testing.assert_allclose(basis[:, 0], 0.5 / np.sqrt(np.pi))
    # Y_2^0 = sqrt(5 / 16 pi) (3 cos^2 - 1)
    np.testing.assert_allclose(basis[:, 3], np.sqrt(5 / (16 * np.pi)) * np.array([2.0, -1.0]))
    # mrtrix3: m = 2 term is sqrt(2) Re(Y_2^2) = sqrt(15 / 16 pi) (x^2 - y^2) at the equator
    np.testing.assert_allclose(basis[1, 5], np.sqrt(15 / (16 * np.pi)))
    # orthonormal: a quadrature on 724 even points integrates products to ~identity
    design = real_sh_basis(sphere.vertices, sh_order=6)
    gram = design.T @ design * (4 * np.pi / len(sphere))
    np.testing.assert_allclose(gram, np.eye(28), atol=0.02)


@pytest.mark.parametrize("basis", SH_BASES)
@pytest.mark.parametrize("sh_order", [2, 4, 6, 8, 10, 12])
@pytest.mark.parametrize("smooth", [0.0, 0.006, 1.0])
def test_sf_to_sh_matches_dipy(sphere, dipy_sphere, basis, sh_order, smooth):
    rng = np.random.default_rng(sh_order)
    sf = rng.random((3, 4, len(sphere)))
    ours = sf_to_sh(sf, sphere, sh_order=sh_order, basis=basis, smooth=smooth)
    theirs = dipy_shm.sf_to_sh(
        sf,
        dipy_sphere,
        sh_order_max=sh_order,
        basis_type=DIPY_BASIS[basis],
        legacy=False,
        smooth=smooth,
    )
    assert ours.shape == (3, 4, n_sh_coefficients(sh_order))
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6 * np.abs(theirs).max())


@pytest.mark.parametrize("basis", SH_BASES)
def test_sh_to_sf_matches_dipy_and_round_trips(sphere, dipy_sphere, basis):
    rng = np.random.default_rng(1)
    sh = rng.normal(size=(5, 45))
    ours = sh_to_sf(sh, sphere, basis=basis)
    theirs = dipy_shm.sh_to_sf(
        sh, dipy_sphere, sh_order_max=8, basis_type=DIPY_BASIS[basis], legacy=False
    )
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sf_to_sh(ours, sphere, basis=basis), sh, atol=1e-10)


def test_bases_describe_the_same_functions(sphere):
    """The two bases hold the same functions with m and -m swapped: descoteaux
    (l, -k) = (-1)^k mrtrix3 (l, k) and descoteaux (l, k) = mrtrix3 (l, -k)."""
    rng = np.random.default_rng(2)
    sf = sh_to_sf(rng.normal(size=(4, 28)), sphere, basis="descoteaux")
    mrtrix = sf_to_sh(sf, sphere, sh_order=6, basis="mrtrix3")
    np.testing.assert_allclose(sh_to_sf(mrtrix, sphere, basis="mrtrix3"), sf, atol=1e-10)
    descoteaux = sf_to_sh(sf, sphere, sh_order=6, basis="descoteaux")
    degrees, orders = sh_degree_order(6)
    swapped = degrees * (degrees + 1) // 2 - orders
    sign = np.where(orders < 0, (-1.0) ** np.abs(orders), 1.0)
    np.testing.assert_allclose(descoteaux, sign * mrtrix[:, swapped], atol=1e-10)


def test_dtype_and_shape_handling(sphere):
    sf = np.random.default_rng(3).random((2, 3, len(sphere))).astype(np.float32)
    sh = sf_to_sh(sf, sphere, sh_order=4)
    assert sh.dtype == np.float32 and sh.shape == (2, 3, 15)
    back = sh_to_sf(sh, sphere)
    assert back.dtype == np.float32 and back.shape == sf.shape
    # the sphere can be a name or an array of vertices
    np.testing.assert_allclose(sf_to_sh(sf, "repulsion724", sh_order=4), sh, rtol=1e-6)
    np.testing.assert_allclose(sf_to_sh(sf, sphere.vertices, sh_order=4), sh, rtol=1e-6)


def test_bad_input_is_rejected(sphere):
    with pytest.raises(ValueError, match="unknown SH basis"):
        real_sh_basis(sphere.vertices, basis="tournier07")
    with pytest.raises(ValueError, match="must match"):
        sf_to_sh(np.zeros((2, 100)), sphere)
    with pytest.raises(ValueError, match="omit sh_order"):
        sh_to_sf(np.zeros(45), sphere, sh_order=6)
    with pytest.raises(ValueError, match="not the number of coefficients"):
        sh_to_sf(np.zeros(44), sphere)
    with pytest.raises(ValueError, match="smooth must be"):
        sf_to_sh(np.zeros(len(sphere)), sphere, smooth=-1)
    with pytest.raises(ValueError, match="cannot determine"):
        sh_fit_matrix(get_sphere("repulsion100").vertices[:40], sh_order=8)
    # 100 vertices in antipodal pairs hold 50 independent values: too few for order 12
    with pytest.raises(ValueError, match="ill-conditioned"):
        sh_fit_matrix("repulsion100", sh_order=12)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 3\)"):
        real_sh_basis(np.zeros((4, 2)))


def test_laplace_beltrami_and_smoothing(sphere):
    np.testing.assert_array_equal(laplace_beltrami_eigenvalues(2), [0, -6, -6, -6, -6, -6])
    noisy = np.random.default_rng(4).random(len(sphere))
    plain = sf_to_sh(noisy, sphere)
    smoothed = sf_to_sh(noisy, sphere, smooth=0.1)
    degrees, _ = sh_degree_order(8)
    high = degrees >= 6
    assert np.linalg.norm(smoothed[high]) < 0.5 * np.linalg.norm(plain[high])
    # the mean (l = 0) is not penalised
    assert smoothed[0] == pytest.approx(plain[0], rel=1e-3)


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_legendre_and_rotational_harmonics_match_dipy():
    np.testing.assert_allclose(legendre_at_zero([0, 2, 4, 6, 3]), [1, -0.5, 0.375, -0.3125, 0])
    zonal = np.array([2.0, -0.7, 0.3, -0.1, 0.05])
    degrees, orders = sh_degree_order(8)
    full = np.zeros(45)
    full[orders == 0] = zonal
    theirs = dipy_shm.sh_to_rh(full, orders, degrees)
    np.testing.assert_allclose(zonal_to_rotational(zonal), theirs, rtol=1e-12)


@pytest.mark.parametrize("basis", SH_BASES)
def test_zonal_to_sh_rotates_the_function(sphere, basis):
    """f(v) = sum_l z_l sqrt((2l + 1) / 4 pi) P_l(u . v) for the copy rotated onto u."""
    from scipy.special import eval_legendre

    zonal = np.array([0.28, 0.5, 0.4, 0.25, 0.1])
    axes = random_directions(3, seed=5)
    sh = zonal_to_sh(zonal, axes, basis=basis)
    values = sh_to_sf(sh, sphere, basis=basis)
    cosines = axes @ sphere.vertices.T
    expected = sum(
        z * np.sqrt((2 * l_value + 1) / (4 * np.pi)) * eval_legendre(l_value, cosines)
        for l_value, z in zip(range(0, 9, 2), zonal)
    )
    np.testing.assert_allclose(values, expected, atol=1e-12)
    # the maximum sits on the axis (within the sphere's resolution)
    top = sphere.vertices[np.argmax(values, axis=1)]
    assert np.all(np.abs(np.sum(top * axes, axis=1)) > np.cos(np.radians(6)))
    # higher output order pads zeros, lower truncates
    np.testing.assert_array_equal(zonal_to_sh(zonal, axes, sh_order=12, basis=basis)[:, :45], sh)
    np.testing.assert_array_equal(zonal_to_sh(zonal, axes, sh_order=4, basis=basis), sh[:, :15])


def test_fitting_on_world_vertices_gives_world_frame_coefficients(sphere):
    """SH fitted on world-frame vertices put a voxel-frame lobe at its world direction."""
    affine = np.array(
        [[0.0, -2.0, 0.0, 10.0], [1.8, 0.0, 0.6, -5.0], [-0.6, 0.0, 1.8, 3.0], [0, 0, 0, 1]]
    )
    axis_voxel = np.array([0.6, 0.0, 0.8])
    odf = sh_to_sf(zonal_to_sh([0.28, 0.5, 0.4, 0.25, 0.1], axis_voxel), sphere)
    sh_world = sf_to_sh(odf, voxel_to_world(sphere.vertices, affine))
    world_values = sh_to_sf(sh_world, sphere)
    top = sphere.vertices[np.argmax(world_values)]
    expected = voxel_to_world(axis_voxel, affine)
    assert abs(top @ expected) > np.cos(np.radians(6))
