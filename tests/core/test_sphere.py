import numpy as np
import pytest

from rumba_bids.core import Sphere, as_sphere, get_sphere
from rumba_bids.core.sphere import NAMED_SPHERES, repulsion_sphere


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
