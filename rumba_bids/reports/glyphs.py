"""fODF glyphs drawn headless with matplotlib: shaded 3D surfaces, painter's algorithm.

Every voxel's ODF becomes a closed surface: the vertices of the sphere it is
sampled on, pushed out from the voxel centre by the ODF amplitude, joined by
the sphere's triangles.  All voxels' triangles are projected together
(orthographic camera), back faces are dropped, the rest are Lambert-shaded,
coloured by direction (``|x|, |y|, |z|`` -> red, green, blue) and drawn far to
near by one matplotlib artist (Gouraud-shaded triangles, Agg renderer).  No VTK
and no display are involved, so it works in containers.

Frames: ODF directions and voxel centres are in the same frame (the arrays'
axes, e.g. the voxel frame of a RAS-reoriented image).  A camera is a 3 x 3
rotation whose rows are the screen's x axis, its y axis and the direction
towards the viewer.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

from ..core.sphere import Sphere, as_sphere
from .canvas import ensure_config_dir

#: Glyph radius (in voxels) of the largest ODF value: neighbours do not touch.
DEFAULT_SCALE = 0.47
#: Light direction in the camera frame (from the upper left, towards the scene).
DEFAULT_LIGHT = (-0.35, 0.45, 1.0)
AMBIENT = 0.35

#: Cameras looking at a slice of axis 0 (sagittal), 1 (coronal) or 2 (axial):
#: screen x, screen y, towards the viewer (a right-handed frame).
SLICE_CAMERAS = {
    0: np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]),
    1: np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),
    2: np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]),
}


def slice_camera(axis: int) -> np.ndarray:
    """Camera (3, 3) looking along array axis ``axis`` at a slice.

    The in-plane axes keep their order (axis 0 before 1 before 2) and map to
    screen x and y, as in ``imshow(slice.T, origin='lower')``.

    Examples
    --------
    >>> slice_camera(2).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    """
    if axis not in SLICE_CAMERAS:
        raise ValueError(f"slice axis must be 0, 1 or 2, got {axis!r}")
    return SLICE_CAMERAS[axis].copy()


def oblique_camera(*, azimuth: float = 35.0, elevation: float = 25.0) -> np.ndarray:
    """Camera (3, 3) looking at the origin from azimuth/elevation (degrees).

    ``azimuth=0, elevation=0`` looks along -y with z up (x to the right).
    """
    az, el = np.radians(azimuth), np.radians(elevation)
    towards_viewer = np.array([np.sin(az) * np.cos(el), -np.cos(az) * np.cos(el), np.sin(el)])
    screen_x = np.array([np.cos(az), np.sin(az), 0.0])
    screen_y = np.cross(towards_viewer, screen_x)
    return np.stack([screen_x, screen_y, towards_viewer])


def direction_colours(directions) -> np.ndarray:
    """RGB colours of directions: ``|x|, |y|, |z|`` of the unit vector.

    Parameters
    ----------
    directions : array_like, shape (..., 3)
        Any non-zero vectors (NaN or zero vectors give black).

    Returns
    -------
    ndarray, shape (..., 3), values in [0, 1]

    Examples
    --------
    >>> direction_colours([[2.0, 0.0, 0.0], [0.0, -1.0, 0.0]]).tolist()
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """
    directions = np.asarray(directions, dtype=np.float64)
    norms = np.linalg.norm(directions, axis=-1, keepdims=True)
    valid = np.isfinite(norms) & (norms > 0)
    unit = np.abs(np.divide(directions, norms, out=np.zeros_like(directions), where=valid))
    return np.where(valid, unit, 0.0)


@lru_cache(maxsize=8)
def _sphere_mesh(vertices_bytes: bytes, n_vertices: int):
    """Outward-oriented faces (F, 3), vertex colours (M, 3) and the sparse
    vertex-face incidence (M, F) of a sphere."""
    from scipy.sparse import csr_matrix

    vertices = np.frombuffer(vertices_bytes, dtype=np.float64).reshape(n_vertices, 3)
    faces = Sphere(vertices).faces.copy()
    corners = vertices[faces]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    inward = np.einsum("fi,fi->f", normals, corners.sum(axis=1)) < 0
    faces[inward] = faces[inward][:, ::-1]
    n_faces = len(faces)
    face_of_corner = np.repeat(np.arange(n_faces), 3)
    incidence = csr_matrix(
        (np.ones(3 * n_faces, dtype=np.float32), (faces.ravel(), face_of_corner)),
        shape=(n_vertices, n_faces),
    )
    colours = direction_colours(vertices).astype(np.float32)
    faces.setflags(write=False)
    colours.setflags(write=False)
    return faces, colours, incidence


def sphere_mesh(sphere):
    """Triangles (F, 3) of ``sphere`` oriented outwards (counter-clockwise seen
    from outside), direction colours of its vertices (M, 3), and the sparse
    (M, F) matrix summing face quantities onto their vertices."""
    sphere = as_sphere(sphere)
    vertices = np.ascontiguousarray(sphere.vertices, dtype=np.float64)
    return _sphere_mesh(vertices.tobytes(), len(vertices))


def glyph_radii(odfs, *, normalise: bool = True) -> np.ndarray:
    """Glyph radii from ODF amplitudes: negative and non-finite values become 0,
    and with ``normalise`` each ODF is divided by its maximum.

    Parameters
    ----------
    odfs : array_like, shape (V, M)

    Returns
    -------
    ndarray, shape (V, M), float64; an all-zero ODF stays zero.
    """
    odfs = np.asarray(odfs, dtype=np.float64)
    radii = np.where(np.isfinite(odfs), np.maximum(odfs, 0.0), 0.0)
    if normalise:
        peak = radii.max(axis=-1, keepdims=True)
        radii = np.divide(radii, peak, out=np.zeros_like(radii), where=peak > 0)
    return radii


def glyph_points(odfs, centres, sphere, *, scale: float = DEFAULT_SCALE, normalise=True):
    """Surface points of the glyphs: ``centre + scale * radius * direction``.

    Parameters
    ----------
    odfs : array_like, shape (V, M)
        ODF amplitudes on the M vertices of ``sphere``.
    centres : array_like, shape (V, 3)
        Glyph centres (voxel units).
    sphere : Sphere or name
    scale : float
        Glyph radius (in the unit of ``centres``) of amplitude 1.
    normalise : bool
        Divide each ODF by its own maximum first (every glyph then has
        radius ``scale`` along its largest lobe); otherwise amplitudes are
        used as they are.

    Returns
    -------
    ndarray, shape (V, M, 3)
    """
    sphere = as_sphere(sphere)
    odfs = np.asarray(odfs)
    centres = np.asarray(centres, dtype=np.float64)
    if odfs.ndim != 2 or odfs.shape[1] != len(sphere):
        raise ValueError(
            f"odfs must be (V, {len(sphere)}) amplitudes on the sphere's vertices, "
            f"got shape {odfs.shape}"
        )
    if centres.shape != (len(odfs), 3):
        raise ValueError(f"centres must be ({len(odfs)}, 3), got shape {centres.shape}")
    radii = glyph_radii(odfs, normalise=normalise)
    return centres[:, None, :] + scale * radii[..., None] * sphere.vertices[None]


class ShadedTriangles(NamedTuple):
    """Front-facing triangles projected on the screen, sorted far to near.

    Attributes
    ----------
    polygons : ndarray, shape (K, 3, 2)
        Screen coordinates of the corners.
    colours : ndarray, shape (K, 3, 3)
        Shaded RGB colour of each corner, in [0, 1].
    depth : ndarray, shape (K,)
        Mean depth (towards the viewer) of each triangle, ascending.
    voxel : ndarray of int, shape (K,)
        Glyph each triangle belongs to.
    """

    polygons: np.ndarray
    colours: np.ndarray
    depth: np.ndarray
    voxel: np.ndarray


def shade_glyphs(
    points,
    sphere,
    *,
    camera=None,
    light=DEFAULT_LIGHT,
    ambient: float = AMBIENT,
) -> ShadedTriangles:
    """Project, cull, shade and depth-sort the triangles of all glyphs.

    Each glyph vertex gets a Lambert brightness from its normal (the sum of
    its faces' area-weighted normals) and the direction colour of its sphere
    vertex; triangles facing away from the viewer are dropped and the rest
    sorted by mean depth across all glyphs (painter's algorithm).

    Parameters
    ----------
    points : array_like, shape (V, M, 3)
        Glyph surface points (:func:`glyph_points`).
    sphere : Sphere or name
        The sphere whose triangles join the points.
    camera : array_like, shape (3, 3), optional
        Rows: screen x, screen y, towards the viewer (default: axial view).
    light : array_like, shape (3,)
        Direction towards the light, in the camera frame.
    ambient : float
        Brightness of surfaces turned away from the light, in [0, 1].

    Returns
    -------
    ShadedTriangles
    """
    faces, vertex_colours, incidence = sphere_mesh(sphere)
    camera = slice_camera(2) if camera is None else np.asarray(camera, dtype=np.float64)
    if camera.shape != (3, 3) or not np.allclose(camera @ camera.T, np.eye(3), atol=1e-6):
        raise ValueError("camera must be a 3 x 3 rotation (rows: screen x, screen y, view)")
    if np.linalg.det(camera) < 0:
        raise ValueError("camera must be right-handed (det = +1); swap the screen axes")
    light = np.asarray(light, dtype=np.float64)
    light = (light / np.linalg.norm(light)).astype(np.float32)
    points = np.asarray(points)
    n_voxels, n_vertices = points.shape[:2]
    if n_voxels == 0:
        empty = np.zeros((0, 3, 2))
        return ShadedTriangles(empty, np.zeros((0, 3, 3)), np.zeros(0), np.zeros(0, dtype=int))
    in_camera = (points @ camera.T).astype(np.float32)  # (V, M, 3)
    corners = in_camera[:, faces]  # (V, F, 3, 3)
    normals = np.cross(corners[:, :, 1] - corners[:, :, 0], corners[:, :, 2] - corners[:, :, 0])
    # vertex normals: sum of the adjacent faces' normals (area weighted)
    stacked = normals.transpose(1, 0, 2).reshape(len(faces), -1)
    vertex_normals = np.asarray(incidence @ stacked).reshape(n_vertices, n_voxels, 3)
    vertex_normals = vertex_normals.transpose(1, 0, 2)
    lengths = np.linalg.norm(vertex_normals, axis=-1)
    cosine = (vertex_normals @ light) / np.maximum(lengths, 1e-30)
    brightness = ambient + (1.0 - ambient) * np.clip(cosine, 0.0, 1.0)  # (V, M)
    facing = normals[..., 2] > 0
    voxel_index, face_index = np.nonzero(facing)
    kept = corners[voxel_index, face_index]  # (K, 3, 3)
    corner_vertices = faces[face_index]  # (K, 3)
    colours = (
        vertex_colours[corner_vertices]
        * brightness[voxel_index[:, None], corner_vertices][..., None]
    )
    depth = kept[:, :, 2].mean(axis=1)
    order = np.argsort(depth, kind="stable")
    return ShadedTriangles(
        polygons=kept[order, :, :2].astype(np.float64),
        colours=np.clip(colours[order], 0.0, 1.0),
        depth=depth[order],
        voxel=voxel_index[order],
    )


def glyph_artist(triangles, colours):
    """A matplotlib artist drawing Gouraud-shaded triangles in the given order.

    A :class:`~matplotlib.collections.PolyCollection` builds one Path object
    per triangle in Python, which costs seconds for the hundreds of
    thousands of triangles of a glyph slice; the renderer's
    ``draw_gouraud_triangles`` takes the arrays in one call.  In vector
    formats (SVG, PDF) the artist is rasterised.

    Parameters
    ----------
    triangles : array_like, shape (K, 3, 2)
        Corners in data coordinates, drawn first to last.
    colours : array_like, shape (K, 3, 3) or (K, 3, 4)
        RGB(A) of every corner.
    """
    return _artist_class()(triangles, colours)


@lru_cache(maxsize=1)
def _artist_class():
    ensure_config_dir()
    from matplotlib.artist import Artist, allow_rasterization

    class GlyphArtist(Artist):
        def __init__(self, triangles, colours):
            super().__init__()
            self.triangles = np.ascontiguousarray(triangles, dtype=np.float64)
            colours = np.asarray(colours, dtype=np.float64)
            if colours.shape[-1] == 3:
                colours = np.concatenate([colours, np.ones(colours.shape[:-1] + (1,))], axis=-1)
            if self.triangles.shape[1:] != (3, 2) or colours.shape != (
                self.triangles.shape[:2] + (4,)
            ):
                raise ValueError("triangles must be (K, 3, 2) and colours (K, 3, 3 or 4)")
            self.colours = np.ascontiguousarray(colours)
            self.set_rasterized(True)

        @allow_rasterization
        def draw(self, renderer):
            if not self.get_visible() or len(self.triangles) == 0:
                return
            gc = renderer.new_gc()
            gc.set_clip_rectangle(self.axes.bbox)
            renderer.draw_gouraud_triangles(
                gc, self.triangles, self.colours, self.axes.transData.frozen()
            )
            gc.restore()

    return GlyphArtist


def draw_glyphs(
    ax,
    odfs,
    centres,
    sphere,
    *,
    camera=None,
    scale: float = DEFAULT_SCALE,
    normalise: bool = True,
    light=DEFAULT_LIGHT,
    ambient: float = AMBIENT,
):
    """Draw the ODF glyphs of many voxels on a matplotlib Axes.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
    odfs : array_like, shape (V, M)
        Amplitudes on the vertices of ``sphere``; all-zero ODFs draw nothing.
    centres : array_like, shape (V, 3)
        Glyph centres in the frame of the sphere's directions.
    sphere : Sphere or name
    camera : array_like, shape (3, 3), optional
        See :func:`shade_glyphs`; default axial (:func:`slice_camera`).
    scale, normalise
        See :func:`glyph_points`.
    light, ambient
        See :func:`shade_glyphs`.

    Returns
    -------
    matplotlib.artist.Artist
        Holding the visible triangles (``.triangles`` in screen coordinates =
        camera x, y; ``.colours``).
    """
    sphere = as_sphere(sphere)
    points = glyph_points(odfs, centres, sphere, scale=scale, normalise=normalise)
    shaded = shade_glyphs(points, sphere, camera=camera, light=light, ambient=ambient)
    artist = glyph_artist(shaded.polygons, shaded.colours)
    ax.add_artist(artist)
    return artist
