"""Paths: nothing the user types or the dataset names can make the app write outside
output_dir and work_dir (labels, filters and bad masks are in :mod:`.test_bad_inputs`)."""

from __future__ import annotations

import pytest

from rumba_bids.interfaces.derivatives import bids_path, save_derivative

from .helpers import run_in_process, snapshot

SOURCE = "/raw/sub-01/ses-1/dwi/sub-01_ses-1_dwi.nii.gz"


@pytest.mark.parametrize(
    "entities",
    [{"desc": "../../etc"}, {"param": "a/b"}, {"model": "..\\x"}],
    ids=["dot-dot", "slash", "backslash"],
)
def test_output_names_never_leave_the_dataset(entities):
    with pytest.raises(ValueError, match="is not a BIDS label"):
        bids_path(SOURCE, suffix="dwimap", extension=".nii.gz", **{"model": "rumba", **entities})


def test_save_derivative_writes_nothing_for_such_names(tmp_path):
    source = tmp_path / "in.json"
    source.write_text("{}")
    out = tmp_path / "out"
    with pytest.raises(ValueError):
        save_derivative(source, base_directory=out, source_file=SOURCE, desc="../../x")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in.json"]


@pytest.mark.parametrize("which", ["output", "work"])
def test_a_symlink_into_bids_dir_is_refused(which, tiny_bids, tmp_path, monkeypatch):
    """Directories are compared after resolving links: a link pointing into bids_dir is
    bids_dir for the checks."""
    link = tmp_path / "link"
    link.symlink_to(tiny_bids / "sub-01", target_is_directory=True)
    out, work = (link, tmp_path / "work") if which == "output" else (tmp_path / "out", link)
    before = snapshot(tiny_bids)
    args = [tiny_bids, out, "participant", "--skip-bids-validation", "-w", work]
    code, stderr = run_in_process(args, monkeypatch)
    assert code == 64 and "inside bids_dir" in stderr
    assert snapshot(tiny_bids) == before


def test_output_labels_come_from_the_dataset_not_the_command_line(tiny_bids, tmp_path):
    """A participant label is only ever a filter: with the label given as ``sub-01`` or
    ``01``, the output folder is the dataset's ``sub-01``."""
    from rumba_bids.cli.parser import parse_settings

    for label in ("sub-01", "01"):
        settings = parse_settings(
            [str(tiny_bids), str(tmp_path / "out"), "participant", "--participant-label", label]
        )
        assert settings.participant_label == ("01",)
