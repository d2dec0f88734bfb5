"""The settings of one ``rumba-bids`` invocation: one frozen object, built once.

:class:`Settings` holds everything the command line decided (paths,
selection, resources, model options).  Builders receive explicit values taken
from it; nothing reads it as a global.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from ..core.defaults import (
    DEFAULT_CSF_RESPONSE,
    DEFAULT_FOD_SCALE,
    DEFAULT_GM_RESPONSE,
    DEFAULT_MIN_SEPARATION_ANGLE,
    DEFAULT_N_COILS,
    DEFAULT_N_ITER,
    DEFAULT_NPEAKS,
    DEFAULT_PEAK_REFINE,
    DEFAULT_PEAK_THRESHOLD,
    DEFAULT_R,
    DEFAULT_RECON_TYPE,
    DEFAULT_SH_BASIS,
    DEFAULT_SH_ORDER,
    DEFAULT_SPHERE,
    DEFAULT_WM_RESPONSE,
    GM_MIN_SHELLS,
)

# The defaults of the model options are core's (rumba_bids.core.defaults), re-exported
# for the parser; importing them loads no numpy.


@dataclass(frozen=True)
class ModelOptions:
    """RUMBA-SD and post-processing options shared by every run.

    ``use_gm=None`` means "decide per run": on with at least
    :data:`GM_MIN_SHELLS` non-zero shells, off otherwise.
    """

    response: str = "fa"
    response_file: Path | None = None
    fit: str = "voxelwise"
    use_tv: bool = False
    n_iter: int = DEFAULT_N_ITER
    sphere: str = DEFAULT_SPHERE
    recon_type: str = DEFAULT_RECON_TYPE
    n_coils: int = DEFAULT_N_COILS
    acceleration_factor: int = DEFAULT_R
    wm_response: tuple[float, float, float] = DEFAULT_WM_RESPONSE
    use_gm: bool | None = None
    gm_response: float = DEFAULT_GM_RESPONSE
    use_csf: bool = True
    csf_response: float = DEFAULT_CSF_RESPONSE
    sh_order: int = DEFAULT_SH_ORDER
    sh_basis: str = DEFAULT_SH_BASIS
    npeaks: int = DEFAULT_NPEAKS
    peak_threshold: float = DEFAULT_PEAK_THRESHOLD
    min_separation_angle: float = DEFAULT_MIN_SEPARATION_ANGLE
    peak_refine: bool = DEFAULT_PEAK_REFINE
    write_amplitudes: bool = False
    fod_scale: str = DEFAULT_FOD_SCALE

    def gm_enabled(self, n_shells: int) -> bool:
        """Whether the GM compartment is fitted for data with ``n_shells`` non-zero shells."""
        if self.use_gm is None:
            return n_shells >= GM_MIN_SHELLS
        return self.use_gm


@dataclass(frozen=True)
class Settings:
    """Everything one run of the app needs to know (immutable)."""

    bids_dir: Path
    output_dir: Path
    analysis_level: str
    work_dir: Path
    run_uuid: str
    participant_label: tuple[str, ...] = ()
    session_label: tuple[str, ...] = ()
    bids_filters: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    skip_bids_validation: bool = False
    input_type: str | None = None
    mask_file: Path | None = None
    nprocs: int = 1
    #: Threads of one step; None until the runs are known (then ``nprocs`` shared among them).
    omp_nthreads: int | None = None
    mem_gb: float | None = None
    plugin: str = "MultiProc"
    plugin_args: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    stop_on_first_crash: bool = False
    resource_monitor: bool = False
    notrack: bool = False
    reports_only: bool = False
    verbosity: int = 0
    model: ModelOptions = field(default_factory=ModelOptions)
    command_line: tuple[str, ...] = ()
    version: str = ""

    def to_dict(self) -> dict:
        """JSON-able copy (paths as strings), e.g. for the log directory."""

        def convert(value):
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, MappingProxyType | dict):
                return {key: convert(item) for key, item in value.items()}
            if isinstance(value, tuple | list):
                return [convert(item) for item in value]
            return value

        out = {}
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name == "model":
                value = {
                    f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)
                }
            out[item.name] = convert(value)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"
