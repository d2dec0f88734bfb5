"""Visual quality control of RUMBA-SD reconstructions, headless (matplotlib Agg only).

- :mod:`~rumba_bids.reports.figures`: ``plot_*`` functions taking arrays;
- :mod:`~rumba_bids.reports.glyphs`: the fODF glyph renderer;
- :mod:`~rumba_bids.reports.outputs`: reading a run's derivatives, reoriented for display;
- :mod:`~rumba_bids.reports.render`: the figures of one run from its files;
- :mod:`~rumba_bids.reports.html`: the ``sub-<label>.html`` page (:func:`generate_reports`);
- :mod:`~rumba_bids.reports.plot_cli`: the ``rumba-bids-plot`` command.

Nothing is imported here, so ``import rumba_bids.reports.figures`` loads only what it needs.
"""
