"""Numerical core of rumba-bids: arrays in, arrays out (numpy and scipy only).

Never imports nipype, nibabel or bids (a test checks this).  The names below
load their module on first use, so ``rumba_bids.core.defaults`` (plain Python)
can be read without loading numpy, e.g. by the command line.
"""

from .lazy import lazy_exports

#: Public name -> submodule defining it.
_EXPORTS = {
    "as_sphere": "sphere",
    "AxisymmetricResponse": "kernel",
    "bvecs_fsl_to_voxel": "gradients",
    "CsdFit": "csd",
    "CsdModel": "csd",
    "default_response": "response",
    "extract_peaks": "peaks",
    "fa_roi_response": "response",
    "fit_tensor": "tensor",
    "fractional_anisotropy": "tensor",
    "get_sphere": "sphere",
    "gfa": "peaks",
    "GradientTable": "gradients",
    "laplace_beltrami_eigenvalues": "shm",
    "mean_diffusivity": "tensor",
    "median_otsu": "masking",
    "mrtrix_to_peaks": "peaks",
    "n_sh_coefficients": "shm",
    "peak_directions": "peaks",
    "peaks_from_model": "peaks",
    "peaks_to_mrtrix": "peaks",
    "PeaksResult": "peaks",
    "real_sh_basis": "shm",
    "recursive_response": "response",
    "ResponseEstimate": "response",
    "rumba_kernel": "kernel",
    "RumbaFit": "rumba",
    "RumbaSDModel": "rumba",
    "sf_to_sh": "shm",
    "sh_degree_order": "shm",
    "sh_fit_matrix": "shm",
    "sh_order_from_n_coefficients": "shm",
    "sh_to_sf": "shm",
    "sh_zonal_indices": "shm",
    "Sphere": "sphere",
    "TensorFit": "tensor",
    "voxel_to_world": "gradients",
    "world_to_voxel": "gradients",
    "zonal_to_rotational": "shm",
    "zonal_to_sh": "shm",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
