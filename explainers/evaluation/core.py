"""Per-image evaluation: explain the predicted class with each method and score the map."""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from ..errors import ExplainerError, InvalidParameterError
from ..metrics import (
    EXTRA_METRICS,
    boxes_to_input_frame,
    energy_pointing_game,
    extra_scores,
    gaussian_map,
    get_preset,
    insertion_deletion,
    pointing_game,
    random_map,
    seed_for,
)

REFERENCE_METHODS = ("random", "gaussian")
RESULT_COLUMNS = ("image", "method", "target", "target_label", "label", "correct", "probability", "insertion_auc",
                  "deletion_auc", "pointing_game", "energy_pointing_game", "seconds", "metric_seconds", "error")
EXTRA_COLUMNS = EXTRA_METRICS  # the newer metrics, scored with ``extra=True`` (``evaluate --extra-metrics``)


def result_columns(extra: bool = False) -> tuple[str, ...]:
    """The columns of results.csv: :data:`RESULT_COLUMNS`, with ``extra`` the :data:`EXTRA_COLUMNS` before the
    timings (``error`` stays last: a row cut by an interruption has none)."""
    if not extra:
        return RESULT_COLUMNS
    i = RESULT_COLUMNS.index("seconds")
    return RESULT_COLUMNS[:i] + tuple(EXTRA_COLUMNS) + RESULT_COLUMNS[i:]


def resolve_methods(methods) -> list[str]:
    """"all" / "a,b" / a list -> method names (registered methods plus the reference rows random, gaussian).
    "all" also adds the two reference rows."""
    from ..registry import METHODS

    if methods is None or methods == "all" or methods == ["all"]:
        return list(METHODS) + list(REFERENCE_METHODS)
    names = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else [str(m) for m in methods]
    names = [n for n in names if n]
    out = []
    for n in names:
        if n == "all":
            out += [m for m in list(METHODS) + list(REFERENCE_METHODS) if m not in out]
            continue
        if n not in REFERENCE_METHODS and n not in METHODS:
            raise InvalidParameterError(
                f"unknown method {n!r}; available: {', '.join(list(METHODS) + list(REFERENCE_METHODS))}")
        if n not in out:
            out.append(n)
    if not out:
        raise InvalidParameterError("no methods to evaluate")
    return out


def _box_entry(boxes, name):
    if not boxes:
        return None
    return boxes.get(name) or boxes.get(Path(name).name)


def _blank_row(name: str, method: str, preset_name: str, extra: bool = False) -> dict:
    return {**(dict.fromkeys(EXTRA_COLUMNS, math.nan) if extra else {}),
            "image": name, "method": method, "target": None, "target_label": "", "label": None, "correct": None,
            "probability": math.nan, "insertion_auc": math.nan, "deletion_auc": math.nan, "pointing_game": None,
            "energy_pointing_game": math.nan, "seconds": math.nan, "metric_seconds": math.nan, "error": "",
            "preset": preset_name}


