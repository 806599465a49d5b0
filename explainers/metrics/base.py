"""Quantus-style metric objects: each knows its name, its direction and how to score one explanation.

    metric = InsertionAUC()
    value = metric(model, x, saliency, target)          # x: (1, 3, H, W) model input
    PointingGame()(model, x, saliency, target, boxes=boxes_in_input_frame)

``boxes`` are in the model-input frame (see :func:`explainers.metrics.boxes_to_input_frame`).

Each metric class carries its metadata: ``name`` (the column name), ``title``, ``higher_is_better``,
``category`` ("faithfulness", "localisation", "complexity" or "randomisation") and ``needs_boxes``. The
randomisation metrics (:class:`RandomisationSimilarity`, :class:`RandomLogitSimilarity`) also need the method
that made the map (``method=``), since they explain again. :func:`extra_scores` computes every newer score of one
map at once (ROAD's two curves share their passes).
"""

from __future__ import annotations

import math

from ..errors import InvalidParameterError
from .faithfulness import faithfulness_correlation, sparseness
from .localisation import relevance_mass_accuracy, relevance_rank_accuracy
from .perturbation import get_preset, insertion_deletion
from .pointing import energy_pointing_game, pointing_game
from .road_metric import road

__all__ = ["Metric", "InsertionAUC", "DeletionAUC", "PointingGame", "EnergyPointingGame", "RoadMoRF", "RoadLeRF",
           "RoadGap", "FaithfulnessCorrelation", "Sparseness", "RelevanceMassAccuracy", "RelevanceRankAccuracy",
           "RandomisationSimilarity", "RandomLogitSimilarity", "METRICS", "EXTRA_METRICS", "extra_scores"]


class Metric:
    name: str = ""
    title: str = ""
    higher_is_better: bool = True
    needs_boxes: bool = False
    category: str = "faithfulness"

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
    category = "localisation"

    def __init__(self, tolerance: float = 15):
        self.tolerance = tolerance

    def __call__(self, model, x, saliency, target=None, boxes=None, **kw):
        """1.0 hit, 0.0 miss, None skipped (boxes cover half of the frame or more, or no boxes)."""
        hit = pointing_game(saliency, boxes if boxes is not None else [], tuple(x.shape[-2:]), self.tolerance)
        return None if hit is None else float(hit)


class EnergyPointingGame(Metric):
    name, title, higher_is_better, needs_boxes = "energy_pointing_game", "Energy pointing game", True, True
    category = "localisation"

    def __call__(self, model, x, saliency, target=None, boxes=None, **kw):
        return energy_pointing_game(saliency, boxes if boxes is not None else [], tuple(x.shape[-2:]))


class _RoadMetric(Metric):
    """ROAD (noisy linear imputation) at the preset's fractions: see :func:`explainers.metrics.road`."""

    part = ""

    def __init__(self, preset=None, steps=None, noise: float = 0.01, seed: int = 0, batch_size=None):
        self.preset, self.steps, self.noise, self.seed, self.batch_size = get_preset(preset), steps, noise, seed, \
            batch_size

    def __call__(self, model, x, saliency, target, boxes=None, label=None, **kw):
        c = road(model, x, saliency, target, preset=self.preset, steps=self.steps, noise=self.noise, seed=self.seed,
                 label=label, batch_size=self.batch_size)
        return {"morf": c.morf_auc, "lerf": c.lerf_auc, "gap": c.gap}[self.part]


class RoadMoRF(_RoadMetric):
    name, title, higher_is_better, part = "road_morf_auc", "ROAD MoRF AUC", False, "morf"


class RoadLeRF(_RoadMetric):
    name, title, higher_is_better, part = "road_lerf_auc", "ROAD LeRF AUC", True, "lerf"


class RoadGap(_RoadMetric):
    name, title, higher_is_better, part = "road_gap", "ROAD LeRF - MoRF", True, "gap"


class FaithfulnessCorrelation(Metric):
    name, title, higher_is_better = "faithfulness_correlation", "Faithfulness correlation", True

    def __init__(self, runs: int = 50, subset: int = 224, baseline="black", score: str = "probability", seed: int = 0,
                 batch_size=None):
        self.kw = {"runs": runs, "subset": subset, "baseline": baseline, "score": score, "seed": seed,
                   "batch_size": batch_size}

    def __call__(self, model, x, saliency, target, boxes=None, **kw):
        return faithfulness_correlation(model, x, saliency, target, **self.kw)


class Sparseness(Metric):
    name, title, higher_is_better, category = "sparseness", "Sparseness (Gini)", True, "complexity"

    def __call__(self, model, x, saliency, target=None, boxes=None, **kw):
        return sparseness(saliency, tuple(x.shape[-2:]))


