"""The ``sanity`` command: the randomisation and random-logit checks over a folder of images, resumable.

    python -m explainers sanity --model M [--weights P] --methods all|a,b --images DIR [--limit N] --out DIR

Every finished image is appended to ``OUT/sanity.csv`` at once, so a run that stops (a closed laptop, a time limit)
keeps its work: running the same command again skips the (image, method) pairs already there and computes the rest
(more methods or a higher ``--limit`` extend a folder). The settings that change the numbers (model, seed, modes,
random-logit test) are kept in ``OUT/run.json``; a rerun with other settings is refused rather than mixed in.
``summary.csv`` / ``summary.md`` and ``sanity.html`` are written from everything in the folder that the command
asked for. :func:`read_results` rebuilds :class:`~explainers.sanity.SanityResult` objects from such CSV files.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

from . import sanity as S
from .errors import InvalidParameterError
from .metrics import randomisation as R

__all__ = ["run_sanity", "read_results", "add_cli"]

FIELDS = ["image", "method", "target", "mode", "step", "label", "blocks_randomised", "spearman", "ssim", "topk"]
SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
_PLANS = {"cascading": R.cascading_steps, "independent": R.independent_steps}


def read_results(folders) -> list[S.SanityResult]:
    """:class:`SanityResult` objects (every mode, with the random-logit values) rebuilt from ``sanity.csv`` files.

    folders: output folders (or their ``sanity.csv`` paths) of runs over disjoint or overlapping sets of images: an
    (image, method, mode) seen twice keeps its first copy. Incomplete runs of one pair are refused."""
    rows: dict[tuple, list[dict]] = {}
    for folder in [folders] if isinstance(folders, (str, Path)) else folders:
        path = Path(folder)
        path = path / "sanity.csv" if path.is_dir() else path
        with open(path, newline="") as fh:
            for r in csv.DictReader(fh):
                rows.setdefault((r["image"], r["method"]), []).append(r)
    out = []
    for (image, method), rs in rows.items():
        logit = next((r for r in rs if r["mode"] == "random_logit"), None)
        for mode, plan_of in _PLANS.items():
            by_step: dict[int, dict] = {}
            for r in rs:
                if r["mode"] == mode:
                    by_step.setdefault(int(r["step"]), r)
            if not by_step:
                continue
            plan = plan_of(len(by_step) - 3)  # original, head, L blocks, embeddings
            if sorted(by_step) != [s.index for s in plan] or any(by_step[s.index]["label"] != s.label for s in plan):
                raise InvalidParameterError(f"{path}: {image} / {method} ({mode}): the steps are not a whole run")
            vals = {k: [float(by_step[s.index][k]) for s in plan] for k in R.SIMILARITIES}
            res = S.SanityResult(method=method, image=image, mode=mode, target=int(by_step[0]["target"]), steps=plan,
                                 num_layers=len(plan) - 3, **vals)
            if logit is not None and mode == "cascading":
                res.random_logit = {k: float(logit[k]) for k in R.SIMILARITIES}
                res.other_class = int(logit["label"].removeprefix("class "))
            out.append(res)
    return out


def _done(results, modes, random_logit: bool) -> set[tuple[str, str]]:
    """(image, method) pairs complete for every mode asked for (and with their random-logit row if asked)."""
    have: dict[tuple[str, str], set] = {}
    for r in results:
        have.setdefault((r.image, r.method), set()).add(r.mode)
        if r.random_logit:
            have[r.image, r.method].add("random_logit")
    need = set(modes) | ({"random_logit"} if random_logit else set())
    return {k for k, v in have.items() if need <= v}


def _settings(out: Path, settings: dict) -> None:
    path = out / "run.json"
    if path.exists():
        old = json.loads(path.read_text())
        diff = [k for k in settings if old.get(k) != settings[k]]
        if diff:
            raise InvalidParameterError(
                f"{str(out)!r} holds a sanity run with other settings "
                f"({', '.join(f'{k}: {old.get(k)!r}' for k in diff)}; now {', '.join(repr(settings[k]) for k in diff)})"
                "; use another --out folder, or the same settings to extend it")
    else:
        path.write_text(json.dumps(settings, indent=1) + "\n")


def run_sanity(model, images_dir, out_dir, methods="all", modes=("cascading",), limit=None, seed: int = 0,
               random_logit: bool = True, show_progress: bool = True) -> dict:
    """Run the checks on the images of a folder (sorted by name), skipping the pairs ``out_dir`` already holds,
    and write the CSV, summary and HTML files. Returns counts, the summary and the seconds spent."""
    from .images import load_image

    folder = Path(images_dir)
    if not folder.is_dir():
        raise InvalidParameterError(f"--images {str(folder)!r} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    files = files[:limit] if limit else files
    if not files:
        raise InvalidParameterError(f"no images in {str(folder)!r}")
    names = S.resolve_methods(methods)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _settings(out, {"model": getattr(model, "name", None), "seed": int(seed), "modes": list(modes),
                    "random_logit": bool(random_logit)})
    csv_path = out / "sanity.csv"
    done = _done(read_results(out), modes, random_logit) if csv_path.exists() else set()
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
            results += S.sanity_check(model, image, ms, mode, seed=seed, name=f.name,
                                      random_logit=random_logit and mode == modes[0])
        new = not csv_path.exists() or csv_path.stat().st_size == 0
        with open(csv_path, "a", newline="") as fh:  # one image at a time: an interrupted run keeps its work
            w = csv.DictWriter(fh, fieldnames=FIELDS)
            if new:
                w.writeheader()
            w.writerows(row for r in results for row in r.rows())
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    wanted = {f.name for f in files}
    results = [r for r in read_results(out) if r.image in wanted and r.method in names and r.mode in modes]
    summary = S.summarize(results)
    if summary:
        with open(out / "summary.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(summary[0]))
            w.writeheader()
            w.writerows(summary)
        (out / "summary.md").write_text(S.summary_markdown(summary))
    with open(out / "sanity.html", "w") as fh:
        for i, mode in enumerate(modes):
            fh.write(S.figure(results, mode).to_html(full_html=i == 0, include_plotlyjs=i == 0))
    return {"images": len(files), "methods": names, "modes": list(modes), "computed": len(todo),
            "skipped": len(files) - len(todo), "rows": sum(len(r.steps) + bool(r.random_logit) for r in results),
            "out": str(out), "seconds": round(time.perf_counter() - t0, 1), "summary": summary}


def cmd_sanity(args) -> int:
    from . import load_model

    model = load_model(args.model, weights=args.weights, device=args.device)
    modes = ("cascading", "independent") if args.mode == "both" else (args.mode,)
    info = run_sanity(model, args.images, args.out, methods=args.methods, modes=modes, limit=args.limit,
                      seed=args.seed, random_logit=not args.no_random_logit, show_progress=not args.quiet)
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
    p.add_argument("--out", required=True, help="output folder (sanity.csv, summary.csv/.md, sanity.html, run.json)"
                                                "; an existing one is extended")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sanity)
