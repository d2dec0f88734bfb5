"""Nipype interfaces of rumba-bids: files in, one core call, files out.

One ``SimpleInterface`` per step (:class:`CheckGradients`, :class:`BrainMask`,
:class:`EstimateResponse`, :class:`FitRumba`, :class:`FodToSH`,
:class:`ExtractPeaks`); each wraps a file-level function of the same module
that can be called without Nipype.  Bad inputs raise
:class:`~rumba_bids.interfaces.errors.RumbaInputError` naming the file.
"""

from .errors import InputDataError, InputMissingError, RumbaInputError
from .gradients import CheckGradients
from .masking import BrainMask
from .peaks import ExtractPeaks
from .response import EstimateResponse
from .rumba import FitRumba
from .shm import FodToSH

__all__ = [
    "BrainMask",
    "CheckGradients",
    "EstimateResponse",
    "ExtractPeaks",
    "FitRumba",
    "FodToSH",
    "InputDataError",
    "InputMissingError",
    "RumbaInputError",
]
