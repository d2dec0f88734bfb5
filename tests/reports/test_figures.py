"""Array-level figures: right size, not blank, sensible errors; headless and pyplot-free."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from rumba_bids.core import get_sphere
from rumba_bids.reports.canvas import figure_bytes, save_figure
from rumba_bids.reports.figures import (
    SNR_BOUNDS,
    plot_fractions,
    plot_mask_contour,
    plot_odf_glyphs,
    plot_peaks,
    plot_response,
    plot_snr,
    response_signal,
    tile_slices,
)

SHAPE = (20, 24, 12)


@pytest.fixture(scope="module")
def volumes():
    """An ellipsoidal 'brain' with smooth maps and random peaks."""
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in SHAPE], indexing="ij"))
    radius = np.sqrt((grid**2).sum(axis=0))
    mask = radius < 0.85
    b0 = np.where(mask, 1000 - 300 * radius, 50) + rng.normal(0, 10, SHAPE)
    f_wm = np.where(mask, np.clip(1 - radius, 0, 1), 0.0)
    directions = rng.normal(size=SHAPE + (2, 3))
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    values = np.where(mask[..., None], rng.uniform(0.1, 0.5, SHAPE + (2,)), 0.0)
    directions[values == 0] = np.nan
    return {
        "mask": mask,
        "b0": b0,
        "f_wm": f_wm,
        "f_iso": np.where(mask, 1 - f_wm, 0.0),
        "snr": np.where(mask, rng.uniform(10, 60, SHAPE), 0.0),
        "directions": directions,
        "values": values,
    }


def _png(figure) -> np.ndarray:
    image = Image.open(io.BytesIO(figure_bytes(figure)))
    width, height = (figure.get_size_inches() * figure.dpi).round().astype(int)
    assert image.size == (width, height)
    return np.asarray(image.convert("RGB"), dtype=float)


def _assert_not_blank(pixels: np.ndarray, *, min_colours: int = 50) -> None:
    flat = pixels.reshape(-1, 3)
    assert flat.std(axis=0).max() > 20
    assert len(np.unique(flat.astype(np.uint8), axis=0)) >= min_colours


def test_mask_contour_figure(volumes):
    figure = plot_mask_contour(volumes["b0"], volumes["mask"], zooms=(2, 2, 3), title="t")
    pixels = _png(figure)
    _assert_not_blank(pixels)
    # the red contour is drawn
    red = (pixels[..., 0] > 200) & (pixels[..., 1] < 100) & (pixels[..., 2] < 100)
    assert red.sum() > 100
    assert len(figure.axes) == 3  # sagittal, coronal, axial mosaics


def test_mask_contour_needs_matching_shapes(volumes):
    with pytest.raises(ValueError, match=r"mask must be a 3D array, got shape \(20, 24\)"):
        plot_mask_contour(volumes["b0"], volumes["mask"][..., 0])
    with pytest.raises(ValueError, match=r"mask has shape \(20, 24, 11\), expected"):
        plot_mask_contour(volumes["b0"], volumes["mask"][..., 1:])
    with pytest.raises(ValueError, match="zooms must be 3 positive voxel sizes"):
        plot_mask_contour(volumes["b0"], volumes["mask"], zooms=(1, 0, 1))


def test_response_figure_with_tensor_and_zonal_responses():
    figure = plot_response((1.5e-3, 0.4e-3, 0.4e-3), bvalues=[1000, 2000], method="fa", S0=900.0)
    pixels = _png(figure)
    assert pixels.shape == (380, 1100, 3)
    _assert_not_blank(pixels)
    isotropic = [np.sqrt(4 * np.pi) * 500.0]  # zonal SH of a constant 500 signal
    figure = plot_response(
        (1.5e-3, 0.4e-3, 0.4e-3), bvalues=[2000], zonal_coefs=isotropic, S0=1000.0
    )
    _assert_not_blank(_png(figure))
    with pytest.raises(ValueError, match="2 rows of eigenvalues for 3 shells"):
        plot_response(np.ones((2, 3)) * 1e-3, bvalues=[1000, 2000, 3000])


def test_response_signal():
    directions = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    np.testing.assert_allclose(
        response_signal(directions, evals=(1.7e-3, 0.2e-3, 0.2e-3), bvalue=1000),
        np.exp([-1.7, -0.2]),
    )
    constant = response_signal(directions, zonal_coefs=[np.sqrt(4 * np.pi) * 2.0], S0=4.0)
    np.testing.assert_allclose(constant, [0.5, 0.5])
    with pytest.raises(ValueError, match="S0 > 0"):
        response_signal(directions, zonal_coefs=[1.0])
    with pytest.raises(ValueError, match="give evals and bvalue"):
        response_signal(directions, evals=(1e-3, 0, 0))


def test_fractions_figure_shows_one_column_per_map(volumes):
    maps = {"f_wm": volumes["f_wm"], "f_iso": volumes["f_iso"], "f_gm": None}
    figure = plot_fractions(maps, mask=volumes["mask"], zooms=(2, 2, 2))
    _assert_not_blank(_png(figure))
    images = [ax for ax in figure.axes if ax.images and ax.get_title()]
    assert [ax.get_title().split()[0] for ax in images] == ["white", "isotropic"]
    four = plot_fractions({**maps, "f_gm": volumes["f_iso"] / 2, "f_csf": volumes["f_iso"] / 2})
    assert four.get_size_inches()[0] > figure.get_size_inches()[0]
    with pytest.raises(ValueError, match="no fraction map to plot"):
        plot_fractions({"f_gm": None})


def test_odf_glyph_figure_of_a_slice(volumes):
    sphere = get_sphere("symmetric362")
    weights = np.exp(6 * (sphere.vertices @ [1.0, 0.0, 0.0]) ** 2)
    odfs = np.broadcast_to(weights, SHAPE[:2] + (len(sphere),)).copy()
    odfs[~volumes["mask"][:, :, 6]] = 0
    figure = plot_odf_glyphs(odfs, sphere, axis="axial", region=(slice(2, 18), slice(4, 20)))
    pixels = _png(figure)
    _assert_not_blank(pixels)
    # lobes along x are red
    lit = pixels.max(axis=-1) > 60
    assert pixels[lit][:, 0].mean() > 2 * pixels[lit][:, 1].mean()
    with pytest.raises(ValueError, match="outside the slice"):
        plot_odf_glyphs(odfs, sphere, region=(slice(0, 30), slice(0, 5)))
    with pytest.raises(ValueError, match=r"a slice of ODFs \(A, B, M\)"):
        plot_odf_glyphs(odfs[0], sphere)


def test_peaks_figure(volumes):
    k = 6
    figure = plot_peaks(
        volumes["directions"][:, :, k],
        volumes["values"][:, :, k],
        background=volumes["f_wm"][:, :, k],
        mask=volumes["mask"][:, :, k],
        zooms=(2, 2, 2),
        highlight=(slice(5, 10), slice(5, 10)),
        title="peaks",
    )
    _assert_not_blank(_png(figure))
    with pytest.raises(ValueError, match=r"directions must be \(A, B, P, 3\)"):
        plot_peaks(volumes["directions"][:, :, k], volumes["values"][:, :, k, 0])


def test_snr_figure(volumes):
    figure = plot_snr(volumes["snr"], volumes["mask"], zooms=(2, 2, 2))
    pixels = _png(figure)
    assert pixels.shape == (420, 1100, 3)
    _assert_not_blank(pixels)
    assert SNR_BOUNDS == pytest.approx((8.0, 80.0))


def test_tile_slices_layout():
    volume = np.arange(2 * 3 * 4).reshape(2, 3, 4).astype(float)
    tiled = tile_slices(volume, 2, [0, 3], gap=1)
    assert tiled.shape == (3, 2 * 2 + 1)
    np.testing.assert_array_equal(tiled[:, :2], volume[:, :, 0].T)
    assert np.isnan(tiled[:, 2]).all()


def test_save_figure_formats(tmp_path, volumes):
    figure = plot_snr(volumes["snr"], volumes["mask"])
    for suffix, magic in ((".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")):
        path = save_figure(figure, tmp_path / f"snr{suffix}")
        assert path.read_bytes()[:5].startswith(magic)
    assert not list(tmp_path.glob(".*tmp"))
    with pytest.raises(ValueError, match="unsupported figure format '.jpg'"):
        save_figure(figure, tmp_path / "snr.jpg")


def test_glyph_svg_is_rasterised(tmp_path):
    sphere = get_sphere("repulsion100")
    figure = plot_odf_glyphs(np.ones((3, 3, len(sphere))), sphere)
    text = save_figure(figure, tmp_path / "glyphs.svg").read_text()
    assert "<image" in text and text.count("<path") < 50


def test_figures_are_headless_without_pyplot_or_a_writable_home(tmp_path):
    """No display, no pyplot, and a HOME that cannot hold a config folder: no warning."""
    code = (
        "import sys, numpy as np\n"
        "from rumba_bids.reports.figures import plot_snr\n"
        "from rumba_bids.reports.canvas import figure_bytes\n"
        "m = np.ones((4, 4, 4), bool)\n"
        "figure_bytes(plot_snr(np.full((4, 4, 4), 20.0), m))\n"
        "print('pyplot' if 'matplotlib.pyplot' in sys.modules else 'clean')\n"
    )
    home = tmp_path / "home"
    home.write_text("a file, so ~/.config/matplotlib cannot be created (even by root)")
    env = {
        k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "DISPLAY", "MPLBACKEND")
    }
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / ".config"))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "clean"
    assert "Matplotlib" not in done.stderr and "writable" not in done.stderr, done.stderr
