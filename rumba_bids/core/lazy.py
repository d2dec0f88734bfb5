"""Lazy package exports: a name is imported from its module on first use.

Used by ``rumba_bids.core`` and ``rumba_bids.interfaces`` so that importing the package
(e.g. by the command-line parser) loads neither numpy nor nipype.
"""

from __future__ import annotations

from importlib import import_module


def lazy_exports(package: str, exports: dict[str, str], namespace: dict):
    """Module-level ``__getattr__`` and ``__dir__`` for ``package``.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : dict
        Exported name -> submodule (relative to ``package``) that defines it.
    namespace : dict
        The package's ``globals()``; a name is cached there once imported.
    """

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(import_module(f".{module}", package), name)
        namespace[name] = value
        return value

    def __dir__():
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
