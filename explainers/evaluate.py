"""Batch evaluation: every method on every image, scored with insertion/deletion AUC and the pointing game.

Library use (the app's Evaluate page)::

    rows = evaluate_images(model, [(name, pil_image), ...], ["attention_rollout", "random"], boxes=boxes_json,
                           progress=lambda done, total: True)
    table = summarize(rows)   # mean and 95% CI per method and metric, best first

Command line::

    python -m explainers evaluate --images DIR|LIST [--boxes boxes.json] [--ground-truth GT --meta meta.mat] \
        --model M [--weights P] --methods all|a,b [--preset NAME] [--limit N] --out DIR \
        [--ray local[:N]|auto|ADDRESS --cpus-per-worker C --gpus-per-worker G]

writes ``results.csv`` (one row per image and method), ``curves.csv`` (the insertion and deletion curves),
``summary.csv`` / ``summary.md`` (mean and 95% confidence interval per method and metric, best first) and
``curves.html`` (a self-contained Plotly page of the mean curves per method). A run is resumable (pairs of
image and method already in ``results.csv`` are skipped), bound to its configuration (``run.json``: a fingerprint
of model, weights hash and settings; another one is refused) and deterministic (seeds derive from image names);
with ``--ray`` it is sharded on Ray workers and writes the same rows. Formats: docs/evaluation.md.

The code lives in :mod:`explainers.evaluation`; this module keeps the names importable from here.
"""

from .evaluation.cli import add_cli, cmd_evaluate
from .evaluation.core import (
    REFERENCE_METHODS,
    RESULT_COLUMNS,
    evaluate_image,
    evaluate_images,
    evaluate_item,
    resolve_methods,
)
from .evaluation.files import read_curves, read_results, run_evaluation, write_reports
from .evaluation.inputs import IMAGE_SUFFIXES, imagenet_val_labels, list_images
from .evaluation.report import SUMMARY_METRICS, curves_figure, summarize, summary_markdown

_read_results, _read_curves = read_results, read_curves  # former private names

__all__ = ["IMAGE_SUFFIXES", "REFERENCE_METHODS", "RESULT_COLUMNS", "SUMMARY_METRICS", "add_cli", "cmd_evaluate",
           "curves_figure", "evaluate_image", "evaluate_images", "evaluate_item", "imagenet_val_labels",
           "list_images", "read_curves", "read_results", "resolve_methods", "run_evaluation", "summarize",
           "summary_markdown", "write_reports"]
