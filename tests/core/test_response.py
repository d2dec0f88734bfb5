"""Tests of rumba_bids.core.response against DIPY's response estimators."""

import json
import warnings

import numpy as np
import pytest
from dipy_lazy import LazyModule

from rumba_bids.core.gradients import GradientTable
from rumba_bids.core.head_phantom import make_head_phantom
from rumba_bids.core.kernel import AxisymmetricResponse, rumba_kernel
from rumba_bids.core.phantoms import (
    add_rician_noise,
    crossing_directions,
    make_acquisition,
    multi_tensor_signal,
    random_directions,
)
from rumba_bids.core.response import (
    ResponseEstimate,
    default_response,
    fa_roi_response,
    fa_trace_to_evals,
    recursive_response,
    roi_slices,
    zonal_fit_aligned,
)
from rumba_bids.core.sphere import get_sphere
from rumba_bids.core.tensor import fractional_anisotropy

csdeconv = LazyModule("dipy.reconst.csdeconv")
dipy_data = LazyModule("dipy.data")
dipy_gradients = LazyModule("dipy.core.gradients")
dti = LazyModule("dipy.reconst.dti")

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


def dipy_gtab(gtab):
    return dipy_gradients.gradient_table(gtab.bvals, bvecs=gtab.bvecs)


@pytest.fixture(scope="module")
def head():
    gtab = make_acquisition(n_b0=6, n_dirs=60)
    return make_head_phantom(gtab, shape=(40, 44, 24), rng=0)


# --------------------------------------------------------------------------- default / FA


def test_default_response():
    response = default_response()
    assert response.method == "default"
    assert response.wm_response == (1.7e-3, 0.2e-3, 0.2e-3)
    assert response.ratio == pytest.approx(0.2 / 1.7)
    assert response.n_voxels == 0 and response.S0 is None


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"roi_radii": 5, "fa_thr": 0.75},
        {"roi_center": (12, 20, 12), "roi_radii": (4, 6, 3), "fa_thr": 0.6},
    ],
)
def test_fa_roi_matches_dipy_auto_response(head, params):
    ours = fa_roi_response(head.gtab, head.signal, **params)
    (evals, S0), ratio = csdeconv.auto_response_ssst(dipy_gtab(head.gtab), head.signal, **params)
    np.testing.assert_allclose(ours.evals, evals, rtol=0.01)
    assert ours.S0 == pytest.approx(S0, rel=0.01)
    assert ours.ratio == pytest.approx(ratio, rel=0.01)
    assert ours.n_voxels > 0 and ours.method == "fa"


def test_fa_roi_with_brain_mask_finds_white_matter(head):
    response = fa_roi_response(head.gtab, head.signal, mask=head.brain_mask)
    # white matter of the phantom: 85 % fibre (1.7, 0.2, 0.2) plus GM/CSF partial volume
    assert 1.3e-3 < response.evals[0] < 1.9e-3
    assert 0.1 < response.ratio < 0.3
    assert response.S0 == pytest.approx(head.S0, rel=0.2)


