"""The pointing game (Zhang et al. 2016/2018) and its energy-based variant (Wang et al., Score-CAM 2020).

Boxes are ``[x0, y0, x1, y1]`` in the pixel coordinates of the frame the map lives in (the model input);
:func:`boxes_to_input_frame` maps boxes given on the stored image (e.g. ``boxes.json``) through the
model's preprocessing (resize + centre crop).
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidParameterError
from .perturbation import pixel_saliency

__all__ = ["pointing_game", "energy_pointing_game", "boxes_to_input_frame", "box_mask", "box_coverage"]


def _frame(image_size) -> tuple[int, int]:
    try:
        H, W = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"image_size must be (height, width), got {image_size!r}") from None
    if H < 1 or W < 1:
        raise InvalidParameterError(f"image_size must be positive, got {image_size!r}")
    return H, W


def _boxes(boxes_xyxy) -> np.ndarray:
    b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4) if len(boxes_xyxy) else np.zeros((0, 4))
    if not np.isfinite(b).all():
        raise InvalidParameterError("boxes must be finite [x0, y0, x1, y1]")
    return np.stack([np.minimum(b[:, 0], b[:, 2]), np.minimum(b[:, 1], b[:, 3]),
                     np.maximum(b[:, 0], b[:, 2]), np.maximum(b[:, 1], b[:, 3])], 1)


def _distance_to_boxes(image_size, boxes_xyxy) -> np.ndarray:
    """(H, W): Euclidean distance from each pixel centre to the union of the boxes (0 inside; inf if none)."""
    H, W = _frame(image_size)
    b = _boxes(boxes_xyxy)
    if len(b) == 0:
        return np.full((H, W), np.inf)
    cy = np.arange(H, dtype=np.float64)[:, None, None] + 0.5
    cx = np.arange(W, dtype=np.float64)[None, :, None] + 0.5
    dx = np.maximum(np.maximum(b[:, 0] - cx, 0.0), cx - b[:, 2])
    dy = np.maximum(np.maximum(b[:, 1] - cy, 0.0), cy - b[:, 3])
    return np.sqrt(dx * dx + dy * dy).min(-1)


def box_mask(boxes_xyxy, image_size, tolerance: float = 0.0) -> np.ndarray:
    """(H, W) bool: pixels whose centre lies in a box, or within ``tolerance`` pixels of one."""
    return _distance_to_boxes(image_size, boxes_xyxy) <= float(tolerance)


def box_coverage(boxes_xyxy, image_size) -> float:
    """Share of the frame covered by the union of the boxes."""
    return float(box_mask(boxes_xyxy, image_size).mean())


def pointing_game(saliency, boxes_xyxy, image_size, tolerance: float = 15, max_coverage: float = 0.5):
    """True when the map's maximum falls in the union of the boxes (or within ``tolerance`` pixels of it),
    False when not, None when the image is skipped: its boxes cover ``max_coverage`` (half) of the frame or
    more (the usual rule; the game is then too easy), or there are no boxes.

    saliency: any resolution (patch grid or pixel map), upsampled bilinearly to ``image_size`` = (H, W), the
    frame the boxes are in (for boxes on the stored image, see :func:`boxes_to_input_frame`). The maximum
    is the first in raster order when several pixels share it.
    """
    H, W = _frame(image_size)
    if tolerance < 0:
        raise InvalidParameterError("tolerance must be >= 0")
    dist = _distance_to_boxes((H, W), boxes_xyxy)
    inside = dist <= 0.0
    if not inside.any() or inside.mean() >= max_coverage:
        return None
    s = pixel_saliency(saliency, (H, W)).numpy()
    i = int(np.argmax(s))
    return bool(dist.flat[i] <= float(tolerance))


def energy_pointing_game(saliency, boxes_xyxy, image_size) -> float:
    """Share of the map's mass inside the union of the boxes (Score-CAM's energy-based pointing game).

    The map is upsampled to ``image_size`` and min-max scaled to [0, 1] first (so it has no negative mass);
    a constant map counts as uniform (its energy is then the boxes' share of the frame). NaN without boxes.
    """
    H, W = _frame(image_size)
    inside = box_mask(boxes_xyxy, (H, W))
    if not inside.any():
        return float("nan")
    s = pixel_saliency(saliency, (H, W)).double().numpy()
    lo, hi = s.min(), s.max()
    if not hi - lo > 1e-12 * max(1.0, abs(hi)):
        return float(inside.mean())
    s = (s - lo) / (hi - lo)
    return float(s[inside].sum() / s.sum())


def boxes_to_input_frame(boxes_xyxy, image_size, preprocessing) -> np.ndarray:
    """Map boxes from the stored image's pixel coordinates to the model-input frame.

    image_size: (width, height) of the stored image, as ``PIL.Image.size`` and ``boxes.json`` give it.
    preprocessing: the model's :class:`explainers.models.Preprocessing` (``model.preprocessing``): resize
    (shorter side to ``resize``, or exactly to ``(h, w)``), then centre crop to ``input_size``.
    Returns an (n, 4) float array clipped to the input frame; boxes falling wholly outside the crop are
    dropped.
    """
    try:
        w, h = (float(v) for v in image_size)
    except (TypeError, ValueError):
        raise InvalidParameterError(f"image_size must be (width, height), got {image_size!r}") from None
    if w <= 0 or h <= 0:
        raise InvalidParameterError(f"image_size must be positive, got {image_size!r}")
    Hc, Wc = (int(v) for v in preprocessing.input_size)
    r = preprocessing.resize
    if isinstance(r, (tuple, list)):
        rh, rw = float(r[0]), float(r[1])
    else:
        s = float(r) / min(w, h)
        rw, rh = max(Wc, round(w * s)), max(Hc, round(h * s))
    left, top = (int(rw) - Wc) // 2, (int(rh) - Hc) // 2
    b = _boxes(boxes_xyxy)
    out = b * np.array([rw / w, rh / h, rw / w, rh / h]) - np.array([left, top, left, top], dtype=np.float64)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, Wc)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, Hc)
    keep = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    return out[keep]
