"""``logs/CITATION.md`` (+ ``.bib``): a methods paragraph from the settings actually used."""

from __future__ import annotations

import re
from importlib import resources

from .settings import ModelOptions

RESPONSE_TEXT = {
    "default": (
        "a fixed white-matter response, a prolate tensor with eigenvalues "
        "({l1:.2g}, {l2:.2g}, {l3:.2g}) x 10^-3 mm^2/s",
        [],
    ),
    "fa": (
        "a white-matter response estimated, for each run, from the mean diffusion tensor of "
        "the high-FA voxels of a central region [@tournier2004sd]",
        ["tournier2004sd"],
    ),
    "recursive": (
        "a white-matter response calibrated recursively for each run [@tax2014recursive]: "
        "starting from a fat tensor, constrained spherical deconvolution [@tournier2007csd] "
        "selected single-fibre voxels whose aligned signal became the next response",
        ["tax2014recursive", "tournier2007csd"],
    ),
    "file": ("the white-matter response read from `{file}`", []),
}


def _bib_entries() -> dict[str, str]:
    text = (resources.files("rumba_bids.data") / "references.bib").read_text()
    entries = {}
    for match in re.finditer(r"@article\{(\w+),(.*?)\n\}", text, flags=re.S):
        entries[match.group(1)] = match.group(0)
    return entries


_ACCENTS = {"'": "\u0301", '"': "\u0308", "u": "\u0306", "`": "\u0300"}


def _latex_to_text(text: str) -> str:
    """``{\\'i}`` -> ``í``, ``{PyBIDS}`` -> ``PyBIDS``, ``--`` -> ``-``."""
    import unicodedata

    def accent(match):
        return unicodedata.normalize("NFC", match.group(2) + _ACCENTS[match.group(1)])

    text = re.sub(r"\{?\\(['\"`u])\{?(\w)\}?\}?", accent, text)
    return text.replace("{", "").replace("}", "").replace("--", "-")


def _field(entry: str, name: str) -> str:
    match = re.search(rf"\b{name} = \{{(.*?)\}},?\n", entry, flags=re.S)
    return _latex_to_text(match.group(1)) if match else ""


def format_reference(entry: str) -> str:
    """One reference line: ``Authors (year). Title. Journal volume(number):pages. doi``."""
    authors = [a.strip() for a in _field(entry, "author").split(" and ")]
    if authors[-1] == "others" or len(authors) > 6:
        authors = [a for a in authors if a != "others"][:6] + ["et al."]
    names = ", ".join(authors)
    volume = _field(entry, "volume")
    number = _field(entry, "number")
    issue = f"({number})" if number else ""
    pages = _field(entry, "pages")
    return (
        f"{names} ({_field(entry, 'year')}). {_field(entry, 'title')}. "
        f"*{_field(entry, 'journal')}* {volume}{issue}:{pages}."
        f" https://doi.org/{_field(entry, 'doi')}"
    )


def _cited(text: str) -> list[str]:
    return list(dict.fromkeys(re.findall(r"@(\w+)\]", text.replace(";", "]"))))


