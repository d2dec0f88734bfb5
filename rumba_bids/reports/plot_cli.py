"""``rumba-bids-plot``: draw report figures from rumba-bids outputs, for any slice or region.

Examples::

    # fODF glyphs of the slice with most crossings, next to the outputs' run
    rumba-bids-plot out/sub-01/ses-1/dwi/sub-01_ses-1_model-rumba_param-fod_dwimap.nii.gz

    # a chosen coronal slice and window (file voxel indices), as SVG
    rumba-bids-plot out/sub-01/ses-1/dwi/sub-01_ses-1_model-rumba_param-fod_dwimap.nii.gz \\
        --axis coronal --slice 30 --region 20:44,10:30 -o glyphs.svg

    # every figure of every run of sub-01 into a folder, and the HTML page
    rumba-bids-plot out --participant-label 01 --figure all -o figs --report

Nothing is recomputed: the figures are made from the saved fODF (spherical
harmonics), peaks and maps.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .. import __version__

PROG = "rumba-bids-plot"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MISSING = 0, 1, 64, 66


class _UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    from .render import FIGURES

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Draw rumba-bids report figures (fODF glyphs, peaks, fractions, mask, "
        "response, SNR) from existing outputs, for any slice and region.",
        epilog=__doc__.split("Examples::", 1)[1].split("Nothing", 1)[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "path",
        type=Path,
        help="an output file of one run (e.g. its *_param-fod_dwimap.nii.gz), or the "
        "rumba-bids output folder (with --participant-label)",
    )
    parser.add_argument(
        "--participant-label",
        "--participant_label",
        nargs="+",
        default=[],
        metavar="L",
        help="subjects to draw when PATH is the output folder (default: all)",
    )
    parser.add_argument(
        "--session-label",
        "--session_label",
        nargs="+",
        default=[],
        metavar="S",
        help="only these sessions",
    )
    parser.add_argument(
        "--figure",
        nargs="+",
        choices=[*FIGURES, "all"],
        default=["odfs"],
        help="figures to draw (default: odfs)",
    )
    parser.add_argument(
        "--axis",
        choices=["sagittal", "coronal", "axial"],
        default="axial",
        help="slice orientation of the glyph and peak figures (default: axial)",
    )
    parser.add_argument(
        "--slice",
        type=int,
        default=None,
        metavar="N",
        help="slice index in the file's voxel indices (default: the slice with most crossings)",
    )
    parser.add_argument(
        "--region",
        default=None,
        metavar="A0:A1,B0:B1",
        help="window of the slice: file voxel ranges of the figure's horizontal and "
        "vertical axes, ends excluded (default: around the crossings, at most 32 voxels)",
    )
    parser.add_argument(
        "--sphere",
        default=None,
        help="directions of the glyph surfaces: repulsion724 (default: the fit's sphere), "
        "symmetric362, repulsion200, repulsion100",
    )
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="output file (one figure of one run; its extension sets the format) or folder "
        "(default: the current folder)",
    )
    parser.add_argument(
        "--format", choices=["png", "svg", "pdf"], default=None, help="default: png"
    )
    parser.add_argument(
        "--bids-dir",
        type=Path,
        default=None,
        help="the input BIDS dataset, if the outputs' sidecars no longer lead to it "
        "(mask figure background)",
    )
    parser.add_argument(
        "--report",
        action="store_true",
        help="also rewrite the subjects' sub-<label>.html pages (as rumba-bids --reports-only)",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    return parser


def _runs_of(args):
    from .outputs import MODEL_ENTITY, find_runs, find_subjects

    path = args.path
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_dir():
        subjects = [s[4:] if s.startswith("sub-") else s for s in args.participant_label]
        subjects = subjects or find_subjects(path)
        runs = [run for subject in subjects for run in find_runs(path, subject)]
        output_dir = path
    else:
        name = path.name
        if not name.startswith("sub-") or f"_{MODEL_ENTITY}_" not in name and "_desc-" not in name:
            raise _UsageError(f"{path}: not a rumba-bids output file (sub-*_model-rumba_*)")
        prefix = name.split(f"_{MODEL_ENTITY}_")[0].split("_desc-")[0]
        subject = prefix.split("_")[0][4:]
        output_dir = next(
            (parent for parent in path.parents if parent.name == f"sub-{subject}"), None
        )
        if output_dir is None:
            raise _UsageError(f"{path}: not inside a sub-{subject} folder of a rumba-bids output")
        output_dir = output_dir.parent
        runs = [run for run in find_runs(output_dir, subject) if run.label == prefix]
    if args.session_label:
        sessions = {s[4:] if s.startswith("ses-") else s for s in args.session_label}
        runs = [run for run in runs if run.session in sessions]
    if not runs:
        raise FileNotFoundError(f"{path}: no rumba-bids fODF output (*_param-fod_dwimap.nii.gz)")
    return output_dir, runs


def _targets(args, runs, figures):
    """(output folder or None, single output file or None, extension)."""
    extension = f".{args.format}" if args.format else None
    output = args.output
    single = len(runs) == 1 and len(figures) == 1
    if output is not None and output.suffix.lower() in (".png", ".svg", ".pdf"):
        if not single:
            raise _UsageError(
                f"-o {output} names one file but {len(runs)} run(s) x {len(figures)} figure(s) "
                "would be drawn; give a folder"
            )
        if extension and extension != output.suffix.lower():
            raise _UsageError(f"-o {output} disagrees with --format {args.format}")
        return None, output, output.suffix.lower()
    return (output or Path.cwd()), None, extension or ".png"


def run(args) -> int:
    from ..core.sphere import as_sphere
    from .html import generate_reports
    from .render import FIGURES, choose_view, render_figures
    from .selection import check_axis, in_plane_axes, parse_region

    sphere = None if args.sphere is None else as_sphere(args.sphere)
    figures = list(FIGURES) if "all" in args.figure else list(dict.fromkeys(args.figure))
    output_dir, runs = _runs_of(args)
    folder, single_file, extension = _targets(args, runs, figures)
    failures = 0
    for run_outputs in runs:
        view = None
        if {"odfs", "peaks"} & set(figures):
            axis = check_axis(args.axis)
            region = None
            if args.region is not None:
                shape = run_outputs.frame.shape
                in_plane = tuple(shape[a] for a in in_plane_axes(axis))
                region = parse_region(args.region, in_plane)
            view = choose_view(run_outputs, axis=axis, index=args.slice, region=region)
        target_dir = folder if folder is not None else single_file.parent
        rendered = render_figures(
            run_outputs,
            target_dir,
            figures=figures,
            bids_dir=args.bids_dir,
            view=view,
            sphere=sphere,
            extension=extension,
        )
        for figure in rendered:
            if figure.error:
                failures += 1
                print(f"{PROG}: error: {run_outputs.label} {figure.name}: {figure.error}",
                      file=sys.stderr)  # fmt: skip
                continue
            path = figure.path
            if single_file is not None and path != single_file:
                path = Path(path.replace(single_file))
            print(path)
    if args.report:
        for subject in sorted({run_outputs.subject for run_outputs in runs}):
            print(generate_reports(output_dir, subject, bids_dir=args.bids_dir))
    return EXIT_FAILED if failures else EXIT_OK


def main(argv=None) -> int:
    """Entry point of ``rumba-bids-plot``; returns the exit code."""
    parser = build_parser()

    def error(message):
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: {message}", file=sys.stderr)
        raise _UsageError(message)

    parser.error = error
    try:
        args = parser.parse_args(argv)
    except _UsageError:
        return EXIT_USAGE
    except SystemExit as done:  # -h, --version
        return int(done.code or 0)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    try:
        return run(args)
    except _UsageError as problem:
        print(f"{PROG}: error: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except FileNotFoundError as problem:
        print(f"{PROG}: error: {problem}", file=sys.stderr)
        return EXIT_MISSING
    except ValueError as problem:  # bad slice / region / sphere
        print(f"{PROG}: error: {problem}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
