"""Numerical core of rumba-bids: arrays in, arrays out (numpy and scipy only).

Never imports nipype, nibabel or bids (a test checks this).
"""

from .csd import CsdFit, CsdModel
from .gradients import GradientTable, bvecs_fsl_to_voxel, voxel_to_world, world_to_voxel
from .kernel import AxisymmetricResponse, rumba_kernel
from .masking import median_otsu
from .peaks import (
    PeaksResult,
    extract_peaks,
    gfa,
    mrtrix_to_peaks,
    peak_directions,
    peaks_to_mrtrix,
)
from .response import (
    ResponseEstimate,
    default_response,
    fa_roi_response,
    recursive_response,
)
from .rumba import RumbaFit, RumbaSDModel
from .shm import (
    laplace_beltrami_eigenvalues,
    n_sh_coefficients,
    real_sh_basis,
    sf_to_sh,
    sh_degree_order,
    sh_fit_matrix,
    sh_order_from_n_coefficients,
    sh_to_sf,
    sh_zonal_indices,
    zonal_to_rotational,
    zonal_to_sh,
)
from .sphere import Sphere, as_sphere, get_sphere
from .tensor import TensorFit, fit_tensor, fractional_anisotropy, mean_diffusivity

__all__ = [
    "AxisymmetricResponse",
    "CsdFit",
    "CsdModel",
    "GradientTable",
    "PeaksResult",
    "ResponseEstimate",
    "RumbaFit",
    "RumbaSDModel",
    "Sphere",
    "TensorFit",
    "as_sphere",
    "bvecs_fsl_to_voxel",
    "default_response",
    "extract_peaks",
    "fa_roi_response",
    "fit_tensor",
    "fractional_anisotropy",
    "get_sphere",
    "gfa",
    "laplace_beltrami_eigenvalues",
    "mean_diffusivity",
    "median_otsu",
    "mrtrix_to_peaks",
    "n_sh_coefficients",
    "peak_directions",
    "peaks_to_mrtrix",
    "real_sh_basis",
    "recursive_response",
    "rumba_kernel",
    "sf_to_sh",
    "sh_degree_order",
    "sh_fit_matrix",
    "sh_order_from_n_coefficients",
    "sh_to_sf",
    "sh_zonal_indices",
    "voxel_to_world",
    "world_to_voxel",
    "zonal_to_rotational",
    "zonal_to_sh",
]
