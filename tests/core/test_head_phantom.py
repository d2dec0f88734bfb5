"""The synthetic head phantom: geometry, ground truth and signal."""

import numpy as np
import pytest

from rumba_bids.core.gradients import GradientTable
from rumba_bids.core.head_phantom import (
    CSF_DIFFUSIVITY,
    GM_DIFFUSIVITY,
    RELATIVE_S0,
    TISSUE_LABELS,
    default_semi_axes,
    demo_gradient_table,
    head_geometry,
    make_head_phantom,
)
from rumba_bids.core.phantoms import WM_EVALS

SHAPE = (28, 32, 24)


@pytest.fixture(scope="module")
def geometry():
    return head_geometry(shape=SHAPE)


def test_gradient_table_interleaves_b0_and_deals_directions_to_shells():
    gtab = demo_gradient_table(n_b0=10, n_dirs=90, bvals=(1000, 2000, 3000))
    assert len(gtab) == 100
    b0_positions = np.flatnonzero(gtab.b0s_mask)
    assert len(b0_positions) == 10 and b0_positions[0] == 0 and b0_positions[-1] > 80
    assert gtab.shells.tolist() == [1000.0, 2000.0, 3000.0]
    for shell in range(3):
        vectors = gtab.bvecs[gtab.shell_index == shell]
        assert len(vectors) == 30
        # near-uniform on the sphere: the antipodally symmetric scatter matrix is ~ I/3
        scatter = vectors.T @ vectors / len(vectors)
        np.testing.assert_allclose(scatter, np.eye(3) / 3, atol=0.05)
    dw = gtab.bvecs[~gtab.b0s_mask]
    assert len(np.unique(np.round(dw, 6), axis=0)) == 90  # shells share no direction


def test_gradient_table_rejects_impossible_requests():
    with pytest.raises(ValueError, match="n_b0 must be at least 1"):
        demo_gradient_table(n_b0=0)
    with pytest.raises(ValueError, match="at least the number of shells"):
        demo_gradient_table(n_dirs=2, bvals=(1000, 2000, 3000))


def test_fractions_are_consistent(geometry):
    brain = geometry["brain_mask"]
    total = geometry["f_wm"] + geometry["f_gm"] + geometry["f_csf"]
    np.testing.assert_allclose(total[brain], 1.0)
    assert np.all(total[~brain] == 0)
    np.testing.assert_allclose(geometry["fibre_fractions"].sum(-1), geometry["f_wm"])
    n = geometry["n_fibres"]
    assert np.array_equal(np.isfinite(geometry["fibre_directions"][..., 0]).sum(-1), n)
    assert np.all((n > 0) == (geometry["f_wm"] > 0))


def test_white_matter_has_single_and_crossing_fibres(geometry):
    white = geometry["tissue"] == 1
    counts = np.bincount(geometry["n_fibres"][white], minlength=4)
    assert counts[0] == 0
    assert counts[1] > 500 and counts[2] > 100 and counts[3] > 30
    directions = geometry["fibre_directions"][geometry["n_fibres"] >= 2]
    np.testing.assert_allclose(np.linalg.norm(directions[:, :2], axis=-1), 1.0)
    cosine = np.abs(np.einsum("vi,vi->v", directions[:, 0], directions[:, 1]))
    assert np.degrees(np.arccos(cosine.max())) > 60  # every crossing is resolvable


def test_tissues_nest_inside_the_head(geometry):
    tissue = geometry["tissue"]
    assert set(np.unique(tissue)) == set(TISSUE_LABELS)
    assert np.array_equal(geometry["brain_mask"], np.isin(tissue, (1, 2, 3)))
    assert np.all(geometry["head_mask"][tissue > 0])
    # a dark skull separates scalp (4) from brain: no scalp voxel touches the brain
    scalp = np.argwhere(tissue == 4)
    brain = np.argwhere(geometry["brain_mask"])
    closest = np.min(np.abs(scalp[:, None, :] - brain[None, ::7, :]).max(-1), axis=1)
    assert closest.min() >= 1


