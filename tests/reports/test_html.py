"""The subject page: content, self-containment, and a real browser loading every image."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from rumba_bids.reports.html import (
    estimated_run_time,
    find_crash_files,
    generate_all_reports,
    generate_reports,
    markdown_to_html,
    read_crash_file,
)
from rumba_bids.reports.outputs import find_runs
from rumba_bids.reports.render import FIGURES, figure_name

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: Appended to a copy of the page by the browser test (the page itself has no script):
#: after loading, record each image's naturalWidth in the DOM.
IMAGE_CHECK = """<script>
window.addEventListener("load", () => {
  const widths = Array.from(document.images).map(i => (i.complete ? i.naturalWidth : -1));
  document.body.setAttribute("data-image-widths", JSON.stringify(widths));
});
</script>"""


def find_browser() -> str:
    """Chromium or Chrome; skips without one, fails instead where CI installed one
    (RUMBA_BIDS_REQUIRE_BROWSER=1, set by .ci/run and CircleCI's tests job)."""
    browser = next((shutil.which(name) for name in CHROMIUM_NAMES if shutil.which(name)), None)
    if browser is None:
        reason = f"no Chromium executable ({', '.join(CHROMIUM_NAMES)}; apt-get install chromium)"
        if os.environ.get("RUMBA_BIDS_REQUIRE_BROWSER") == "1":
            pytest.fail(f"RUMBA_BIDS_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    return browser


@pytest.fixture(scope="module")
def report(fake_dataset, tmp_path_factory):
    """The page of sub-01, made on a copy of the fake outputs."""
    output_dir = tmp_path_factory.mktemp("page") / "out"
    shutil.copytree(fake_dataset.output_dir, output_dir)
    page = generate_reports(output_dir, "sub-01", run_times={"sub-01_ses-1": 125.0})
    return output_dir, page, page.read_text()


def test_page_has_every_section_and_figure(report, fake_dataset):
    output_dir, page, text = report
    assert page == output_dir / "sub-01.html"
    for anchor in ('id="summary"', 'id="ses-1"', 'id="ses-2"', 'id="methods"', 'id="errors"'):
        assert anchor in text
    assert text.index('id="ses-1"') < text.index('id="ses-2"') < text.index('id="methods"')
    for label in fake_dataset.labels:
        assert f'id="{label}"' in text
        for name in FIGURES:
            assert (output_dir / "sub-01" / "figures" / figure_name(label, name)).is_file()
    images = re.findall(r'<img src="([^"]+)"', text)
    assert len(images) == 2 * len(FIGURES)
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert "could not be made" not in text


def test_embedded_images_are_the_saved_figures(report):
    output_dir, _, text = report
    first = re.search(r'<img src="data:image/png;base64,([^"]+)"[^>]*width="(\d+)"', text)
    image = Image.open(io.BytesIO(base64.b64decode(first.group(1))))
    assert image.size[0] == int(first.group(2))
    saved = output_dir / "sub-01" / "figures" / figure_name("sub-01_ses-1", "mask")
    assert base64.b64decode(first.group(1)) == saved.read_bytes()


def test_summary_methods_and_errors(report):
    _, _, text = report
    assert "2 run(s) processed" in text and "1 crash file(s)" in text
    assert "54 volumes (6 b=0)" in text and "b = 2000 s/mm&sup2;" in text
    assert "method <b>default</b>" in text and "(1.70, 0.20, 0.20)" in text
    assert "2 min 05 s" in text  # measured run time of ses-1
    assert "Iterations" in text and "repulsion724" in text
    # methods: CITATION.md as HTML
    assert "<em>RUMBA-SD</em>" in text and "<h3>Methods</h3>" in text
    assert '<a href="https://doi.org/10.1371/journal.pone.0138910">' in text
    # errors: node, last error line (escaped), crash file path
    assert "rumba_bids_0_1_0_wf.sub_01_ses_2_wf.rumba_wf.fit_rumba" in text
    assert "3 voxels contain NaN &lt;script&gt;" in text and "<script>" not in text
    assert "sub-01/log/20240101-000000_abcd/crash-" in text


def test_browser_loads_every_image(report, tmp_path):
    """Headless Chromium opens the page: no broken image, a screenshot is taken."""
    browser = find_browser()
    _, page, text = report
    checked = tmp_path / "checked.html"
    checked.write_text(text.replace("</body>", IMAGE_CHECK + "\n</body>"))
    flags = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [*flags, "--virtual-time-budget=10000", "--dump-dom", checked.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r'data-image-widths="([^"]*)"', dom.stdout)
    assert match, f"the page did not finish loading: {dom.stderr[-2000:]}"
    widths = json.loads(match.group(1).replace("&quot;", '"'))
    assert len(widths) == 2 * len(FIGURES)
    assert all(width > 0 for width in widths), widths
    screenshot = tmp_path / "page.png"
    subprocess.run(
        [*flags, f"--screenshot={screenshot}", "--window-size=1280,2000", page.as_uri()],
        capture_output=True,
        timeout=120,
    )
    image = Image.open(screenshot)
    assert image.size == (1280, 2000)
    grey = np.asarray(image.convert("L"))
    assert len(np.unique(grey)) > 50  # the rendered page, not a blank one


def test_browser_check_detects_a_broken_image(report, tmp_path):
    """The check above can fail: a corrupted image has naturalWidth 0."""
    browser = find_browser()
    _, _, text = report
    broken = re.sub(r"base64,[A-Za-z0-9+/=]{40}", "base64,AAAA", text, count=1)
    checked = tmp_path / "broken.html"
    checked.write_text(broken.replace("</body>", IMAGE_CHECK + "\n</body>"))
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
         "--dump-dom", checked.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    widths = json.loads(re.search(r'data-image-widths="([^"]*)"', dom.stdout).group(1)
                        .replace("&quot;", '"'))  # fmt: skip
    assert widths[0] == 0 and all(width > 0 for width in widths[1:])


def test_failed_figure_is_reported_on_the_page(fake_dataset, tmp_path):
    output_dir = tmp_path / "out"
    shutil.copytree(fake_dataset.output_dir, output_dir)
    for path in output_dir.glob("sub-01/ses-2/dwi/*param-snr_dwimap*"):
        path.unlink()
    text = generate_reports(output_dir, "01", figures=("snr", "response")).read_text()
    assert "could not be made (ValueError: no SNR image found)" in text
    assert "1 figure(s) failed" in text and text.count("<img ") == 3


def test_crash_files_and_run_time(fake_dataset, tmp_path):
    crashes = find_crash_files(fake_dataset.output_dir, "01")
    assert len(crashes) == 1
    crash = read_crash_file(crashes[0])
    assert crash.node.endswith("fit_rumba") and crash.error.startswith("ValueError:")
    # a crash in the top-level log folder is attributed by its node name
    other = tmp_path / "out"
    (other / "logs" / "uuid").mkdir(parents=True)
    (other / "logs" / "uuid" / "crash-1.txt").write_text("Node: wf.sub_02_wf.fit\n\nKeyError: x\n")
    assert len(find_crash_files(other, "02")) == 1 and find_crash_files(other, "01") == []
    run = find_runs(fake_dataset.output_dir, "01")[0]
    assert estimated_run_time(run) == pytest.approx(95.0, abs=2.0)


def test_missing_subject_and_reports_only(fake_dataset, tmp_path):
    with pytest.raises(
        ValueError, match=r"no rumba-bids outputs for sub-07 in .*\(subjects with outputs: 01\)"
    ):
        generate_reports(fake_dataset.output_dir, "07")
    with pytest.raises(ValueError, match="nothing to report"):
        generate_all_reports(tmp_path)


def test_markdown_subset():
    html = markdown_to_html(
        "# T\n\nA *b* **c** `d` [e](https://x.org) https://y.org/z.\n\n- one\n- two\n\n1. n\n"
    )
    assert html.splitlines() == [
        "<h3>T</h3>",
        '<p>A <em>b</em> <strong>c</strong> <code>d</code> <a href="https://x.org">e</a> '
        '<a href="https://y.org/z">https://y.org/z</a>.</p>',
        "<ul><li>one</li><li>two</li></ul>",
        "<ol><li>n</li></ol>",
    ]


def test_reports_only_remakes_every_subject_page(report):
    output_dir, page, _ = report
    before = page.stat().st_mtime_ns
    assert generate_all_reports(output_dir) == [page]
    assert page.stat().st_mtime_ns > before
    with pytest.raises(ValueError, match="no rumba-bids outputs for sub-02"):
        generate_all_reports(output_dir, ["sub-02"])
