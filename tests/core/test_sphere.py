import numpy as np
import pytest

from rumba_bids.core import Sphere, as_sphere, get_sphere
from rumba_bids.core.sphere import NAMED_SPHERES, fod_scale_factor, repulsion_sphere


@pytest.mark.parametrize("name", sorted(NAMED_SPHERES))
def test_named_spheres_are_even_and_symmetric(name):
    sphere = get_sphere(name)
    v = sphere.vertices
    assert v.shape == (2 * NAMED_SPHERES[name], 3)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, atol=1e-12)
    assert sphere.is_antipodally_symmetric
    partner = sphere.antipodal_partner
    np.testing.assert_allclose(v[partner], -v, atol=1e-12)
    # evenness: nearest-neighbour axis angles vary little around their mean
    cos = np.abs(v @ v.T)
    cos[cos > 1 - 1e-9] = 0
    nearest = np.degrees(np.arccos(cos.max(axis=1)))
    assert nearest.min() > 0.85 * nearest.mean()
    assert nearest.max() < 1.15 * nearest.mean()


def test_repulsion724_matches_dipy_spacing():
    dipy_data = pytest.importorskip("dipy.data")
    ours = get_sphere("repulsion724").vertices
    theirs = dipy_data.get_sphere(name="repulsion724").vertices
    spacing = [
        np.degrees(np.arccos(np.sort(np.abs(v @ v.T), axis=1)[:, -3])).mean()
        for v in (ours, theirs)
    ]
    assert abs(spacing[0] - spacing[1]) < 0.2


def test_neighbours_table():
    sphere = get_sphere("symmetric362")
    table = sphere.neighbours
    assert table.shape[0] == 362
    # every neighbour is close, and every vertex has at least 5 real neighbours
    angles = np.degrees(
        np.arccos(np.clip(np.einsum("ij,ikj->ik", sphere.vertices, sphere.vertices[table]), -1, 1))
    )
    assert angles.max() < 25
    real = table != np.arange(362)[:, None]
    assert real.sum(axis=1).min() >= 5
    assert len(sphere.faces) == 2 * 362 - 4  # Euler: triangulated sphere


def test_as_sphere_variants():
    named = as_sphere("symmetric362")
    assert as_sphere(named) is named
    assert as_sphere(None).name == "repulsion724"
    arr = as_sphere(named.vertices)
    assert arr == named and arr.name == "custom362"

    class Duck:
        vertices = named.vertices

    assert as_sphere(Duck()) == named


def test_custom_non_symmetric_sphere():
    v = repulsion_sphere(20, seed=1, n_steps=200)[:20]
    sphere = Sphere(v)
    assert not sphere.is_antipodally_symmetric
    assert (sphere.antipodal_partner == -1).all()


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("nosuch", "unknown sphere 'nosuch'"),
        (np.ones((5, 2)), r"\(N, 3\)"),
        (np.ones((5, 3)), "unit vectors"),
        (np.array([[1, 0, 0], [0, 1, 0], [0, 0, np.nan], [0, 0, 1]]), "NaN"),
    ],
)
def test_bad_spheres(value, match):
    with pytest.raises(ValueError, match=match):
        as_sphere(value)


def test_vertices_read_only():
    sphere = get_sphere("repulsion100")
    with pytest.raises(ValueError):
        sphere.vertices[0, 0] = 2.0


@pytest.fixture(scope="module")
def single_fibre_voxels():
    """40 noisy single-fibre voxels (f_wm 0.8, 20 % CSF), random directions, b=2000."""
    from rumba_bids.core.phantoms import (
        add_rician_noise,
        make_acquisition,
        multi_tensor_signal,
        random_directions,
    )

    gtab = make_acquisition(n_b0=10, n_dirs=64, bvals=(2000.0,))
    rng = np.random.default_rng(3)
    directions = random_directions(40, rng=rng)
    signal = multi_tensor_signal(
        gtab,
        directions[:, None, :],
        np.full((40, 1), 0.8),
        iso_fractions=np.full((40, 1), 0.2),
        iso_diffusivities=[3e-3],
    )
    return gtab, add_rician_noise(signal, snr=30, rng=rng), directions


def _fit_density(gtab, signal, sphere):
    from rumba_bids.core import RumbaSDModel

    fit = RumbaSDModel(gtab, sphere=sphere, n_iter=300).fit(signal)
    return fit, fit.odf() * fod_scale_factor(len(sphere))


def test_fod_scale_factor_values_and_errors():
    assert fod_scale_factor(200) == pytest.approx(200 / (4 * np.pi))
    assert fod_scale_factor(200, "weights") == 1.0
    with pytest.raises(ValueError, match="fod scale must be one of"):
        fod_scale_factor(200, "sum")
    with pytest.raises(ValueError, match="n_vertices must be positive"):
        fod_scale_factor(0)


@pytest.mark.parametrize(
    "vertices",
    ["repulsion200", "repulsion724", "hemisphere362"],
)
def test_density_integrates_to_the_white_matter_fraction(single_fibre_voxels, vertices):
    """Integral of the SH fit of the density (c00 sqrt(4 pi), orthonormal basis) = f_wm,
    also on a hemisphere (DIPY-style) vertex set, where each vertex stands for an antipodal
    pair of patches."""
    from rumba_bids.core import sf_to_sh

    gtab, signal, _ = single_fibre_voxels
    if vertices == "hemisphere362":
        full = get_sphere("repulsion724")
        sphere = Sphere(full.vertices[full.vertices[:, 2] > 0], name="hemisphere")
        assert len(sphere) == 362 and not sphere.is_antipodally_symmetric
    else:
        sphere = get_sphere(vertices)
    fit, density = _fit_density(gtab, signal, sphere)
    integral = sf_to_sh(density, sphere)[:, 0] * np.sqrt(4 * np.pi)
    np.testing.assert_allclose(integral, fit.f_wm, rtol=0.02)
    assert 0.75 < fit.f_wm.mean() < 0.85


def test_density_does_not_depend_on_the_sphere(single_fibre_voxels):
    """Same voxels on 200 and 724 directions: SH amplitudes agree (the weights do not)."""
    from rumba_bids.core import extract_peaks, real_sh_basis, sf_to_sh

    gtab, signal, truth = single_fibre_voxels
    results = {}
    for name in ("repulsion200", "repulsion724"):
        sphere = get_sphere(name)
        fit, density = _fit_density(gtab, signal, sphere)
        sh = sf_to_sh(density, sphere)
        results[name] = {
            "sh_peak": np.einsum("vc,vc->v", sh, real_sh_basis(truth)),
            "vertex_peak": extract_peaks(density, sphere, npeaks=1).values[:, 0],
            "weight_peak": fit.odf().max(axis=-1),
        }
    coarse, fine = results["repulsion200"], results["repulsion724"]
    ratio = np.median(fine["sh_peak"] / coarse["sh_peak"])
    assert abs(ratio - 1) < 0.03, ratio
    np.testing.assert_allclose(fine["sh_peak"], coarse["sh_peak"], rtol=0.1)
    # peak values are the density at a vertex: the raw fODF is sharper than degree-8 SH,
    # so the finer sphere samples it a little higher; the weights differ ~3x (negative control)
    vertex_ratio = np.median(fine["vertex_peak"] / coarse["vertex_peak"])
    assert 1 <= vertex_ratio < 1.3, vertex_ratio
    assert np.median(coarse["weight_peak"] / fine["weight_peak"]) > 2.5
    assert np.median(fine["sh_peak"]) > 1.5  # far above MRtrix3's 0.1 cut-offs
