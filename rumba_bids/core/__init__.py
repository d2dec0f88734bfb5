"""Numerical core of rumba-bids: arrays in, arrays out (numpy and scipy only).

Never imports nipype, nibabel or bids (a test checks this).
"""

from .gradients import GradientTable, bvecs_fsl_to_voxel, voxel_to_world, world_to_voxel
from .kernel import AxisymmetricResponse, rumba_kernel
from .peaks import (
    PeaksResult,
    extract_peaks,
    gfa,
    mrtrix_to_peaks,
    peak_directions,
    peaks_to_mrtrix,
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

__all__ = [
    "AxisymmetricResponse",
    "GradientTable",
    "PeaksResult",
    "RumbaFit",
    "RumbaSDModel",
    "Sphere",
    "as_sphere",
    "bvecs_fsl_to_voxel",
    "extract_peaks",
    "get_sphere",
    "gfa",
    "laplace_beltrami_eigenvalues",
    "mrtrix_to_peaks",
    "n_sh_coefficients",
    "peak_directions",
    "peaks_to_mrtrix",
    "real_sh_basis",
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