def test_fa_roi_errors_name_the_fix(head):
    with pytest.raises(ValueError, match="lower fa_thr"):
        fa_roi_response(head.gtab, head.signal, mask=head.brain_mask, fa_thr=0.99)
    empty = np.zeros(head.brain_mask.shape, dtype=bool)
    with pytest.raises(ValueError, match="holds no voxel of the mask"):
        fa_roi_response(head.gtab, head.signal, mask=empty)
    with pytest.raises(ValueError, match="outside the volume"):
        fa_roi_response(head.gtab, head.signal, roi_center=(100, 0, 0))
    with pytest.raises(ValueError, match="fa_thr"):
        fa_roi_response(head.gtab, head.signal, fa_thr=1.5)
    with pytest.raises(ValueError, match="4D"):
        fa_roi_response(head.gtab, head.signal[0])
    with pytest.raises(ValueError, match="mask shape"):
        fa_roi_response(head.gtab, head.signal, mask=head.brain_mask[0])
    bad = head.signal.copy()
    bad[tuple(s // 2 for s in bad.shape[:3])] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fa_roi_response(head.gtab, bad)


def test_roi_slices_clip_to_volume():
    assert roi_slices((10, 10, 4), roi_radii=2) == (slice(3, 8), slice(3, 8), slice(0, 4))
    assert roi_slices((10, 10, 10), roi_center=(0, 9, 5), roi_radii=(2, 2, 0)) == (
        slice(0, 3),
        slice(7, 10),
        slice(5, 6),
    )


@pytest.fixture(scope="module")
def multishell_head():
    gtab = make_acquisition(n_b0=6, n_dirs=40, bvals=(1000.0, 2000.0, 3000.0))
    return make_head_phantom(gtab, shape=(30, 32, 18), snr=40, rng=1)


def test_per_shell_response(multishell_head):
    head = multishell_head
    response = fa_roi_response(head.gtab, head.signal, mask=head.brain_mask, roi_radii=5)
    assert response.evals.shape == (3, 3) and response.shells == (1000.0, 2000.0, 3000.0)
    assert response.ratio.shape == (3,)
    assert isinstance(response.wm_response, np.ndarray)
    # each row is DIPY's tensor fit of that shell (with the b0s) in the same voxels
    selected = _fa_selected_voxels(head, roi_radii=5)
    for shell, row in enumerate(response.evals):
        volumes = head.gtab.b0s_mask | (head.gtab.shell_index == shell)
        sub = head.gtab.subset(volumes)
        fit = dti.TensorModel(dipy_gtab(sub)).fit(head.signal[selected][:, volumes])
        expected = [fit.evals[:, 0].mean(), fit.evals[:, 1].mean(), fit.evals[:, 1].mean()]
        np.testing.assert_allclose(row, expected, rtol=1e-6)
    # apparent diffusivity falls with b (non-Gaussian partial-volume signal)
    assert np.all(np.diff(response.evals[:, 0]) < 0)
    # the multi-shell kernel takes it
    kernel = rumba_kernel(
        head.gtab, get_sphere("repulsion100").vertices, wm_response=response.wm_response
    )
    assert np.all(np.isfinite(kernel))
    single = fa_roi_response(
        head.gtab, head.signal, mask=head.brain_mask, roi_radii=5, per_shell=False
    )
    # a single tensor fitted to every shell records them all
    assert single.evals.shape == (3,) and single.shells == (1000.0, 2000.0, 3000.0)


def _fa_selected_voxels(head, roi_radii):
    box = roi_slices(head.signal.shape, roi_radii=roi_radii)
    roi = np.zeros(head.brain_mask.shape, dtype=bool)
    roi[box] = True
    roi &= head.brain_mask
    lowest = head.gtab.b0s_mask | (head.gtab.shell_index == 0)
    fit = dti.TensorModel(dipy_gtab(head.gtab.subset(lowest))).fit(head.signal[..., lowest])
    return roi & (np.nan_to_num(fit.fa) > 0.7)


def test_per_shell_rejects_shells_without_enough_directions():
    bvals = np.r_[0, np.full(12, 1000.0), np.full(3, 2000.0)]
    dirs = np.r_[[[0, 0, 0]], random_directions(15, rng=0)]
    gtab = GradientTable(bvals, dirs)
    data = np.ones((3, 3, 3, len(bvals)))
    with pytest.raises(ValueError, match="per_shell=False"):
        fa_roi_response(gtab, data, per_shell=True, fa_thr=0.0)


# --------------------------------------------------------------------------- recursive


def crossing_phantom(*, shape=(12, 12, 8), snr=30, iso=0.1, seed=1, n_dirs=90, single=0.5):
    """Half the voxels hold one fibre (random direction), half two crossing fibres."""
    gtab = make_acquisition(n_b0=6, n_dirs=n_dirs)
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    n_single = int(single * n)
    directions = np.zeros((n, 2, 3))
    fractions = np.zeros((n, 2))
    directions[:n_single, 0] = directions[:n_single, 1] = random_directions(n_single, rng=rng)
    fractions[:n_single] = [1 - iso, 0]
    rotations = np.linalg.qr(rng.normal(size=(n - n_single, 3, 3)))[0]
    angles = rng.uniform(50, 90, n - n_single)
    for i, (angle, rotation) in enumerate(zip(angles, rotations)):
        directions[n_single + i] = crossing_directions(angle) @ rotation.T
    fractions[n_single:] = [(1 - iso) / 2, (1 - iso) / 2]
    signal = multi_tensor_signal(
        gtab,
        directions,
        fractions,
        iso_fractions=np.full((n, 1), iso),
        iso_diffusivities=[3e-3],
    )
    signal = 100 * add_rician_noise(signal, snr=snr, rng=rng)
    is_single = np.arange(n) < n_single
    return gtab, signal.reshape(shape + (-1,)), is_single.reshape(shape)


@pytest.fixture(scope="module")
def crossing():
    return crossing_phantom()


@pytest.fixture(scope="module")
def dipy_recursive(crossing):
    gtab, data, _ = crossing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return csdeconv.recursive_response(dipy_gtab(gtab), data, sh_order_max=8, peak_thr=0.1)


@pytest.fixture(scope="module")
def ours_recursive(crossing):
    gtab, data, _ = crossing
    return recursive_response(gtab, data, peak_thr=0.1)


def test_recursive_matches_dipy_within_5_percent(crossing, ours_recursive, dipy_recursive):
    _, _, is_single = crossing
    ours = ours_recursive
    expected = dipy_recursive.dwi_response
    np.testing.assert_allclose(ours.zonal_coefs, expected, rtol=0.05)
    assert ours.S0 == pytest.approx(dipy_recursive.S0, rel=0.01)
    assert ours.converged and 1 < ours.n_iterations <= 8
    assert 0.9 * is_single.sum() <= ours.n_voxels <= 1.05 * is_single.sum()
    # the response is the fibre's: about (1.7, 0.2, 0.2) e-3 with 10 % CSF
    assert 1.4e-3 < ours.evals[0] < 1.9e-3 and 0.08 < ours.ratio < 0.25
    assert isinstance(ours.wm_response, AxisymmetricResponse)
    assert ours.wm_response.S0 == ours.S0


def test_recursive_is_dipy_exactly_on_dipy_spheres(crossing, dipy_recursive):
    gtab, data, _ = crossing
    ours = recursive_response(
        gtab,
        data,
        peak_thr=0.1,
        sphere=dipy_data.default_sphere.vertices,
        reg_sphere=dipy_data.small_sphere.vertices,
    )
    np.testing.assert_allclose(ours.zonal_coefs, dipy_recursive.dwi_response, rtol=1e-8)


def test_recursive_uses_the_mask(crossing):
    gtab, data, is_single = crossing
    mask = np.zeros(is_single.shape, dtype=bool)
    mask[:, :, :2] = True
    ours = recursive_response(gtab, data, mask=mask, peak_thr=0.1)
    assert ours.n_voxels <= mask.sum()


def test_recursive_errors_name_the_fix(crossing):
    gtab, data, is_single = crossing
    with pytest.raises(ValueError, match="mask holds no voxel"):
        recursive_response(gtab, data, mask=np.zeros(data.shape[:3], dtype=bool))
    with pytest.raises(ValueError, match="raise peak_thr"):
        recursive_response(gtab, np.zeros_like(data[:2]), peak_thr=0.1)
    with pytest.raises(ValueError, match="did not converge"):
        recursive_response(gtab, data, peak_thr=0.1, n_iter=1, require_convergence=True)
    with pytest.warns(UserWarning, match="did not converge in n_iter=1 .* last estimate"):
        unconverged = recursive_response(gtab, data, peak_thr=0.1, n_iter=1)
    assert not unconverged.converged and unconverged.n_iterations == 1
    assert unconverged.max_change > 0.001
    assert unconverged.to_dict()["MaxRelativeChange"] == unconverged.max_change
    few = make_acquisition(n_b0=2, n_dirs=20)
    with pytest.raises(ValueError, match="lower sh_order"):
        recursive_response(few, np.ones((2, 2, 2, len(few))))
    multi = make_acquisition(n_b0=2, n_dirs=50, bvals=(1000.0, 2000.0))
    with pytest.raises(ValueError, match="single-shell"):
        recursive_response(multi, np.ones((2, len(multi))))
    bad = data.copy()
    bad[0, 0, 0, -1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        recursive_response(gtab, bad)


def test_zonal_fit_aligned_recovers_a_rotated_response():
    gtab = make_acquisition(n_b0=2, n_dirs=120)
    direction = np.array([[0.2, 0.9, -0.4]])
    direction /= np.linalg.norm(direction)
    signal = multi_tensor_signal(gtab, direction[:, None], [[1.0]], S0=1.0)
    zonal = zonal_fit_aligned(gtab, signal, direction)[0]
    along_z = multi_tensor_signal(gtab, np.array([[[0, 0, 1.0]]]), [[1.0]], S0=1.0)
    expected = zonal_fit_aligned(gtab, along_z, np.array([[0, 0, 1.0]]))[0]
    np.testing.assert_allclose(zonal, expected, rtol=1e-3)
    # and the AxisymmetricResponse built from it predicts the signal
    response = AxisymmetricResponse(zonal, 1.0)
    predicted = response.on_cosines(gtab.bvecs[~gtab.b0s_mask] @ direction[0])
    np.testing.assert_allclose(predicted, signal[0, ~gtab.b0s_mask], atol=2e-3)


def test_fa_trace_to_evals():
    evals = fa_trace_to_evals(0.3, 0.003)
    assert fractional_anisotropy(evals) == pytest.approx(0.3)
    np.testing.assert_allclose(evals, csdeconv.fa_trace_to_lambdas(0.3, 0.003))
    with pytest.raises(ValueError, match="fa"):
        fa_trace_to_evals(1.2, 0.003)


# --------------------------------------------------------------------------- serialisation


def test_json_round_trip(head, ours_recursive):
    estimates = [
        default_response(),
        fa_roi_response(head.gtab, head.signal, mask=head.brain_mask),
        ours_recursive,
    ]
    for estimate in estimates:
        text = json.dumps(estimate.to_dict())
        back = ResponseEstimate.from_dict(json.loads(text))
        assert back.method == estimate.method
        np.testing.assert_allclose(back.evals, estimate.evals)
        assert back.n_voxels == estimate.n_voxels
        assert back.shells == estimate.shells
        if estimate.zonal_coefs is not None:
            np.testing.assert_allclose(back.wm_response.zonal_coefs, estimate.zonal_coefs)
            assert back.converged == estimate.converged
        else:
            assert back.wm_response == estimate.wm_response
    assert json.loads(json.dumps(estimates[1].to_dict()))["Type"] == "eigen"
    assert estimates[2].to_dict()["Type"] == "zsh"


def test_from_dict_minimal_and_invalid():
    minimal = ResponseEstimate.from_dict({"Eigenvalues": [1.5e-3, 0.3e-3, 0.3e-3]})
    assert minimal.method == "file" and minimal.ratio == pytest.approx(0.2)
    with pytest.raises(ValueError, match="Eigenvalues"):
        ResponseEstimate.from_dict({"S0": 1.0})
    with pytest.raises(ValueError, match="ZonalCoefficients"):
        ResponseEstimate.from_dict({"Eigenvalues": [1, 0.1, 0.1], "Type": "zsh"})
    with pytest.raises(ValueError, match="method"):
        ResponseEstimate(method="magic", evals=np.ones(3))


def test_recursive_on_dipy_small_64d_with_the_tutorials_arguments():
    """DIPY's tutorial call on DIPY's real scan: DIPY returns a response, so do we."""
    pytest.importorskip("dipy", reason="compares with DIPY on its data (pip install -e .[test])")
    import nibabel as nib
    from dipy.io.gradients import read_bvals_bvecs
    from dipy.segment.mask import median_otsu as dipy_median_otsu

    from rumba_bids.core import median_otsu

    fdata, fbval, fbvec = dipy_data.get_fnames(name="small_64D")
    data = np.asarray(nib.load(fdata).dataobj, dtype=np.float64)
    bvals, bvecs = read_bvals_bvecs(fbval, fbvec)
    dipy_table = dipy_gradients.gradient_table(bvals, bvecs=bvecs)  # NaN b0 row, zeroed
    _, mask = median_otsu(data, median_radius=2, numpass=1, vol_idx=[0])
    _, their_mask = dipy_median_otsu(data, median_radius=2, numpass=1, vol_idx=[0])
    np.testing.assert_array_equal(mask, their_mask)
    tutorial = dict(
        mask=mask,
        sh_order_max=8,
        peak_thr=0.01,
        init_fa=0.08,
        init_trace=0.0021,
        iter=4,
        convergence=0.001,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = csdeconv.recursive_response(dipy_table, data, parallel=False, **tutorial)
    # DIPY's objects in, DIPY's argument names; DIPY's spheres give DIPY's result
    with pytest.warns(UserWarning, match="did not converge in n_iter=4"):
        exact = recursive_response(
            dipy_table,
            data,
            sphere=dipy_data.default_sphere,
            reg_sphere=dipy_data.small_sphere,
            parallel=False,
            **tutorial,
        )
    np.testing.assert_allclose(exact.zonal_coefs, theirs.dwi_response, rtol=1e-10)
    assert exact.S0 == pytest.approx(theirs.S0, rel=1e-12)
    # our default spheres (repulsion724 peaks, symmetric362 constraint): same response shape
    with pytest.warns(UserWarning, match="did not converge"):
        ours = recursive_response(dipy_table, data, **tutorial)
    assert ours.converged is False and ours.n_iterations == 4 and ours.max_change > 0.001
    np.testing.assert_allclose(ours.zonal_coefs[:2], theirs.dwi_response[:2], rtol=0.01)
    # 13 voxels kept here, 12 by DIPY: the response signal (data units) differs by
    # <= 1.6 % of its maximum, S0 (mean b0 of those voxels) by 4 %
    cosines = np.linspace(-1, 1, 201)
    signal_ours = ours.wm_response.on_cosines(cosines)
    signal_theirs = AxisymmetricResponse(theirs.dwi_response, theirs.S0).on_cosines(cosines)
    assert np.abs(signal_ours - signal_theirs).max() < 0.02 * signal_theirs.max()
    assert ours.S0 == pytest.approx(theirs.S0, rel=0.05)


def test_every_estimated_response_records_its_shells(head, ours_recursive):
    """Tensor (single shell), per-shell and zonal SH know the b-values they come from;
    the default response (not measured) records none."""
    assert fa_roi_response(head.gtab, head.signal, mask=head.brain_mask).shells == tuple(
        float(b) for b in head.gtab.shells
    )
    shell = float(make_acquisition(n_b0=6, n_dirs=90).shells[0])
    assert ours_recursive.shells == (shell,)
    assert ours_recursive.to_dict()["Shells"] == [shell]
    assert default_response().shells is None and "Shells" not in default_response().to_dict()


def _zsh(shells):
    return ResponseEstimate(
        "recursive", evals=[1.7e-3, 2e-4, 2e-4], S0=100.0, zonal_coefs=[50.0, -10.0],
        shells=shells,
    )  # fmt: skip


_TENSOR = [1.7e-3, 2e-4, 2e-4]
#: (response, data shells, None when accepted or a fragment of the message).
SHELL_CASES = [
    ("default tensor, any data", default_response(), (1000.0, 3000.0), None),
    ("tensor at the same shell", ResponseEstimate("fa", _TENSOR, shells=(2000.0,)), (1990.0,),
     None),
    ("tensor at another shell", ResponseEstimate("fa", _TENSOR, shells=(1000.0,)), (2000.0,),
     "the tensor response was estimated at b=1000 s/mm^2 but the data have b=2000 s/mm^2"),
    ("tensor at one of the shells", ResponseEstimate("fa", _TENSOR, shells=(2000.0,)),
     (1000.0, 2000.0, 3000.0), "data have b=1000/2000/3000 s/mm^2"),
    ("old tensor file without shells", ResponseEstimate("file", _TENSOR), (2000.0,), None),
    ("zonal SH at the same shell", _zsh((3000.0,)), (3000.0,), None),
    ("zonal SH at another shell", _zsh((1000.0,)), (3000.0,),
     "zonal-SH response was estimated at b=1000 s/mm^2 but the data have b=3000"),
    ("old zonal SH without shells", _zsh(None), (3000.0,),
     "this zonal-SH response records no shells"),
    ("per-shell, other shells", ResponseEstimate("fa", [_TENSOR] * 2, shells=(1000.0, 2000.0)),
     (1000.0, 3000.0), "per-shell response was estimated at b=1000/2000 s/mm^2"),
    ("per-shell without shells", ResponseEstimate("fa", [_TENSOR] * 2), (1000.0, 2000.0),
     "per-shell response records no shells"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("estimate", "data_shells", "message"),
    [case[1:] for case in SHELL_CASES],
    ids=[case[0] for case in SHELL_CASES],
)
def test_response_shells_problem(estimate, data_shells, message):
    from rumba_bids.core.response import response_shells_problem

    problem = response_shells_problem(estimate, data_shells)
    if message is None:
        assert problem is None
    else:
        assert problem is not None and message in problem, problem