def test_left_right_mirror_symmetry(geometry):
    directions = geometry["fibre_directions"]
    mirrored = directions[::-1] * np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(np.abs(mirrored), np.abs(directions), equal_nan=True)
    assert np.array_equal(geometry["n_fibres"], geometry["n_fibres"][::-1])


def test_geometry_rejects_tiny_grids():
    with pytest.raises(ValueError, match="at least 16 voxels"):
        head_geometry(shape=(10, 40, 40))
    assert min(default_semi_axes((40, 48, 34))) > 10


def test_noise_free_signal_matches_dipy_tensors():
    sims = pytest.importorskip("dipy.sims.voxel")
    gtab = demo_gradient_table(n_b0=2, n_dirs=30, bvals=(1000, 2500))
    phantom = make_head_phantom(gtab, shape=SHAPE, snr=1e9, gain_strength=0.0, S0=1.0, rng=0)
    from dipy.core.gradients import gradient_table

    dipy_gtab = gradient_table(gtab.bvals, bvecs=gtab.bvecs, b0_threshold=50)
    for n_fibres in (1, 2, 3):
        voxel = tuple(np.argwhere((phantom.n_fibres == n_fibres) & (phantom.tissue == 1))[0])
        expected = np.zeros(len(gtab))
        for direction, fraction in zip(
            phantom.fibre_directions[voxel], phantom.fibre_fractions[voxel]
        ):
            if fraction == 0:
                continue
            helper = np.cross(direction, [0.3, 0.5, 0.8])
            helper /= np.linalg.norm(helper)
            evecs = np.column_stack([direction, helper, np.cross(direction, helper)])
            expected += fraction * sims.single_tensor(
                dipy_gtab, 1.0, evals=np.array(WM_EVALS), evecs=evecs
            )
        iso = [GM_DIFFUSIVITY, CSF_DIFFUSIVITY]
        for fraction, diffusivity in zip((phantom.f_gm[voxel], phantom.f_csf[voxel]), iso):
            expected += fraction * np.exp(-gtab.bvals * diffusivity)
        s0 = phantom.signal[voxel][gtab.b0s_mask].mean()
        np.testing.assert_allclose(phantom.signal[voxel] / s0, expected, atol=1e-6)


def test_signal_fractions_follow_t2_weighting():
    gtab = demo_gradient_table(n_b0=4, n_dirs=12)
    phantom = make_head_phantom(gtab, shape=SHAPE, snr=1e9, gain_strength=0.0, S0=1.0, rng=0)
    b0 = phantom.signal[..., gtab.b0s_mask].mean(-1)
    ventricle = phantom.tissue == 3
    white = phantom.tissue == 1
    # volume fractions 0.9 CSF + 0.1 WM weighted by relative S0
    np.testing.assert_allclose(b0[ventricle], 0.9 * RELATIVE_S0[2] + 0.1 * RELATIVE_S0[0])
    assert np.all(b0[ventricle] > 2 * b0[white].max())
    assert np.all(phantom.f_csf[ventricle] > 0.95)  # signal fraction > volume fraction


def test_noise_is_rician_and_seeded():
    gtab = demo_gradient_table(n_b0=10, n_dirs=20)
    first = make_head_phantom(gtab, shape=SHAPE, snr=25, rng=3)
    second = make_head_phantom(gtab, shape=SHAPE, snr=25, rng=3)
    other = make_head_phantom(gtab, shape=SHAPE, snr=25, rng=4)
    assert np.array_equal(first.signal, second.signal)
    assert not np.array_equal(first.signal, other.signal)
    air = first.tissue == 0
    sigma = first.S0 / 25
    # Rayleigh background: mean sigma * sqrt(pi / 2)
    np.testing.assert_allclose(first.signal[air].mean(), sigma * np.sqrt(np.pi / 2), rtol=0.02)
    assert isinstance(first.gtab, GradientTable)
