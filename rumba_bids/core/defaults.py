"""Defaults of the model and its post-processing, declared once (plain Python, no numpy).

The core's signatures use these names and every other layer (interfaces,
workflows, command line) takes them from here or from those signatures, so
the command line can show them without loading numpy.
"""

#: RUMBA-SD iterations (the paper's and DIPY's).
DEFAULT_N_ITER = 600
#: White-matter response: tensor eigenvalues in mm^2/s.
DEFAULT_WM_RESPONSE = (1.7e-3, 0.2e-3, 0.2e-3)
#: Isotropic GM and CSF diffusivities in mm^2/s.
DEFAULT_GM_RESPONSE = 0.8e-3
DEFAULT_CSF_RESPONSE = 3.0e-3
#: Non-zero shells needed to separate a GM compartment from WM and CSF (fewer: GM off).
GM_MIN_SHELLS = 3
#: Sphere of the fODF.
DEFAULT_SPHERE = "repulsion724"
#: SH degree and basis of the fODF output.
DEFAULT_SH_ORDER = 8
DEFAULT_SH_BASIS = "mrtrix3"
#: Peak extraction: peaks kept, relative threshold, minimum separation (degrees).
DEFAULT_NPEAKS = 5
DEFAULT_PEAK_THRESHOLD = 0.5
DEFAULT_MIN_SEPARATION_ANGLE = 25.0
#: Peak directions refined between the sphere's vertices (False: vertex directions).
DEFAULT_PEAK_REFINE = True
#: Noise model: spatial matched filter (Rician), coils, acceleration factor.
DEFAULT_RECON_TYPE = "smf"
DEFAULT_N_COILS = 1
DEFAULT_R = 1
#: Unit of the fODF outputs: a density on the sphere (1/sr, integral f_wm) or the
#: per-direction weights (sum f_wm, DIPY's RumbaFit.odf scale).
FOD_SCALES = ("density", "weights")
DEFAULT_FOD_SCALE = "density"
