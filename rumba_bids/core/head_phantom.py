"""A synthetic head phantom with known fibre directions and tissue fractions.

The phantom is a brain-shaped ellipsoid inside a head, inside a field of
background noise:

* a scalp (isotropic, 1.2e-3 mm^2/s) separated from the brain by a dark skull;

* a grey-matter-like cortical rim (isotropic diffusivity 0.8e-3 mm^2/s, with
  sulcal CSF partial volume in its outer layer);
* two CSF-like lateral ventricles (3.0e-3 mm^2/s);
* white matter made of fibre bundles: a left-right "callosal" slab, two
  anterior-posterior bands and two superior-inferior columns.  Where bundles
  overlap the voxel holds 2 or 3 fibres (crossing angles 66 to 90 degrees);
  white matter outside every bundle holds one fibre pointing radially;
* a smooth receive-coil gain field and Rician noise at a chosen SNR.

Everything is expressed in the voxel (ijk) frame; ground truth directions are
unit vectors in that frame.  Used by ``rumba-bids-demo`` to make a BIDS
dataset, and by tests to score reconstructions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .gradients import GradientTable
from .phantoms import WM_EVALS, add_rician_noise, fibonacci_directions, multi_tensor_signal

#: Isotropic diffusivities (mm^2/s) of the grey-matter-like and CSF-like compartments.
GM_DIFFUSIVITY = 0.8e-3
CSF_DIFFUSIVITY = 3.0e-3
SCALP_DIFFUSIVITY = 1.2e-3
#: Default grid (voxels): a brain of about 31 x 39 x 25 voxels inside a head.
DEFAULT_SHAPE = (40, 48, 34)
#: Thickness (voxels) of the skull and of the scalp around the brain.
SKULL_THICKNESS = 1.0
SCALP_THICKNESS = 2.0
#: Air between the head and the edge of the grid (voxels).
AIR_MARGIN = 1.5
MAX_FIBRES = 3
#: b0 signal per unit volume of WM, GM, CSF and scalp (T2 weighting at TE ~ 80 ms).
RELATIVE_S0 = (1.0, 1.3, 2.5, 0.7)
#: Tissue labels of :attr:`HeadPhantom.tissue`.
TISSUE_LABELS = {0: "background", 1: "white matter", 2: "grey matter", 3: "CSF", 4: "scalp"}


def _unit(vector) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64)
    return vector / np.linalg.norm(vector)


#: Bundle directions in the voxel frame (right hemisphere; the left one is mirrored in x).
LEFT_RIGHT = _unit([1.0, 0.0, 0.0])
ANTERIOR_POSTERIOR = _unit([np.sin(np.radians(15)), np.cos(np.radians(15)), 0.0])
SUPERIOR_INFERIOR = _unit([0.0, -np.sin(np.radians(25)), np.cos(np.radians(25))])


@dataclass(frozen=True)
class HeadPhantom:
    """A simulated DWI volume and its ground truth.

    Attributes
    ----------
    signal : ndarray, shape (X, Y, Z, N)
        Noisy magnitude signal (arbitrary units, b0 of brain tissue about ``S0``).
    gtab : GradientTable
        Acquisition, b-vectors in the voxel frame.
    brain_mask : ndarray of bool, shape (X, Y, Z)
    head_mask : ndarray of bool, shape (X, Y, Z)
        Brain, skull and scalp.
    tissue : ndarray of uint8, shape (X, Y, Z)
        Dominant tissue, labels in :data:`TISSUE_LABELS`.
    f_wm, f_gm, f_csf : ndarray, shape (X, Y, Z)
        Signal fractions of the compartments (sum to 1 in the brain, 0 outside
        it, scalp included).
    fibre_directions : ndarray, shape (X, Y, Z, 3, 3)
        Unit fibre directions (voxel frame) per fibre slot; NaN where a slot is empty.
    fibre_fractions : ndarray, shape (X, Y, Z, 3)
        Signal fraction of each fibre (they sum to ``f_wm``); 0 where empty.
    n_fibres : ndarray of uint8, shape (X, Y, Z)
    snr : float
        b0 signal of brain tissue over the noise standard deviation.
    S0 : float
    """

    signal: np.ndarray
    gtab: GradientTable
    brain_mask: np.ndarray
    head_mask: np.ndarray
    tissue: np.ndarray
    f_wm: np.ndarray
    f_gm: np.ndarray
    f_csf: np.ndarray
    fibre_directions: np.ndarray
    fibre_fractions: np.ndarray
    n_fibres: np.ndarray
    snr: float
    S0: float


def demo_gradient_table(
    *, n_b0: int = 10, n_dirs: int = 64, bvals=(2000.0,), interleave_b0: bool = True
) -> GradientTable:
    """A realistic acquisition: ``n_dirs`` directions spread over the shells in
    ``bvals`` (s/mm^2), with ``n_b0`` b0 volumes interleaved among them.

    With several shells the directions of one near-uniform set of ``n_dirs``
    vectors are dealt out in turn, so every shell is itself near-uniform and
    the shells do not share directions.

    Returns
    -------
    GradientTable
        b-vectors in the voxel frame.

    Examples
    --------
    >>> gtab = demo_gradient_table(n_b0=2, n_dirs=6, bvals=(1000, 2000))
    >>> gtab.bvals.tolist()
    [0.0, 1000.0, 2000.0, 1000.0, 0.0, 2000.0, 1000.0, 2000.0]
    """
    bvals = np.asarray(bvals, dtype=np.float64).ravel()
    if n_b0 < 1:
        raise ValueError(f"n_b0 must be at least 1, got {n_b0}")
    if n_dirs < len(bvals):
        raise ValueError(f"n_dirs ({n_dirs}) must be at least the number of shells")
    dirs = fibonacci_directions(n_dirs)
    dw_bvals = bvals[np.arange(n_dirs) % len(bvals)]
    n_total = n_b0 + n_dirs
    if interleave_b0:
        b0_positions = np.round(np.linspace(0, n_total, n_b0, endpoint=False)).astype(int)
    else:
        b0_positions = np.arange(n_b0)
    is_b0 = np.zeros(n_total, dtype=bool)
    is_b0[b0_positions] = True
    all_bvals = np.zeros(n_total)
    all_bvecs = np.zeros((n_total, 3))
    all_bvals[~is_b0] = dw_bvals
    all_bvecs[~is_b0] = dirs
    return GradientTable(all_bvals, all_bvecs)


def _normalised_coordinates(shape, semi_axes, centre):
    grid = np.indices(shape, dtype=np.float64)
    return [(grid[axis] - centre[axis]) / semi_axes[axis] for axis in range(3)]


def default_semi_axes(shape) -> tuple[float, float, float]:
    """Brain semi-axes (voxels) leaving room for skull, scalp and some air."""
    room = SKULL_THICKNESS + SCALP_THICKNESS + AIR_MARGIN
    return tuple(0.5 * s - room for s in shape)


def head_geometry(*, shape=DEFAULT_SHAPE, semi_axes=None) -> dict:
    """Tissue fractions and fibre configuration of the phantom (no signal).

    Parameters
    ----------
    shape : tuple of 3 int
        Grid size in voxels.
    semi_axes : tuple of 3 float, optional
        Brain ellipsoid semi-axes in voxels; default :func:`default_semi_axes`.
        The skull and scalp add :data:`SKULL_THICKNESS` and
        :data:`SCALP_THICKNESS` voxels around it.

    Returns
    -------
    dict
        ``brain_mask``, ``head_mask``, ``tissue``, ``f_wm``, ``f_gm``,
        ``f_csf`` (volume fractions), ``fibre_directions``,
        ``fibre_fractions``, ``n_fibres`` as in :class:`HeadPhantom`.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 16:
        raise ValueError(f"shape must be 3 sizes of at least 16 voxels, got {shape}")
    if semi_axes is None:
        semi_axes = default_semi_axes(shape)
    semi_axes = tuple(float(a) for a in semi_axes)
    if min(semi_axes) < 3:
        raise ValueError(f"brain semi-axes must be at least 3 voxels, got {semi_axes}")
    centre = [(s - 1) / 2.0 for s in shape]
    u, v, w = _normalised_coordinates(shape, semi_axes, centre)
    radius = np.sqrt(u**2 + v**2 + w**2)

    def inside(extra):
        axes = [a + extra for a in semi_axes]
        x, y, z = _normalised_coordinates(shape, axes, centre)
        return x**2 + y**2 + z**2 <= 1.0

    brain = radius <= 1.0
    head = inside(SKULL_THICKNESS + SCALP_THICKNESS)
    scalp = head & ~inside(SKULL_THICKNESS)
    outer_rim = brain & (radius > 0.9)
    inner_rim = brain & (radius > 0.8) & ~outer_rim
    deep = brain & (radius <= 0.8)
    ventricle = np.zeros(shape, dtype=bool)
    for side in (-1.0, 1.0):
        ventricle |= ((u - side * 0.2) / 0.14) ** 2 + (v / 0.38) ** 2 + (
            (w - 0.38) / 0.25
        ) ** 2 <= 1.0
    ventricle &= deep

    f_wm = np.zeros(shape)
    f_gm = np.zeros(shape)
    f_csf = np.zeros(shape)
    f_gm[outer_rim], f_csf[outer_rim] = 0.6, 0.4
    f_wm[inner_rim], f_gm[inner_rim], f_csf[inner_rim] = 0.2, 0.75, 0.05
    white = deep & ~ventricle
    f_wm[white], f_gm[white], f_csf[white] = 0.85, 0.1, 0.05
    f_wm[ventricle], f_csf[ventricle] = 0.1, 0.9

    tissue = np.zeros(shape, dtype=np.uint8)
    tissue[outer_rim | inner_rim] = 2
    tissue[white] = 1
    tissue[ventricle] = 3
    tissue[scalp] = 4

    # bundles (u: left-right, v: posterior-anterior, w: inferior-superior)
    side = np.where(u >= 0, 1.0, -1.0)
    band_offset = np.abs(np.abs(u) - 0.45)
    in_callosum = (np.abs(v) < 0.36) & (w > -0.3) & (w < 0.12)
    in_ap = band_offset < 0.17
    in_si = (band_offset < 0.28) & (np.abs(v) < 0.24)
    mirror = np.stack([side, np.ones(shape), np.ones(shape)], axis=-1)
    bundle_dirs = [
        np.broadcast_to(LEFT_RIGHT, shape + (3,)),
        ANTERIOR_POSTERIOR * mirror,
        SUPERIOR_INFERIOR * mirror,
    ]
    members = np.stack([in_callosum, in_ap, in_si], axis=-1)
    fibred = brain & (f_wm > 0)
    members &= fibred[..., None]
    n_fibres = members.sum(axis=-1)

    radial = np.stack([u * semi_axes[0], v * semi_axes[1], w * semi_axes[2]], axis=-1)
    norm = np.linalg.norm(radial, axis=-1, keepdims=True)
    radial = np.divide(radial, norm, out=np.tile(LEFT_RIGHT, shape + (1,)), where=norm > 0)
    lonely = fibred & (n_fibres == 0)

    directions = np.full(shape + (MAX_FIBRES, 3), np.nan)
    fractions = np.zeros(shape + (MAX_FIBRES,))
    slot = np.zeros(shape, dtype=np.intp)
    for bundle in range(3):
        sel = members[..., bundle]
        idx = np.nonzero(sel)
        directions[idx + (slot[sel],)] = bundle_dirs[bundle][sel]
        slot[sel] += 1
    directions[lonely, 0] = radial[lonely]
    n_fibres = np.where(lonely, 1, n_fibres).astype(np.uint8)
    occupied = np.arange(MAX_FIBRES) < n_fibres[..., None]
    share = f_wm / np.maximum(n_fibres, 1)
    fractions[occupied] = np.broadcast_to(share[..., None], fractions.shape)[occupied]
    return {
        "brain_mask": brain,
        "head_mask": head,
        "tissue": tissue,
        "f_wm": f_wm,
        "f_gm": f_gm,
        "f_csf": f_csf,
        "fibre_directions": directions,
        "fibre_fractions": fractions,
        "n_fibres": n_fibres,
    }


