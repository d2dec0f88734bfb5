"""CITATION.md: generated from the settings actually used."""

import re
from dataclasses import replace

from rumba_bids.cli.boilerplate import _bib_entries, citation_files, methods_text
from rumba_bids.cli.settings import ModelOptions

BASE = dict(
    version="9.9",
    n_runs=3,
    n_participants=2,
    gm_runs=1,
    derivative_input=False,
    user_mask=False,
)


def test_default_methods():
    text = methods_text(model=ModelOptions(), **BASE)
    assert "rumba-bids 9.9" in text and "3 diffusion-weighted run(s) of 2 participant(s)" in text
    assert "RUMBA-SD" in text and "[@canales2015rumba]" in text
    assert "600 iterations" in text and "Rician noise" in text
    assert "high-FA voxels" in text and "[@tournier2004sd]" in text
    assert "grey matter" in text and "for the 1 run(s)" in text
    assert "fitted independently" in text and "rudin1992tv" not in text
    assert "median-Otsu" in text
    assert "refined between the sphere's directions" in text


def test_options_change_the_text():
    model = replace(
        ModelOptions(),
        response="recursive",
        fit="global",
        use_tv=True,
        recon_type="sos",
        n_coils=8,
        acceleration_factor=2,
        use_gm=False,
        use_csf=False,
        sh_basis="descoteaux",
        n_iter=250,
    )
    text = methods_text(model=model, **{**BASE, "user_mask": True})
    assert "[@tax2014recursive]" in text and "[@tournier2007csd]" in text
    assert "total-variation" in text and "[@rudin1992tv]" in text
    assert "noncentral-chi noise (8 receiver coils" in text and "R = 2" in text
    assert "no isotropic compartment" in text and "250 iterations" in text
    assert "[@descoteaux2007qball]" in text and "given on the command line" in text
    vertex_peaks = methods_text(model=replace(ModelOptions(), peak_refine=False), **BASE)
    assert "refined" not in vertex_peaks and "minimum separation 25 degrees)" in vertex_peaks


def test_references_match_citations():
    model = replace(ModelOptions(), response="recursive", use_tv=True, fit="global")
    markdown, bib = citation_files(model=model, **BASE)
    cited = set(re.findall(r"\[@(\w+)\]", markdown))
    in_bib = set(re.findall(r"@article\{(\w+),", bib))
    assert cited == in_bib
    assert cited <= set(_bib_entries())
    assert "## References" in markdown
    assert (
        "Canales-Rodríguez" in markdown
        and "https://doi.org/10.1371/journal.pone.0138910" in markdown
    )
    assert markdown.count("\n1. ") == 1
