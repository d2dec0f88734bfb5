"""Regenerate ``rumba_bids/data/spheres.npz`` (the named spheres).

Run: ``python tools/make_spheres.py``.  Deterministic (fixed seeds).
"""

from pathlib import Path

import numpy as np

from rumba_bids.core.sphere import NAMED_SPHERES, repulsion_sphere

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "rumba_bids" / "data" / "spheres.npz"
    spheres = {
        name: repulsion_sphere(n_pairs, seed=0).astype(np.float64)
        for name, n_pairs in NAMED_SPHERES.items()
    }
    np.savez_compressed(out, **spheres)
    print(f"wrote {out}: " + ", ".join(f"{k} {v.shape}" for k, v in spheres.items()))
