"""The evaluate command's files: results.csv (resumable), curves.csv, summary.csv/.md, curves.html, run.json.

:func:`run_evaluation` drives either a loaded model (serial, in this process) or a
:class:`~explainers.evaluation.distributed.RayWorkers` pool (sharded on Ray); both write the same rows."""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import InvalidParameterError
from ..metrics import get_preset
from ..run_folder import (
    IMAGE_HASH,
    RESULTS_VERSION,
    RunFolder,
    RunFolderError,
    method_params,
    model_fingerprint,
    write_atomic,
)
from .core import evaluate_item, read_image_bytes, resolve_methods, result_columns
from .inputs import list_images, load_boxes
from .records import CURVE_COLUMNS, input_digest, read_curves, read_results, record_lines, resume_state
from .report import curves_figure, summarize, summary_markdown

__all__ = ["read_curves", "read_results", "run_evaluation", "write_reports", "make_chunks"]


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


def make_chunks(todo: list[tuple], size: int) -> list[list[tuple]]:
    """Work items: ``todo`` = [(name, path, methods, box entry)] -> chunks of about ``size`` (image, method)
    pairs, in order; an image's methods are split across chunks only when it has more than ``size``."""
    size = max(1, int(size))
    chunks, cur, n = [], [], 0
    for name, path, methods, entry in todo:
        ms = list(methods)
        while ms:
            take, ms = ms[:size - n], ms[size - n:]
            cur.append((name, path, take, entry))
            n += len(take)
            if n >= size:
                chunks.append(cur)
                cur, n = [], 0
    if cur:
        chunks.append(cur)
    return chunks


def _run_serial(model, chunks, params: dict, sink: Callable[[list[dict]], bool]) -> list:
    stop = []

    def on_row(row):
        stop.append(sink([row]) is False)

    for chunk in chunks:
        for name, path, methods, entry in chunk:
            data, err = read_image_bytes(path)
            evaluate_item(model, name, data, err, methods, entry, **params, on_row=on_row)
            if any(stop):
                return []
    return []


def check_tolerance(tolerance) -> float:
    """The pointing game's tolerance in pixels: a finite number >= 0."""
    try:
        t = float(tolerance)
    except (TypeError, ValueError):
        t = math.nan
    if isinstance(tolerance, bool) or not (math.isfinite(t) and t >= 0):
        raise InvalidParameterError(f"--tolerance must be a finite number of pixels >= 0, got {tolerance!r}")
    return t


def _check_steps(steps):
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise InvalidParameterError(f"--steps must be a whole number >= 1, got {steps!r}")


