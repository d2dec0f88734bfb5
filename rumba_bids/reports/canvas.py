"""Headless matplotlib: figures on the Agg canvas, never pyplot's global state.

Matplotlib writes a font cache in ``MPLCONFIGDIR`` (default ``~/.config/matplotlib``);
in containers the home directory is often read-only or absent, so before the
first import :func:`ensure_config_dir` points ``MPLCONFIGDIR`` at a private
temporary directory when the default one cannot be written.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
from pathlib import Path

#: Resolution of saved figures (pixels per inch).
DPI = 100
FORMATS = (".png", ".svg", ".pdf")


def _writable(path: Path) -> bool:
    while not path.exists():
        if path.parent == path:
            return False
        path = path.parent
    return path.is_dir() and os.access(path, os.W_OK | os.X_OK)


def ensure_config_dir() -> None:
    """Set ``MPLCONFIGDIR`` to a temporary directory when the default is not writable."""
    if "matplotlib" in sys.modules:
        return
    configured = os.environ.get("MPLCONFIGDIR")
    if configured and _writable(Path(configured)):
        return
    home = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    if not configured and _writable(Path(home) / "matplotlib"):
        return
    os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="rumba-bids-mpl-")


def new_figure(width_in: float, height_in: float, *, dpi: int = DPI, facecolor="white"):
    """A :class:`matplotlib.figure.Figure` attached to an Agg canvas.

    Parameters
    ----------
    width_in, height_in : float
        Size in inches; saved images are ``round(size * dpi)`` pixels.
    dpi : int
    facecolor : colour
    """
    ensure_config_dir()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), dpi=dpi, facecolor=facecolor)
    FigureCanvasAgg(figure)
    return figure


def figure_bytes(figure, *, fmt: str = "png") -> bytes:
    """The figure encoded as PNG, SVG or PDF (its exact size: no tight bbox)."""
    buffer = io.BytesIO()
    figure.savefig(
        buffer, format=fmt, dpi=figure.dpi, facecolor=figure.get_facecolor(), metadata=_meta(fmt)
    )
    return buffer.getvalue()


def _meta(fmt: str) -> dict:
    if fmt == "png":
        return {"Software": "rumba-bids"}
    if fmt == "svg":
        return {"Date": None}  # reproducible output
    return {}


def save_figure(figure, path) -> Path:
    """Write ``figure`` to ``path`` (format from the extension); return the path.

    The file is written next to its target and renamed into place, so a
    reader never sees a partial image.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"unsupported figure format {suffix!r}: use one of {', '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(figure_bytes(figure, fmt=suffix[1:]))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path
