"""Colour maps (matplotlib's exact 256-level tables), the display scalings of signed and unsigned maps, overlays.

A map is drawn in two steps: :func:`scale_map` turns the raw values into colour positions in [0, 1] with one of
the :data:`SCALES` (``minmax``; ``positive``: negatives to 0, divided by the maximum; ``absolute``: ``|v|`` divided
by its maximum; ``symmetric``: divided by the largest ``|v|``, so 0 sits at 0.5, the centre colour of a diverging
map), optionally clipping outliers: the largest ``|v|`` holding ``clip`` % of the total get the end colour
(captum's ``outlier_perc``); :func:`colorize` looks the positions up in a colour table. Every picture of a map
(overlay, colour strip, raw patch grid, downloads, the command line's PNG) goes through these two functions, so
they all agree.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image

from .errors import InvalidParameterError

SEQUENTIAL = ("jet", "viridis", "inferno", "magma", "turbo", "cividis", "gray")
DIVERGING = ("bwr", "seismic", "RdBu_r", "coolwarm")  # low = blue (against), centre = white/grey, high = red (for)
COLORMAPS = SEQUENTIAL + DIVERGING
SCALES = ("minmax", "positive", "absolute", "symmetric")
SCALE_HELP = {
    "minmax": "(v - min) / (max - min): the lowest value gets the first colour, the highest the last",
    "positive": "negative values set to 0, then divided by the largest value: only the evidence for the target",
    "absolute": "|v| divided by its largest value: evidence for and against drawn alike",
    "symmetric": "divided by the largest |v|: 0 is the centre colour, red for the target, blue against it",
}
LEVELS = 256


@functools.cache
def table(name: str) -> np.ndarray:
    """The (256, 3) uint8 colour table of matplotlib's colour map ``name`` (read-only)."""
    from matplotlib import colormaps

    check_cmap(name)
    rgba = colormaps[name].resampled(LEVELS)(np.arange(LEVELS))
    out = (rgba[:, :3] * 255).round().astype(np.uint8)
    out.setflags(write=False)
    return out


def check_cmap(name: str) -> str:
    if name not in COLORMAPS:
        raise InvalidParameterError(f"unknown colour map {name!r}; choose one of {', '.join(COLORMAPS)}")
    return name


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise InvalidParameterError(f"unknown scaling {scale!r}; choose one of {', '.join(SCALES)}")
    return scale


def check_clip(clip) -> float:
    """The outlier clip: the share (in %, [0, 50)) of the total |relevance| held by the values drawn with the end
    colour."""
    try:
        c = float(clip)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"the clip is a percentage in [0, 50); got {clip!r}") from None
    if not 0.0 <= c < 50.0:  # also refuses NaN
        raise InvalidParameterError(f"the clip is a percentage in [0, 50); got {clip!r}")
    return c


def default_scale(signed: bool) -> str:
    """A signed map is drawn symmetric around 0 (lxt, zennit), an unsigned one min-max scaled."""
    return "symmetric" if signed else "minmax"


def default_cmap(scale: str) -> str:
    """A diverging map (red for, blue against) for the symmetric scaling, else jet."""
    return "bwr" if scale == "symmetric" else "jet"


def transform(values: np.ndarray, scale: str) -> np.ndarray:
    """The values a scaling draws: ``positive``: negatives set to 0; ``absolute``: |v|; else v (NaN, inf: 0)."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if scale == "positive":
        return np.maximum(v, 0.0)
    if scale == "absolute":
        return np.abs(v)
    return v


def _threshold(v: np.ndarray, clip: float) -> float:
    """The largest |v|; with a clip, captum's ``outlier_perc`` threshold: the smallest |v| at which the sorted
    |values| reach (100 - clip) % of their total (the values above it hold ``clip`` % of the mass and are drawn
    with the end colour). The maximum if that threshold is 0."""
    mag = np.abs(v).ravel()
    top = float(mag.max()) if mag.size else 0.0
    if clip > 0 and top > 0:
        ordered = np.sort(mag)
        cum = np.cumsum(ordered)
        i = int(np.searchsorted(cum, cum[-1] * 0.01 * (100.0 - clip)))
        t = float(ordered[min(i, ordered.size - 1)])
        return t if t > 0 else top
    return top


def value_range(values: np.ndarray, scale: str = "minmax", clip: float = 0.0) -> tuple[float, float]:
    """The values drawn with the first and the last colour of the table (after clipping); the transformed values
    (``positive``: negatives to 0, ``absolute``: ``|v|``) for those two scalings."""
    check_scale(scale)
    v = transform(values, scale)
    t = _threshold(v, check_clip(clip))
    if scale == "symmetric":
        return -t, t
    if scale in ("positive", "absolute"):
        return 0.0, t
    if v.size == 0:
        return 0.0, 0.0
    return float(np.clip(v.min(), -t, t)), float(np.clip(v.max(), -t, t))


def scale_map(values: np.ndarray, scale: str = "minmax", clip: float = 0.0) -> np.ndarray:
    """Raw values -> colour positions in [0, 1] (float32), see :data:`SCALE_HELP`. A map without information
    (constant, or all zero) gets the first colour, or the centre colour for ``symmetric``."""
    lo, hi = value_range(values, scale, clip)
    v = transform(values, scale)
    if scale == "symmetric":
        out = np.full(v.shape, 0.5) if hi <= 0 else (np.clip(v / hi, -1.0, 1.0) + 1.0) / 2.0
    elif not np.isfinite(hi - lo) or hi - lo <= 1e-12 * max(1.0, abs(hi)):
        out = np.zeros(v.shape)
    else:
        out = (np.clip(v, lo, hi) - lo) / (hi - lo)
    return out.astype(np.float32)


def colorize(positions: np.ndarray, cmap: str = "jet") -> np.ndarray:
    """(H, W) colour positions in [0, 1] -> (H, W, 3) uint8 (position p gets level ``round(p * 255)``)."""
    lut = table(cmap)
    idx = (np.clip(np.nan_to_num(positions), 0, 1) * (LEVELS - 1)).round().astype(np.int64)
    return lut[idx]


def overlay(image: Image.Image, positions: np.ndarray, alpha: float = 0.5, cmap: str = "jet") -> Image.Image:
    """Blend the colour-mapped ``positions`` (in [0, 1]) over ``image`` (resized to the map's size)."""
    base = image.convert("RGB").resize((positions.shape[1], positions.shape[0]), Image.BILINEAR)
    rgb = colorize(positions, cmap).astype(np.float32)
    out = (1 - alpha) * np.asarray(base, dtype=np.float32) + alpha * rgb
    return Image.fromarray(out.clip(0, 255).round().astype(np.uint8))


def strip_labels(scale: str, lo: float, hi: float) -> tuple[str, str, str]:
    """What the two ends and the centre of a colour strip mean: (left, centre, right)."""
    if scale == "symmetric":
        return f"{lo:.3g} against the target", "0", f"for the target {hi:.3g}"
    what = {"positive": "evidence for the target", "absolute": "|relevance|"}.get(scale, "relevance")
    return f"{lo:.3g} low", what, f"high {hi:.3g}"
