"""Quantus-style metric objects: each knows its name, its direction and how to score one explanation.

    metric = InsertionAUC()
    value = metric(model, x, saliency, target)          # x: (1, 3, H, W) model input
    PointingGame()(model, x, saliency, target, boxes=boxes_in_input_frame)

``boxes`` are in the model-input frame (see :func:`explainers.metrics.boxes_to_input_frame`).
"""

from __future__ import annotations

from .perturbation import get_preset, insertion_deletion
from .pointing import energy_pointing_game, pointing_game

__all__ = ["Metric", "InsertionAUC", "DeletionAUC", "PointingGame", "EnergyPointingGame", "METRICS"]


class Metric:
    name: str = ""
    title: str = ""
    higher_is_better: bool = True
    needs_boxes: bool = False

    def __call__(self, model, x, saliency, target, boxes=None, **kw):  # pragma: no cover - abstract
        raise NotImplementedError

    def better(self, a: float, b: float) -> bool:
        """Whether score ``a`` is better than ``b``."""
        return a > b if self.higher_is_better else a < b

    def __repr__(self) -> str:
        arrow = "higher" if self.higher_is_better else "lower"
        return f"<metric {self.name} ({arrow} is better)>"


class _CurveMetric(Metric):
    curve = ""

    def __init__(self, preset=None, steps=None, baseline=None, batch_size=None):
        self.preset = get_preset(preset)
        self.steps, self.baseline, self.batch_size = steps, baseline, batch_size

    def __call__(self, model, x, saliency, target, boxes=None, label=None, **kw):
        c = insertion_deletion(model, x, saliency, target, preset=self.preset, steps=self.steps,
                               baseline=self.baseline, batch_size=self.batch_size, label=label)
        return c.insertion_auc if self.curve == "insertion" else c.deletion_auc


class InsertionAUC(_CurveMetric):
    name, title, higher_is_better, curve = "insertion_auc", "Insertion AUC", True, "insertion"


class DeletionAUC(_CurveMetric):
    name, title, higher_is_better, curve = "deletion_auc", "Deletion AUC", False, "deletion"


class PointingGame(Metric):
    name, title, higher_is_better, needs_boxes = "pointing_game", "Pointing game", True, True

    def __init__(self, tolerance: float = 15):
        self.tolerance = tolerance

    def __call__(self, model, x, saliency, target=None, boxes=None, **kw):
        """1.0 hit, 0.0 miss, None skipped (boxes cover half of the frame or more, or no boxes)."""
        hit = pointing_game(saliency, boxes if boxes is not None else [], tuple(x.shape[-2:]), self.tolerance)
        return None if hit is None else float(hit)


class EnergyPointingGame(Metric):
    name, title, higher_is_better, needs_boxes = "energy_pointing_game", "Energy pointing game", True, True

    def __call__(self, model, x, saliency, target=None, boxes=None, **kw):
        return energy_pointing_game(saliency, boxes if boxes is not None else [], tuple(x.shape[-2:]))


METRICS: dict[str, Metric] = {m.name: m for m in (InsertionAUC(), DeletionAUC(), PointingGame(),
                                                   EnergyPointingGame())}
