"""Nipype interfaces of rumba-bids: files in, one core call, files out.

One ``SimpleInterface`` per step (:class:`CheckGradients`, :class:`BrainMask`,
:class:`EstimateResponse`, :class:`FitRumba`, :class:`FodToSH`,
:class:`ExtractPeaks`); each wraps a file-level function of the same module
that can be called without Nipype.  Bad inputs raise
:class:`~rumba_bids.interfaces.errors.RumbaInputError` naming the file.
"""

from ..core.lazy import lazy_exports

#: Public names and the module defining each; loaded on first use, so that importing
#: the errors (:mod:`rumba_bids.interfaces.errors`, plain Python) loads no numpy or Nipype.
_EXPORTS = {
    "BrainMask": "masking",
    "CheckGradients": "gradients",
    "EstimateResponse": "response",
    "ExtractPeaks": "peaks",
    "FitRumba": "rumba",
    "FodToSH": "shm",
    "InputDataError": "errors",
    "InputMissingError": "errors",
    "RumbaInputError": "errors",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
