"""Nipype interfaces of rumba-bids: files in, one core call, files out.

One ``SimpleInterface`` per step (:class:`CheckGradients`, :class:`BrainMask`,
:class:`EstimateResponse`, :class:`FitRumba`, :class:`FodToSH`,
:class:`ExtractPeaks`); each wraps a file-level function of the same module
that can be called without Nipype.  Bad inputs raise
:class:`~rumba_bids.interfaces.errors.RumbaInputError` naming the file.
"""

from importlib import import_module

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


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