def evaluate_image(model, name: str, image, methods: Iterable[str], boxes: dict | None = None, preset=None,
                   steps: int | None = None, batch_size: int | None = None, tolerance: float = 15,
                   method_params: dict | None = None, on_row: Callable[[dict], object] | None = None,
                   progress: Callable[[], bool] | None = None, extra: bool = False) -> list[dict]:
    """All ``methods`` on one image: explain the predicted class, then score the map. One row per method.

    extra: also score the newer metrics (:data:`EXTRA_COLUMNS`: ROAD at the same preset and steps, faithfulness
    correlation, sparseness, and with boxes relevance mass / rank accuracy; ``metrics.extra_scores``, seed 0)."""
    from ..api import explain
    from ..images import load_image

    p = get_preset(preset)
    pil = load_image(image)
    x = model.preprocess(pil)
    H, W = x.shape[-2:]
    entry = _box_entry(boxes, name)
    gt = int(entry["label"]) if entry and entry.get("label") is not None else None
    frame_boxes = None
    if entry and entry.get("boxes_xyxy"):
        size = (entry.get("width") or pil.size[0], entry.get("height") or pil.size[1])
        frame_boxes = boxes_to_input_frame(entry["boxes_xyxy"], size, model.preprocessing)
    with torch.inference_mode():
        probs = model.forward(x).double().softmax(-1)[0].cpu()
    pred = int(probs.argmax())
    labels = getattr(model, "labels", None)
    grid = model.grid(x)
    rows, shared = [], {}  # shared: what the metrics of this image compute once for all its maps
    for method in methods:
        row = {**(dict.fromkeys(EXTRA_COLUMNS, math.nan) if extra else {}),
               "image": name, "method": method, "target": pred, "target_label": labels[pred] if labels else str(pred),
               "label": gt, "correct": None if gt is None else int(pred == gt),
               "probability": float(probs[pred]), "insertion_auc": math.nan, "deletion_auc": math.nan,
               "pointing_game": None, "energy_pointing_game": math.nan, "seconds": math.nan,
               "metric_seconds": math.nan, "error": "", "preset": p.name}
        torch.manual_seed(seed_for(f"{name}/{method}"))
        t0 = time.perf_counter()
        try:
            if method == "random":
                sal = random_map(grid, seed_for(name))
            elif method == "gaussian":
                sal = gaussian_map(grid)
            else:
                exp = explain(model, x, method, target=pred, **(method_params or {}).get(method, {}))
                sal = exp.heatmap
            row["seconds"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            c = insertion_deletion(model, x, sal, pred, preset=p, steps=steps, batch_size=batch_size, label=gt)
            row.update(insertion_auc=c.insertion_auc, deletion_auc=c.deletion_auc, fractions=c.fractions.tolist(),
                       insertion_curve=c.insertion.tolist(), deletion_curve=c.deletion.tolist())
            if frame_boxes is not None and len(frame_boxes):
                hit = pointing_game(sal, frame_boxes, (H, W), tolerance)
                row["pointing_game"] = None if hit is None else int(hit)
                row["energy_pointing_game"] = energy_pointing_game(sal, frame_boxes, (H, W))
            if extra:
                more = extra_scores(model, x, sal, pred, boxes=frame_boxes, preset=p, steps=steps, label=gt,
                                    cache=shared)
                row.update({k: math.nan if v is None else v for k, v in more.items()})
            row["metric_seconds"] = time.perf_counter() - t1
        except ExplainerError as e:
            row["error"] = f"{type(e).__name__}: {e}"
        rows.append(row)
        if on_row is not None:
            on_row(row)
        if progress is not None and progress() is False:
            break
    return rows


def evaluate_images(model, images, methods="all", boxes: dict | None = None, preset=None,
                    progress: Callable[[int, int], object] | None = None, steps: int | None = None,
                    batch_size: int | None = None, tolerance: float = 15, method_params: dict | None = None,
                    skip: set | None = None, on_row: Callable[[dict], object] | None = None,
                    extra: bool = False) -> list[dict]:
    """Explain and score every image with every method.

    images: list of ``(name, image)`` (PIL image, path or bytes); ``name`` keys ``boxes``.
    methods: "all", "a,b" or a list; "random" and "gaussian" are the reference rows.
    boxes: ``boxes.json`` content ({name: {"label", "width", "height", "boxes_xyxy"}}) or None (no pointing game).
    preset: insertion/deletion protocol (name in ``explainers.metrics.PRESETS``; default ``"standard"``).
    progress: ``callback(done, total)`` after each (image, method); returning False stops the run, and the
        rows finished so far are returned.
    skip: set of (image, method) pairs already done (resuming).
    extra: also score the newer metrics (:data:`EXTRA_COLUMNS`; see :func:`evaluate_image`).
    Returns plain row dicts (see :data:`RESULT_COLUMNS`; plus ``fractions``, ``insertion_curve``,
    ``deletion_curve`` lists).
    """
    names = resolve_methods(methods)
    skip = skip or set()
    todo = [(n, img, [m for m in names if (n, m) not in skip]) for n, img in images]
    todo = [t for t in todo if t[2]]
    total = sum(len(t[2]) for t in todo)
    done = 0
    stopped = False
    rows: list[dict] = []

    def tick():
        nonlocal done, stopped
        done += 1
        if progress is not None and progress(done, total) is False:
            stopped = True
            return False
        return True

    for n, img, ms in todo:
        rows += evaluate_image(model, n, img, ms, boxes, preset, steps, batch_size, tolerance, method_params,
                               on_row, tick, extra)
        if stopped:
            break
    return rows


# ------------------------------------------------------------------------------------------------------------
# Work items of the evaluate command (the same code runs in the serial run and in each Ray worker)
# ------------------------------------------------------------------------------------------------------------
def read_image_bytes(path) -> tuple[bytes | None, str]:
    """(bytes, "") or (None, error text) for one image file."""
    try:
        return Path(path).read_bytes(), ""
    except OSError as e:
        return None, f"ImageError: cannot read {Path(path).name}: {e.strerror or e}"


def evaluate_item(model, name: str, data: bytes | None, read_error: str, methods: list[str], entry: dict | None,
                  preset=None, steps: int | None = None, batch_size: int | None = None, tolerance: float = 15,
                  on_row: Callable[[dict], object] | None = None, extra: bool = False,
                  method_params: dict | None = None) -> list[dict]:
    """One image of the evaluate command (its bytes and box entry) with ``methods``; never raises an Exception.
    method_params: {method: parameters} other than the defaults (``evaluate --param``).

    A method that raises (any exception, not only the library's errors) is recorded as a row with its error and
    the other methods go on; an unreadable image gives one error row per method."""
    p = get_preset(preset)
    rows: list[dict] = []
    try:
        from .inputs import check_box_entry

        check_box_entry(name, entry)
        label = int(entry["label"]) if entry and entry.get("label") is not None else None
    except Exception as e:  # a box entry of the wrong types: error rows, never a raise
        label, data, read_error, entry = None, None, f"{type(e).__name__}: {e}", None

    def emit(row):
        rows.append(row)
        if on_row is not None:
            on_row(row)

    left = list(methods)
    while left:
        if data is None:
            for m in left:
                emit({**_blank_row(name, m, p.name, extra), "label": label, "error": read_error})
            break
        before = len(rows)
        stream = io.BytesIO(data)
        stream.name = name  # load_image names the file in its errors
        try:
            evaluate_image(model, name, stream, left, {name: entry} if entry else None, p, steps, batch_size,
                           tolerance, method_params, on_row=emit, extra=extra)
            break
        except Exception as e:  # any failure is recorded in the results and the run goes on
            done = len(rows) - before
            emit({**_blank_row(name, left[done], p.name, extra), "label": label, "error": f"{type(e).__name__}: {e}"})
            left = left[done + 1:]
    return rows
