"""Reference maps that give every results table a floor: a seeded random map and a centred Gaussian."""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["random_map", "gaussian_map", "seed_for", "REFERENCE_MAPS"]


def _grid(grid) -> tuple[int, int]:
    gh, gw = (int(v) for v in grid)
    if gh < 1 or gw < 1:
        raise ValueError(f"grid must be positive, got {grid!r}")
    return gh, gw


def random_map(grid, seed: int = 0) -> np.ndarray:
    """(gh, gw) float32 of independent uniform [0, 1) values, reproducible from ``seed``."""
    return np.random.default_rng(int(seed)).random(_grid(grid)).astype(np.float32)


def gaussian_map(grid, sigma: float = 0.25) -> np.ndarray:
    """(gh, gw) float32 centred Gaussian (peak 1 at the centre, sigma = ``sigma`` x each side): the
    "object in the middle" prior that photo datasets reward."""
    gh, gw = _grid(grid)
    y = (np.arange(gh) + 0.5) / gh - 0.5
    x = (np.arange(gw) + 0.5) / gw - 0.5
    g = np.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * sigma ** 2))
    return (g / g.max()).astype(np.float32)


def seed_for(name: str) -> int:
    """A stable seed from an image name (the same on every run and machine, unlike ``hash``)."""
    return zlib.crc32(str(name).encode("utf-8"))


REFERENCE_MAPS = {"random": "seeded uniform noise map (floor)", "gaussian": "centred Gaussian map (centre prior)"}
