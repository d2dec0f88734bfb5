import importlib.util
from pathlib import Path

import numpy as np
import pytest

from rumba_bids.core import tv
from rumba_bids.core.kernels import TV_BLOCK
from rumba_bids.core.tv import TV_EPSILON, TVLayout, tv_factor


def _reference():
    """The whole-volume TV of main before the slab-wise one (benchmarks/tv_reference.py)."""
    path = Path(__file__).parents[2] / "benchmarks" / "tv_reference.py"
    spec = importlib.util.spec_from_file_location("tv_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _grad(u):
    out = []
    for axis in range(1, 4):
        g = np.zeros_like(u)
        if u.shape[axis] > 1:
            g = np.diff(u, axis=axis, append=np.take(u, [-1], axis=axis))
        out.append(g)
    return out


def test_reference_divergence_is_minus_adjoint_of_gradient():
    """<grad u, p> = -<u, div p> with the normalised field p of v: the reference the
    compiled slabs are compared with below is the right operator."""
    rng = np.random.default_rng(0)
    u = rng.random((2, 5, 4, 3))
    v = rng.random((2, 5, 4, 3))
    grads_v = _grad(v)
    norm = np.sqrt(TV_EPSILON**2 + sum(g**2 for g in grads_v))
    p = [g / norm for g in grads_v]
    # the reference takes channels last
    div = np.moveaxis(_reference().divergence_of_normalised_gradient(np.moveaxis(v, 0, -1)), -1, 0)
    lhs = sum((gu * pp).sum() for gu, pp in zip(_grad(u), p))
    np.testing.assert_allclose(lhs, -(u * div).sum(), rtol=1e-10)


def test_factor_constant_field_is_one_and_options_agree():
    mask = np.ones((4, 4, 4), bool)
    weights = np.full((64, 10), 0.1, dtype=np.float32)
    np.testing.assert_allclose(tv_factor(weights, mask, 0.01), 1.0, rtol=1e-6)
    rng = np.random.default_rng(2)
    weights = rng.random((64, 10)).astype(np.float32)
    whole = tv_factor(weights, mask, 0.01)
    per_voxel = tv_factor(weights, mask, np.full(64, 0.01, np.float32))
    np.testing.assert_allclose(per_voxel, whole, rtol=1e-6)
    scaled = tv_factor(2 * weights, mask, 0.01, scale=np.full(10, 2.0))
    np.testing.assert_allclose(scaled, whole, rtol=1e-6)


MASKS = {
    "3d": ((12, 11, 9), 0.5),
    "thin-x": ((30, 8, 7), 0.4),
    "one-x-slice": ((1, 7, 5), 0.3),
    "one-y-row": ((7, 1, 5), 0.2),
    "one-z-slice": ((9, 6, 1), 0.2),
    "dense": ((6, 5, 4), 0.0),
    # lines longer than a block (kernels.TV_BLOCK): the gradient and divergence in blocks
    "long-lines": ((7, 6, 41), 0.05),
    "long-sparse": ((5, 6, 38), 0.4),
    "long-dense": ((4, 3, 35), 0.0),
}


@pytest.mark.parametrize("case", MASKS, ids=list(MASKS))
@pytest.mark.parametrize("slab_voxels", [1, 7, 10**6], ids=["slice", "few", "whole"])
def test_slabs_give_the_whole_volume_factor(case, slab_voxels, monkeypatch):
    """Slabs of one slice, of a few voxels and the whole box give the factor of the
    whole-volume numpy reference to float32 round-off (1-2 ulp), in float32 and
    float64: halos, crops, padding and the box's edges are right."""
    shape, empty = MASKS[case]
    rng = np.random.default_rng(3)
    mask = rng.random(shape) >= empty
    n_vox, n_comp = int(mask.sum()), 7
    weights = rng.random((n_vox, n_comp)).astype(np.float32)
    weights[rng.random(weights.shape) < 0.2] = 0  # flat regions: the gradient norm's eps
    scale = np.r_[np.full(5, 2.0), 1.0, 1.0]
    reference = _reference()
    monkeypatch.setattr(tv, "TV_SLAB_VOXELS", slab_voxels)
    for dtype, rtol in ((np.float32, 3e-7), (np.float64, 1e-15)):
        values = weights.astype(dtype)
        for lam in (0.01, rng.random(n_vox).astype(dtype) * 0.05):
            expected = reference.tv_factor(values, mask, lam, scale=scale)
            got = tv_factor(values, mask, lam, scale=scale)
            assert got.dtype == dtype
            np.testing.assert_allclose(got, expected, rtol=rtol, atol=0)


@pytest.mark.parametrize("shape", [(20, 9, 8), (12, 6, 40)], ids=["short-lines", "long-lines"])
def test_layout_slabs_cover_every_voxel_once(shape):
    rng = np.random.default_rng(4)
    mask = rng.random(shape) < 0.5
    mask[7] = False  # an empty slice inside the box
    mask[3, 2:5] = True  # runs longer than a block where the lines are long
    layout = TVLayout(mask, slab_voxels=40)
    rows = np.concatenate([np.arange(s.rows.start, s.rows.stop) for s in layout.slabs])
    np.testing.assert_array_equal(rows, np.arange(mask.sum()))
    assert len(layout.slabs) > 3 and layout.axes == (0, 1, 2)
    block = TV_BLOCK
    for slab in layout.slabs:
        assert slab.fill[:, 1].max() < mask.sum()  # runs copy voxels, never the zero column
        assert slab.fill[:, 0].max() < slab.n_points
        nz = int(slab.shape[2])
        # gradients are taken inside the padding, never on the lower padding planes
        z = slab.lines[:, 1:]
        assert (z[:, 0] >= 1).all() and (z[:, 1] <= nz - 1).all()
        first_z = slab.gradient.astype(np.int64) % nz
        assert (first_z >= 1).all() and (first_z + block <= nz).all()
        assert len(slab.gradient if nz > block else slab.lines) > 0
        # the divergence's items write every row of the slab, and only those
        written = np.zeros(slab.n_rows, bool)
        for point, row, length in slab.divergence.astype(np.int64):
            assert row + length <= slab.n_rows and point + length <= slab.n_points
            written[row : row + length] = True
        assert written.all()
    assert any((s.divergence[:, 2] == block).any() for s in layout.slabs)
    with pytest.raises(ValueError, match="3D"):
        TVLayout(np.ones((4, 4), bool))


def test_slab_denominator_written_from_a_column():
    """The TV iteration has each slab write the weights over the inverse TV factor
    (``quotient``) into its own rows of the new weights (``out_first``): the same values as
    the factor into a slab-sized array gives, and no other column is touched."""
    rng = np.random.default_rng(9)
    mask = rng.random((12, 7, 6)) < 0.6
    layout = TVLayout(mask, slab_voxels=40)
    assert len(layout.slabs) > 2
    n_comp, n_vox = 5, layout.n_voxels
    weights = np.zeros((n_comp, n_vox + 1), np.float32)
    weights[:, :n_vox] = rng.random((n_comp, n_vox))
    eps2 = tv.tv_epsilon2(np.ones(n_comp), np.float32)
    for slab in layout.slabs:
        alone = np.empty((n_comp, slab.n_rows), np.float32)
        tv.slab_tv_denominator(weights, slab, 0.01, eps2, alone)
        into = np.full_like(weights, -1.0)
        tv.slab_tv_denominator(weights, slab, 0.01, eps2, into, out_first=slab.rows.start)
        np.testing.assert_array_equal(into[:, slab.rows], alone)
        assert (np.delete(into, np.s_[slab.rows], axis=1) == -1).all()
        tv.slab_tv_denominator(
            weights, slab, 0.01, eps2, into, out_first=slab.rows.start, quotient=True
        )
        np.testing.assert_array_equal(into[:, slab.rows], weights[:, slab.rows] / alone)
        assert (np.delete(into, np.s_[slab.rows], axis=1) == -1).all()


def test_slab_denominator_refuses_an_output_sharing_the_weights():
    """The kernel is compiled ``noalias``: an output overlapping the weights would be read
    and written in any order, so it is refused before the kernel runs."""
    mask = np.ones((3, 4, 20), bool)
    layout = TVLayout(mask)
    weights = np.zeros((2, layout.n_voxels + 1), np.float32)
    eps2 = tv.tv_epsilon2(np.ones(2), np.float32)
    with pytest.raises(ValueError, match="must not share memory with weights"):
        tv.slab_tv_denominator(weights, layout.slabs[0], 0.01, eps2, weights[:, 1:])
