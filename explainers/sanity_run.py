"""The ``sanity`` command: the randomisation and random-logit checks over a folder of images, resumable.

    python -m explainers sanity --model M [--weights P] --methods all|a,b --images DIR [--limit N] --out DIR
        [--param METHOD.NAME=VALUE ...]

Every finished image is appended to ``OUT/sanity.csv`` at once (one write, each line with its checksum), so a run
that stops (a closed laptop, a time limit) keeps its work: running the same command again skips the (image, method)
pairs already there and computes the rest (more methods or a higher ``--limit`` extend a folder). ``OUT/run.json``
holds the fingerprint of what changes the numbers (model, weights hash, seed, modes, random-logit test, method
parameters; :mod:`explainers.run_folder`); a rerun with another one is refused rather than mixed in, and damaged
files are reported with their line. ``summary.csv`` / ``summary.md`` and ``sanity.html`` are written from everything
in the folder that the command asked for. :func:`read_results` rebuilds :class:`~explainers.sanity.SanityResult`
objects from such CSV files. Formats: docs/sanity.md.
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from pathlib import Path

from . import sanity as S
from .errors import InvalidParameterError
from .metrics import randomisation as R
from .run_folder import (
    CHECKSUM,
    IMAGE_HASH,
    RESULTS_VERSION,
    RunFolder,
    RunFolderError,
    Table,
    file_digest,
    method_params,
    model_fingerprint,
    refuse_random_weights,
    table_of,
    write_atomic,
)

__all__ = ["run_sanity", "read_results", "add_cli"]

FIELDS = ["image", "method", "target", "mode", "step", "label", "blocks_randomised", "spearman", "ssim", "topk"]
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
TOPK = 0.1  # the top-k fraction of the similarity (sanity_check's default)
_PLANS = {"cascading": R.cascading_steps, "independent": R.independent_steps}


def _pair_results(image, method, rs: list[dict], where: str) -> list[S.SanityResult]:
    """The results of one (image, method) from its rows; :class:`InvalidParameterError` when they are not whole."""
    logit = next((r for r in rs if r["mode"] == "random_logit"), None)
    out = []
    for mode, plan_of in _PLANS.items():
        by_step: dict[int, dict] = {}
        for r in rs:
            if r["mode"] == mode:
                by_step.setdefault(int(r["step"]), r)
        if not by_step:
            continue
        plan = plan_of(max(0, len(by_step) - 3))  # original, head, L blocks, embeddings
        if sorted(by_step) != [s.index for s in plan] or any(by_step[s.index]["label"] != s.label for s in plan):
            raise InvalidParameterError(f"{where}: {image} / {method} ({mode}): the steps are not a whole run; run "
                                        "the sanity command on its folder again to compute them")
        vals = {k: [float(by_step[s.index][k]) for s in plan] for k in R.SIMILARITIES}
        res = S.SanityResult(method=method, image=image, mode=mode, target=int(by_step[0]["target"]), steps=plan,
                             num_layers=len(plan) - 3, **vals)
        if logit is not None and (mode == "cascading" or not any(r["mode"] == "cascading" for r in rs)):
            res.random_logit = {k: float(logit[k]) for k in R.SIMILARITIES}
            res.other_class = int(logit["label"].removeprefix("class "))
        out.append(res)
    return out


def _rows_of(path: Path) -> list[tuple[int, dict]]:
    with open(path, "rb") as fh:
        head = fh.readline().decode("utf-8", "replace").strip().split(",")
    if head and head[-1] == CHECKSUM:
        return [(r.line, r.cells) for r in table_of(path, head[:-1]).read()[0]]
    with open(path, newline="", encoding="utf-8", errors="replace") as fh:  # written before checksums
        return [(i, r) for i, r in enumerate(csv.DictReader(fh), start=2) if r.get("topk") is not None]


def read_results(folders) -> list[S.SanityResult]:
    """:class:`SanityResult` objects (every mode, with the random-logit values) rebuilt from ``sanity.csv`` files.

    folders: output folders (or their ``sanity.csv`` paths) of runs over disjoint or overlapping sets of images: an
    (image, method, mode) seen twice keeps its first copy. Incomplete runs of one pair are refused; lines are
    checked against their folder's run.json (a last line cut by an interruption is left out)."""
    rows: dict[tuple, list[dict]] = {}
    where = {}
    for folder in [folders] if isinstance(folders, (str, Path)) else folders:
        path = Path(folder)
        path = path / "sanity.csv" if path.is_dir() else path
        try:
            found = _rows_of(path)
        except OSError as e:
            raise RunFolderError(f"cannot read {path} ({e.strerror or e})") from None
        for line, r in found:
            rows.setdefault((r["image"], r["method"]), []).append(r)
            where.setdefault((r["image"], r["method"]), f"{path} line {line}")
    out = []
    for (image, method), rs in rows.items():
        try:
            out += _pair_results(image, method, rs, where[image, method])
        except (ValueError, KeyError, AttributeError) as e:
            raise RunFolderError(f"{where[image, method]}: {image} / {method}: {e}") from None
    return out