def gain_field(shape, *, rng, strength: float = 0.15) -> np.ndarray:
    """A smooth multiplicative receive-coil gain, between about 1 - strength and 1 + strength."""
    rng = np.random.default_rng(rng)
    coords = _normalised_coordinates(shape, [s / 2.0 for s in shape], [(s - 1) / 2 for s in shape])
    gradient = rng.normal(size=3)
    gradient /= np.linalg.norm(gradient)
    linear = sum(g * c for g, c in zip(gradient, coords)) / np.sqrt(3)
    return 1.0 + strength * np.clip(linear, -1, 1)


def make_head_phantom(
    gtab: GradientTable,
    *,
    shape=DEFAULT_SHAPE,
    semi_axes=None,
    snr: float = 30.0,
    S0: float = 1000.0,
    wm_evals=WM_EVALS,
    gm_diffusivity: float = GM_DIFFUSIVITY,
    csf_diffusivity: float = CSF_DIFFUSIVITY,
    gain_strength: float = 0.15,
    relative_s0=RELATIVE_S0,
    rng=None,
) -> HeadPhantom:
    """Simulate the head phantom for the acquisition ``gtab``.

    Parameters
    ----------
    gtab : GradientTable
        Acquisition (b-vectors in the voxel frame).
    shape, semi_axes
        See :func:`head_geometry`.
    snr : float
        S0 over the noise standard deviation (Rician noise everywhere,
        background included).
    S0 : float
        b0 signal of brain tissue where the gain field is 1.
    wm_evals : tuple of 3 float
        Fibre tensor eigenvalues (mm^2/s).
    gm_diffusivity, csf_diffusivity : float
        Isotropic diffusivities (mm^2/s).
    gain_strength : float
        Amplitude of the smooth gain field (0 for none).
    relative_s0 : tuple of 4 float
        b0 signal per unit volume of WM, GM, CSF and scalp (T2 weighting at a
        typical echo time: CSF is bright).  The fractions of the result are
        *signal* fractions, what a multi-compartment fit estimates.
    rng : int or numpy.random.Generator, optional
        Seed of the noise and the gain field.

    Returns
    -------
    HeadPhantom
        With signal fractions; ``snr`` refers to pure white matter.
    """
    rng = np.random.default_rng(rng)
    geometry = head_geometry(shape=shape, semi_axes=semi_axes)
    brain = geometry["brain_mask"]
    s_wm, s_gm, s_csf, s_scalp = (float(v) for v in relative_s0)
    weight = geometry["f_wm"] * s_wm + geometry["f_gm"] * s_gm + geometry["f_csf"] * s_csf
    scale = np.divide(1.0, weight, out=np.zeros_like(weight), where=weight > 0)
    geometry["f_wm"] = geometry["f_wm"] * s_wm * scale
    geometry["f_gm"] = geometry["f_gm"] * s_gm * scale
    geometry["f_csf"] = geometry["f_csf"] * s_csf * scale
    geometry["fibre_fractions"] = geometry["fibre_fractions"] * (s_wm * scale)[..., None]
    directions = geometry["fibre_directions"][brain]
    fractions = geometry["fibre_fractions"][brain]
    safe_dirs = np.where(np.isnan(directions), LEFT_RIGHT, directions)
    iso_fractions = np.stack([geometry["f_gm"][brain], geometry["f_csf"][brain]], axis=-1)
    clean = multi_tensor_signal(
        gtab,
        safe_dirs,
        fractions,
        evals=wm_evals,
        iso_fractions=iso_fractions,
        iso_diffusivities=(gm_diffusivity, csf_diffusivity),
        S0=1.0,
    )
    signal = np.zeros(tuple(shape) + (len(gtab),))
    signal[brain] = clean * weight[brain][:, None]
    scalp = geometry["tissue"] == 4
    signal[scalp] = s_scalp * np.exp(-gtab.bvals * SCALP_DIFFUSIVITY)
    signal *= gain_field(shape, rng=rng, strength=gain_strength)[..., None]
    noisy = add_rician_noise(signal, snr=snr, rng=rng) * S0
    return HeadPhantom(
        signal=noisy,
        gtab=gtab,
        snr=float(snr),
        S0=float(S0),
        **geometry,
    )
