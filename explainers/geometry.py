"""Where the model's input lies in the photo: the resize and centre crop of a model's preprocessing, and maps
drawn back onto the photo at the photo's own resolution.

The model never sees the whole photo: :class:`explainers.models.core.Preprocessing` resizes it (the shorter side
to ``resize``, or to an exact (h, w)) and cuts the centre ``input_size`` out (DeiT: 256 then 224, so 12.5 % of
each side goes). :func:`crop_geometry` repeats that arithmetic; :func:`map_to_photo` samples a map of the model
input (any resolution: the patch map or the input-size heatmap) at every photo pixel, with a mask of the pixels
the model saw; :func:`photo_overlay` blends it over the photo and marks the cropped-away border (dimmed and
hatched).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .viz import colorize


@dataclass(frozen=True)
class CropGeometry:
    """The model input's place in a photo of ``photo_size`` = (width, height) pixels."""

    photo_size: tuple[int, int]
    resized: tuple[int, int]  # (width, height) after the resize
    offset: tuple[int, int]  # (left, top) of the crop in the resized image
    input_size: tuple[int, int]  # (height, width) of the model input

    @property
    def box(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the model input in photo pixels (edges, floats)."""
        (w, h), (rw, rh), (left, top) = self.photo_size, self.resized, self.offset
        H, W = self.input_size
        sx, sy = w / rw, h / rh
        return left * sx, top * sy, (left + W) * sx, (top + H) * sy

    @property
    def cropped(self) -> bool:
        """Whether the centre crop cut part of the photo away."""
        x0, y0, x1, y1 = self.box
        w, h = self.photo_size
        return x0 > 0.5 or y0 > 0.5 or x1 < w - 0.5 or y1 < h - 0.5

    def kept_fraction(self) -> float:
        """The share of the photo's area the model sees."""
        x0, y0, x1, y1 = self.box
        w, h = self.photo_size
        return float(max(0.0, min(x1, w) - max(x0, 0)) * max(0.0, min(y1, h) - max(y0, 0)) / (w * h))

    def scaled(self, max_side: int) -> CropGeometry:
        """The same crop for a copy of the photo whose longer side is at most ``max_side`` pixels (as Pillow's
        ``thumbnail`` makes it): the box scales with the photo."""
        w, h = self.photo_size
        if max(w, h) <= max_side:
            return self
        s = max_side / max(w, h)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        return CropGeometry(size, self.resized, self.offset, self.input_size)

    def describe(self) -> dict:
        """JSON-friendly summary (for reports)."""
        return {"photo_size": list(self.photo_size), "resized": list(self.resized),
                "crop_box_in_photo": [round(v, 2) for v in self.box], "cropped": self.cropped,
                "kept_fraction": round(self.kept_fraction(), 4)}


def crop_geometry(preprocessing, photo_size: tuple[int, int]) -> CropGeometry:
    """The geometry of ``preprocessing`` (a :class:`~explainers.models.core.Preprocessing`, or anything with its
    ``input_size`` and ``resize``) applied to a photo of ``photo_size`` = (width, height), as it computes it."""
    H, W = (int(v) for v in preprocessing.input_size)
    w, h = (int(v) for v in photo_size)
    if w < 1 or h < 1:
        raise ValueError(f"a photo has at least one pixel, not {w}x{h}")
    resize = preprocessing.resize
    if isinstance(resize, (tuple, list)):
        rw, rh = int(resize[1]), int(resize[0])
    else:
        s = resize / min(w, h)
        rw, rh = max(W, round(w * s)), max(H, round(h * s))
    return CropGeometry((w, h), (rw, rh), ((rw - W) // 2, (rh - H) // 2), (H, W))


def _coords(n_out: int, start: float, stop: float, n_src: int) -> np.ndarray:
    """Source coordinates (in source pixels, centres at i + 0.5) of ``n_out`` output pixel centres, for a
    source of ``n_src`` pixels spanning output coordinates [start, stop)."""
    centres = np.arange(n_out, dtype=np.float64) + 0.5
    return (centres - start) * (n_src / (stop - start))


def _sample_axis(u: np.ndarray, n: int, nearest: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices (lo, hi) and weight of hi for sampling at coordinates ``u`` along an axis of ``n`` pixels."""
    if nearest:
        i = np.clip(np.floor(u), 0, n - 1).astype(np.int64)
        return i, i, np.zeros(len(u))
    t = np.clip(u - 0.5, 0, n - 1)
    lo = np.floor(t).astype(np.int64)
    hi = np.minimum(lo + 1, n - 1)
    return lo, hi, t - lo


def map_to_photo(values: np.ndarray, geometry: CropGeometry, nearest: bool = False,
                 fill: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A map of the model input (h, w; any resolution) at the photo's resolution.

    Returns (map, inside): float32 (height, width) values sampled at every photo pixel (bilinear, or the nearest
    cell with ``nearest``; ``fill`` outside the model input), and a bool mask of the pixels the model saw."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.size == 0:
        raise ValueError(f"expected a 2-D map, got shape {values.shape}")
    w, h = geometry.photo_size
    x0, y0, x1, y1 = geometry.box
    u = _coords(w, x0, x1, values.shape[1])
    v = _coords(h, y0, y1, values.shape[0])
    in_x = (u >= 0) & (u < values.shape[1])
    in_y = (v >= 0) & (v < values.shape[0])
    xl, xh, xt = _sample_axis(u, values.shape[1], nearest)
    yl, yh, yt = _sample_axis(v, values.shape[0], nearest)
    top = values[yl][:, xl] * (1 - xt) + values[yl][:, xh] * xt
    bottom = values[yh][:, xl] * (1 - xt) + values[yh][:, xh] * xt
    out = top * (1 - yt)[:, None] + bottom * yt[:, None]
    inside = in_y[:, None] & in_x[None, :]
    out[~inside] = fill
    return out.astype(np.float32), inside


def _hatch(shape: tuple[int, int], spacing: int) -> np.ndarray:
    """Diagonal stripes (bool, True on a stripe) ``spacing`` pixels apart, 2 pixels wide or more."""
    yy, xx = np.indices(shape)
    return ((xx + yy) % spacing) < max(2, spacing // 6)


def photo_overlay(photo: Image.Image, values: np.ndarray, geometry: CropGeometry, alpha: float = 0.5,
                  cmap: str = "jet", dim: float = 0.45) -> Image.Image:
    """The colour-mapped ``values`` (a map of the model input, in [0, 1]) over the photo at its own resolution;
    the border the model's crop cut away is dimmed and hatched (nothing of the map is drawn there)."""
    rgb = np.asarray(photo.convert("RGB"), dtype=np.float32)
    if rgb.shape[1::-1] != tuple(geometry.photo_size):
        raise ValueError(f"the photo is {rgb.shape[1]}x{rgb.shape[0]}, the geometry is for "
                         f"{geometry.photo_size[0]}x{geometry.photo_size[1]}")
    m, inside = map_to_photo(values, geometry)
    heat = colorize(m, cmap).astype(np.float32)
    out = np.where(inside[..., None], (1 - alpha) * rgb + alpha * heat, rgb * (1 - dim))
    if not inside.all():
        spacing = max(8, min(rgb.shape[:2]) // 40)
        stripes = _hatch(inside.shape, spacing) & ~inside
        out[stripes] = 0.5 * out[stripes] + 0.5 * 255.0
    return Image.fromarray(out.clip(0, 255).round().astype(np.uint8))


def photo_heatmap(values: np.ndarray, geometry: CropGeometry, cmap: str = "jet") -> np.ndarray:
    """The colour-mapped map at the photo's resolution (uint8 RGB); the cropped-away border is grey."""
    m, inside = map_to_photo(values, geometry)
    out = colorize(m, cmap)
    out[~inside] = 128
    return out
