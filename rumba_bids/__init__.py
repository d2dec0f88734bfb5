"""rumba-bids: RUMBA-SD fibre orientation distributions for BIDS datasets."""

__version__ = "0.1.0"
