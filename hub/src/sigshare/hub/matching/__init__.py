"""The hub's computations on sketches: count vectors, resolutions, overlaps, LSH matching."""