class RelevanceMassAccuracy(Metric):
    name, title, higher_is_better, needs_boxes = "relevance_mass_accuracy", "Relevance mass accuracy", True, True
    category = "localisation"

    def __call__(self, model, x, saliency, target=None, boxes=None, **kw):
        return relevance_mass_accuracy(saliency, boxes, tuple(x.shape[-2:]))


class RelevanceRankAccuracy(Metric):
    name, title, higher_is_better, needs_boxes = "relevance_rank_accuracy", "Relevance rank accuracy", True, True
    category = "localisation"

    def __call__(self, model, x, saliency, target=None, boxes=None, **kw):
        return relevance_rank_accuracy(saliency, boxes, tuple(x.shape[-2:]))


class _SanityMetric(Metric):
    category, higher_is_better = "randomisation", False

    def __init__(self, similarity: str = "spearman", seed: int = 0):
        if similarity not in ("spearman", "ssim", "topk"):
            raise InvalidParameterError(f"similarity must be spearman, ssim or topk, got {similarity!r}")
        self.similarity, self.seed = similarity, seed

    def _check(self, method):
        if method is None:
            raise InvalidParameterError(f"{self.name} explains again: pass method=<the method's name>")


class RandomisationSimilarity(_SanityMetric):
    """Similarity of the map to the map of the same method once the head and the top half of the blocks are
    randomised (cascading, Adebayo et al. 2018): lower is better."""

    name, title = "randomisation_similarity", "Similarity after randomising the top half"

    def __call__(self, model, x, saliency, target, boxes=None, method=None, params=None, **kw):
        from ..sanity import sanity_check

        self._check(method)
        r = sanity_check(model, x, [method], target=target, seed=self.seed, params={method: params or {}},
                         random_logit=False)[0]
        return r.at_blocks(max(1, math.ceil(model.num_layers / 2)), self.similarity)


class RandomLogitSimilarity(_SanityMetric):
    """Similarity of the map to the same method's map for a random other class (Sixt et al. 2020): lower is
    better (1 for a class-agnostic method)."""

    name, title = "random_logit_similarity", "Similarity to a random class's map"

    def __call__(self, model, x, saliency, target, boxes=None, method=None, params=None, **kw):
        from ..api import explain
        from .randomisation import random_other_class, similarities

        self._check(method)
        other = random_other_class(model.num_classes, int(target), self.seed)
        mine = explain(model, x, method, target=int(target), **(params or {})).heatmap
        return similarities(mine, explain(model, x, method, target=other, **(params or {})).heatmap)[self.similarity]


def extra_scores(model, x, saliency, target, boxes=None, preset=None, steps=None, seed: int = 0,
                 road_noise: float = 0.01, fc_runs: int = 50, label: int | None = None,
                 cache: dict | None = None) -> dict:
    """Every newer score of one map (the evaluation's extra columns): ROAD MoRF/LeRF AUC and gap, faithfulness
    correlation, sparseness, and with ``boxes`` (model-input frame) relevance mass and rank accuracy.
    label: the class counted as correct when the preset scores accuracy (default ``target``). cache: one dict per
    model and input, shared by the maps of that image (see :func:`faithfulness_correlation`)."""
    c = road(model, x, saliency, target, preset=preset, steps=steps, noise=road_noise, seed=seed, label=label)
    size = tuple(x.shape[-2:])
    has_boxes = boxes is not None and len(boxes) > 0
    return {"road_morf_auc": c.morf_auc, "road_lerf_auc": c.lerf_auc, "road_gap": c.gap,
            "faithfulness_correlation": faithfulness_correlation(model, x, saliency, target, runs=fc_runs, seed=seed,
                                                                 cache=cache),
            "sparseness": sparseness(saliency, size),
            "relevance_mass_accuracy": relevance_mass_accuracy(saliency, boxes, size) if has_boxes else None,
            "relevance_rank_accuracy": relevance_rank_accuracy(saliency, boxes, size) if has_boxes else None}


METRICS: dict[str, Metric] = {m.name: m for m in (InsertionAUC(), DeletionAUC(), PointingGame(),
                                                   EnergyPointingGame(), RoadMoRF(), RoadLeRF(), RoadGap(),
                                                   FaithfulnessCorrelation(), Sparseness(), RelevanceMassAccuracy(),
                                                   RelevanceRankAccuracy(), RandomisationSimilarity(),
                                                   RandomLogitSimilarity())}
EXTRA_METRICS = ("road_morf_auc", "road_lerf_auc", "road_gap", "faithfulness_correlation", "sparseness",
                 "relevance_mass_accuracy", "relevance_rank_accuracy")
