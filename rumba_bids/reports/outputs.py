"""Read the outputs of one run from a rumba-bids derivatives folder, ready to plot.

Files are found by their BEP016 names (``<prefix>_model-rumba_param-<p>_dwimap``,
``<prefix>_desc-brain_mask``, ``<prefix>_model-rumba_response.json``) next to
the fODF image; sidecars give the SH basis, the direction frame of the SH and
peak images and the fit settings.  Arrays are reoriented to the closest RAS+
voxel order (:class:`DisplayFrame`), and direction vectors with them, so that
figures show anatomy the usual way round and colour directions by world axes
(red = left-right, green = anterior-posterior, blue = inferior-superior).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from urllib.parse import unquote, urlparse

import nibabel as nib
import numpy as np

from ..core.gradients import voxel_to_world, world_to_voxel
from ..core.shm import sh_to_sf
from ..core.sphere import as_sphere

MODEL_ENTITY = "model-rumba"
#: Map names of a run and the ``param`` entity of their file.
MAP_PARAMS = {
    "fod": "fod",
    "peaks": "peaks",
    "peak_values": "peakvals",
    "gfa": "gfa",
    "f_wm": "fwm",
    "f_gm": "fgm",
    "f_csf": "fcsf",
    "f_iso": "fiso",
    "snr": "snr",
}
_ENTITY_KEYS = (
    ("ses", "session"),
    ("acq", "acquisition"),
    ("rec", "reconstruction"),
    ("dir", "direction"),
    ("run", "run"),
)
DEFAULT_B0_THRESHOLD = 50.0


def _read_json(path) -> dict:
    try:
        content = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


class DisplayFrame:
    """Reorientation of an image grid to the closest RAS+ axis order.

    Parameters
    ----------
    affine : array_like, shape (4, 4)
    shape : tuple of int
        Spatial shape (first three axes) of the image.

    Examples
    --------
    >>> frame = DisplayFrame(np.diag([-2.0, 2.0, 2.0, 1.0]), (4, 5, 6))
    >>> frame.vectors(np.array([1.0, 0.0, 0.0])).tolist()
    [-1.0, 0.0, 0.0]
    >>> frame.shape, frame.convert_index(0, 0), frame.convert_range(0, 0, 2)
    ((4, 5, 6), 3, (2, 4))
    """

    def __init__(self, affine, shape):
        self.affine = np.asarray(affine, dtype=np.float64)
        self.source_shape = tuple(int(s) for s in shape[:3])
        self.ornt = nib.orientations.io_orientation(self.affine)
        self._target = self.ornt[:, 0].astype(int)  # display axis of each source axis
        self._flip = self.ornt[:, 1]
        zooms = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        self.zooms = tuple(float(z) for z in zooms[np.argsort(self._target)])
        self.shape = tuple(self.source_shape[a] for a in np.argsort(self._target))

    def volume(self, array) -> np.ndarray:
        """``array`` (first three axes spatial) in display order."""
        return nib.orientations.apply_orientation(np.asarray(array), self.ornt)

    def vectors(self, vectors) -> np.ndarray:
        """Components (..., 3) in the source voxel frame -> display voxel frame."""
        vectors = np.asarray(vectors, dtype=np.float64)
        out = np.empty_like(vectors)
        out[..., self._target] = vectors * self._flip
        return out

    def source_vectors(self, vectors) -> np.ndarray:
        """Inverse of :meth:`vectors`."""
        vectors = np.asarray(vectors, dtype=np.float64)
        return vectors[..., self._target] * self._flip

    def source_axis(self, axis: int) -> int:
        """The source axis shown along display ``axis``."""
        return int(np.flatnonzero(self._target == axis)[0])

    def is_flipped(self, axis: int) -> bool:
        """Whether display ``axis`` runs opposite to its source axis."""
        return bool(self._flip[self.source_axis(axis)] < 0)

    def convert_index(self, axis: int, index: int) -> int:
        """Display index <-> source index along display ``axis`` (the map is its own inverse)."""
        return self.shape[axis] - 1 - int(index) if self.is_flipped(axis) else int(index)

    def convert_range(self, axis: int, start: int, stop: int) -> tuple[int, int]:
        """Display range ``start:stop`` <-> source range along display ``axis``."""
        if self.is_flipped(axis):
            return self.shape[axis] - int(stop), self.shape[axis] - int(start)
        return int(start), int(stop)

    def read_slice(self, image, axis: int, index: int) -> np.ndarray:
        """The display slice ``index`` along display ``axis``, read from disk alone.

        Returns an array with the two other spatial axes (display order)
        followed by the image's non-spatial axes.
        """
        source_axis = self.source_axis(axis)
        source_index = self.convert_index(axis, index)
        slicer = [slice(None)] * len(image.shape)
        slicer[source_axis] = slice(source_index, source_index + 1)
        slab = np.asanyarray(image.dataobj[tuple(slicer)])
        return np.take(self.volume(slab), 0, axis=axis)


@dataclass
class RunOutputs:
    """The files of one processed run, and their sidecars.

    Attributes
    ----------
    label : str
        ``sub-01_ses-1_run-2``-style name of the run.
    entities : dict
        ``subject`` and, when present, ``session``, ``acquisition``,
        ``direction``, ``run``.
    files : dict
        Existing files by name: keys of :data:`MAP_PARAMS`, ``mask``,
        ``response`` (JSON).
    output_dir : Path
        Root of the derivatives dataset.
    sidecars : dict
        Sidecar content by file name, used instead of the JSON files (for
        files without sidecars, e.g. inside a workflow).
    source_dwi, source_bval : Path, optional
        The DWI series and b-values the run came from (default: found from
        the sidecars' ``Sources``).
    """

    label: str
    entities: dict
    files: dict
    output_dir: Path
    sidecars: dict = field(default_factory=dict)
    source_dwi: Path | None = None
    source_bval: Path | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def subject(self) -> str:
        return self.entities["subject"]

    @property
    def session(self) -> str | None:
        return self.entities.get("session")

    def sidecar(self, name: str) -> dict:
        """JSON sidecar of file ``name`` (empty when absent)."""
        if name in self.sidecars:
            return dict(self.sidecars[name])
        path = self.files.get(name)
        if path is None:
            return {}
        path = Path(path)
        return _read_json(path.with_name(path.name.split(".")[0] + ".json"))

    @cached_property
    def metadata(self) -> dict:
        """The fit's sidecar (of the fODF image): ``Model``, ``ResponseFunction``."""
        return self.sidecar("fod")

    @property
    def parameters(self) -> dict:
        return dict(self.metadata.get("Model", {}).get("Parameters", {}))

    @cached_property
    def reference_image(self):
        name = "fod" if "fod" in self.files else next(iter(self.files))
        return nib.load(str(self.files[name]))

    @cached_property
    def frame(self) -> DisplayFrame:
        image = self.reference_image
        return DisplayFrame(image.affine, image.shape[:3])

    def image(self, name: str):
        if name not in self._cache:
            self._cache[name] = nib.load(str(self.files[name]))
        return self._cache[name]

    def volume(self, name: str, *, dtype=np.float32) -> np.ndarray | None:
        """Map ``name`` in display order (None when the file is absent)."""
        if name not in self.files or name in ("response",):
            return None
        key = ("volume", name)
        if key not in self._cache:
            data = np.asanyarray(self.image(name).dataobj).astype(dtype)
            self._cache[key] = self.frame.volume(data)
        return self._cache[key]

    def mask(self) -> np.ndarray:
        """Brain mask in display order.

        Without a mask file: the voxels where a 3D map (f_wm + f_iso, else SNR,
        else GFA) or, failing those, a 4D output is non-zero.
        """
        if "mask" in self.files:
            return self.volume("mask") > 0
        for names in (("f_wm", "f_iso"), ("snr",), ("gfa",), ("peak_values",), ("fod",)):
            volumes = [self.volume(name) for name in names if name in self.files]
            if volumes:
                nonzero = [np.nan_to_num(v) != 0 for v in volumes]
                nonzero = [v.any(axis=-1) if v.ndim == 4 else v for v in nonzero]
                return np.any(nonzero, axis=0)
        return np.ones(self.frame.shape, dtype=bool)

    def encoding(self, name: str) -> dict:
        return dict(self.sidecar(name).get("OrientationEncoding", {}))

    def _to_display_directions(self, vectors, reference: str) -> np.ndarray:
        """Direction vectors of an output image (frame ``reference``) in the display frame."""
        if reference == "xyz":
            vectors = world_to_voxel(vectors, self.frame.affine)
        return self.frame.vectors(vectors)

    def peaks(self):
        """Peak directions (..., P, 3, display frame) and values (..., P), or (None, None)."""
        if "peaks" not in self.files:
            return None, None
        from ..core.peaks import mrtrix_to_peaks

        data = self.volume("peaks")
        directions, values = mrtrix_to_peaks(data)
        reference = self.encoding("peaks").get("Reference", "ijk")
        directions = self._to_display_directions(directions, reference)
        if "peak_values" in self.files:
            stored = self.volume("peak_values")
            if stored.shape == values.shape:
                values = np.where(np.isfinite(stored), stored, 0.0)
        return directions, values

    def n_peaks(self) -> np.ndarray | None:
        """Number of fODF peaks of each voxel (display order), or None."""
        if "peak_values" in self.files:
            values = self.volume("peak_values")
            return (np.nan_to_num(values) > 0).sum(axis=-1)
        directions, values = self.peaks()
        return None if values is None else (values > 0).sum(axis=-1)

    def odf_slice(self, axis: int, index: int, sphere, *, with_isotropic: bool = True):
        """fODF amplitudes on ``sphere`` (display frame) of one display slice.

        The SH image is read for this slice only and evaluated on the
        sphere's directions; negative lobes are clipped.  With
        ``with_isotropic`` the isotropic fraction is added in the fODF's unit
        (``FODScale``): as a density ``f_iso / (4 pi)``, or spread evenly over
        the fit's sphere for weights (as :attr:`RumbaFit.combined_odf_iso`;
        outputs without ``FODScale`` are weights).

        Returns
        -------
        ndarray, shape (A, B, M)
        """
        sphere = as_sphere(sphere)
        encoding = self.encoding("fod")
        if encoding.get("Type", "sh") != "sh":
            raise ValueError(f"{self.files['fod']}: expected an SH fODF image (Type: sh)")
        basis = encoding.get("SphericalHarmonicBasis", "mrtrix3")
        # the sphere's directions in the frame of the SH coefficients
        directions = self.frame.source_vectors(sphere.vertices)
        if encoding.get("Reference", "ijk") == "xyz":
            directions = voxel_to_world(directions, self.frame.affine)
        sh = self.frame.read_slice(self.image("fod"), axis, index).astype(np.float32)
        odf = np.maximum(sh_to_sf(sh, directions, basis=basis), 0.0)
        if with_isotropic and "f_iso" in self.files:
            if self.parameters.get("FODScale", "weights") == "density":
                spread = 4 * np.pi
            else:
                spread = int(self.parameters.get("SphereDirections") or len(sphere))
            f_iso = self.frame.read_slice(self.image("f_iso"), axis, index)
            odf = odf + np.asarray(f_iso, dtype=np.float32)[..., None] / np.float32(spread)
        return odf

    @cached_property
    def response(self) -> dict:
        """The response description: the response JSON, else the sidecar's."""
        if "response" in self.files:
            content = _read_json(self.files["response"])
            if content:
                return content
        return dict(self.metadata.get("ResponseFunction", {}))

    # ----------------------------------------------------------------- the raw data

    def _resolve_source(self, uri: str, bids_dir) -> Path | None:
        match = re.match(r"^bids:([^:]*):(.+)$", uri)
        if not match:
            path = Path(uri)
            return path if path.is_absolute() and path.exists() else None
        dataset, relative = match.groups()
        roots = []
        if bids_dir is not None:
            roots.append(Path(bids_dir))
        description = _read_json(self.output_dir / "dataset_description.json")
        links = description.get("DatasetLinks", {})
        if dataset == "":
            roots.append(self.output_dir)
        elif isinstance(links.get(dataset), str):
            parsed = urlparse(links[dataset])
            if parsed.scheme in ("", "file"):
                roots.append(Path(unquote(parsed.path)))
        for root in roots:
            candidate = root / relative
            if candidate.exists():
                return candidate
        return None

    def source_files(self, bids_dir=None) -> tuple[Path | None, Path | None]:
        """(DWI image, b-value file) the run was computed from, when still reachable."""
        if self.source_dwi is not None:
            return Path(self.source_dwi), (
                None if self.source_bval is None else Path(self.source_bval)
            )
        sources = []
        for name in ("fod", "mask"):
            sources += [s for s in self.sidecar(name).get("Sources", []) if isinstance(s, str)]
        dwi = bval = None
        for uri in sources:
            if dwi is None and re.search(r"_dwi\.nii(\.gz)?$", uri):
                dwi = self._resolve_source(uri, bids_dir)
            elif bval is None and uri.endswith(".bval"):
                bval = self._resolve_source(uri, bids_dir)
        if dwi is None and bids_dir is not None:
            folder = Path(bids_dir) / f"sub-{self.subject}"
            if self.session:
                folder = folder / f"ses-{self.session}"
            for extension in (".nii.gz", ".nii"):
                candidate = folder / "dwi" / f"{self.label}_dwi{extension}"
                if candidate.exists():
                    dwi = candidate
                    break
        if dwi is not None and bval is None:
            candidate = dwi.with_name(dwi.name.split(".")[0] + ".bval")
            bval = candidate if candidate.exists() else None
        return dwi, bval

    def mean_b0(self, bids_dir=None) -> np.ndarray | None:
        """Mean b=0 image (display order) of the source DWI, or None when unreachable."""
        dwi_file, bval_file = self.source_files(bids_dir)
        if dwi_file is None or bval_file is None:
            return None
        threshold = float(self.parameters.get("B0Threshold", DEFAULT_B0_THRESHOLD))
        try:
            bvals = np.loadtxt(bval_file, ndmin=1).ravel()
            # one open file for all the b0 volumes: a gzipped series is then decompressed
            # once, not from its start for each volume (72x72x48x74: 0.2 s against 1.0 s)
            image = nib.load(str(dwi_file), keep_file_open=True)
        except (OSError, ValueError):
            return None
        if image.shape[:3] != self.frame.source_shape or len(image.shape) != 4:
            return None
        b0_volumes = np.flatnonzero(bvals <= threshold)
        if len(b0_volumes) == 0 or len(bvals) != image.shape[3]:
            return None
        total = np.zeros(image.shape[:3], dtype=np.float64)
        for volume in b0_volumes:
            total += np.asanyarray(image.dataobj[..., int(volume)], dtype=np.float64)
        return self.frame.volume(total / len(b0_volumes))

    def acquisition(self, bids_dir=None) -> dict:
        """Grid, voxel size and b-values of the run (what can be found)."""
        image = self.reference_image
        facts = {
            "shape": tuple(int(s) for s in image.shape[:3]),
            "zooms": tuple(round(float(z), 3) for z in image.header.get_zooms()[:3]),
            "shells": list(self.parameters.get("Shells", [])),
        }
        _, bval_file = self.source_files(bids_dir)
        if bval_file is not None:
            try:
                bvals = np.loadtxt(bval_file, ndmin=1).ravel()
            except (OSError, ValueError):
                return facts
            threshold = float(self.parameters.get("B0Threshold", DEFAULT_B0_THRESHOLD))
            facts["n_volumes"] = len(bvals)
            facts["n_b0"] = int((bvals <= threshold).sum())
        return facts


def _run_entities(prefix: str) -> dict:
    parts = prefix.split("_")
    entities = {"subject": parts[0][len("sub-") :]}
    keys = dict(_ENTITY_KEYS)
    for part in parts[1:]:
        key, _, value = part.partition("-")
        entities[keys.get(key, key)] = value
    return entities


def find_runs(output_dir, subject: str) -> list[RunOutputs]:
    """Every processed run of ``subject`` (label with or without ``sub-``), sorted.

    A run is found by its fODF image
    ``<prefix>_model-rumba_param-fod_dwimap.nii[.gz]``; its other files by
    the same prefix.
    """
    output_dir = Path(output_dir)
    subject = subject[4:] if subject.startswith("sub-") else subject
    root = output_dir / f"sub-{subject}"
    runs = []
    pattern = f"sub-{subject}*_{MODEL_ENTITY}_param-fod_dwimap.nii*"
    for fod in sorted(root.glob(f"**/dwi/{pattern}")):
        prefix = fod.name[: fod.name.index(f"_{MODEL_ENTITY}_")]
        folder = fod.parent
        files = {}
        for name, param in MAP_PARAMS.items():
            for extension in (".nii.gz", ".nii"):
                candidate = folder / f"{prefix}_{MODEL_ENTITY}_param-{param}_dwimap{extension}"
                if candidate.exists():
                    files[name] = candidate
                    break
        for extension in (".nii.gz", ".nii"):
            candidate = folder / f"{prefix}_desc-brain_mask{extension}"
            if candidate.exists():
                files["mask"] = candidate
                break
        response = folder / f"{prefix}_{MODEL_ENTITY}_response.json"
        if response.exists():
            files["response"] = response
        runs.append(
            RunOutputs(
                label=prefix, entities=_run_entities(prefix), files=files, output_dir=output_dir
            )
        )
    return runs


def find_subjects(output_dir) -> list[str]:
    """Labels (without ``sub-``) of the subjects with at least one processed run."""
    output_dir = Path(output_dir)
    labels = []
    for folder in sorted(output_dir.glob("sub-*")):
        if folder.is_dir() and any(folder.glob(f"**/dwi/*_{MODEL_ENTITY}_param-fod_dwimap.nii*")):
            labels.append(folder.name[len("sub-") :])
    return labels
