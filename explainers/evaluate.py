"""Batch evaluation: every method on every image, scored with insertion/deletion AUC and the pointing game.

Library use (the app's Evaluate page)::

    rows = evaluate_images(model, [(name, pil_image), ...], ["attention_rollout", "random"], boxes=boxes_json,
                           progress=lambda done, total: True)
    table = summarize(rows)   # mean and 95% CI per method and metric, best first

Command line::

    python -m explainers evaluate --images DIR [--boxes boxes.json] --model M [--weights P] \
        --methods all|a,b [--preset NAME] [--limit N] --out DIR

writes ``results.csv`` (one row per image and method), ``curves.csv`` (the insertion and deletion curves),
``summary.csv`` / ``summary.md`` (mean and 95% confidence interval per method and metric, best first) and
``curves.html`` (a self-contained Plotly page of the mean curves per method). A run is resumable (pairs of
image and method already in ``results.csv`` are skipped) and deterministic (seeds derive from image names).
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from .errors import ExplainerError, InvalidParameterError
from .metrics import (
    DEFAULT_PRESET,
    METRICS,
    PRESETS,
    boxes_to_input_frame,
    energy_pointing_game,
    gaussian_map,
    get_preset,
    insertion_deletion,
    pointing_game,
    random_map,
    seed_for,
)

__all__ = ["REFERENCE_METHODS", "RESULT_COLUMNS", "evaluate_images", "evaluate_image", "summarize",
           "summary_markdown", "curves_figure", "resolve_methods", "run_evaluation", "add_cli"]

REFERENCE_METHODS = ("random", "gaussian")
RESULT_COLUMNS = ("image", "method", "target", "target_label", "label", "correct", "probability", "insertion_auc",
                  "deletion_auc", "pointing_game", "energy_pointing_game", "seconds", "metric_seconds", "error")
SUMMARY_METRICS = ("insertion_auc", "deletion_auc", "pointing_game", "energy_pointing_game", "seconds")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def resolve_methods(methods) -> list[str]:
    """"all" / "a,b" / a list -> method names (registered methods plus the reference rows random, gaussian).
    "all" also adds the two reference rows."""
    from .registry import METHODS

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


def evaluate_image(model, name: str, image, methods: Iterable[str], boxes: dict | None = None, preset=None,
                   steps: int | None = None, batch_size: int | None = None, tolerance: float = 15,
                   method_params: dict | None = None, on_row: Callable[[dict], object] | None = None,
                   progress: Callable[[], bool] | None = None) -> list[dict]:
    """All ``methods`` on one image: explain the predicted class, then score the map. One row per method."""
    from .api import explain
    from .images import load_image

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
    rows = []
    for method in methods:
        row = {"image": name, "method": method, "target": pred, "target_label": labels[pred] if labels else str(pred),
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
                    skip: set | None = None, on_row: Callable[[dict], object] | None = None) -> list[dict]:
    """Explain and score every image with every method.

    images: list of ``(name, image)`` (PIL image, path or bytes); ``name`` keys ``boxes``.
    methods: "all", "a,b" or a list; "random" and "gaussian" are the reference rows.
    boxes: ``boxes.json`` content ({name: {"label", "width", "height", "boxes_xyxy"}}) or None (no pointing game).
    preset: insertion/deletion protocol (name in ``explainers.metrics.PRESETS``; default ``"standard"``).
    progress: ``callback(done, total)`` after each (image, method); returning False stops the run, and the
        rows finished so far are returned.
    skip: set of (image, method) pairs already done (resuming).
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
                               on_row, tick)
        if stopped:
            break
    return rows


# ------------------------------------------------------------------------------------------------------------
def _t975(n: int) -> float:
    if n < 2:
        return math.nan
    try:
        from scipy.stats import t

        return float(t.ppf(0.975, n - 1))
    except ImportError:  # pragma: no cover
        return 1.96


def _values(rows, method, metric) -> np.ndarray:
    vals = []
    for r in rows:
        if r["method"] != method:
            continue
        v = r.get(metric)
        if v is None or v == "":
            continue
        v = float(v)
        if math.isfinite(v):
            vals.append(v)
    return np.asarray(vals, dtype=np.float64)


