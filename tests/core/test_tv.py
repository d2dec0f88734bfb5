import numpy as np

from rumba_bids.core.tv import TV_EPSILON, divergence_of_normalised_gradient, tv_factor


def _grad(u):
    out = []
    for axis in range(3):
        g = np.zeros_like(u)
        if u.shape[axis] > 1:
            g = np.diff(u, axis=axis, append=np.take(u, [-1], axis=axis))
        out.append(g)
    return out


def test_divergence_is_minus_adjoint_of_gradient():
    """<grad u, p> = -<u, div p> with the normalised field p of v."""
    rng = np.random.default_rng(0)
    u = rng.random((5, 4, 3, 2))
    v = rng.random((5, 4, 3, 2))
    grads_v = _grad(v)
    norm = np.sqrt(TV_EPSILON**2 + sum(g**2 for g in grads_v))
    p = [g / norm for g in grads_v]
    div = divergence_of_normalised_gradient(v)
    lhs = sum((gu * pp).sum() for gu, pp in zip(_grad(u), p))
    np.testing.assert_allclose(lhs, -(u * div).sum(), rtol=1e-10)


def test_singleton_axis_contributes_nothing():
    rng = np.random.default_rng(1)
    u = rng.random((6, 5, 1, 3))
    div3 = divergence_of_normalised_gradient(u)
    div2 = divergence_of_normalised_gradient(u[:, :, 0:1, :].repeat(1, axis=2))
    np.testing.assert_allclose(div3, div2)
    assert np.all(np.isfinite(div3))


def test_factor_constant_field_is_one_and_blocks_agree(monkeypatch):
    mask = np.ones((4, 4, 4), bool)
    weights = np.full((64, 10), 0.1, dtype=np.float32)
    out = tv_factor(weights, mask, 0.01)
    np.testing.assert_allclose(out, 1.0, rtol=1e-6)
    rng = np.random.default_rng(2)
    weights = rng.random((64, 10)).astype(np.float32)
    whole = tv_factor(weights, mask, 0.01)
    import rumba_bids.core.tv as tv

    monkeypatch.setattr(tv, "TV_BLOCK_BYTES", 4 * 64 * 6 * 3)  # 3 components per block
    np.testing.assert_array_equal(tv_factor(weights, mask, 0.01), whole)
    per_voxel = tv_factor(weights, mask, np.full(64, 0.01, np.float32))
    np.testing.assert_allclose(per_voxel, whole, rtol=1e-6)
    scaled = tv_factor(2 * weights, mask, 0.01, scale=np.full(10, 2.0))
    np.testing.assert_allclose(scaled, whole, rtol=1e-6)
