import numpy as np
import pytest

from rumba_bids.core import GradientTable, bvecs_fsl_to_voxel, voxel_to_world, world_to_voxel
from rumba_bids.core.gradients import group_shells


def _table(n_b0=2, bvals=(1000.0,), n_dirs=6):
    rng = np.random.default_rng(0)
    dirs = rng.normal(size=(n_dirs, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    bv = np.concatenate([np.zeros(n_b0)] + [np.full(n_dirs, b) for b in bvals])
    bvec = np.concatenate([np.zeros((n_b0, 3))] + [dirs] * len(bvals))
    return bv, bvec


def test_basic_properties():
    bv, bvec = _table(bvals=(1000.0, 2000.0))
    gtab = GradientTable(bv, bvec)
    assert gtab.b0s_mask.sum() == 2
    assert gtab.shells.tolist() == [1000.0, 2000.0]
    assert gtab.shell_index.tolist() == [-1, -1] + [0] * 6 + [1] * 6
    assert len(gtab) == 14
    np.testing.assert_allclose(np.linalg.norm(gtab.bvecs[2:], axis=1), 1)
    assert "n_b0=2" in repr(gtab)


def test_accepts_transposed_bvecs_and_normalises():
    bv, bvec = _table()
    gtab = GradientTable(bv, (bvec * 1.02).T)
    np.testing.assert_allclose(gtab.bvecs, bvec, atol=1e-12)


def test_shells_grouped_within_tolerance():
    shells, index = group_shells(
        [0, 995, 1000, 1010, 2990, 3000], b0s_mask=np.array([1, 0, 0, 0, 0, 0], bool)
    )
    np.testing.assert_allclose(shells, [1001.6666666, 2995.0])
    assert index.tolist() == [-1, 0, 0, 0, 1, 1]


@pytest.mark.parametrize(
    ("bvals", "bvecs", "match"),
    [
        ([0, 1000], [[0, 0, 0]], "counts must match"),
        ([0, np.nan], [[0, 0, 0], [1, 0, 0]], "finite"),
        ([0, 1000], [[0, 0, 0], [np.inf, 0, 0]], "finite"),
        ([1000, 1000], [[1, 0, 0], [0, 1, 0]], "no b0 volume"),
        ([0, 1000], [[0, 0, 0], [0.5, 0, 0]], "not unit vectors"),
        ([0, 1000], [[0, 0, 0], [0, 0, 0]], "not unit vectors"),
        ([0, -5], [[0, 0, 0], [1, 0, 0]], "negative b-values"),
        ([0, 1e9], [[0, 0, 0], [1, 0, 0]], "s/m\\^2"),
        ([0, 1000], [[0, 0, 0, 0], [1, 0, 0, 0]], "shape"),
        ([0, 1000], [[0.3, 0, 0], [1, 0, 0]], "b0 b-vectors"),
    ],
)
def test_invalid_tables(bvals, bvecs, match):
    with pytest.raises(ValueError, match=match):
        GradientTable(bvals, bvecs)


def test_subset_and_gradients():
    bv, bvec = _table(bvals=(1000.0, 2000.0))
    gtab = GradientTable(bv, bvec)
    sub = gtab.subset(gtab.shell_index != 1)
    assert sub.shells.tolist() == [1000.0]
    np.testing.assert_allclose(gtab.gradients, bv[:, None] * gtab.bvecs)


def test_cartesian_grid_detection():
    import os

    dipy = pytest.importorskip("dipy")

    table = np.loadtxt(
        os.path.join(os.path.dirname(dipy.__file__), "data/files/dsi515_b_table.txt")
    )
    gtab = GradientTable(table[:, 0], table[:, 1:])
    assert gtab.is_cartesian_grid
    bv, bvec = _table(bvals=(1000.0, 2000.0, 3000.0), n_dirs=30)
    assert not GradientTable(bv, bvec).is_cartesian_grid


def test_fsl_flip_and_world_rotation():
    vecs = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    lps = np.diag([-2.0, 2.0, 2.0, 1.0])  # negative determinant: no flip
    np.testing.assert_array_equal(bvecs_fsl_to_voxel(vecs, lps), vecs)
    ras = np.diag([2.0, 2.0, 2.0, 1.0])
    np.testing.assert_array_equal(bvecs_fsl_to_voxel(vecs, ras)[:, 0], [-1.0, 0.0])
    rot = np.eye(4)
    rot[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    rot[:3, :3] *= 2.5  # voxel size must not scale directions
    world = voxel_to_world(vecs, rot)
    np.testing.assert_allclose(world, [[0, 1, 0], [-1, 0, 0]], atol=1e-12)
    np.testing.assert_allclose(world_to_voxel(world, rot), vecs, atol=1e-12)