def summarize(rows: list[dict], metrics: Iterable[str] = SUMMARY_METRICS) -> list[dict]:
    """Mean and 95% confidence interval (Student t) per method and metric, best first within each metric.

    Returns rows {"metric", "method", "n", "mean", "ci95" (half-width), "low", "high", "higher_is_better"}.
    Skipped values (pointing game on images whose boxes cover half the frame) and failures are left out.
    """
    methods = list(dict.fromkeys(r["method"] for r in rows))
    out = []
    for metric in metrics:
        hib = METRICS[metric].higher_is_better if metric in METRICS else False
        block = []
        for m in methods:
            v = _values(rows, m, metric)
            n = len(v)
            mean = float(v.mean()) if n else math.nan
            half = float(_t975(n) * v.std(ddof=1) / math.sqrt(n)) if n >= 2 else math.nan
            block.append({"metric": metric, "method": m, "n": n, "mean": mean, "ci95": half,
                          "low": mean - half, "high": mean + half, "higher_is_better": hib})
        block.sort(key=lambda d: (math.isnan(d["mean"]), -d["mean"] if hib else d["mean"], d["method"]))
        out += block
    return out


def _fmt(mean, half, digits=3) -> str:
    if mean is None or not math.isfinite(mean):
        return "n/a"
    s = f"{mean:.{digits}f}"
    return s + (f" ± {half:.{digits}f}" if half is not None and math.isfinite(half) else "")


def summary_markdown(summary: list[dict], sort_by: str = "insertion_auc") -> str:
    """One wide markdown table (method x metric, mean ± 95% CI half-width), sorted best first by ``sort_by``."""
    by = {(s["metric"], s["method"]): s for s in summary}
    order = [s["method"] for s in summary if s["metric"] == sort_by] or list(dict.fromkeys(
        s["method"] for s in summary))
    cols = [m for m in SUMMARY_METRICS if any(s["metric"] == m for s in summary)]
    titles = {"insertion_auc": "insertion AUC ↑", "deletion_auc": "deletion AUC ↓", "pointing_game": "pointing game ↑",
              "energy_pointing_game": "energy pointing ↑", "seconds": "s / image"}
    lines = ["| method | " + " | ".join(titles.get(c, c) for c in cols) + " | n |",
             "|---|" + "---:|" * len(cols) + "---:|"]
    for m in order:
        cells = []
        for c in cols:
            s = by.get((c, m))
            cells.append("n/a" if s is None else _fmt(s["mean"], None if c == "seconds" else s["ci95"],
                                                       2 if c == "seconds" else 3))
        n = by.get((sort_by, m), {}).get("n", "")
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {n} |")
    return "\n".join(lines) + "\n"


