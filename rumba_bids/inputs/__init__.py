"""Input layouts: which files make a DWI run, and how each pipeline writes its gradients.

One module per layout turns a dataset into :class:`~rumba_bids.inputs.record.DwiRun`
records with an explicit b-vector convention:

========== ===================================================== ===========
layout     found as                                              b-vectors
========== ===================================================== ===========
``bids``   ``sub-*/[ses-*/]dwi/*_dwi.nii[.gz]`` + ``.bval/.bvec`` ``fsl``
``qsiprep`` ``*_desc-preproc_dwi.nii.gz`` (+ ``desc-brain_mask``)  ``ijk``
``hcpya``  ``<subject>/T1w/Diffusion/{data.nii.gz,bvals,bvecs}``  ``fsl``
========== ===================================================== ===========

:func:`rumba_bids.inputs.detect.detect_layout` picks the layout (or checks the
one forced by ``--input-type``); :func:`rumba_bids.inputs.check.check_run` runs
the validation the interfaces run.  Nothing here imports :mod:`rumba_bids.cli`.
"""
