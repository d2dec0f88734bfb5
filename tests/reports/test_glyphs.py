"""The fODF glyph renderer: mesh, culling, shading, depth order, and what a crossing looks like."""

from __future__ import annotations

import numpy as np
import pytest

from rumba_bids.core import RumbaSDModel, get_sphere
from rumba_bids.core.phantoms import (
    add_rician_noise,
    crossing_directions,
    make_acquisition,
    multi_tensor_signal,
)
from rumba_bids.reports.canvas import new_figure
from rumba_bids.reports.glyphs import (
    direction_colours,
    draw_glyphs,
    glyph_points,
    glyph_radii,
    oblique_camera,
    shade_glyphs,
    slice_camera,
    sphere_mesh,
)

SPHERE = get_sphere("repulsion724")


def _fit_odf(directions, fractions, *, seed=0):
    """combined_odf_iso of a RUMBA-SD fit of one noisy voxel (SNR 50)."""
    gtab = make_acquisition(n_b0=6, n_dirs=64, bvals=(2000.0,))
    signal = multi_tensor_signal(
        gtab, directions, fractions, iso_fractions=[0.1], iso_diffusivities=[3e-3], S0=100.0
    )
    noisy = add_rician_noise(np.tile(signal, (4, 1)), snr=50, rng=seed, S0=100.0)
    fit = RumbaSDModel(gtab, n_iter=300, sphere=SPHERE, gm_response=None).fit(noisy)
    return fit.combined_odf_iso[0]


@pytest.fixture(scope="module")
def crossing_odf():
    return _fit_odf(crossing_directions(90.0), [0.45, 0.45])


@pytest.fixture(scope="module")
def single_odf():
    return _fit_odf(np.array([[1.0, 0.0, 0.0]]), [0.9])


def _render(odf, *, pixels=240):
    """RGB image (pixels x pixels) of one glyph seen along z, centred."""
    figure = new_figure(pixels / 100, pixels / 100, facecolor="black")
    ax = figure.add_axes((0, 0, 1, 1))
    ax.set_facecolor("black")
    ax.set_axis_off()
    draw_glyphs(ax, odf[None], np.zeros((1, 3)), SPHERE, camera=slice_camera(2), scale=1.0)
    ax.set_xlim(-1.05, 1.05)
    ax.set_ylim(-1.05, 1.05)
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[..., :3].astype(float)


