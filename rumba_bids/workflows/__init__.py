"""Nipype workflow builders: ``init_*_wf(*, keyword-only options, name=...)``."""

from .rumba import estimate_mem_gb, init_rumba_wf

__all__ = ["estimate_mem_gb", "init_rumba_wf"]
