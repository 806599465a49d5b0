"""Colour maps and overlays (numpy + Pillow + matplotlib-free colour tables)."""

from __future__ import annotations

import numpy as np
from PIL import Image

# 256-entry colour tables sampled from the perceptually uniform maps (viridis, inferno) and jet.
_ANCHORS = {
    "jet": [(0, 0, 0.5), (0, 0, 1), (0, 1, 1), (1, 1, 0), (1, 0, 0), (0.5, 0, 0)],
    "viridis": [(0.267, 0.005, 0.329), (0.231, 0.322, 0.545), (0.128, 0.567, 0.551), (0.369, 0.789, 0.383),
                (0.993, 0.906, 0.144)],
    "inferno": [(0.001, 0.000, 0.014), (0.341, 0.062, 0.429), (0.735, 0.216, 0.330), (0.978, 0.557, 0.035),
                (0.988, 0.998, 0.645)],
    "gray": [(0, 0, 0), (1, 1, 1)],
}
COLORMAPS = tuple(_ANCHORS)


def _table(name: str) -> np.ndarray:
    anchors = np.asarray(_ANCHORS[name], dtype=np.float64)
    pos = np.linspace(0, 1, len(anchors))
    t = np.linspace(0, 1, 256)
    return np.stack([np.interp(t, pos, anchors[:, c]) for c in range(3)], -1)


_TABLES = {k: (_table(k) * 255).round().astype(np.uint8) for k in _ANCHORS}


def colorize(heatmap: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """(H, W) values in [0, 1] -> (H, W, 3) uint8."""
    if cmap not in _TABLES:
        raise ValueError(f"unknown colour map {cmap!r}; choose one of {', '.join(COLORMAPS)}")
    idx = (np.clip(np.nan_to_num(heatmap), 0, 1) * 255).round().astype(np.int64)
    return _TABLES[cmap][idx]


def overlay(image: Image.Image, heatmap: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> Image.Image:
    """Blend the colour-mapped heatmap over ``image`` (resized to the heatmap's size)."""
    base = image.convert("RGB").resize((heatmap.shape[1], heatmap.shape[0]), Image.BILINEAR)
    rgb = colorize(heatmap, cmap).astype(np.float32)
    out = (1 - alpha) * np.asarray(base, dtype=np.float32) + alpha * rgb
    return Image.fromarray(out.clip(0, 255).round().astype(np.uint8))
