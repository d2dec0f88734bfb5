"""Write one derivative file under its BIDS name, with its JSON sidecar, atomically.

:func:`save_derivative` does the work; :class:`DerivativesDataSink` wraps it
for one file per node (niworkflows style) and :class:`DerivativesBundleSink`
for all the outputs of a run in one node (a Nipype node costs tens of
milliseconds of bookkeeping, a dozen of them per run add up).

Names come from the source file's entities (subject, session, acquisition,
reconstruction, direction, run, space) plus the output's own (``model``, ``param``, ``desc``,
``suffix``), laid out by the path patterns of the packaged pybids config
(``rumba_bids/data/rumba_bids_config.json``).  Every file is written to a
hidden temporary file in the destination folder and renamed into place, so a
reader never sees a half-written derivative and a crash never leaves one.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import uuid
from functools import lru_cache
from importlib import resources
from pathlib import Path, PurePosixPath

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    DynamicTraitedSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)
from nipype.interfaces.io import add_traits

#: Entity values allowed in output names (BIDS labels and indices; extensions).
_LABEL = re.compile(r"[a-zA-Z0-9]+")
_EXTENSION = re.compile(r"(?:\.[a-zA-Z0-9]+)+")
#: Entities of the source file carried into the output name.
SOURCE_ENTITIES = (
    "subject",
    "session",
    "acquisition",
    "reconstruction",
    "direction",
    "run",
    "space",
)


def config_path() -> Path:
    """Path of the pybids config describing rumba-bids derivatives.

    It adds the BEP016 ``param`` entity and the output path patterns to
    pybids' own configs: index the outputs with
    ``BIDSLayout(out_dir, config=pybids_config(), validate=False)``.
    """
    return Path(str(resources.files("rumba_bids.data") / "rumba_bids_config.json"))


def pybids_config() -> list[str]:
    """``config`` argument of ``BIDSLayout`` for a rumba-bids output dataset."""
    return ["bids", "derivatives", str(config_path())]


@lru_cache(maxsize=1)
def _config() -> dict:
    return json.loads(config_path().read_text())


def path_patterns() -> list[str]:
    """The output path patterns (pybids ``build_path`` syntax)."""
    return list(_config()["default_path_patterns"])


def parse_entities(path) -> dict:
    """BIDS entities of ``path`` according to the packaged config.

    >>> parse_entities("/d/sub-01/ses-2/dwi/sub-01_ses-2_run-03_dwi.nii.gz")["run"]
    '03'
    """
    from bids.layout.utils import parse_file_entities

    entities = parse_file_entities(str(path), config=pybids_config())
    return {key: str(value) for key, value in entities.items()}


def bids_path(source_file, **entities) -> str:
    """Relative output path: the source's run entities plus ``entities``.

    >>> bids_path("/raw/sub-01/ses-1/dwi/sub-01_ses-1_acq-hi_dwi.nii.gz",
    ...           model="rumba", param="fod", suffix="dwimap", extension=".nii.gz")
    'sub-01/ses-1/dwi/sub-01_ses-1_acq-hi_model-rumba_param-fod_dwimap.nii.gz'
    """
    from bids.layout.writing import build_path

    source = parse_entities(source_file)
    combined = {key: source[key] for key in SOURCE_ENTITIES if key in source}
    combined.update({key: value for key, value in entities.items() if value not in (None, "")})
    for key, value in combined.items():
        pattern = _EXTENSION if key == "extension" else _LABEL
        if not pattern.fullmatch(str(value)):
            raise ValueError(
                f"entity {key}={value!r} is not a BIDS label (letters and digits): it could "
                "make a path outside the dataset or in the wrong folder"
            )
    path = build_path(combined, path_patterns(), strict=True)
    if path is None:
        raise ValueError(f"no BIDS name pattern matches the entities {combined}")
    parts = PurePosixPath(path).parts
    if PurePosixPath(path).is_absolute() or ".." in parts or any("\\" in p for p in parts):
        raise ValueError(f"the entities {combined} make a path outside the dataset: {path}")
    return path


def json_safe(value):
    """Convert numpy scalars/arrays and non-finite floats into strict-JSON values.

    >>> json_safe({"a": float("nan"), "b": [1.0, float("inf")]})
    {'a': 'NaN', 'b': [1.0, 'Infinity']}
    """
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if hasattr(value, "tolist") and not isinstance(value, str):
        return json_safe(value.tolist())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def select_encoding(encodings, kind):
    """The OrientationEncoding of output ``kind`` from a workflow's metadata.

    ``encodings`` is either one encoding (a dict with ``Type``) or a mapping
    from output kinds to encodings; ``kind=None`` selects nothing.

    >>> select_encoding({"sh": {"Type": "sh"}, "amplitudes": {"Type": "amplitudes"}}, "sh")
    {'Type': 'sh'}
    >>> select_encoding({"Type": "sh"}, None) is None
    True
    """
    if kind is None or not isinstance(encodings, dict):
        return None
    if "Type" in encodings:
        return encodings
    return encodings.get(kind)


def _temporary_name(target: Path) -> Path:
    suffix = "".join(target.suffixes) or ".tmp"
    return target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp{suffix}")


def atomic_write_text(target, text: str) -> Path:
    """Write ``text`` to ``target`` through a temporary file and an atomic rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_name(target)
    try:
        temporary.write_text(text)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def atomic_write_json(target, content) -> Path:
    """Strict JSON (no NaN literals), indented, written atomically."""
    text = json.dumps(json_safe(content), indent=2, allow_nan=False) + "\n"
    return atomic_write_text(target, text)


