"""The report reads what the BIDS-App really writes (slow: runs rumba-bids on demo data)."""

from __future__ import annotations

import pytest

from rumba_bids.reports.html import generate_reports
from rumba_bids.reports.outputs import find_runs
from rumba_bids.reports.render import FIGURES, render_figures


@pytest.mark.slow
def test_report_of_real_app_outputs(tmp_path):
    from rumba_bids.cli.demo import make_demo_dataset
    from rumba_bids.cli.run import main

    bids_dir, out_dir = tmp_path / "bids", tmp_path / "out"
    make_demo_dataset(bids_dir, n_subjects=2, n_sessions=1, shape=(16, 18, 16))
    code = main([str(bids_dir), str(out_dir), "participant", "--skip-bids-validation",
                 "--n-iter", "20", "-w", str(tmp_path / "work"), "--nprocs", "2"])  # fmt: skip
    assert code == 0
    for subject in ("01", "02"):  # single shell RAS, three shells LAS
        (run,) = find_runs(out_dir, subject)
        assert {"fod", "peaks", "peak_values", "gfa", "f_wm", "f_iso", "snr", "mask",
                "response"} <= set(run.files)  # fmt: skip
        assert run.mean_b0() is not None  # the raw DWI is found from the sidecars
        rendered = render_figures(run, tmp_path / "figures", figures=FIGURES)
        assert [figure.error for figure in rendered] == [None] * len(FIGURES)
        text = generate_reports(out_dir, subject).read_text()
        assert "could not be made" not in text and "Fibre orientation distributions" in text