def run_evaluation(model, images, out_dir, methods="all", boxes_path=None, preset=None, limit=None,
                   steps=None, batch_size=None, tolerance: float = 15, show_progress: bool = True,
                   ground_truth=None, meta=None, chunk_size: int | None = None,
                   progress: Callable[[int, int], object] | None = None, extra: bool = False,
                   params: dict | None = None) -> dict:
    """The ``evaluate`` command as a function: evaluate, resume, and write the result files.

    model: a loaded model (serial run) or a ``RayWorkers`` pool (sharded on Ray; same rows and numbers).
    images: a folder or a list file; ``ground_truth`` / ``meta``: the ImageNet devkit's labels
    (see :func:`~explainers.evaluation.inputs.imagenet_val_labels`).
    chunk_size: (image, method) pairs per work item (default: the number of methods, one image).
    progress: ``callback(done, total)`` after rows are written; returning False stops after the current item.
    extra: also score the newer metrics (ROAD, faithfulness correlation, sparseness, relevance mass / rank
    accuracy) as columns of results.csv and the summaries (``--extra-metrics``).
    params: {method: parameters} other than the registry's defaults (``--param``), recorded in ``run.json``.

    ``out_dir`` is a run folder (:mod:`explainers.run_folder`): its ``run.json`` holds the fingerprint of what
    changes the numbers, and a rerun with another one is refused; the same one resumes with the missing pairs.
    Returns the paths of the files and counts ("rows", "images", "errors", "computed", "failed").
    """
    p = get_preset(preset)
    names = resolve_methods(methods)
    tolerance = check_tolerance(tolerance)
    _check_steps(steps)
    files = list_images(images, limit)
    boxes, _ = load_boxes(images, [f.name for f in files], boxes_path, ground_truth, meta)
    entries = {f.name: (boxes or {}).get(f.name) for f in files}
    fp = {**model_fingerprint(model), "preset": p.name, "steps": steps, "tolerance": tolerance,
          "extra_metrics": bool(extra), "results_version": RESULTS_VERSION}
    params = {m: dict(v) for m, v in (params or {}).items()}
    folder = RunFolder(out_dir, "evaluate", fp, method_params(names, params),
                       info={"weights": str(getattr(model, "weights_path", "") or "")},
                       data_files=("results.csv", "curves.csv"))
    columns = result_columns(extra)
    with folder:
        out = folder.out
        res_t = folder.table("results.csv", (*columns, IMAGE_HASH))
        cur_t = folder.table("curves.csv", CURVE_COLUMNS)
        digests = {f.name: input_digest(read_image_bytes(f)[0], entries[f.name]) for f in files}

        def same_inputs(done):
            changed = sorted({n for (n, _), d in done.items() if d and digests.get(n) and d != digests[n]})
            if changed:
                raise RunFolderError(f"{changed[0]}{f' and {len(changed) - 1} more' if len(changed) > 1 else ''}: "
                                     f"the image file or its boxes.json entry changed since its rows in {out} were "
                                     "written; use another --out folder")

        done, notes = resume_state(res_t, cur_t, same_inputs)
        folder.write_run_json()
        for note in notes:
            print(note, file=sys.stderr)
        res_t.start()
        cur_t.start()
        todo = [(f.name, f, [m for m in names if (f.name, m) not in done], entries[f.name]) for f in files]
        todo = [t for t in todo if t[2]]
        total = sum(len(t[2]) for t in todo)
        chunks = make_chunks(todo, chunk_size or len(names))
        item = {"preset": p.name, "steps": steps, "batch_size": batch_size, "tolerance": tolerance,
                "extra": extra, "method_params": params}
        count = {"done": 0}
        workers = getattr(model, "num_workers", None)
        desc = f"evaluate {len(files)} images x {len(names)} methods" + (f" on {workers} Ray workers" if workers
                                                                          else "")
        bar = _Progress(total, desc) if show_progress else None

        def sink(rows: list[dict]) -> bool:
            lines = [record_lines(res_t, cur_t, row, columns, digests.get(row["image"], "")) for row in rows]
            cur_t.append([c for _, cs in lines for c in cs])  # curves first: a results line implies its curves
            res_t.append([r for r, _ in lines])
            count["done"] += len(rows)
            if bar is not None:
                bar(count["done"], total)
            return not (progress is not None and progress(count["done"], total) is False)

        try:
            if hasattr(model, "run_chunks"):
                failed = model.run_chunks(chunks, item, sink)
            else:
                failed = _run_serial(model, chunks, item, sink)
        finally:
            if bar is not None:
                bar.close()
        if failed:
            print(f"warning: {len(failed)} (image, method) pairs were lost with their worker after Ray's retries "
                  f"(e.g. {failed[0][0]} / {failed[0][1]}: {failed[0][2]}); they are not in results.csv, and a "
                  "rerun of the same command retries them", file=sys.stderr)
        info = write_reports(out, [f.name for f in files], names, p, {"model": fp["model"], "steps": steps})
    info.update(computed=count["done"], failed=len(failed))
    return info


def write_reports(out: Path, image_names: list[str], methods: list[str], preset, config: dict) -> dict:
    """summary.csv, summary.md and curves.html from the files of ``out`` (for these images and methods)."""
    out = Path(out)
    preset = get_preset(preset)
    keep_img, keep_m = set(image_names), set(methods)
    rows = [r for r in read_results(out / "results.csv") if r["image"] in keep_img and r["method"] in keep_m]
    curves = read_curves(out / "curves.csv")
    order = {m: i for i, m in enumerate(methods)}
    rows.sort(key=lambda r: (order[r["method"]], r["image"]))
    for r in rows:
        k = (r["image"], r["method"])
        if (*k, "insertion") in curves and (*k, "deletion") in curves and (*k, "fractions") in curves:
            r["fractions"] = curves[(*k, "fractions")]
            r["insertion_curve"], r["deletion_curve"] = curves[(*k, "insertion")], curves[(*k, "deletion")]
    summary = summarize(rows)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    keys = ("metric", "method", "n", "mean", "ci95", "low", "high", "higher_is_better")
    w.writerow(keys)
    for s in summary:
        w.writerow([_cell(s[k]) if k != "higher_is_better" else int(s[k]) for k in keys])
    write_atomic(out / "summary.csv", buf.getvalue())
    n_img = len({r["image"] for r in rows})
    steps = f", {config['steps']} steps" if config.get("steps") else ""
    head = (f"Model `{config.get('model')}`, preset `{preset.name}`{steps} ({preset.title}; baseline "
            f"{preset.baseline.name}), {n_img} images. Mean ± 95% CI half-width; sorted by insertion AUC.\n\n")
    write_atomic(out / "summary.md", head + summary_markdown(summary))
    fig = curves_figure(rows, f"{config.get('model')} · preset {preset.name} · {n_img} images")
    write_atomic(out / "curves.html", fig.to_html(include_plotlyjs=True, full_html=True))
    errors = sum(1 for r in rows if r.get("error"))
    return {"results": str(out / "results.csv"), "curves": str(out / "curves.csv"),
            "summary": str(out / "summary.csv"), "summary_md": str(out / "summary.md"),
            "html": str(out / "curves.html"), "rows": len(rows), "images": n_img, "errors": errors}


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)
