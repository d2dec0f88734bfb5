"""RUMBA-SD fits: invariants, DIPY's own test equivalents, agreement with DIPY.

Tolerances (float32 default, 600 iterations): without TV our fODF weights
agree with DIPY's to ~1e-6 absolute (DIPY's voxel-wise fit is float64, its
global fit float32; the Richardson-Lucy update is a contraction, so
round-off does not grow).  With TV the normalised gradient ``grad f / |grad f|``
acts like a sign function on near-flat regions, so float32 round-off is
amplified: our own float32 and float64 fits differ by up to ~1e-3 after 100
iterations, and DIPY differs from both by the same amount.  The TV tests
therefore bound weights at 5e-3 and check peaks and fractions.
"""

import os
import warnings

import numpy as np
import pytest
from dipy_lazy import LazyModule

from rumba_bids.core import GradientTable, RumbaSDModel, get_sphere
from rumba_bids.core.phantoms import (
    add_noncentral_chi_noise,
    crossing_directions,
    make_acquisition,
    multi_tensor_signal,
    random_directions,
)

dipy_rumba = LazyModule("dipy.reconst.rumba")
dipy_gradients = LazyModule("dipy.core.gradients")
dipy_sphere = LazyModule("dipy.core.sphere")
dipy_peaks = LazyModule("dipy.direction.peaks")


def dipy_file(name):
    """A file of DIPY's installed test data (skips without DIPY)."""
    dipy = pytest.importorskip("dipy", reason="needs DIPY's test data (pip install -e .[test])")
    return os.path.join(os.path.dirname(dipy.__file__), "data", "files", name)


def _phantom(gtab, n_voxels, *, seed, snr=20, n_coils=1, shape=None):
    """1-3 fibre voxels (random directions and fractions) plus CSF-like voxels."""
    rng = np.random.default_rng(seed)
    n_fib = rng.integers(1, 4, size=n_voxels)
    directions = np.stack([random_directions(3, rng=rng) for _ in range(n_voxels)])
    fractions = rng.dirichlet(np.ones(3), size=n_voxels) * 0.8
    fractions[n_fib < 3, 2] = 0
    fractions[n_fib < 2, 1] = 0
    csf = np.full((n_voxels, 1), 0.05)
    csf[::7] = 0.9  # CSF-like voxels
    fractions *= (1 - csf) / fractions.sum(axis=1, keepdims=True)
    signal = multi_tensor_signal(
        gtab, directions, fractions, iso_fractions=csf, iso_diffusivities=[3e-3], S0=100.0
    )
    noisy = add_noncentral_chi_noise(signal, snr=snr, rng=rng, n_coils=n_coils, S0=100.0)
    if shape is not None:
        noisy = noisy.reshape(*shape, -1)
    return noisy


def _dipy_gtab(gtab):
    return dipy_gradients.gradient_table(np.array(gtab.bvals), bvecs=np.array(gtab.bvecs))


def _dipy_params(fit):
    return np.concatenate([fit.odf(), fit.f_gm[..., None], fit.f_csf[..., None]], axis=-1)


def _peaks(odf, sphere):
    dsphere = dipy_sphere.Sphere(xyz=sphere.vertices)
    return dipy_peaks.peak_directions(
        np.asarray(odf, dtype=np.float64),
        dsphere,
        relative_peak_threshold=0.5,
        min_separation_angle=25,
    )[0]


def _peak_agreement(odfs_a, odfs_b, sphere, *, max_angle=2.0):
    """Fraction of voxels with the same number of peaks, all within max_angle."""
    good = 0
    odfs_a = odfs_a.reshape(-1, odfs_a.shape[-1])
    odfs_b = odfs_b.reshape(-1, odfs_b.shape[-1])
    for a, b in zip(odfs_a, odfs_b):
        pa, pb = _peaks(a, sphere), _peaks(b, sphere)
        if len(pa) != len(pb):
            continue
        if len(pa) == 0:
            good += 1
            continue
        cos = np.abs(pa @ pb.T).max(axis=1)
        good += bool(np.all(np.degrees(np.arccos(np.clip(cos, -1, 1))) <= max_angle))
    return good / len(odfs_a)


@pytest.fixture(scope="module")
def tutorial_gtab():
    return make_acquisition(n_b0=10, n_dirs=150, bvals=(2000.0,))