def _resume(table: Table, modes, random_logit: bool, check=None) -> tuple[dict[tuple[str, str], str], list[str]]:
    """The complete (image, method) pairs of sanity.csv ({pair: image digest}) and notes on what was left out
    (an interrupted last line, pairs without all their rows: rewritten without them, computed again)."""
    records, cut = table.read()
    by_pair: dict[tuple, list] = {}
    for r in records:
        by_pair.setdefault((r.cells["image"], r.cells["method"]), []).append(r)
    need = set(modes) | ({"random_logit"} if random_logit else set())
    complete = {}
    for (image, method), rs in by_pair.items():
        try:
            got = _pair_results(image, method, [r.cells for r in rs], str(table.path))
        except InvalidParameterError:
            continue
        except (ValueError, KeyError) as e:
            raise table.damaged(rs[0].line, f"its values are not numbers ({e})") from None
        have = {r.mode for r in got} | ({"random_logit"} if any(r.random_logit for r in got) else set())
        if have == need and len(rs) == sum(len(r.steps) + bool(r.random_logit) for r in got):
            complete[image, method] = rs[0].cells[IMAGE_HASH]
    if check is not None:  # may refuse the folder before anything is rewritten
        check(complete)
    keep = [r for r in records if (r.cells["image"], r.cells["method"]) in complete]
    notes = []
    if cut or len(keep) < len(records):
        table.rewrite(keep)
        lost = len(by_pair) - len(complete)
        notes.append(f"resuming {table.path.parent}: " + ("a last line cut by an interruption was left out; "
                                                          if cut else "") +
                     f"{lost} (image, method) pair(s) without all their rows are computed again")
    return complete, notes