def atomic_copy(source, target, *, dtype=None) -> Path:
    """Copy ``source`` to ``target`` atomically.

    NIfTI images are re-saved with nibabel when the compression differs or a
    ``dtype`` is requested (``.nii`` -> ``.nii.gz``); other files are copied.
    """
    source, target = Path(source), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_name(target)
    is_nifti = target.name.endswith((".nii", ".nii.gz"))
    same_format = source.name.endswith(".gz") == target.name.endswith(".gz")
    try:
        if is_nifti and (dtype is not None or not same_format):
            import nibabel as nib
            import numpy as np

            img = nib.load(str(source))
            if dtype is not None:
                data = np.asanyarray(img.dataobj).astype(dtype)
                header = img.header.copy()
                header.set_data_dtype(dtype)
                img = img.__class__(data, img.affine, header)
            nib.save(img, str(temporary))
        else:
            shutil.copyfile(source, temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def save_derivative(
    in_file,
    *,
    base_directory,
    source_file,
    suffix: str = "dwimap",
    model: str | None = None,
    param: str | None = None,
    desc: str | None = None,
    extension: str | None = None,
    data_dtype: str | None = None,
    meta: dict | None = None,
    extra_meta: dict | None = None,
    encoding: str | None = None,
    write_sidecar: bool = True,
) -> tuple[str, str | None]:
    """Save ``in_file`` under its BIDS derivative name; return (file, sidecar or None).

    Parameters
    ----------
    in_file : path
        File to save (NIfTI images are written compressed, ``.nii.gz``).
    base_directory : path
        Root of the derivatives dataset.
    source_file : path
        BIDS file the output derives from; its run entities start the name.
    suffix, model, param, desc : str
        The output's own entities.
    extension : str, optional
        Default: that of ``in_file``, ``.nii`` becoming ``.nii.gz``.
    data_dtype : str, optional
        Cast the image (e.g. ``"uint8"`` for masks).
    meta : dict, optional
        Sidecar content from the processing workflow.
    extra_meta : dict, optional
        Sidecar keys set at build time; they override ``meta``, except
        ``OrientationEncoding``, where the workflow's entry (selected by
        ``encoding``) wins over this fallback.
    encoding : str, optional
        See :func:`select_encoding`.
    write_sidecar : bool
        Write ``<name>.json`` next to the file (never for JSON outputs).
    """
    in_file = Path(in_file)
    if extension is None:
        if in_file.name.endswith((".nii", ".nii.gz")):
            extension = ".nii.gz"
        else:
            extension = "".join(in_file.suffixes)
    entities = {"suffix": suffix, "extension": extension}
    entities.update({k: v for k, v in (("model", model), ("param", param), ("desc", desc)) if v})
    target = Path(base_directory) / bids_path(source_file, **entities)
    atomic_copy(in_file, target, dtype=data_dtype)
    if not write_sidecar or extension == ".json":
        return str(target), None
    content = dict(meta or {})
    encodings = content.pop("OrientationEncoding", None)
    content.update(extra_meta or {})
    chosen = select_encoding(encodings, encoding)
    if chosen is not None:
        content["OrientationEncoding"] = chosen
    sidecar = target.with_name(target.name[: -len(extension)] + ".json")
    atomic_write_json(sidecar, content)
    return str(target), str(sidecar)


def _defined(value):
    return value if isdefined(value) else None


class _DerivativesDataSinkInputSpec(BaseInterfaceInputSpec):
    base_directory = traits.Directory(mandatory=True, desc="root of the derivatives dataset")
    in_file = File(exists=True, mandatory=True, desc="file to save")
    source_file = traits.Str(mandatory=True, desc="BIDS file the output derives from")
    model = traits.Str(desc="model entity (e.g. rumba)")
    param = traits.Str(desc="param entity (fod, peaks, fwm, ...)")
    desc = traits.Str(desc="desc entity")
    suffix = traits.Str("dwimap", usedefault=True, desc="BIDS suffix")
    extension = traits.Str(desc="extension; default: that of in_file (.nii becomes .nii.gz)")
    data_dtype = traits.Str(desc="cast the image to this dtype (e.g. uint8 for masks)")
    meta_dict = traits.Dict(desc="sidecar content (e.g. from the processing workflow)")
    extra_meta = traits.Dict(desc="sidecar keys set at build time; override meta_dict")
    encoding = traits.Str(
        desc="when meta_dict's OrientationEncoding lists one entry per output kind "
        "({'sh': {...}, 'amplitudes': {...}}), keep only this kind's entry"
    )
    write_sidecar = traits.Bool(True, usedefault=True, desc="write the .json sidecar")


class _DerivativesDataSinkOutputSpec(TraitedSpec):
    out_file = File(desc="the written derivative")
    out_meta = File(desc="its JSON sidecar")


class DerivativesDataSink(SimpleInterface):
    """Save ``in_file`` as a BIDS derivative of ``source_file`` (see :func:`save_derivative`).

    Examples
    --------
    >>> sink = DerivativesDataSink(base_directory="out", model="rumba", param="fwm",
    ...                            source_file="sub-01/dwi/sub-01_dwi.nii.gz")
    >>> sink.inputs.suffix
    'dwimap'
    """

    input_spec = _DerivativesDataSinkInputSpec
    output_spec = _DerivativesDataSinkOutputSpec
    _always_run = True  # cheap, and a deleted output must come back on rerun

    def _run_interface(self, runtime):
        inputs = self.inputs
        out_file, out_meta = save_derivative(
            inputs.in_file,
            base_directory=inputs.base_directory,
            source_file=inputs.source_file,
            suffix=inputs.suffix,
            model=_defined(inputs.model),
            param=_defined(inputs.param),
            desc=_defined(inputs.desc),
            extension=_defined(inputs.extension),
            data_dtype=_defined(inputs.data_dtype),
            meta=_defined(inputs.meta_dict),
            extra_meta=_defined(inputs.extra_meta),
            encoding=_defined(inputs.encoding),
            write_sidecar=inputs.write_sidecar,
        )
        self._results["out_file"] = out_file
        if out_meta is not None:
            self._results["out_meta"] = out_meta
        return runtime


#: Keys an entry of :class:`DerivativesBundleSink`'s ``outputs`` may hold.
BUNDLE_KEYS = (
    "suffix",
    "model",
    "param",
    "desc",
    "extension",
    "data_dtype",
    "extra_meta",
    "encoding",
    "write_sidecar",
    "shared_meta",
)


class _DerivativesBundleSinkInputSpec(DynamicTraitedSpec, BaseInterfaceInputSpec):
    base_directory = traits.Directory(mandatory=True, desc="root of the derivatives dataset")
    source_file = traits.Str(mandatory=True, desc="BIDS file the outputs derive from")
    outputs = traits.List(
        traits.Dict,
        mandatory=True,
        desc="one dict per input in1, in2, ...: keyword arguments of save_derivative "
        f"({', '.join(BUNDLE_KEYS[:-1])}), and shared_meta (default True: the sidecar "
        "starts from meta_dict)",
    )
    meta_dict = traits.Dict(desc="sidecar content shared by every output")


class _DerivativesBundleSinkOutputSpec(TraitedSpec):
    out_files = traits.List(File, desc="the written derivatives, in input order")
    out_metas = traits.List(traits.Either(None, File), desc="their sidecars (None: none)")


class DerivativesBundleSink(SimpleInterface):
    """Save the files ``in1``, ``in2``, ... as derivatives of one ``source_file``.

    Parameters
    ----------
    numinputs : int
        Number of files (inputs ``in1`` ... ``in<numinputs>``), as many as
        entries in ``outputs``.

    Examples
    --------
    >>> sink = DerivativesBundleSink(2, base_directory="out",
    ...     source_file="sub-01/dwi/sub-01_dwi.nii.gz",
    ...     outputs=[{"model": "rumba", "param": "fwm"}, {"desc": "brain", "suffix": "mask"}])
    >>> sorted(name for name in sink.inputs.copyable_trait_names() if name.startswith("in"))
    ['in1', 'in2']
    """

    input_spec = _DerivativesBundleSinkInputSpec
    output_spec = _DerivativesBundleSinkOutputSpec
    _always_run = True

    def __init__(self, numinputs: int = 0, **inputs):
        super().__init__(**inputs)
        self._numinputs = int(numinputs)
        add_traits(self.inputs, [f"in{index + 1}" for index in range(self._numinputs)])

    def _run_interface(self, runtime):
        inputs = self.inputs
        if len(inputs.outputs) != self._numinputs:
            raise ValueError(
                f"{len(inputs.outputs)} output descriptions for {self._numinputs} inputs"
            )
        meta = _defined(inputs.meta_dict)
        out_files, out_metas = [], []
        for index, spec in enumerate(inputs.outputs):
            unknown = set(spec) - set(BUNDLE_KEYS)
            if unknown:
                raise ValueError(f"unknown keys {sorted(unknown)} in outputs[{index}]")
            in_file = getattr(inputs, f"in{index + 1}")
            if not isdefined(in_file):
                raise ValueError(f"in{index + 1} is not set")
            spec = dict(spec)
            shared = spec.pop("shared_meta", True)
            out_file, out_meta = save_derivative(
                in_file,
                base_directory=inputs.base_directory,
                source_file=inputs.source_file,
                meta=meta if shared else None,
                **spec,
            )
            out_files.append(out_file)
            out_metas.append(out_meta)
        self._results["out_files"] = out_files
        self._results["out_metas"] = out_metas
        return runtime