def _silhouette_radius(image, angles_deg):
    """Extent of the foreground from the centre along rays (pixels), y up."""
    foreground = image.max(axis=-1) > 25
    size = image.shape[0]
    centre = (size - 1) / 2
    radii = []
    for angle in np.radians(angles_deg):
        steps = np.arange(0, size // 2)
        cols = np.round(centre + steps * np.cos(angle)).astype(int)
        rows = np.round(centre - steps * np.sin(angle)).astype(int)
        hit = np.flatnonzero(foreground[rows, cols])
        radii.append(hit.max() if hit.size else 0)
    return np.array(radii, dtype=float)


def _pixel_on_ray(image, angle_deg, distance):
    centre = (image.shape[0] - 1) / 2
    angle = np.radians(angle_deg)
    col = int(round(centre + distance * np.cos(angle)))
    row = int(round(centre - distance * np.sin(angle)))
    return image[row, col]


def test_crossing_glyph_shows_two_lobes_coloured_by_direction(crossing_odf):
    image = _render(crossing_odf)
    axes = _silhouette_radius(image, [0, 90, 180, 270])
    diagonals = _silhouette_radius(image, [45, 135, 225, 315])
    # four arms (two lobes through the centre) along x and y, nothing between them
    assert axes.min() > 0.8 * axes.max()
    assert diagonals.max() < 0.5 * axes.min()
    # red (x) along the horizontal lobe, green (y) along the vertical one
    red = _pixel_on_ray(image, 0, 0.7 * axes[0])
    green = _pixel_on_ray(image, 90, 0.7 * axes[1])
    assert red[0] > 2 * max(red[1], red[2])
    assert green[1] > 2 * max(green[0], green[2])


def test_single_fibre_glyph_has_one_lobe(single_odf):
    image = _render(single_odf)
    along, across = _silhouette_radius(image, [0, 180]), _silhouette_radius(image, [90, 270])
    assert along.min() > 2.5 * across.max()


def test_crossing_glyph_geometry_has_lobes_along_the_fibres(crossing_odf):
    points = glyph_points(crossing_odf[None], np.zeros((1, 3)), SPHERE, scale=1.0)[0]
    radius = np.linalg.norm(points, axis=-1)
    cos_x, cos_y = np.abs(SPHERE.vertices[:, 0]), np.abs(SPHERE.vertices[:, 1])
    in_plane = np.abs(SPHERE.vertices[:, 2]) < 0.2
    near_x = radius[in_plane & (cos_x > 0.97)].max()
    near_y = radius[in_plane & (cos_y > 0.97)].max()
    diagonal = radius[in_plane & (np.abs(cos_x - cos_y) < 0.1)].max()
    assert min(near_x, near_y) > 0.85 and diagonal < 0.5 * min(near_x, near_y)


def test_direction_colours_are_absolute_unit_components():
    colours = direction_colours([[0.0, -3.0, 4.0], [0.0, 0.0, 0.0], [np.nan, 1.0, 0.0]])
    np.testing.assert_allclose(colours, [[0.0, 0.6, 0.8], [0, 0, 0], [0, 0, 0]])


def test_sphere_mesh_faces_point_outwards_and_cover_every_vertex():
    faces, colours, incidence = sphere_mesh(SPHERE)
    corners = SPHERE.vertices[faces]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    assert np.all(np.einsum("fi,fi->f", normals, corners.sum(axis=1)) > 0)
    assert incidence.shape == (len(SPHERE), len(faces))
    assert np.all(np.asarray(incidence.sum(axis=1)).ravel() >= 3)
    np.testing.assert_allclose(colours, np.abs(SPHERE.vertices), atol=1e-6)


def test_glyph_radii_normalise_and_clip():
    odfs = np.array([[2.0, -1.0, 1.0, np.nan], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_allclose(glyph_radii(odfs), [[1.0, 0.0, 0.5, 0.0], [0, 0, 0, 0]])
    np.testing.assert_allclose(glyph_radii(odfs, normalise=False)[0], [2.0, 0.0, 1.0, 0.0])


def test_glyph_points_check_shapes():
    with pytest.raises(ValueError, match=r"odfs must be \(V, 724\)"):
        glyph_points(np.ones((2, 10)), np.zeros((2, 3)), SPHERE)
    with pytest.raises(ValueError, match=r"centres must be \(2, 3\)"):
        glyph_points(np.ones((2, 724)), np.zeros((3, 3)), SPHERE)


def test_shading_culls_back_faces_and_sorts_far_to_near():
    odfs = np.ones((3, len(SPHERE)))
    centres = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 5.0], [3.0, 0.0, -2.0]])
    points = glyph_points(odfs, centres, SPHERE, scale=1.0)
    shaded = shade_glyphs(points, SPHERE, camera=oblique_camera(azimuth=20, elevation=30))
    n_faces = len(sphere_mesh(SPHERE)[0])
    # a sphere shows half of its triangles
    assert abs(len(shaded.polygons) / (3 * n_faces) - 0.5) < 0.03
    assert np.all(np.diff(shaded.depth) >= 0)
    assert shaded.colours.min() >= 0 and shaded.colours.max() <= 1
    # the lit side (towards the light, upper left) is brighter than the far side
    brightness = shaded.colours.max(axis=-1).mean(axis=-1)
    centre_x = shaded.polygons[..., 0].mean(axis=-1)
    first = shaded.voxel == 0
    left = first & (centre_x < -0.3)
    right = first & (centre_x > 0.3)
    assert brightness[left].mean() > brightness[right].mean()


def test_empty_glyphs_draw_nothing():
    shaded = shade_glyphs(np.zeros((0, len(SPHERE), 3)), SPHERE)
    assert shaded.polygons.shape == (0, 3, 2)
    zero = glyph_points(np.zeros((2, len(SPHERE))), np.zeros((2, 3)), SPHERE)
    assert len(shade_glyphs(zero, SPHERE).polygons) == 0


def test_camera_is_validated():
    points = np.zeros((1, len(SPHERE), 3))
    with pytest.raises(ValueError, match="3 x 3 rotation"):
        shade_glyphs(points, SPHERE, camera=np.eye(3) * 2)
    with pytest.raises(ValueError, match="right-handed"):
        shade_glyphs(points, SPHERE, camera=np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(ValueError, match="slice axis must be 0, 1 or 2"):
        slice_camera(3)
    for axis in range(3):
        camera = slice_camera(axis)
        assert np.isclose(np.linalg.det(camera), 1.0)
        assert camera[2, axis] != 0  # looks along the slice axis
