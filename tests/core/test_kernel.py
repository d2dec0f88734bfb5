import warnings

import numpy as np
import pytest
from dipy_lazy import LazyModule

from rumba_bids.core import AxisymmetricResponse, get_sphere, rumba_kernel
from rumba_bids.core.kernel import perpendicular_axes
from rumba_bids.core.phantoms import make_acquisition

dipy_rumba = LazyModule("dipy.reconst.rumba")
dipy_gradients = LazyModule("dipy.core.gradients")
dipy_sphere = LazyModule("dipy.core.sphere")


def _dipy_kernel(gtab, vertices, wm, gm, csf):
    dg = dipy_gradients.gradient_table(np.array(gtab.bvals), bvecs=np.array(gtab.bvecs))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dipy_rumba.generate_kernel(dg, dipy_sphere.Sphere(xyz=vertices), wm, gm, csf)


@pytest.mark.parametrize(
    ("bvals", "wm"),
    [
        ((2000.0,), np.array([1.7e-3, 0.2e-3, 0.2e-3])),
        ((2000.0,), np.array([1.6e-3, 0.4e-3, 0.1e-3])),  # l2 != l3: perpendicular axes matter
        ((1000.0, 2500.0), np.array([[1.7e-3, 3e-4, 3e-4], [1.5e-3, 2e-4, 2e-4]])),
    ],
)
def test_kernel_matches_dipy(bvals, wm):
    gtab = make_acquisition(n_b0=3, n_dirs=40, bvals=bvals)
    vertices = get_sphere("symmetric362").vertices
    ours = rumba_kernel(gtab, vertices, wm_response=wm, gm_response=0.8e-3, csf_response=3e-3)
    theirs = _dipy_kernel(gtab, vertices, wm, 0.8e-3, 3e-3)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)
    assert ours.shape == (len(gtab), 364)


def test_axisymmetric_response_matches_dipy():
    AxSymShResponse = pytest.importorskip("dipy.reconst.csdeconv").AxSymShResponse

    gtab = make_acquisition(n_b0=2, n_dirs=30, bvals=(2000.0,))
    vertices = get_sphere("repulsion100").vertices
    coefs = np.array([1.2, -0.6, 0.25, -0.08, 0.02])
    ours = rumba_kernel(gtab, vertices, wm_response=AxisymmetricResponse(coefs, 2.0))
    theirs = _dipy_kernel(gtab, vertices, AxSymShResponse(2.0, coefs), 0.8e-3, 3e-3)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_compartments_off_give_zero_columns():
    gtab = make_acquisition(n_b0=1, n_dirs=10)
    k = rumba_kernel(
        gtab, get_sphere("repulsion100").vertices, gm_response=None, csf_response=None
    )
    assert np.all(k[:, -2:] == 0)
    assert np.all(k[gtab.b0s_mask, :-2] == 1)


def test_perpendicular_axes_are_orthonormal_frames():
    d = np.concatenate([get_sphere("repulsion200").vertices, [[1, 0, 0], [-1, 0, 0]]])
    e1, e2 = perpendicular_axes(d)
    frames = np.stack([d, e1, e2], axis=-1)
    np.testing.assert_allclose(
        frames.transpose(0, 2, 1) @ frames, np.broadcast_to(np.eye(3), frames.shape), atol=1e-12
    )


def test_axisymmetric_response_checks():
    with pytest.raises(ValueError, match="S0 > 0"):
        AxisymmetricResponse([1.0], 0.0)
    with pytest.raises(ValueError, match="finite zonal"):
        AxisymmetricResponse([np.nan], 1.0)
    resp = AxisymmetricResponse([1.0, 0.1, 0.01], 3.0)
    assert resp.sh_order == 4
    assert resp.to_dict()["Type"] == "zsh"
