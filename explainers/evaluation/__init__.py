"""Batch evaluation: every method on every image, scored with insertion/deletion AUC and the pointing game
(and with ``extra=True`` / ``--extra-metrics`` ROAD, faithfulness correlation, sparseness, relevance mass / rank).

Modules: :mod:`.core` (one image's rows), :mod:`.report` (summary statistics, table, curves page),
:mod:`.inputs` (folder, list file, ImageNet devkit labels), :mod:`.files` (the command's files, resuming),
:mod:`.distributed` (sharding on Ray; imported only by the ``--ray`` path), :mod:`.cli`.
"""

from .core import EXTRA_COLUMNS, REFERENCE_METHODS, RESULT_COLUMNS, evaluate_image, evaluate_images  # noqa: I001
from .core import evaluate_item, resolve_methods, result_columns
from .files import read_curves, read_results, run_evaluation, write_reports
from .inputs import IMAGE_SUFFIXES, imagenet_val_labels, list_images, load_boxes
from .report import COLUMN_TITLES, SUMMARY_METRICS, curves_figure, summarize, summary_markdown

__all__ = ["COLUMN_TITLES", "EXTRA_COLUMNS", "result_columns",
           "IMAGE_SUFFIXES", "REFERENCE_METHODS", "RESULT_COLUMNS", "SUMMARY_METRICS", "curves_figure",
           "evaluate_image", "evaluate_images", "evaluate_item", "imagenet_val_labels", "list_images", "load_boxes",
           "read_curves", "read_results", "resolve_methods", "run_evaluation", "summarize", "summary_markdown",
           "write_reports"]
