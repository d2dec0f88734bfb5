import subprocess
import sys


def test_core_imports_no_io_or_pipeline_packages():
    code = (
        "import sys, rumba_bids.core as core, rumba_bids.core.phantoms;"
        "[getattr(core, name) for name in core.__all__];"
        "bad = [m for m in ('nipype', 'nibabel', 'bids', 'matplotlib') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_defaults_and_the_command_line_parser_load_no_numpy():
    """Core's defaults are plain Python: the parser reads them before BLAS threads are set."""
    code = (
        "import sys, rumba_bids.core.defaults, rumba_bids.cli.parser;"
        "print([m for m in ('numpy', 'scipy') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_model_defaults_have_one_source():
    import dataclasses
    import inspect

    from rumba_bids.cli.settings import GM_MIN_SHELLS, ModelOptions
    from rumba_bids.core import RumbaSDModel, extract_peaks, rumba_kernel
    from rumba_bids.core.phantoms import make_acquisition
    from rumba_bids.core.shm import real_sh_basis
    from rumba_bids.interfaces.rumba import FIT_DEFAULTS, GM_AUTO_MIN_SHELLS

    model = {k: v.default for k, v in inspect.signature(RumbaSDModel).parameters.items()}
    kernel = {k: v.default for k, v in inspect.signature(rumba_kernel).parameters.items()}
    peaks = {k: v.default for k, v in inspect.signature(extract_peaks).parameters.items()}
    basis = {k: v.default for k, v in inspect.signature(real_sh_basis).parameters.items()}
    options = {f.name: f.default for f in dataclasses.fields(ModelOptions)}
    assert model["wm_response"] == kernel["wm_response"] == options["wm_response"]
    assert model["gm_response"] == kernel["gm_response"] == options["gm_response"]
    assert model["csf_response"] == kernel["csf_response"] == options["csf_response"]
    for ours, theirs in (
        ("n_iter", "n_iter"),
        ("recon_type", "recon_type"),
        ("n_coils", "n_coils"),
        ("R", "acceleration_factor"),
        ("use_tv", "use_tv"),
    ):
        assert model[ours] == options[theirs] == FIT_DEFAULTS.get(ours, model[ours])
    assert options["npeaks"] == peaks["npeaks"]
    assert options["peak_threshold"] == peaks["relative_peak_threshold"]
    assert options["min_separation_angle"] == peaks["min_separation_angle"]
    assert options["sh_order"] == basis["sh_order"] and options["sh_basis"] == basis["basis"]
    gtab = make_acquisition(n_b0=1, n_dirs=10)
    assert options["sphere"] == RumbaSDModel(gtab).sphere.name
    assert GM_AUTO_MIN_SHELLS == GM_MIN_SHELLS
    assert ModelOptions().gm_enabled(GM_MIN_SHELLS) and not ModelOptions().gm_enabled(2)