@pytest.fixture(scope="module")
def sphere362():
    return get_sphere("symmetric362")


def _dipy_model(gtab, sphere, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dipy_rumba.RumbaSDModel(
            _dipy_gtab(gtab), sphere=dipy_sphere.Sphere(xyz=sphere.vertices), **kwargs
        )


@pytest.mark.parametrize(
    ("recon_type", "n_coils", "multishell"),
    [("smf", 1, False), ("sos", 4, False), ("smf", 1, True)],
)
def test_voxelwise_matches_dipy(tutorial_gtab, sphere362, recon_type, n_coils, multishell):
    if multishell:
        gtab = make_acquisition(n_b0=6, n_dirs=60, bvals=(1000.0, 2000.0, 3000.0))
        wm = np.array([[1.7e-3, 0.3e-3, 0.3e-3], [1.6e-3, 0.25e-3, 0.25e-3], [1.5e-3, 2e-4, 2e-4]])
    else:
        gtab, wm = tutorial_gtab, (1.7e-3, 0.2e-3, 0.2e-3)
    data = _phantom(gtab, 100, seed=1, n_coils=n_coils)
    kwargs = dict(wm_response=wm, n_iter=600, recon_type=recon_type, n_coils=n_coils)
    ours = RumbaSDModel(gtab, sphere=sphere362, **kwargs).fit(data)
    theirs = _dipy_model(gtab, sphere362, **kwargs).fit(data)
    np.testing.assert_allclose(ours.model_params, _dipy_params(theirs), rtol=0, atol=2e-5)
    np.testing.assert_allclose(ours.f_iso, theirs.f_iso, atol=1e-4)
    assert _peak_agreement(ours.odf(), theirs.odf(), sphere362) >= 0.99


@pytest.mark.parametrize(("use_tv", "R"), [(False, 1), (True, 1), (True, 2)])
def test_global_matches_dipy(tutorial_gtab, sphere362, use_tv, R):
    data = _phantom(tutorial_gtab, 6 * 6 * 4, seed=2, shape=(6, 6, 4))
    mask = np.ones(data.shape[:3], bool)
    mask[0, 0, :] = False
    kwargs = dict(n_iter=600, voxelwise=False, use_tv=use_tv, R=R)
    ours = RumbaSDModel(tutorial_gtab, sphere=sphere362, **kwargs).fit(data, mask=mask)
    theirs = _dipy_model(tutorial_gtab, sphere362, **kwargs).fit(data, mask=mask)
    atol = 5e-3 if use_tv else 2e-5
    np.testing.assert_allclose(ours.model_params, _dipy_params(theirs), rtol=0, atol=atol)
    np.testing.assert_allclose(ours.f_iso, theirs.f_iso, atol=0.01)
    assert _peak_agreement(ours.odf()[mask], theirs.odf()[mask], sphere362) >= 0.99


def test_cartesian_qspace_grid_matches_dipy(sphere362):
    """DSI-style data (515-point q-space grid): one tensor response evaluated at
    each measurement's own b-value."""
    table = np.loadtxt(dipy_file("dsi515_b_table.txt"))
    gtab = GradientTable(table[:, 0], table[:, 1:])
    assert gtab.is_cartesian_grid
    data = _phantom(gtab, 20, seed=3)
    ours = RumbaSDModel(gtab, sphere=sphere362, n_iter=200).fit(data)
    theirs = _dipy_model(gtab, sphere362, n_iter=200).fit(data)
    np.testing.assert_allclose(ours.model_params, _dipy_params(theirs), rtol=0, atol=2e-5)


def test_real_small_101d_scan(sphere362):
    nib = pytest.importorskip("nibabel")
    img = nib.load(dipy_file("small_101D.nii.gz"))
    data = np.asarray(img.dataobj, dtype=np.float64)
    bvals = np.loadtxt(dipy_file("small_101D.bval"))
    bvecs = np.loadtxt(dipy_file("small_101D.bvec"))
    gtab = GradientTable(bvals, bvecs)
    mask = data[..., gtab.b0s_mask].mean(-1) > np.percentile(data[..., 0], 50)
    fit = RumbaSDModel(gtab, sphere=sphere362, n_iter=100).fit(data, mask=mask)
    assert np.all(np.isfinite(fit.model_params))
    np.testing.assert_allclose(fit.f_wm[mask] + fit.f_iso[mask], 1, atol=1e-5)
    assert fit.snr[mask].min() >= 8 - 1e-3 and fit.snr[mask].max() <= 80 + 1e-3
    idx = np.argwhere(mask)[:8]
    theirs = _dipy_model(gtab, sphere362, n_iter=100).fit(data[tuple(idx.T)])
    np.testing.assert_allclose(
        fit.model_params[tuple(idx.T)], _dipy_params(theirs), rtol=0, atol=2e-5
    )


# --- equivalents of DIPY's own RUMBA tests --------------------------------------


@pytest.mark.parametrize("recon_type", ["smf", "sos"])
def test_two_fibre_recovery(tutorial_gtab, recon_type):
    sphere = get_sphere("repulsion724")
    true_dirs = crossing_directions(90)
    data = multi_tensor_signal(tutorial_gtab, true_dirs, [0.5, 0.5], S0=100)
    fit = RumbaSDModel(
        tutorial_gtab, sphere=sphere, n_iter=600, recon_type=recon_type, n_coils=4
    ).fit(data)
    found = _peaks(fit.odf(), sphere)
    assert len(found) == 2
    cos = np.abs(found @ true_dirs.T).max(axis=0)
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 5
    assert fit.f_iso < 0.1


def test_isotropic_voxel_has_large_iso_fraction(tutorial_gtab):
    data = multi_tensor_signal(
        tutorial_gtab,
        np.zeros((0, 3)),
        np.zeros(0),
        iso_fractions=[1.0],
        iso_diffusivities=[3e-3],
        S0=100,
    )
    fit = RumbaSDModel(tutorial_gtab, sphere="symmetric362").fit(data)
    assert fit.f_iso > 0.8


def test_prediction_reproduces_data(tutorial_gtab):
    data = multi_tensor_signal(tutorial_gtab, [[0.0, 0.0, 1.0]], [1.0])
    fit = RumbaSDModel(tutorial_gtab, n_iter=600).fit(data)
    np.testing.assert_allclose(fit.predict(), data, atol=0.01, rtol=0.05)
    np.testing.assert_allclose(fit.predict(S0=100.0), 100 * fit.predict(), rtol=1e-12)


# --- invariants, modes, inputs ----------------------------------------------------


def test_invariants_and_zeros_outside_mask(tutorial_gtab, sphere362):
    data = _phantom(tutorial_gtab, 27, seed=4, shape=(3, 3, 3))
    mask = np.ones((3, 3, 3), bool)
    mask[1, 1, 1] = False
    model = RumbaSDModel(tutorial_gtab, sphere=sphere362, n_iter=50)
    fit = model.fit(data, mask=mask)
    np.testing.assert_allclose(fit.f_iso, fit.f_gm + fit.f_csf)
    np.testing.assert_allclose((fit.f_wm + fit.f_iso)[mask], 1, atol=1e-5)
    np.testing.assert_allclose(fit.odf().sum(-1), fit.f_wm)
    np.testing.assert_allclose(fit.combined_odf_iso, fit.odf() + fit.f_iso[..., None] / 362)
    assert np.all(fit.model_params[1, 1, 1] == 0) and fit.snr[1, 1, 1] == 0
    assert fit.odf().shape == (3, 3, 3, 362)
    with pytest.raises(ValueError, match="sphere the model was fitted with"):
        fit.odf(sphere="repulsion724")
    assert fit.odf(sphere=sphere362) is not None


def test_fit_mutates_neither_model_nor_data(tutorial_gtab):
    data = _phantom(tutorial_gtab, 8, seed=5)
    before = data.copy()
    model = RumbaSDModel(tutorial_gtab, n_iter=10)
    kernel = model.kernel.copy()
    state = {k: v for k, v in vars(model).items() if k != "kernel"}
    first = model.fit(data)
    second = model.fit(data)
    np.testing.assert_array_equal(data, before)
    np.testing.assert_array_equal(model.kernel, kernel)
    assert {k: v for k, v in vars(model).items() if k != "kernel"} == state
    np.testing.assert_array_equal(first.model_params, second.model_params)  # deterministic


def test_chunking_and_dtype_do_not_change_results(tutorial_gtab):
    data = _phantom(tutorial_gtab, 50, seed=6)
    ref = RumbaSDModel(tutorial_gtab, n_iter=100, dtype=np.float64).fit(data).model_params
    for chunk in (7, 50, 1024):
        out = RumbaSDModel(tutorial_gtab, n_iter=100, chunk_size=chunk).fit(data)
        assert out.model_params.dtype == np.float32
        np.testing.assert_allclose(out.model_params, ref, atol=1e-5)


def test_tv_chunk_default_changes_nothing_but_speed(tutorial_gtab, monkeypatch):
    """With TV the chunk only cuts a slab's update into matrix products: the default
    (``memory.TV_CHUNK``, picked for speed) gives the fit of any other chunk to round-off.

    In float64 the chunks agree to 1e-12 (measured: 4e-15). In float32 the BLAS kernel
    decides: SkylakeX-class kernels gave the same bits, Haswell and Zen kernels
    (OPENBLAS_CORETYPE) 2.2e-6 apart, so the float32 fits of two chunks must differ less
    than the float32 fit differs from the float64 one (measured 5.2e-6 and 1.1e-5)."""
    from rumba_bids.core import iteration, memory

    assert memory.default_chunk(True) == memory.TV_CHUNK != memory.default_chunk(False)
    data = _phantom(tutorial_gtab, 9 * 8 * 6, seed=16, shape=(9, 8, 6))
    mask = np.random.default_rng(2).random((9, 8, 6)) < 0.7
    seen = []
    original = iteration._iterate_tv

    def spy(*args, **kwargs):
        seen.append(kwargs["chunk_size"])
        return original(*args, **kwargs)

    monkeypatch.setattr(iteration, "_iterate_tv", spy)

    def fit(chunk, dtype=np.float32):
        model = RumbaSDModel(
            tutorial_gtab, n_iter=20, voxelwise=False, use_tv=True, chunk_size=chunk, dtype=dtype
        )
        return model.fit(data, mask=mask).model_params

    single = {chunk: fit(chunk) for chunk in (None, 7, 1024)}
    double = {chunk: fit(chunk, np.float64) for chunk in (None, 7)}
    assert seen == [memory.TV_CHUNK, 7, 1024, memory.TV_CHUNK, 7]
    np.testing.assert_allclose(double[7], double[None], rtol=0, atol=1e-12)
    round_off = np.abs(single[None] - double[None]).max()
    assert 0 < round_off < 1e-4
    for chunk in (7, 1024):
        assert np.abs(single[chunk] - single[None]).max() <= round_off


@pytest.mark.parametrize(
    "options",
    [{}, {"voxelwise": False}, {"voxelwise": False, "use_tv": True}, {"R": 2, "use_tv": True}],
    ids=["voxelwise", "global", "tv", "tv-R2"],
)
def test_results_do_not_depend_on_the_number_of_threads(tutorial_gtab, options, monkeypatch):
    """1, 2 and 3 threads give bit-identical fits (chunks and TV slabs are fixed by the
    data); several chunks and slabs make sure the threads share the work."""
    from rumba_bids.core import tv

    monkeypatch.setattr(tv, "TV_SLAB_VOXELS", 20)  # slabs of one or two slices
    options = {"voxelwise": False, **options} if options.get("use_tv") else options
    data = _phantom(tutorial_gtab, 7 * 6 * 5, seed=12, shape=(7, 6, 5))
    mask = np.random.default_rng(0).random((7, 6, 5)) < 0.8
    fits = {
        n: RumbaSDModel(tutorial_gtab, n_iter=15, chunk_size=16, n_threads=n, **options).fit(
            data, mask=mask
        )
        for n in (1, 2, 3)
    }
    for n in (2, 3):
        np.testing.assert_array_equal(fits[n].model_params, fits[1].model_params)
        np.testing.assert_array_equal(fits[n].snr, fits[1].snr)
    assert RumbaSDModel(tutorial_gtab).n_threads is None  # every CPU, resolved at fit time


def test_tv_fit_equals_the_reference_implementation(tutorial_gtab):
    """The slab-wise TV fit equals main's whole-volume TV fit (benchmarks/tv_reference.py)
    on a masked grid (crops and halos): in float64 to 1e-10 (measured: 3e-12 with R=1,
    2e-13 with R=2, weights up to 0.89, 40 iterations); in float32 it is as accurate as the
    reference's float32 fit, both measured against the float64 reference: within 5x. Each
    float32 error is one draw of amplified round-off, so their ratio moves with the BLAS
    kernel (OPENBLAS_CORETYPE; ours/reference, R=1 and R=2): SkylakeX 1.1 and 0.99,
    Haswell and Zen 0.61 and 1.47, Sandybridge 2.8 and 0.96, Nehalem 1.3 and 0.93."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "benchmarks" / "tv_reference.py"
    spec = importlib.util.spec_from_file_location("tv_reference", path)
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    data = _phantom(tutorial_gtab, 9 * 8 * 6, seed=13, shape=(9, 8, 6))
    mask = np.random.default_rng(1).random((9, 8, 6)) < 0.7
    for R in (1, 2):
        model = RumbaSDModel(tutorial_gtab, n_iter=40, voxelwise=False, use_tv=True, R=R)
        double = RumbaSDModel(
            tutorial_gtab, n_iter=40, voxelwise=False, use_tv=True, R=R, dtype=np.float64
        )
        ours = model.fit(data, mask=mask)
        theirs = reference.reference_tv_fit(model, data, mask)
        exact = reference.reference_tv_fit(double, data, mask)
        np.testing.assert_allclose(
            double.fit(data, mask=mask).model_params, exact.model_params, rtol=0, atol=1e-10
        )
        round_off = np.abs(theirs.model_params - exact.model_params).max()
        assert 0 < round_off < 1e-4
        assert np.abs(ours.model_params - exact.model_params).max() <= 5 * round_off
        np.testing.assert_allclose(ours.snr, theirs.snr, rtol=1e-4)


@pytest.mark.parametrize(
    "options",
    [{}, {"dtype": np.float64}, {"recon_type": "sos", "n_coils": 4}, {"voxelwise": False}],
    ids=["float32", "float64", "sos", "global"],
)
def test_compiled_iteration_equals_the_numpy_one(tutorial_gtab, options):
    """The compiled element-wise passes (core/kernels.py) give main's numpy iteration
    (benchmarks/tv_reference.py) bit for bit: same operations in the same order."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[2] / "benchmarks" / "tv_reference.py"
    spec = importlib.util.spec_from_file_location("tv_reference", path)
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    data = _phantom(tutorial_gtab, 5 * 4 * 3, seed=15, shape=(5, 4, 3))
    model = RumbaSDModel(tutorial_gtab, n_iter=25, chunk_size=16, **options)
    ours = model.fit(data)
    theirs = reference.reference_voxelwise_fit(model, data)
    np.testing.assert_array_equal(ours.model_params, theirs.model_params)
    np.testing.assert_array_equal(ours.snr, theirs.snr)


def test_fortran_ordered_input_gives_the_same_fit(tutorial_gtab):
    """A NIfTI series is loaded in Fortran order; the fit gathers its voxels from it
    (without a C-order copy) and gets the same result."""
    data = _phantom(tutorial_gtab, 4 * 3 * 2, seed=14, shape=(4, 3, 2))
    mask = np.ones((4, 3, 2), bool)
    mask[0, 0, 0] = False
    model = RumbaSDModel(tutorial_gtab, n_iter=10, voxelwise=False)
    expected = model.fit(data, mask=mask).model_params
    got = model.fit(np.asfortranarray(data), mask=mask).model_params
    np.testing.assert_array_equal(got, expected)


def test_non_symmetric_sphere_unfolded_path(tutorial_gtab):
    """A sphere without antipodal pairs is fitted without folding."""
    half = get_sphere("symmetric362").vertices[:181]
    data = _phantom(tutorial_gtab, 10, seed=7)
    ours = RumbaSDModel(tutorial_gtab, sphere=half, n_iter=100).fit(data)
    from rumba_bids.core.sphere import Sphere

    theirs = _dipy_model(tutorial_gtab, Sphere(half), n_iter=100).fit(data)
    np.testing.assert_allclose(ours.model_params, _dipy_params(theirs), atol=2e-5)


def test_compartments_switched_off(tutorial_gtab):
    data = _phantom(tutorial_gtab, 10, seed=8)
    fit = RumbaSDModel(tutorial_gtab, gm_response=None, csf_response=None, n_iter=50).fit(data)
    assert np.all(fit.f_gm == 0) and np.all(fit.f_csf == 0)
    np.testing.assert_allclose(fit.f_wm, 1, atol=1e-5)


def test_tv_on_single_slice_is_2d(tutorial_gtab):
    data = _phantom(tutorial_gtab, 36, seed=9, shape=(6, 6, 1))
    plain = RumbaSDModel(tutorial_gtab, n_iter=30, voxelwise=False).fit(data)
    tv = RumbaSDModel(tutorial_gtab, n_iter=30, voxelwise=False, use_tv=True).fit(data)
    assert np.all(np.isfinite(tv.model_params))
    assert not np.allclose(tv.model_params, plain.model_params, atol=1e-6)


def test_nonpositive_b0_voxels_excluded(tutorial_gtab):
    data = _phantom(tutorial_gtab, 6, seed=10)
    data[2, tutorial_gtab.b0s_mask] = 0
    data[4, tutorial_gtab.b0s_mask] = -1
    fit = RumbaSDModel(tutorial_gtab, n_iter=20).fit(data)
    assert fit.n_excluded == 2
    assert not fit.mask[2] and not fit.mask[4] and fit.mask[0]
    assert np.all(fit.model_params[[2, 4]] == 0)


def test_progress_callback(tutorial_gtab):
    data = _phantom(tutorial_gtab, 30, seed=11, shape=(5, 3, 2))
    calls = []
    RumbaSDModel(
        tutorial_gtab, n_iter=5, chunk_size=10, progress=lambda f, t: calls.append(f)
    ).fit(data)
    assert calls == pytest.approx([1 / 3, 2 / 3, 1.0])
    calls.clear()
    RumbaSDModel(
        tutorial_gtab,
        n_iter=4,
        voxelwise=False,
        use_tv=True,
        progress=lambda f, t: calls.append(f),
    ).fit(data)
    assert calls == pytest.approx([0.25, 0.5, 0.75, 1.0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_iter": 0}, "n_iter must be an integer >= 1"),
        ({"R": 0}, "R must be"),
        ({"n_coils": 0}, "n_coils must be"),
        ({"use_tv": True}, "needs the global fit"),
        ({"sphere": "nosuch"}, "unknown sphere"),
        ({"dtype": np.int32}, "float32 or float64"),
        ({"wm_response": (1.7, 0.2, 0.2)}, "mm\\^2/s"),
        ({"wm_response": np.ones((2, 3)) * 1e-3}, "2 rows but the data have 1"),
        ({"wm_response": (1e-3, 1e-3)}, "wm_response must be"),
        ({"gm_response": -1e-3}, "non-negative"),
        ({"n_threads": 0}, "n_threads must be None or an integer >= 1"),
        ({"n_threads": 1.5}, "n_threads must be None or an integer >= 1"),
    ],
)
def test_bad_model_options(tutorial_gtab, kwargs, match):
    with pytest.raises(ValueError, match=match):
        RumbaSDModel(tutorial_gtab, **kwargs)


def test_bad_fit_inputs(tutorial_gtab):
    model = RumbaSDModel(tutorial_gtab, n_iter=2)
    glob = RumbaSDModel(tutorial_gtab, n_iter=2, voxelwise=False)
    data = _phantom(tutorial_gtab, 8, seed=12, shape=(2, 2, 2))
    with pytest.raises(ValueError, match="159 volumes but the gradient table has 160"):
        model.fit(data[..., :-1])
    with pytest.raises(ValueError, match="needs 4D data"):
        glob.fit(data.reshape(8, -1))
    # checked by fit, as DIPY does (its own tests build such a model)
    with pytest.raises(ValueError, match="recon_type must be 'smf' or 'sos'"):
        RumbaSDModel(tutorial_gtab, n_iter=2, recon_type="xyz").fit(data)
    tv = RumbaSDModel(tutorial_gtab, n_iter=2, voxelwise=False, use_tv=True)
    with pytest.raises(ValueError, match="at least two spatial axes longer than 1"):
        tv.fit(data[:1, :1])
    with pytest.raises(ValueError, match="mask shape"):
        model.fit(data, mask=np.ones((2, 2)))
    bad = data.copy()
    bad[1, 0, 1, 20] = np.nan
    with pytest.raises(ValueError, match=r"1 voxels contain NaN or inf \(first: \(1, 0, 1\)\)"):
        model.fit(bad)
    bad[1, 0, 1, 20] = np.inf
    model.fit(bad, mask=~np.isinf(bad).any(-1))  # masked out: fine
