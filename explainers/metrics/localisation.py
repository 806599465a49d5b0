"""Relevance mass accuracy and relevance rank accuracy (Arras, Osman and Samek, Information Fusion 2022).

Both compare the map, at the model-input resolution, with the union of the object boxes (in the model-input
frame; see :func:`explainers.metrics.boxes_to_input_frame`):

* relevance mass accuracy: the share of the map's positive relevance that falls inside the boxes;
* relevance rank accuracy: with K the number of pixels inside the boxes, the share of the K highest-ranked
  pixels that lie inside them (ties broken in raster order, as everywhere in this package).

Both are NaN without boxes. Arras et al. count positive relevance only: negative values are clipped to 0 for the
mass (a map in [0, 1], such as ``Explanation.heatmap``, is unchanged). Quantus's ``RelevanceMassAccuracy`` and
``RelevanceRankAccuracy`` take the raw values (after dividing by the maximum) and break ties with numpy's
unstable sort; on non-negative maps without ties the values are the same (tests/test_metrics_extra.py).
"""

from __future__ import annotations

import numpy as np

from .perturbation import pixel_saliency, rank_pixels
from .pointing import _frame, box_mask

__all__ = ["relevance_mass_accuracy", "relevance_rank_accuracy"]


def relevance_mass_accuracy(saliency, boxes_xyxy, image_size) -> float:
    """Share of the map's positive relevance inside the boxes (NaN without boxes, the boxes' share of the
    frame when the map has no positive relevance)."""
    H, W = _frame(image_size)
    inside = box_mask(boxes_xyxy if boxes_xyxy is not None else [], (H, W))
    if not inside.any():
        return float("nan")
    s = np.clip(pixel_saliency(saliency, (H, W)).double().numpy(), 0.0, None)
    total = s.sum()
    if not total > 0:
        return float(inside.mean())
    return float(s[inside].sum() / total)


def relevance_rank_accuracy(saliency, boxes_xyxy, image_size) -> float:
    """Share of the K top-ranked pixels inside the boxes, K = the boxes' pixel count (NaN without boxes)."""
    H, W = _frame(image_size)
    inside = box_mask(boxes_xyxy if boxes_xyxy is not None else [], (H, W))
    k = int(inside.sum())
    if k == 0:
        return float("nan")
    top = rank_pixels(saliency, (H, W)).numpy() < k
    return float((top & inside).sum() / k)