def methods_text(
    *,
    version: str,
    model: ModelOptions,
    n_runs: int,
    n_participants: int,
    gm_runs: int,
    derivative_input: bool,
    user_mask: bool,
    response_file_name: str | None = None,
    input_layouts: tuple[str, ...] = ("bids",),
) -> str:
    """The methods paragraph (Markdown with ``[@key]`` citations)."""
    response, _ = RESPONSE_TEXT[model.response]
    response = response.format(
        l1=model.wm_response[0] * 1e3,
        l2=model.wm_response[1] * 1e3,
        l3=model.wm_response[2] * 1e3,
        file=response_file_name or "the response file",
    )
    if user_mask:
        mask = "the brain mask given on the command line"
    elif derivative_input:
        mask = (
            "the brain mask provided with the preprocessed data (where present; otherwise "
            "a median-Otsu mask [@garyfallidis2014dipy])"
        )
    else:
        mask = "a brain mask computed with a median-Otsu procedure [@garyfallidis2014dipy]"
    noise = (
        "Rician noise"
        if model.recon_type == "smf"
        else f"noncentral-chi noise ({model.n_coils} receiver coils, sum of squares)"
    )
    if model.acceleration_factor > 1:
        noise += f" with a parallel-imaging acceleration factor R = {model.acceleration_factor}"
    compartments = []
    if model.use_csf:
        compartments.append(f"CSF (D = {model.csf_response:.2g} mm^2/s)")
    if model.use_gm is None:
        if gm_runs:
            compartments.append(
                f"grey matter (D = {model.gm_response:.2g} mm^2/s) for the {gm_runs} run(s) "
                "acquired with at least three non-zero shells"
            )
    elif model.use_gm:
        compartments.append(f"grey matter (D = {model.gm_response:.2g} mm^2/s)")
    iso = (
        "isotropic compartments for " + " and ".join(compartments)
        if compartments
        else "no isotropic compartment"
    )
    if model.use_tv:
        fit = (
            "All voxels of a run were fitted jointly with total-variation spatial "
            "regularisation [@rudin1992tv], as proposed for RUMBA-SD."
        )
    elif model.fit == "global":
        fit = "All voxels of a run were fitted jointly (global fit, no spatial regularisation)."
    else:
        fit = "Every voxel was fitted independently."
    basis = (
        "the MRtrix3 real spherical-harmonic basis [@tournier2019mrtrix3]"
        if model.sh_basis == "mrtrix3"
        else "the real spherical-harmonic basis of Descoteaux et al. [@descoteaux2007qball]"
    )
    refinement = (
        "; each peak was refined between the sphere's directions to the maximum of a "
        "quadratic fitted to the logarithm of the fODF around it"
        if model.peak_refine
        else ""
    )
    paragraphs = [
        f"Fibre orientation distributions (fODFs) were estimated with rumba-bids {version}, "
        "a BIDS-App [@gorgolewski2017bidsapps] for data organised in BIDS "
        "[@gorgolewski2016bids], built on Nipype [@gorgolewski2011nipype] and PyBIDS "
        f"[@yarkoni2019pybids], for {n_runs} diffusion-weighted run(s) of {n_participants} "
        "participant(s).",
        f"For each run {_gradients_text(input_layouts)}, and the fit was restricted to {mask}.",
        f"The deconvolution used {response}.",
        "fODFs were reconstructed with RUMBA-SD (robust and unbiased model-based spherical "
        "deconvolution) [@canales2015rumba], a Richardson-Lucy-type iterative deconvolution "
        f"[@dellacqua2010damped] that maximises the likelihood of the data under {noise}, "
        f"estimating the noise level of every voxel, with {model.n_iter} iterations on "
        f"the {model.sphere} sphere and {iso}. {fit}",
        f"The fODF was projected onto {basis} up to degree {model.sh_order}; up to "
        f"{model.npeaks} peaks per voxel were extracted (relative threshold "
        f"{model.peak_threshold:g}, minimum separation {model.min_separation_angle:g} "
        f"degrees{refinement}), and the generalised fractional anisotropy [@tuch2004qball] "
        "was computed.",
    ]
    return "\n\n".join(paragraphs)


#: How each input layout's b-vectors were read, for the methods text.
GRADIENT_TEXT = {
    "bids": "the b-vectors were converted from the FSL convention to the image's voxel frame",
    "hcpya": "the b-vectors of the HCP-YA minimally preprocessed data were converted from "
    "the FSL convention to the image's voxel frame",
    "qsiprep": "the b-vectors written by QSIPrep were used as vectors along the axes of its "
    "LPS+ images (no FSL flip)",
}


def _gradients_text(layouts) -> str:
    return "; ".join(GRADIENT_TEXT[layout] for layout in dict.fromkeys(layouts) or ("bids",))


def citation_files(**kwargs) -> tuple[str, str]:
    """(CITATION.md text, CITATION.bib text) for :func:`methods_text`'s arguments."""
    text = methods_text(**kwargs)
    entries = _bib_entries()
    cited = [key for key in _cited(text) if key in entries]
    references = "\n".join(
        f"{index}. {format_reference(entries[key])}" for index, key in enumerate(cited, 1)
    )
    markdown = (
        "# Methods (generated by rumba-bids)\n\n"
        "The following boilerplate describes this run's settings; copy it into your "
        "manuscript and edit it as needed. Citation keys refer to CITATION.bib.\n\n"
        f"{text}\n\n## References\n\n{references}\n"
    )
    bib = "\n\n".join(entries[key] for key in cited) + "\n"
    return markdown, bib
