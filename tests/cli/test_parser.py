"""Command-line parsing into Settings: defaults, aliases, usage errors and their codes."""

import json
from pathlib import Path

import pytest

from rumba_bids.cli.errors import ExitCode, RumbaBidsError
from rumba_bids.cli.machine import available_cpus
from rumba_bids.cli.parser import build_parser, default_work_dir, parse_memory_gb, parse_settings
from rumba_bids.cli.resources import memory_limit_gb


@pytest.fixture
def bids(tmp_path):
    root = tmp_path / "bids"
    root.mkdir()
    (root / "dataset_description.json").write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')
    return root


def parse(bids, *extra, out=None, level="participant"):
    out = out or bids.parent / "out"
    return parse_settings([str(bids), str(out), level, *extra])


def code_of(bids, *extra, out=None, level="participant"):
    with pytest.raises(RumbaBidsError) as info:
        parse(bids, *extra, out=out, level=level)
    return info.value.exit_code, info.value.one_line()


def test_defaults(bids):
    settings = parse(bids)
    assert settings.analysis_level == "participant"
    assert settings.output_dir == (bids.parent / "out").resolve()
    assert settings.work_dir == (bids.parent / "work").resolve()
    assert settings.model.response == "fa" and settings.model.n_iter == 600
    assert settings.model.fit == "voxelwise" and not settings.model.use_tv
    assert settings.model.use_gm is None and settings.model.use_csf
    assert settings.plugin == "MultiProc" and settings.plugin_args["n_procs"] == settings.nprocs
    assert settings.nprocs == available_cpus()  # affinity mask and cgroup CPU quota
    assert settings.omp_nthreads is None  # decided once the runs are known
    assert settings.plugin_args["memory_gb"] == memory_limit_gb(None)  # not the host's 90 %
    with pytest.raises(AttributeError, match="cannot assign"):  # frozen
        settings.nprocs = 3
    assert json.loads(settings.to_json())["model"]["sphere"] == "repulsion724"


def test_labels_accept_prefixes_and_both_spellings(bids):
    settings = parse(
        bids, "--participant_label", "sub-01", "02", "--session-id", "ses-1", "--nprocs", "2"
    )
    assert settings.participant_label == ("01", "02")
    assert settings.session_label == ("1",)
    code, line = code_of(bids, "--participant-label", "sub_01")
    assert code == ExitCode.USAGE and "is not a BIDS label" in line


def test_gm_and_csf_switches(bids):
    assert parse(bids, "--no-gm").model.use_gm is False
    settings = parse(bids, "--gm-response", "0.9e-3", "--no-csf")
    assert settings.model.use_gm is True and settings.model.gm_response == 0.9e-3
    assert settings.model.use_csf is False
    assert settings.model.gm_enabled(1) is True
    assert parse(bids).model.gm_enabled(2) is False
    assert parse(bids).model.gm_enabled(3) is True
    assert code_of(bids, "--no-gm", "--gm-response", "1e-3")[0] == ExitCode.USAGE


def test_model_option_consistency(bids):
    assert parse(bids, "--tv").model.fit == "global"
    code, line = code_of(bids, "--tv", "--fit", "voxelwise")
    assert code == ExitCode.USAGE and "--tv needs --fit global" in line
    assert code_of(bids, "--response", "file")[0] == ExitCode.USAGE
    code, line = code_of(bids, "--wm-response", "1.7", "0.2", "0.2")
    assert code == ExitCode.USAGE and "mm^2/s" in line
    assert parse(bids, "--wm-response", "1.5e-3", "3e-4", "3e-4").model.response == "default"
    assert code_of(bids, "--response", "fa", "--wm-response", "1e-3", "2e-4", "2e-4")[0] == 64
    assert code_of(bids, "--n-coils", "4")[0] == ExitCode.USAGE
    assert parse(bids, "--recon-type", "sos", "--n-coils", "4").model.n_coils == 4
    assert code_of(bids, "--sh-order", "7")[0] == ExitCode.USAGE
    assert code_of(bids, "--n-iter", "0")[0] == ExitCode.USAGE
    assert code_of(bids, "--peak-threshold", "1.5")[0] == ExitCode.USAGE
    assert code_of(bids, "--sphere", "bogus")[0] == ExitCode.USAGE


def test_response_file(bids, tmp_path):
    missing = tmp_path / "nope.json"
    assert code_of(bids, "--response-file", str(missing))[0] == ExitCode.NO_INPUT
    response = tmp_path / "response.json"
    response.write_text("{}")
    settings = parse(bids, "--response-file", str(response))
    assert settings.model.response == "file" and settings.model.response_file == response


def test_levels_and_directories(bids, tmp_path):
    assert code_of(bids, level="bogus")[0] == ExitCode.UNKNOWN_LEVEL
    assert code_of(tmp_path / "missing")[0] == ExitCode.NO_INPUT
    assert code_of(bids, out=bids)[0] == ExitCode.USAGE
    assert code_of(bids, out=bids / "sub-01")[0] == ExitCode.USAGE
    assert code_of(bids, out=bids / "derivatives")[0] == ExitCode.USAGE
    assert code_of(bids, out=tmp_path)[0] == ExitCode.USAGE  # would contain bids_dir
    inside = parse(bids, out=bids / "derivatives" / "rumba")
    assert inside.output_dir == (bids / "derivatives" / "rumba").resolve()
    # the default work dir never falls inside bids_dir
    assert not str(inside.work_dir).startswith(str(bids.resolve()))
    assert inside.work_dir == default_work_dir(inside.output_dir, bids.resolve())
    code, line = code_of(bids, "-w", str(bids / "work"))
    assert code == ExitCode.USAGE and "work directory" in line


