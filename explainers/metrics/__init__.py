"""Faithfulness and localisation metrics for explanations.

* :func:`insertion_deletion` -> :class:`Curves` (insertion/deletion curves and AUC), with named
  :data:`PRESETS` reproducing published protocols (:data:`DEFAULT_PRESET` = ``"standard"``);
  :func:`perturb` gives the perturbed model input at one step (for display);
* :func:`pointing_game` and :func:`energy_pointing_game`, with :func:`boxes_to_input_frame` to bring
  ground-truth boxes into the model-input frame;
* :func:`random_map` and :func:`gaussian_map`, the reference rows of every table;
* Quantus-style metric objects (:class:`InsertionAUC`, :class:`DeletionAUC`, :class:`PointingGame`,
  :class:`EnergyPointingGame`; :data:`METRICS`), each with ``name``, ``higher_is_better`` and ``__call__``.
"""

from .base import METRICS, DeletionAUC, EnergyPointingGame, InsertionAUC, Metric, PointingGame
from .baselines import BASELINES, Baseline, make_baseline, resolve_baseline
from .perturbation import (
    DEFAULT_PRESET,
    PRESETS,
    Curves,
    Preset,
    get_preset,
    insertion_deletion,
    perturb,
    pixel_saliency,
    rank_pixels,
    trapezoid,
)
from .pointing import box_coverage, box_mask, boxes_to_input_frame, energy_pointing_game, pointing_game
from .reference import REFERENCE_MAPS, gaussian_map, random_map, seed_for

__all__ = [
    "BASELINES", "Baseline", "Curves", "DEFAULT_PRESET", "DeletionAUC", "EnergyPointingGame", "InsertionAUC",
    "METRICS", "Metric", "PRESETS", "PointingGame", "Preset", "REFERENCE_MAPS", "box_coverage", "box_mask",
    "boxes_to_input_frame", "energy_pointing_game", "gaussian_map", "get_preset", "insertion_deletion",
    "make_baseline", "perturb", "pixel_saliency", "pointing_game", "random_map", "rank_pixels",
    "resolve_baseline", "seed_for", "trapezoid",
]
