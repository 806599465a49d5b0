"""The evaluate command's files: results.csv (resumable), curves.csv, summary.csv/.md, curves.html, run.json.

:func:`run_evaluation` drives either a loaded model (serial, in this process) or a
:class:`~explainers.evaluation.distributed.RayWorkers` pool (sharded on Ray); both write the same rows."""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import InvalidParameterError
from ..metrics import get_preset
from .core import evaluate_item, read_image_bytes, resolve_methods, result_columns
from .inputs import list_images, load_boxes
from .report import curves_figure, summarize, summary_markdown


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v)


def read_results(path: Path) -> list[dict]:
    """Rows of a results.csv (a repeated pair, from an interrupted write, keeps the last)."""
    path = Path(path)
    if not path.exists():
        return []
    rows = {}
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            if r.get("error") is None:  # a truncated last line from an interrupted run
                continue
            rows[(r["image"], r["method"])] = r
    return list(rows.values())


def done_pairs(path: Path) -> set[tuple[str, str]]:
    """(image, method) pairs with a complete row in a results.csv (reads only what resuming needs)."""
    path = Path(path)
    if not path.exists():
        return set()
    with path.open(newline="") as f:
        rows = csv.reader(f)
        head = next(rows, None)
        if not head:
            return set()
        i, m = head.index("image"), head.index("method")
        return {(r[i], r[m]) for r in rows if len(r) == len(head)}


def read_curves(path: Path) -> dict:
    out = {}
    path = Path(path)
    if not path.exists():
        return out
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            try:
                out[(r["image"], r["method"], r["curve"])] = [float(v) for v in r["values"].split()]
            except (ValueError, AttributeError):  # a truncated last line from an interrupted run
                continue
    return out


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


def run_evaluation(model, images, out_dir, methods="all", boxes_path=None, preset=None, limit=None,
                   steps=None, batch_size=None, tolerance: float = 15, show_progress: bool = True,
                   ground_truth=None, meta=None, chunk_size: int | None = None,
                   progress: Callable[[int, int], object] | None = None, extra: bool = False) -> dict:
    """The ``evaluate`` command as a function: evaluate, resume, and write the result files.

    model: a loaded model (serial run) or a ``RayWorkers`` pool (sharded on Ray; same rows and numbers).
    images: a folder or a list file; ``ground_truth`` / ``meta``: the ImageNet devkit's labels
    (see :func:`~explainers.evaluation.inputs.imagenet_val_labels`).
    chunk_size: (image, method) pairs per work item (default: the number of methods, one image).
    progress: ``callback(done, total)`` after rows are written; returning False stops after the current item.
    extra: also score the newer metrics (ROAD, faithfulness correlation, sparseness, relevance mass / rank
    accuracy) as columns of results.csv and the summaries (``--extra-metrics``).
    Returns the paths of the files and counts ("rows", "images", "errors", "computed", "failed").
    """
    p = get_preset(preset)
    names = resolve_methods(methods)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = list_images(images, limit)
    boxes, _ = load_boxes(images, [f.name for f in files], boxes_path, ground_truth, meta)

    config = {"model": getattr(model, "name", str(model)), "weights": str(getattr(model, "weights_path", "") or ""),
              "preset": p.name, "steps": steps, "tolerance": tolerance}
    if extra:  # only then: folders written before the option existed still resume
        config["extra_metrics"] = True
    cfg_path = out / "run.json"
    if cfg_path.exists():
        old = json.loads(cfg_path.read_text())
        diff = {k: (old.get(k), v) for k, v in config.items() if old.get(k) != v}
        if bool(old.get("extra_metrics")) != extra:  # the columns of results.csv differ
            diff["extra_metrics"] = (bool(old.get("extra_metrics")), extra)
        if diff:
            raise InvalidParameterError(
                f"{out} holds results of another configuration ({diff}); use another --out folder")
    cfg_path.write_text(json.dumps(config, indent=2))

    res_path, cur_path = out / "results.csv", out / "curves.csv"
    done = done_pairs(res_path)
    todo = [(f.name, f, [m for m in names if (f.name, m) not in done], (boxes or {}).get(f.name))
            for f in files]
    todo = [t for t in todo if t[2]]
    total = sum(len(t[2]) for t in todo)
    chunks = make_chunks(todo, chunk_size or len(names))
    params = {"preset": p.name, "steps": steps, "batch_size": batch_size, "tolerance": tolerance, "extra": extra}
    columns = result_columns(extra)
    new_res, new_cur = not res_path.exists(), not cur_path.exists()
    for path in (res_path, cur_path):  # a line cut by an interruption must not swallow the next row
        if path.exists() and path.stat().st_size:
            with path.open("rb+") as f:
                f.seek(-1, 2)
                if f.read(1) != b"\n":
                    f.write(b"\r\n")
    count = {"done": 0}
    with res_path.open("a", newline="") as fr, cur_path.open("a", newline="") as fc:
        wr, wc = csv.writer(fr), csv.writer(fc)
        if new_res:
            wr.writerow(columns)
        if new_cur:
            wc.writerow(("image", "method", "curve", "values"))
        fr.flush()
        fc.flush()
        workers = getattr(model, "num_workers", None)
        desc = f"evaluate {len(files)} images x {len(names)} methods" + (f" on {workers} Ray workers" if workers
                                                                          else "")
        bar = _Progress(total, desc) if show_progress else None

        def sink(rows: list[dict]) -> bool:
            for row in rows:  # curves first: a row in results.csv implies its curves are written
                if row.get("insertion_curve"):
                    wc.writerow((row["image"], row["method"], "fractions",
                                 " ".join(repr(v) for v in row["fractions"])))
                    for c in ("insertion", "deletion"):
                        wc.writerow((row["image"], row["method"], c, " ".join(repr(v) for v in row[f"{c}_curve"])))
            fc.flush()
            for row in rows:
                wr.writerow([_cell(row.get(c)) for c in columns])
            fr.flush()
            count["done"] += len(rows)
            if bar is not None:
                bar(count["done"], total)
            return not (progress is not None and progress(count["done"], total) is False)

        try:
            if hasattr(model, "run_chunks"):
                failed = model.run_chunks(chunks, params, sink)
            else:
                failed = _run_serial(model, chunks, params, sink)
        finally:
            if bar is not None:
                bar.close()
    if failed:
        print(f"warning: {len(failed)} (image, method) pairs were lost with their worker after Ray's retries "
              f"(e.g. {failed[0][0]} / {failed[0][1]}: {failed[0][2]}); they are not in results.csv, and a rerun "
              "of the same command retries them", file=sys.stderr)
    info = write_reports(out, [f.name for f in files], names, p, config)
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