def test_resources(bids):
    settings = parse(bids, "--nprocs", "4", "--omp-nthreads", "2", "--mem", "8GB")
    assert (settings.nprocs, settings.omp_nthreads, settings.mem_gb) == (4, 2, 8.0)
    assert settings.plugin_args["memory_gb"] == 8.0
    assert code_of(bids, "--nprocs", "1", "--omp-nthreads", "2")[0] == ExitCode.USAGE
    assert parse_memory_gb("16000MB") == 16.0 and parse_memory_gb("2.5") == 2.5
    assert code_of(bids, "--mem", "lots")[0] == ExitCode.USAGE
    assert code_of(bids, "--bogus-flag")[0] == ExitCode.USAGE


def test_plugin_file(bids, tmp_path):
    slurm = tmp_path / "slurm.yml"
    slurm.write_text("plugin: SLURM\nplugin_args:\n  sbatch_args: --time=1:00:00\n")
    settings = parse(bids, "--use-plugin", str(slurm))
    assert settings.plugin == "SLURM"
    assert dict(settings.plugin_args) == {"sbatch_args": "--time=1:00:00"}
    multiproc = tmp_path / "mp.yml"
    multiproc.write_text("plugin: MultiProc\n")
    settings = parse(bids, "--use-plugin", str(multiproc), "--nprocs", "3")
    assert settings.plugin_args["n_procs"] == 3
    bad = tmp_path / "bad.yml"
    bad.write_text("plugin_args: {}\n")
    assert code_of(bids, "--use-plugin", str(bad))[0] == ExitCode.USAGE
    assert code_of(bids, "--use-plugin", str(tmp_path / "no.yml"))[0] == ExitCode.NO_INPUT


@pytest.mark.parametrize(
    ("plugin", "expected"),
    [
        ("SLURMGraph", "use plugin: SLURM (the app waits for its jobs)"),
        ("SGEGraph", "use plugin: SGE"),
        ("CondorDAGMan", "returns before anything runs"),
        ("NoSuchScheduler", "unknown Nipype plugin 'NoSuchScheduler'"),
    ],
)
def test_plugins_that_cannot_report_are_refused(bids, tmp_path, plugin, expected):
    path = tmp_path / "plugin.yml"
    path.write_text(f"plugin: {plugin}\n")
    code, line = code_of(bids, "--use-plugin", str(path))
    assert code == ExitCode.USAGE and expected in line and "\n" not in line


def test_filter_file(bids, tmp_path):
    good = tmp_path / "filters.json"
    good.write_text('{"dwi": {"acquisition": null, "run": 1}}')
    assert dict(parse(bids, "--bids-filter-file", str(good)).bids_filters) == {
        "dwi": {"acquisition": None, "run": 1}
    }
    broken = tmp_path / "broken.json"
    broken.write_text("{dwi: ")
    assert code_of(bids, "--bids-filter-file", str(broken))[0] == ExitCode.USAGE
    other = tmp_path / "other.json"
    other.write_text('{"bold": {"task": "rest"}}')
    code, line = code_of(bids, "--bids-filter-file", str(other))
    assert code == ExitCode.USAGE and '"dwi"' in line


def test_help_is_readable():
    text = build_parser().format_help()
    for expected in (
        "participant",
        "group",
        "--participant-label",
        "--omp-nthreads",
        "exit codes",
    ):
        assert expected in text
    assert "73  cannot create output" in text
    assert max(len(line) for line in text.splitlines()) < 100
    assert Path(__file__).exists()


def test_peak_refinement_switch_reaches_the_peak_node(bids):
    from rumba_bids.cli.run import rumba_options
    from rumba_bids.workflows.rumba import init_rumba_wf

    assert parse(bids).model.peak_refine is True
    model = parse(bids, "--no-peak-refine").model
    assert model.peak_refine is False
    for chosen, expected in ((parse(bids).model, True), (model, False)):
        workflow = init_rumba_wf(**rumba_options(chosen))
        assert workflow.get_node("extract_peaks").inputs.refine is expected


def test_fod_scale_reaches_the_workflow(bids):
    from rumba_bids.cli.run import rumba_options
    from rumba_bids.core.defaults import DEFAULT_FOD_SCALE
    from rumba_bids.workflows.rumba import init_rumba_wf

    assert parse(bids).model.fod_scale == DEFAULT_FOD_SCALE == "density"
    model = parse(bids, "--fod-scale", "weights").model
    options = rumba_options(model)
    assert options["fod_scale"] == "weights"
    workflow = init_rumba_wf(**options)
    assert workflow.get_node("fit_rumba").inputs.fod_scale == "weights"
    assert code_of(bids, "--fod-scale", "sum")[0] == ExitCode.USAGE
