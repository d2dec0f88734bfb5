"""DIPY, the reference of the core tests, imported when a test first uses it.

DIPY is a test extra, never a runtime dependency. A module-level ``pytest.importorskip``
would skip every test of a module, also those that never touch DIPY; a :class:`LazyModule`
instead skips, with the reason, only the tests and fixtures that use one of its attributes.
Use it for module-level names only; never read an attribute at import time.
"""

from __future__ import annotations

import pytest


class LazyModule:
    """``LazyModule("dipy.reconst.shm").sph_harm_ind_list`` imports on first use, or skips."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute: str):
        if attribute.startswith(("_", "pytest")):
            # pytest's collection probes module-level objects (__test__, pytestmark, ...)
            raise AttributeError(attribute)
        module = pytest.importorskip(
            self._name, reason=f"needs DIPY (the reference; pip install -e .[test]): {self._name}"
        )
        return getattr(module, attribute)

    def __repr__(self) -> str:
        return f"LazyModule({self._name!r})"
