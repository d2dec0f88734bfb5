"""Tables and figure of the accuracy benchmark (``benchmarks/accuracy.py``).

Split out of the benchmark script to keep it readable; the method names, peak
settings and plot styles shared by both live here.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np

PEAK_SETTINGS = {"relative_peak_threshold": 0.2, "min_separation_angle": 25.0, "npeaks": 5}
OURS, OURS_TV, DIPY, MRTRIX = "rumba-bids", "rumba-bids TV", "DIPY RUMBA-SD", "MRtrix3 CSD"
#: The same fits with peaks at the sphere's vertices (``extract_peaks(refine=False)``).
OURS_VERTEX, OURS_TV_VERTEX = "rumba-bids, vertex peaks", "rumba-bids TV, vertex peaks"
METHOD_STYLE = {OURS: "tab:blue", OURS_TV: "tab:green", DIPY: "tab:orange", MRTRIX: "tab:red"}
SNR_STYLE = {10: ":", 20: "--", 30: "-"}


def at_threshold(results, threshold=None) -> dict:
    """``{cell: {method: metrics}}`` at one relative peak threshold."""
    if threshold is None:
        threshold = PEAK_SETTINGS["relative_peak_threshold"]
    return {
        cell: {m: by_t[threshold] for m, by_t in by_method.items() if not m.startswith("_")}
        for cell, by_method in results.items()
    }


def _pool(metrics: list[dict]) -> dict:
    """Voxel-weighted mean of cell metrics (NaN-aware for angles and f_iso)."""
    pooled = {"n_voxels": sum(m["n_voxels"] for m in metrics)}
    for key in ("success_rate", "angular_error", "n_plus", "n_minus", "f_iso_error"):
        values = np.array([m[key] for m in metrics], dtype=np.float64)
        weights = np.array([m["n_voxels"] for m in metrics], dtype=np.float64)
        finite = np.isfinite(values)
        pooled[key] = (
            float(np.average(values[finite], weights=weights[finite])) if finite.any() else np.nan
        )
    return pooled


def _fmt(value, digits=2):
    return "—" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _row(cells) -> str:
    return "| " + " | ".join(cells) + " |"


def _head(header) -> list[str]:
    return [_row(header), "|" + "---|" * len(header)]


SUMMARY_COLUMNS = (
    ("1 fibre", lambda c: c.n_fibres == 1),
    ("2 fibres 30°", lambda c: c.n_fibres == 2 and c.angle == 30),
    ("2 fibres 45°", lambda c: c.n_fibres == 2 and c.angle == 45),
    ("2 fibres 60–90°", lambda c: c.n_fibres == 2 and c.angle >= 60),
    ("3 fibres", lambda c: c.n_fibres == 3),
)


def summary_table(results, *, acquisition, noise) -> list[str]:
    """Markdown rows: method x SNR, success rate per geometry group, then pooled errors."""
    cells = [c for c in results if c.acquisition == acquisition and c.noise == noise]
    if not cells:
        return []
    methods = [m for m in (OURS, OURS_VERTEX, DIPY, MRTRIX) if any(m in results[c] for c in cells)]
    header = ["method", "SNR", *(f"success {name}" for name, _ in SUMMARY_COLUMNS)]
    header += ["ang. error (°)", "n+", "n−", "f_iso error"]
    lines = _head(header)
    for method in methods:
        for snr in sorted({c.snr for c in cells}):
            chosen = [c for c in cells if c.snr == snr and method in results[c]]
            row = [method, f"{snr:g}"]
            for _, keep in SUMMARY_COLUMNS:
                group = [results[c][method] for c in chosen if keep(c)]
                row.append(_fmt(_pool(group)["success_rate"]) if group else "—")
            everything = _pool([results[c][method] for c in chosen])
            row += [_fmt(everything["angular_error"], 1), _fmt(everything["n_plus"])]
            row += [_fmt(everything["n_minus"]), _fmt(everything["f_iso_error"], 3)]
            lines.append(_row(row))
    return lines


def coherent_table(coherent) -> list[str]:
    header = ["method", "SNR", "success (fibre voxels)", "ang. error (°)", "n+", "n−"]
    header += ["success (crossings)", "ang. error crossings (°)", "f_iso error"]
    lines = _head(header)
    methods = (OURS, OURS_VERTEX, OURS_TV, OURS_TV_VERTEX, DIPY, MRTRIX)
    methods = [m for m in methods if any(m in v for v in coherent.values())]
    for method in methods:
        for snr, by_method in coherent.items():
            if method not in by_method:
                continue
            a, x = by_method[method]["all"], by_method[method]["crossing"]
            row = [method, f"{snr:g}", _fmt(a["success_rate"]), _fmt(a["angular_error"], 1)]
            row += [_fmt(a["n_plus"]), _fmt(a["n_minus"]), _fmt(x["success_rate"])]
            row += [_fmt(x["angular_error"], 1), _fmt(a["f_iso_error"], 3)]
            lines.append(_row(row))
    return lines


def full_table(results) -> list[str]:
    methods = (OURS, OURS_VERTEX, DIPY, MRTRIX)
    methods = [m for m in methods if any(m in v for v in results.values())]
    header = ["acquisition", "noise", "SNR", "fibres", "angle", "fractions", "CSF"]
    header += [f"{m}: success / error° / n+ / n− / f_iso err" for m in methods]
    lines = _head(header)
    for cell, by_method in results.items():
        row = [cell.acquisition, cell.noise, f"{cell.snr:g}", str(cell.n_fibres)]
        row += [f"{cell.angle:g}°" if cell.n_fibres > 1 else "—"]
        row += ["/".join(f"{f:.2g}" for f in cell.fractions), f"{cell.csf:g}"]
        for method in methods:
            m = by_method.get(method)
            if m is None:
                row.append("—")
                continue
            row.append(
                f"{_fmt(m['success_rate'])} / {_fmt(m['angular_error'], 1)} / "
                f"{_fmt(m['n_plus'])} / {_fmt(m['n_minus'])} / {_fmt(m['f_iso_error'], 3)}"
            )
        lines.append(_row(row))
    return lines


def plot(results, path: Path) -> None:
    """Success rate and angular error vs crossing angle (2 fibres, Rician noise)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    acquisitions_present = [
        a for a in ("single-shell", "multi-shell") if any(c.acquisition == a for c in results)
    ]
    fig, axes = plt.subplots(
        len(acquisitions_present), 2, figsize=(11, 4 * len(acquisitions_present)), squeeze=False
    )
    for row, acq in enumerate(acquisitions_present):
        cells = [c for c in results if c.acquisition == acq and c.noise == "rician"]
        cells = [c for c in cells if c.n_fibres == 2]
        for method, snr in itertools.product((OURS, DIPY, MRTRIX), sorted({c.snr for c in cells})):
            chosen = [c for c in cells if c.snr == snr and method in results[c]]
            angles = sorted({c.angle for c in chosen})
            pooled = [_pool([results[c][method] for c in chosen if c.angle == a]) for a in angles]
            style = dict(color=METHOD_STYLE[method], ls=SNR_STYLE.get(int(snr), "-"), marker="o")
            for col, key in enumerate(("success_rate", "angular_error")):
                values = [p[key] for p in pooled]
                axes[row, col].plot(angles, values, label=f"{method}, SNR {snr:g}", ms=3, **style)
        axes[row, 0].set_ylabel(f"{acq}\nsuccess rate")
        axes[row, 0].set_ylim(-0.02, 1.02)
        axes[row, 1].set_ylabel("angular error of found fibres (°)")
        for ax in axes[row]:
            ax.set_xlabel("crossing angle (°)")
            ax.grid(alpha=0.3)
    if axes[0, 1].get_legend_handles_labels()[0]:
        axes[0, 1].legend(fontsize=7, ncol=2)
    fig.suptitle(
        "Two-fibre voxels, Rician noise (mean over fractions 0.5/0.5, 0.7/0.3 and 0 / 30 % CSF)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
