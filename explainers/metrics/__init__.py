"""Faithfulness and localisation metrics for explanations.

* :func:`insertion_deletion` -> :class:`Curves` (insertion/deletion curves and AUC), with named
  :data:`PRESETS` reproducing published protocols (:data:`DEFAULT_PRESET` = ``"standard"``);
  :func:`perturb` gives the perturbed model input at one step (for display);
* :func:`pointing_game` and :func:`energy_pointing_game`, with :func:`boxes_to_input_frame` to bring
  ground-truth boxes into the model-input frame;
* :func:`random_map` and :func:`gaussian_map`, the reference rows of every table;
* Quantus-style metric objects (:class:`InsertionAUC`, :class:`DeletionAUC`, :class:`PointingGame`,
  :class:`EnergyPointingGame`; :data:`METRICS`), each with ``name``, ``higher_is_better`` and ``__call__``;
* :func:`road` -> :class:`RoadCurves` (ROAD, noisy linear imputation: :func:`noisy_linear_imputation`),
  :func:`faithfulness_correlation`, :func:`sparseness`, :func:`relevance_mass_accuracy`,
  :func:`relevance_rank_accuracy`, and :func:`extra_scores` (all of them for one map);
* :mod:`.randomisation`: the model copy, layer groups and map similarities of the sanity checks
  (:mod:`explainers.sanity`).
"""

from .base import (
    EXTRA_METRICS,
    METRICS,
    DeletionAUC,
    EnergyPointingGame,
    FaithfulnessCorrelation,
    InsertionAUC,
    Metric,
    PointingGame,
    RandomisationSimilarity,
    RandomLogitSimilarity,
    RelevanceMassAccuracy,
    RelevanceRankAccuracy,
    RoadGap,
    RoadLeRF,
    RoadMoRF,
    Sparseness,
    extra_scores,
)
from .baselines import BASELINES, Baseline, make_baseline, resolve_baseline
from .faithfulness import faithfulness_correlation, gini, sparseness
from .localisation import relevance_mass_accuracy, relevance_rank_accuracy
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
from .road_metric import RoadCurves, noisy_linear_imputation, road

__all__ = [
    "BASELINES", "Baseline", "Curves", "DEFAULT_PRESET", "DeletionAUC", "EnergyPointingGame", "InsertionAUC",
    "METRICS", "Metric", "PRESETS", "PointingGame", "Preset", "REFERENCE_MAPS", "box_coverage", "box_mask",
    "boxes_to_input_frame", "energy_pointing_game", "gaussian_map", "get_preset", "insertion_deletion",
    "make_baseline", "perturb", "pixel_saliency", "pointing_game", "random_map", "rank_pixels",
    "resolve_baseline", "seed_for", "trapezoid",
    "EXTRA_METRICS", "FaithfulnessCorrelation", "RandomLogitSimilarity", "RandomisationSimilarity",
    "RelevanceMassAccuracy", "RelevanceRankAccuracy", "RoadCurves", "RoadGap", "RoadLeRF", "RoadMoRF", "Sparseness",
    "extra_scores", "faithfulness_correlation", "gini", "noisy_linear_imputation", "relevance_mass_accuracy",
    "relevance_rank_accuracy", "road", "sparseness",
]
