"""Numerical core of rumba-bids: arrays in, arrays out (numpy and scipy only).

Never imports nipype, nibabel or bids (a test checks this).
"""

from .gradients import GradientTable, bvecs_fsl_to_voxel, voxel_to_world, world_to_voxel
from .kernel import AxisymmetricResponse, rumba_kernel
from .rumba import RumbaFit, RumbaSDModel
from .sphere import Sphere, as_sphere, get_sphere

__all__ = [
    "AxisymmetricResponse",
    "GradientTable",
    "RumbaFit",
    "RumbaSDModel",
    "Sphere",
    "as_sphere",
    "bvecs_fsl_to_voxel",
    "get_sphere",
    "rumba_kernel",
    "voxel_to_world",
    "world_to_voxel",
]
