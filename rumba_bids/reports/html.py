"""``sub-<label>.html``: one self-contained report page per subject.

The page is assembled from what the BIDS-App left in the derivatives folder:
every run's outputs (figures are made from them, saved under
``sub-<label>/figures/`` and embedded as base64 data URIs, so the page can be
mailed or archived alone), the methods text of ``logs/CITATION.md`` and the
crash files of ``sub-<label>/log/*/`` and ``logs/*/``.  Runs are grouped by
session.  :func:`generate_reports` is what the app calls after processing
and what ``--reports-only`` calls on existing outputs.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import logging
import os
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from string import Template

from .. import __version__
from .outputs import RunOutputs, find_runs, find_subjects
from .render import FIGURES, RenderedFigure, render_figures

logger = logging.getLogger("rumba_bids.reports")

_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".pdf": "application/pdf"}
#: Fit parameters listed in the run summary (the rest are in the sidecars).
SUMMARY_PARAMETERS = (
    "Iterations",
    "NoiseModel",
    "NCoils",
    "AccelerationFactor",
    "Fit",
    "TotalVariation",
    "Sphere",
    "GMCompartment",
    "GMChoice",
    "CSFCompartment",
    "FittedVoxels",
    "ExcludedVoxels",
    "MedianSNR",
    "BrainMask",
)


# --------------------------------------------------------------------------- small pieces


def markdown_to_html(text: str) -> str:
    """The Markdown subset of ``CITATION.md`` as HTML (everything else escaped).

    Headings (``#``), paragraphs, ``-``/``1.`` lists, ``*emphasis*``,
    ``**strong**``, ```code```, ``[text](url)`` and bare ``https://`` links.

    Examples
    --------
    >>> markdown_to_html("# Methods\\n\\nSee *this* <b>.")
    '<h3>Methods</h3>\\n<p>See <em>this</em> &lt;b&gt;.</p>'
    """
    blocks, paragraph, items, list_tag = [], [], [], None

    def flush():
        nonlocal paragraph, items, list_tag
        if paragraph:
            blocks.append("<p>" + _inline(" ".join(paragraph)) + "</p>")
        if items:
            body = "".join(f"<li>{_inline(item)}</li>" for item in items)
            blocks.append(f"<{list_tag}>{body}</{list_tag}>")
        paragraph, items, list_tag = [], [], None

    for line in text.splitlines():
        stripped = line.strip()
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        bullet = re.match(r"^[-*]\s+(.*)$", stripped)
        numbered = re.match(r"^\d+[.)]\s+(.*)$", stripped)
        if not stripped:
            flush()
        elif heading:
            flush()
            level = min(len(heading.group(1)) + 2, 6)
            blocks.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif bullet or numbered:
            tag = "ul" if bullet else "ol"
            if paragraph or (list_tag and list_tag != tag):
                flush()
            list_tag = tag
            items.append((bullet or numbered).group(1))
        elif items:
            items[-1] += " " + stripped
        else:
            paragraph.append(stripped)
    flush()
    return "\n".join(blocks)


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"(?<![\w*])\*([^*]+)\*(?![\w*])", r"<em>\1</em>", text)
    text = re.sub(
        r"\[([^\]]+)\]\((https?://[^)\s]+)\)",
        lambda m: f'<a href="{html.escape(m.group(2))}">{m.group(1)}</a>',
        text,
    )
    return re.sub(
        r'(?<!href=")(?<!">)(https?://[^\s<]+[^\s<.,;)])',
        lambda m: f'<a href="{html.escape(m.group(1))}">{m.group(1)}</a>',
        text,
    )


def data_uri(path) -> str:
    """The file as a ``data:`` URI (base64), for a self-contained page."""
    path = Path(path)
    mime = _MIME.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _image_size(path: Path) -> tuple[int, int] | None:
    """Width and height of a PNG from its header (None for other formats)."""
    with open(path, "rb") as handle:
        head = handle.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


@dataclass(frozen=True)
class CrashReport:
    """One crash file: the node that failed and its error."""

    path: Path
    node: str
    error: str
    text: str


def read_crash_file(path) -> CrashReport:
    """Node name and last error line of a Nipype crash file (text or pickled)."""
    path = Path(path)
    if path.suffix == ".pklz":
        try:
            from nipype.utils.filemanip import loadcrash

            content = loadcrash(str(path))
            lines = "".join(content.get("traceback", [])).splitlines()
            node = str(content.get("node", ""))
        except Exception as error:  # an unreadable crash file is itself worth reporting
            return CrashReport(path, "", f"unreadable crash file: {error}", "")
        text = "\n".join(lines)
    else:
        text = path.read_text(errors="replace")
        lines = text.splitlines()
        node = next((line[5:].strip() for line in lines if line.startswith("Node:")), "")
    error = next((line.strip() for line in reversed(lines) if line.strip()), "unknown error")
    return CrashReport(path, node, error, text)


def find_crash_files(output_dir, subject: str) -> list[Path]:
    """Crash files of ``subject``: ``sub-<l>/log/*/crash-*`` and those of
    ``logs/*/crash-*`` whose node belongs to one of its runs."""
    output_dir = Path(output_dir)
    found = sorted((output_dir / f"sub-{subject}" / "log").glob("*/crash-*"))
    marker = re.compile(rf"(^|\.)sub_{re.escape(subject.lower())}(_|\.|$)")
    for path in sorted((output_dir / "logs").glob("*/crash-*")):
        if marker.search(read_crash_file(path).node):
            found.append(path)
    return found


def estimated_run_time(run: RunOutputs) -> float | None:
    """Seconds from the settings file of the last invocation to the run's last output.

    The app writes ``sub-<l>/log/<uuid>/rumba_bids_settings.json`` just before
    processing; the difference to the newest output file is the wall time
    of that invocation for this run (None when it cannot be told).
    """
    outputs = [Path(p) for p in run.files.values()]
    if not outputs:
        return None
    finished = max(p.stat().st_mtime for p in outputs)
    starts = [
        p.stat().st_mtime
        for p in (run.output_dir / f"sub-{run.subject}" / "log").glob("*/rumba_bids_settings.json")
    ]
    starts = [t for t in starts if t <= finished]
    return finished - max(starts) if starts else None


def _format_seconds(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 90:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _e(value) -> str:
    return html.escape(str(value))


def _table(rows, *, header=None) -> str:
    head = "".join(f"<th>{_e(cell)}</th>" for cell in header) if header else ""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table>{'<tr>' + head + '</tr>' if head else ''}{body}</table>"


# --------------------------------------------------------------------------- run summaries


def _acquisition_text(facts: dict) -> str:
    shape = "&times;".join(str(s) for s in facts["shape"])
    zooms = "&times;".join(f"{z:g}" for z in facts["zooms"])
    text = f"{shape} voxels of {zooms} mm"
    if "n_volumes" in facts:
        text += f"; {facts['n_volumes']} volumes ({facts['n_b0']} b=0)"
    if facts.get("shells"):
        text += "; b = " + ", ".join(f"{b:g}" for b in facts["shells"]) + " s/mm&sup2;"
    return text


def _response_text(response: dict) -> str:
    if not response:
        return "not recorded"
    parts = [f"method <b>{_e(response.get('Method', 'unknown'))}</b>"]
    evals = response.get("Eigenvalues")
    if evals is not None:
        rows = evals if isinstance(evals[0], list) else [evals]
        parts.append(
            "&lambda; = "
            + "; ".join("(" + ", ".join(f"{1e3 * v:.2f}" for v in row) + ")" for row in rows)
            + " &times;10<sup>-3</sup> mm&sup2;/s"
        )
    if response.get("Ratio") is not None:
        ratio = response["Ratio"]
        ratio = ratio if isinstance(ratio, list) else [ratio]
        parts.append("&lambda;2/&lambda;1 = " + ", ".join(f"{r:.2f}" for r in ratio))
    if response.get("S0") is not None:
        parts.append(f"S0 = {response['S0']:.4g}")
    if response.get("NVoxels"):
        parts.append(f"{response['NVoxels']} voxels")
    if response.get("Type") == "zsh":
        parts.append(
            f"zonal SH ({len(response.get('ZonalCoefficients', []))} coefficients)"
            + ("" if response.get("Converged", True) else ", <b>not converged</b>")
        )
    return "; ".join(parts)


def _parameter_value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_parameter_value(v) for v in value)
    return _e(value)


@dataclass
class RunReport:
    run: RunOutputs
    figures: list
    run_time: float | None
    run_time_estimated: bool
    bids_dir: object

    @property
    def anchor(self) -> str:
        return self.run.label

    def summary_row(self) -> list[str]:
        parameters = self.run.parameters
        snr = parameters.get("MedianSNR")
        failed = [f.title for f in self.figures if f.error]
        status = (
            f'<span class="error">{len(failed)} figure(s) failed</span>'
            if failed
            else '<span class="ok">ok</span>'
        )
        return [
            f'<a href="#{_e(self.anchor)}">{_e(self.run.label)}</a>',
            _acquisition_text(self.run.acquisition(self.bids_dir)),
            _response_text(self.run.response),
            _e(f"{parameters.get('Fit', '?')}, {parameters.get('Iterations', '?')} iterations"),
            "" if snr is None else f"{snr:.1f}",
            self._run_time_text(),
            status,
        ]

    def _run_time_text(self) -> str:
        if self.run_time is None:
            return "not recorded"
        text = _format_seconds(self.run_time)
        return f"&asymp; {text} (file times)" if self.run_time_estimated else text

    def section(self) -> str:
        parameters = self.run.parameters
        rows = [
            ["Acquisition", _acquisition_text(self.run.acquisition(self.bids_dir))],
            ["Response", _response_text(self.run.response)],
            [
                "Fit options",
                _table(
                    [
                        [_e(k), _parameter_value(parameters[k])]
                        for k in SUMMARY_PARAMETERS
                        if k in parameters
                    ]  # fmt: skip
                ),
            ],
            ["Run time", self._run_time_text()],
            [
                "Outputs",
                "<br>".join(
                    f'<a href="{_e(Path(p).relative_to(self.run.output_dir).as_posix())}">'
                    f"{_e(Path(p).name)}</a>"
                    for p in self.run.files.values()
                ),
            ],
        ]
        parts = [f'<h3 id="{_e(self.anchor)}">{_e(self.run.label)}</h3>', _table(rows)]
        for figure in self.figures:
            parts.append(_figure_html(figure))
        return "\n".join(parts)


def _figure_html(figure: RenderedFigure) -> str:
    if figure.error:
        return (
            f'<div class="missing"><b>{_e(figure.title)}</b>: this figure could not be made '
            f"({_e(figure.error)})</div>"
        )
    size = _image_size(figure.path)
    dimensions = f' width="{size[0]}" height="{size[1]}"' if size else ""
    return (
        f'<figure><img src="{data_uri(figure.path)}" alt="{_e(figure.title)}"{dimensions}>'
        f"<figcaption><b>{_e(figure.title)}.</b> {_e(figure.caption)} "
        f"<i>({_e(figure.path.name)})</i></figcaption></figure>"
    )


def _errors_section(crashes: list[CrashReport], output_dir: Path) -> str:
    if not crashes:
        return '<p class="ok">No errors to report.</p>'
    items = []
    for crash in crashes:
        relative = crash.path.relative_to(output_dir).as_posix()
        items.append(
            f"<li><b>{_e(crash.node or 'unknown node')}</b>: "
            f'<span class="error">{_e(crash.error)}</span><br>crash file '
            f"<code>{_e(relative)}</code><details><summary>details</summary>"
            f"<pre>{_e(crash.text)}</pre></details></li>"
        )
    return f"<p>{len(crashes)} crash file(s):</p><ul>{''.join(items)}</ul>"


# --------------------------------------------------------------------------- the page


def generate_reports(
    output_dir,
    subject_label: str,
    *,
    bids_dir=None,
    run_times: dict | None = None,
    figures=FIGURES,
    extension: str = ".png",
) -> Path:
    """Make the figures of every run of a subject and write ``sub-<label>.html``.

    Parameters
    ----------
    output_dir : path
        Root of the rumba-bids derivatives.
    subject_label : str
        With or without ``sub-``.
    bids_dir : path, optional
        The input dataset, to find the DWI series behind each run (mean b0
        of the mask figure, volume counts) when the sidecars' ``Sources`` and
        ``dataset_description.json``'s ``DatasetLinks`` do not lead there.
    run_times : dict, optional
        ``{run label: seconds}`` measured by the caller; otherwise estimated
        from file times (:func:`estimated_run_time`).
    figures : sequence of str
        Figures to make (see :data:`rumba_bids.reports.render.FIGURES`).
    extension : {'.png', '.svg'}

    Returns
    -------
    Path
        The page.

    Raises
    ------
    ValueError
        When the subject has neither outputs nor crash files in ``output_dir``.
    """
    output_dir = Path(output_dir)
    subject = subject_label[4:] if subject_label.startswith("sub-") else subject_label
    runs = find_runs(output_dir, subject)
    crashes = [read_crash_file(path) for path in find_crash_files(output_dir, subject)]
    if not runs and not crashes:
        known = ", ".join(find_subjects(output_dir)) or "none"
        raise ValueError(
            f"no rumba-bids outputs for sub-{subject} in {output_dir} (subjects with outputs: "
            f"{known}); run the participant level first"
        )
    figure_dir = output_dir / f"sub-{subject}" / "figures"
    reports = []
    for run in runs:
        logger.info("%s: making the report figures", run.label)
        rendered = render_figures(
            run, figure_dir, figures=figures, bids_dir=bids_dir, extension=extension
        )
        measured = (run_times or {}).get(run.label)
        reports.append(
            RunReport(
                run=run,
                figures=rendered,
                run_time=measured if measured is not None else estimated_run_time(run),
                run_time_estimated=measured is None,
                bids_dir=bids_dir,
            )
        )
    page = _page(output_dir, subject, reports, crashes)
    target = output_dir / f"sub-{subject}.html"
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(page, encoding="utf-8")
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    logger.info("report written: %s", target)
    return target


def _generated_by(output_dir: Path) -> str:
    try:
        description = json.loads((output_dir / "dataset_description.json").read_text())
        tool = description["GeneratedBy"][0]
        return f"{tool.get('Name', 'rumba-bids')} {tool.get('Version', '')}".strip()
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return "rumba-bids"


def _page(output_dir: Path, subject: str, reports: list, crashes: list) -> str:
    sessions: dict = {}
    for report in reports:
        sessions.setdefault(report.run.session, []).append(report)
    navigation = ['<a href="#summary">Summary</a>']
    body = [
        '<section id="summary"><h2>Summary</h2>',
        f"<p>{len(reports)} run(s) processed"
        + (f'; <span class="error">{len(crashes)} crash file(s)</span>' if crashes else "")
        + ".</p>",
    ]
    if reports:
        body.append(
            _table(
                [report.summary_row() for report in reports],
                header=[
                    "Run",
                    "Acquisition",
                    "Response",
                    "Fit",
                    "Median SNR",
                    "Run time",
                    "Figures",
                ],  # fmt: skip
            )
        )
    body.append("</section>")
    for session, members in sessions.items():
        anchor = f"ses-{session}" if session else "runs"
        heading = f"Session {session}" if session else "Runs"
        navigation.append(f'<a href="#{_e(anchor)}">{_e(heading)}</a>')
        body.append(f'<section id="{_e(anchor)}"><h2>{_e(heading)}</h2>')
        body += [report.section() for report in members]
        body.append("</section>")
    citation = output_dir / "logs" / "CITATION.md"
    methods = (
        markdown_to_html(citation.read_text(errors="replace"))
        if citation.is_file()
        else "<p>No methods text was found (<code>logs/CITATION.md</code>).</p>"
    )
    navigation += ['<a href="#methods">Methods</a>', '<a href="#errors">Errors</a>']
    body.append(f'<section id="methods"><h2>Methods</h2><div class="methods">{methods}</div>')
    body.append("</section>")
    body.append(f'<section id="errors"><h2>Errors</h2>{_errors_section(crashes, output_dir)}')
    body.append("</section>")
    template = Template((resources.files("rumba_bids.data") / "report.html").read_text())
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    return template.substitute(
        version=_e(__version__),
        title=_e(f"sub-{subject}"),
        subtitle=_e(f"{_generated_by(output_dir)} report, made {now} by rumba-bids {__version__}"),
        navigation=" ".join(navigation),
        body="\n".join(body),
    )


def generate_all_reports(output_dir, participant_labels=(), *, bids_dir=None) -> list[Path]:
    """``--reports-only``: regenerate the pages of the given (default: all) subjects.

    Raises
    ------
    ValueError
        When a requested subject has no outputs, or there is no subject at all.
    """
    labels = [label[4:] if label.startswith("sub-") else label for label in participant_labels]
    labels = labels or find_subjects(output_dir)
    if not labels:
        raise ValueError(
            f"no rumba-bids outputs in {output_dir}: nothing to report (run the participant "
            "level first)"
        )
    return [generate_reports(output_dir, label, bids_dir=bids_dir) for label in labels]