def run_sanity(model, images_dir, out_dir, methods="all", modes=("cascading",), limit=None, seed: int = 0,
               random_logit: bool = True, show_progress: bool = True, params: dict | None = None) -> dict:
    """Run the checks on the images of a folder (sorted by name), skipping the pairs ``out_dir`` already holds,
    and write the CSV, summary and HTML files. Returns counts, the summary and the seconds spent.

    params: {method: parameters} other than the registry's defaults (a many-pass method's smaller budget, e.g.
    ``{"rise": {"masks": 1000}}``); recorded in ``run.json`` with the others, so a folder never mixes two budgets.

    ``out_dir`` is a run folder (:mod:`explainers.run_folder`): a rerun with another model, weights or settings
    is refused; the same ones resume."""
    from .evaluation.inputs import check_limit
    from .images import load_image

    folder = Path(images_dir)
    if not folder.is_dir():
        raise InvalidParameterError(f"--images {str(folder)!r} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    files = files[:check_limit(limit)] if limit is not None else files
    if not files:
        raise InvalidParameterError(f"no images in {str(folder)!r}")
    names = S.resolve_methods(methods)
    modes = tuple(modes)
    fp = {**model_fingerprint(model), "seed": int(seed), "modes": list(modes), "random_logit": bool(random_logit),
          "topk_fraction": TOPK, "results_version": RESULTS_VERSION}
    params = {m: dict(p) for m, p in (params or {}).items()}
    run = RunFolder(out_dir, "sanity", fp, method_params([n for n in names if n not in S.REFERENCE], params),
                    info={"weights": str(getattr(model, "weights_path", "") or "")}, data_files=("sanity.csv",))
    with run:
        out = run.out
        table = run.table("sanity.csv", [*FIELDS, IMAGE_HASH])
        digests = {f.name: file_digest(f) for f in files}

        def same_images(done):
            changed = sorted({n for (n, _), d in done.items() if d and digests.get(n) and d != digests[n]})
            if changed:
                raise RunFolderError(f"{changed[0]}: the image file changed since its rows in {out} were written; "
                                     "use another --out folder")

        done, notes = _resume(table, modes, random_logit, same_images)
        run.write_run_json()
        for note in notes:
            print(note, file=sys.stderr)
        table.start()
        todo = [(f, [m for m in names if (f.name, m) not in done]) for f in files]
        todo = [(f, ms) for f, ms in todo if ms]
        bar = None
        if show_progress:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc="sanity", unit="image", file=sys.stderr)
        t0 = time.perf_counter()
        for f, ms in todo:
            image = load_image(f)
            results = []
            for mode in modes:
                results += S.sanity_check(model, image, ms, mode, seed=seed, name=f.name, k=TOPK, params=params,
                                          random_logit=random_logit and mode == modes[0])
            # one image's rows with one write: an interrupted run keeps the images it finished
            table.append([table.encode([row[k] for k in FIELDS] + [digests[f.name]])
                          for r in results for row in r.rows()])
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        wanted = {f.name for f in files}
        results = [r for r in read_results(out) if r.image in wanted and r.method in names and r.mode in modes]
        summary = S.summarize(results)
        if summary:
            buf = io.StringIO()
            w = csv.DictWriter(buf, fieldnames=list(summary[0]), lineterminator="\n")
            w.writeheader()
            w.writerows(summary)
            write_atomic(out / "summary.csv", buf.getvalue())
            write_atomic(out / "summary.md", S.summary_markdown(summary))
        write_atomic(out / "sanity.html", "".join(S.figure(results, mode).to_html(full_html=i == 0,
                                                                                  include_plotlyjs=i == 0)
                                                  for i, mode in enumerate(modes)))
    return {"images": len(files), "methods": names, "modes": list(modes), "computed": len(todo),
            "skipped": len(files) - len(todo), "rows": sum(len(r.steps) + bool(r.random_logit) for r in results),
            "out": str(out), "seconds": round(time.perf_counter() - t0, 1), "summary": summary}


def cmd_sanity(args) -> int:
    from . import load_model

    refuse_random_weights(args.weights)
    if args.limit is not None:
        from .evaluation.inputs import check_limit

        check_limit(args.limit)
    from .registry import parse_method_params

    names = S.resolve_methods(args.methods)  # bad input fails before a model loads
    params = parse_method_params(args.param, [n for n in names if n not in S.REFERENCE])
    model = load_model(args.model, weights=args.weights, device=args.device)
    modes = ("cascading", "independent") if args.mode == "both" else (args.mode,)
    info = run_sanity(model, args.images, args.out, methods=args.methods, modes=modes, limit=args.limit,
                      seed=args.seed, random_logit=not args.no_random_logit, show_progress=not args.quiet,
                      params=params)
    print(S.summary_markdown(info["summary"]) if info["summary"] else "", end="")
    print(json.dumps({k: v for k, v in info.items() if k != "summary"}))
    return 0


def add_cli(subparsers) -> None:
    """Register ``python -m explainers sanity``."""
    p = subparsers.add_parser("sanity", help="model parameter randomisation and random-logit sanity checks "
                                             "(resumable: a rerun skips the pairs already in OUT/sanity.csv)")
    p.add_argument("--model", required=True, help="timm name, Hugging Face id or local HF folder")
    p.add_argument("--weights", default=None, help="local weights file/folder (offline use)")
    p.add_argument("--device", default="auto")
    p.add_argument("--methods", default="all", help="'all' or a comma-separated list (also 'random', 'gaussian')")
    p.add_argument("--images", required=True, help="folder of images (sorted by name)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--mode", default="cascading", choices=["cascading", "independent", "both"])
    p.add_argument("--seed", type=int, default=0, help="randomisation seed (default 0)")
    p.add_argument("--no-random-logit", action="store_true", help="skip the random-logit test")
    p.add_argument("--param", action="append", default=[], metavar="METHOD.NAME=VALUE",
                   help="a method parameter other than its default, e.g. rise.masks=1000 (repeatable; recorded in "
                        "run.json: a folder keeps one value)")
    p.add_argument("--out", required=True, help="output folder (sanity.csv, summary.csv/.md, sanity.html, run.json)"
                                                "; an existing one is extended")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sanity)