def curves_figure(rows: list[dict], title: str = "Mean insertion and deletion curves"):
    """Plotly figure: mean insertion and deletion curve per method (rows need the curve lists)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("Insertion (higher is better)",
                                                        "Deletion (lower is better)"))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for i, m in enumerate(methods):
        rs = [r for r in rows if r["method"] == m and r.get("insertion_curve")]
        if not rs:
            continue
        fr = np.asarray(rs[0]["fractions"], dtype=float)
        rs = [r for r in rs if len(r["insertion_curve"]) == len(fr)]
        for col, key in ((1, "insertion_curve"), (2, "deletion_curve")):
            y = np.mean([r[key] for r in rs], axis=0)
            fig.add_trace(go.Scatter(x=fr, y=y, mode="lines", name=m, legendgroup=m, showlegend=col == 1,
                                     line={"color": _COLOURS[i % len(_COLOURS)],
                                           "dash": "dot" if m in REFERENCE_METHODS else "solid"},
                                     hovertemplate=f"{m}<br>fraction %{{x:.3f}}<br>score %{{y:.3f}}"
                                                   f"<extra>n={len(rs)}</extra>"), row=1, col=col)
    fig.update_xaxes(title_text="fraction of pixels", range=[0, 1])
    fig.update_yaxes(title_text="score")
    fig.update_layout(title=title, template="plotly_white", height=480)
    return fig


_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd")


# ------------------------------------------------------------------------------------------------------------
# Files: results.csv (resumable), curves.csv, summary.csv/.md, curves.html, run.json
# ------------------------------------------------------------------------------------------------------------
def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


def _read_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = {}
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            rows[(r["image"], r["method"])] = r  # a repeated pair (interrupted write) keeps the last
    return list(rows.values())


def _read_curves(path: Path) -> dict:
    out = {}
    if not path.exists():
        return out
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            try:
                out[(r["image"], r["method"], r["curve"])] = [float(v) for v in r["values"].split()]
            except ValueError:  # a truncated last line from an interrupted run
                continue
    return out


def _list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InvalidParameterError(f"--images {str(folder)!r} is not a folder")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


class _Progress:
    """tqdm on stderr when available, else a plain line with rate and ETA."""

    def __init__(self, total: int, desc: str):
        self.total, self.desc, self.t0, self.bar = total, desc, time.perf_counter(), None
        try:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="map", file=sys.stderr, dynamic_ncols=True)
        except ImportError:  # pragma: no cover
            pass

    def __call__(self, done: int, total: int, note: str = "") -> bool:
        if self.bar is not None:
            self.bar.n = done
            if note:
                self.bar.set_postfix_str(note, refresh=False)
            self.bar.refresh()
        else:  # pragma: no cover
            el = time.perf_counter() - self.t0
            eta = el / max(done, 1) * (total - done)
            print(f"\r{self.desc}: {done}/{total} [{el:.0f}s elapsed, ETA {eta:.0f}s] {note}", end="",
                  file=sys.stderr, flush=True)
        return True

    def close(self):
        if self.bar is not None:
            self.bar.close()
        else:  # pragma: no cover
            print(file=sys.stderr)


def run_evaluation(model, images_dir, out_dir, methods="all", boxes_path=None, preset=None, limit=None,
                   steps=None, batch_size=None, tolerance: float = 15, show_progress: bool = True) -> dict:
    """The ``evaluate`` command as a function: evaluate, resume, and write the result files. Returns paths."""
    p = get_preset(preset)
    names = resolve_methods(methods)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = _list_images(Path(images_dir))
    if limit is not None:
        files = files[:int(limit)]
    if not files:
        raise InvalidParameterError(f"no images found in {str(images_dir)!r}")
    if boxes_path is None and (Path(images_dir) / "boxes.json").exists():
        boxes_path = Path(images_dir) / "boxes.json"
    boxes = json.loads(Path(boxes_path).read_text()) if boxes_path else None

    config = {"model": getattr(model, "name", str(model)), "weights": str(getattr(model, "weights_path", "") or ""),
              "preset": p.name, "steps": steps, "tolerance": tolerance}
    cfg_path = out / "run.json"
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        diff = {k: (old.get(k), v) for k, v in config.items() if old.get(k) != v}
        if diff:
            raise InvalidParameterError(
                f"{out} holds results of another configuration ({diff}); use another --out folder")
    cfg_path.write_text(json.dumps(config, indent=2))

    res_path, cur_path = out / "results.csv", out / "curves.csv"
    done_pairs = {(r["image"], r["method"]) for r in _read_results(res_path)}
    new_res = not res_path.exists()
    new_cur = not cur_path.exists()
    with res_path.open("a", newline="") as fr, cur_path.open("a", newline="") as fc:
        wr, wc = csv.writer(fr), csv.writer(fc)
        if new_res:
            wr.writerow(RESULT_COLUMNS)
        if new_cur:
            wc.writerow(("image", "method", "curve", "values"))

        def on_row(row):
            if row.get("insertion_curve"):
                wc.writerow((row["image"], row["method"], "fractions", " ".join(repr(v) for v in row["fractions"])))
                for c in ("insertion", "deletion"):
                    wc.writerow((row["image"], row["method"], c, " ".join(repr(v) for v in row[f"{c}_curve"])))
                fc.flush()
            wr.writerow([_cell(row.get(c)) for c in RESULT_COLUMNS])
            fr.flush()

        todo = sum(1 for f in files for m in names if (f.name, m) not in done_pairs)
        bar = _Progress(todo, f"evaluate {len(files)} images x {len(names)} methods") if show_progress else None
        images = [(f.name, f) for f in files if any((f.name, m) not in done_pairs for m in names)]
        try:
            evaluate_images(model, images, names, boxes, p, bar, steps, batch_size, tolerance, None,
                            done_pairs, on_row)
        finally:
            if bar is not None:
                bar.close()

    return write_reports(out, [f.name for f in files], names, p, config)


def write_reports(out: Path, image_names: list[str], methods: list[str], preset, config: dict) -> dict:
    """summary.csv, summary.md and curves.html from the files of ``out`` (for these images and methods)."""
    keep_img, keep_m = set(image_names), set(methods)
    rows = [r for r in _read_results(out / "results.csv") if r["image"] in keep_img and r["method"] in keep_m]
    curves = _read_curves(out / "curves.csv")
    order = {m: i for i, m in enumerate(methods)}
    rows.sort(key=lambda r: (order[r["method"]], r["image"]))
    for r in rows:
        k = (r["image"], r["method"])
        if (*k, "insertion") in curves and (*k, "deletion") in curves and (*k, "fractions") in curves:
            r["fractions"] = curves[(*k, "fractions")]
            r["insertion_curve"], r["deletion_curve"] = curves[(*k, "insertion")], curves[(*k, "deletion")]
    summary = summarize(rows)
    with (out / "summary.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(("metric", "method", "n", "mean", "ci95", "low", "high", "higher_is_better"))
        for s in summary:
            w.writerow([_cell(s[k]) if k != "higher_is_better" else int(s[k])
                        for k in ("metric", "method", "n", "mean", "ci95", "low", "high", "higher_is_better")])
    n_img = len({r["image"] for r in rows})
    steps = f", {config['steps']} steps" if config.get("steps") else ""
    head = (f"Model `{config.get('model')}`, preset `{preset.name}`{steps} ({preset.title}; baseline "
            f"{preset.baseline.name}), {n_img} images. Mean ± 95% CI half-width; sorted by insertion AUC.\n\n")
    (out / "summary.md").write_text(head + summary_markdown(summary))
    fig = curves_figure(rows, f"{config.get('model')} · preset {preset.name} · {n_img} images")
    fig.write_html(str(out / "curves.html"), include_plotlyjs=True, full_html=True)
    errors = sum(1 for r in rows if r.get("error"))
    return {"results": str(out / "results.csv"), "curves": str(out / "curves.csv"),
            "summary": str(out / "summary.csv"), "summary_md": str(out / "summary.md"),
            "html": str(out / "curves.html"), "rows": len(rows), "images": n_img, "errors": errors}


# ------------------------------------------------------------------------------------------------------------
def cmd_evaluate(args) -> int:
    from .models import load_model

    model = load_model(args.model, weights=args.weights, device=args.device)
    info = run_evaluation(model, args.images, args.out, methods=args.methods, boxes_path=args.boxes,
                          preset=args.preset, limit=args.limit, steps=args.steps, batch_size=args.batch_size,
                          tolerance=args.tolerance, show_progress=not args.quiet)
    print(Path(info["summary_md"]).read_text())
    print(json.dumps(info, indent=2))
    return 0


def add_cli(subparsers) -> None:
    """Register ``python -m explainers evaluate`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "evaluate", help="score methods on a folder of images (insertion/deletion AUC, pointing game)",
        description="Explain the predicted class of every image with every method and score the maps. "
                    "Resumable: pairs already in OUT/results.csv are skipped.")
    p.add_argument("--images", required=True, help="folder of images (sorted by name)")
    p.add_argument("--boxes", default=None, help="boxes.json with ground-truth boxes and labels "
                                                 "(default: IMAGES/boxes.json when present)")
    p.add_argument("--model", required=True, help="timm name, Hugging Face id or local HF folder")
    p.add_argument("--weights", default=None, help="local weights file/folder (offline use)")
    p.add_argument("--device", default="auto")
    p.add_argument("--methods", default="all", help="'all' or a comma-separated list; 'random' and 'gaussian' are "
                                                    "the reference rows ('all' includes them)")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS),
                   help=f"insertion/deletion protocol (default {DEFAULT_PRESET})")
    p.add_argument("--steps", type=int, default=None, help="override the preset's number of steps")
    p.add_argument("--batch-size", type=int, default=None, help="perturbed images per forward pass (default 32)")
    p.add_argument("--tolerance", type=float, default=15, help="pointing game tolerance in pixels (default 15)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--out", required=True, help="output folder (results.csv, summary, curves.html)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_evaluate)


