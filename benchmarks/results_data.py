"""The reference runs' files (``results/<model>/evaluate``, ``results/<model>/sanity``) gathered into one summary.

:func:`collect` reads ``results.csv``, ``curves.csv``, ``sanity.csv`` and the ``run.json`` files and returns a plain,
JSON-ready dictionary: per model and method the mean and 95 % confidence interval of every metric, paired
comparisons with the two reference maps and with the leader, the mean insertion and deletion curves, the sanity
summary and verdict, and the coverage against the plan of ``benchmarks/run_reference.py``. It is written to
``results/summary.json`` (what the app's Benchmark page reads: small, nothing computed when it opens) and turned
into the docs tables by ``benchmarks/results_tables.py``. :func:`gaps` lists what the plan still lacks.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import run_reference as plan  # noqa: E402

from explainers import sanity as S  # noqa: E402
from explainers.evaluation.files import read_curves, read_results  # noqa: E402
from explainers.evaluation.report import summarize  # noqa: E402
from explainers.metrics import EXTRA_METRICS, METRICS  # noqa: E402
from explainers.sanity_run import read_results as read_sanity  # noqa: E402
from vit_explain_studio.results_summary import reading  # noqa: E402

FORMAT = 1
DIGITS = 6  # rounding of every number in summary.json (the tables show 2-3 decimals)
MAIN_METRICS = ("insertion_auc", "deletion_auc", "pointing_game", "energy_pointing_game")
COMPARED = ("insertion_auc", "deletion_auc")  # the paired comparisons with the reference rows and the leader


def _r(v):
    if v is None:
        return None
    v = float(v)
    return round(v, DIGITS) if math.isfinite(v) else None


def _t975(n: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, n - 1))


def per_image(rows: list[dict], method: str, metric: str) -> dict[str, float]:
    """image -> finite value of ``metric`` for ``method``."""
    out = {}
    for r in rows:
        if r["method"] == method and r.get(metric) not in (None, ""):
            v = float(r[metric])
            if math.isfinite(v):
                out[r["image"]] = v
    return out


def paired(a: dict[str, float], b: dict[str, float], higher_is_better: bool) -> dict:
    """Mean per-image advantage of ``a`` over ``b`` (positive: ``a`` is better) on the images both have, its 95 %
    Student-t interval, and whether the interval lies above 0 (``better``) or below (``worse``)."""
    common = sorted(set(a) & set(b))
    d = np.array([a[k] - b[k] for k in common], dtype=np.float64) * (1 if higher_is_better else -1)
    n = len(d)
    if n < 2:
        return {"n": n, "mean": _r(d.mean()) if n else None, "ci95": None, "better": False, "worse": False}
    mean, half = float(d.mean()), float(_t975(n) * d.std(ddof=1) / math.sqrt(n))
    return {"n": n, "mean": _r(mean), "ci95": _r(half), "better": bool(mean - half > 0),
            "worse": bool(mean + half < 0)}


SETTINGS = ("model", "weights_sha256", "preset", "steps", "tolerance", "extra_metrics", "seed", "modes",
            "random_logit", "results_version")


def _run_json(folder: Path) -> dict:
    """A run folder's ``run.json`` as it is ({} when missing or unreadable: the tables then show no settings)."""
    try:
        body = json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        return {}
    return body if isinstance(body, dict) else {}


def _settings(body: dict) -> dict:
    """The settings of a run folder that change its numbers (from its ``run.json`` ``body``, the fingerprint when
    it has one; no machine paths)."""
    fp = body.get("fingerprint") if isinstance(body.get("fingerprint"), dict) else body
    return {k: fp[k] for k in SETTINGS if k in fp}


def _evaluation(folder: Path, order: list[str]) -> dict:
    rows = read_results(folder / "results.csv")
    present = list(dict.fromkeys(r["method"] for r in rows))
    methods = [m for m in order if m in present] + [m for m in present if m not in order]
    ok = [r for r in rows if not r.get("error")]
    stats = {(s["metric"], s["method"]): s for s in summarize(ok)} if ok else {}
    curves = read_curves(folder / "curves.csv")
    images = sorted({r["image"] for r in rows})
    correct = {r["image"]: r.get("correct") for r in rows}
    out = {"settings": _settings(_run_json(folder)), "images": len(images),
           "correct": sum(1 for v in correct.values() if v == "1"), "methods": {}, "fractions": None}
    values = {(m, k): per_image(ok, m, k) for m in methods for k in COMPARED}
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        entry = {"images": len(mine), "errors": sum(1 for r in mine if r.get("error")),
                 "error_example": next((r["error"] for r in mine if r.get("error")), ""), "metrics": {}}
        for k in MAIN_METRICS + tuple(EXTRA_METRICS) + ("seconds",):
            s = stats.get((k, m))
            if s is not None and s["n"]:
                entry["metrics"][k] = {"n": s["n"], "mean": _r(s["mean"]), "ci95": _r(s["ci95"])}
        if "seconds" in entry["metrics"]:  # the typical cost: the median (the mean carries a loaded machine's minutes)
            entry["metrics"]["seconds"]["median"] = _r(np.median(list(per_image(ok, m, "seconds").values())))
        entry["versus"] = {ref: {k: paired(values[m, k], values[ref, k], METRICS[k].higher_is_better)
                                 for k in COMPARED}
                           for ref in plan.REFERENCE if ref != m and (ref, COMPARED[0]) in values}
        ins, dele, fr = [], [], None
        for r in mine:
            key = (r["image"], m)
            if (*key, "insertion") in curves and (*key, "deletion") in curves and (*key, "fractions") in curves:
                fr = fr or curves[(*key, "fractions")]
                if len(curves[(*key, "insertion")]) == len(fr):
                    ins.append(curves[(*key, "insertion")])
                    dele.append(curves[(*key, "deletion")])
        if ins:
            out["fractions"] = out["fractions"] or [_r(v) for v in fr]
            entry["curves"] = {"n": len(ins), "insertion": [_r(v) for v in np.mean(ins, axis=0)],
                               "deletion": [_r(v) for v in np.mean(dele, axis=0)]}
        out["methods"][m] = entry
    for k in COMPARED:  # the leader on each compared metric, and who is within its paired interval
        hib = METRICS[k].higher_is_better
        ranked = [m for m in methods if m not in plan.REFERENCE and k in out["methods"][m]["metrics"]]
        ranked.sort(key=lambda m: -out["methods"][m]["metrics"][k]["mean"] * (1 if hib else -1))
        if ranked:
            lead = ranked[0]
            tied = [m for m in ranked[1:] if not paired(values[lead, k], values[m, k], hib)["better"]]
            out.setdefault("leaders", {})[k] = {"leader": lead, "tied": tied}
    return out


def _budgets(body: dict) -> dict:
    """{method: {parameter: value}} for the parameters a run folder's ``run.json`` ``body`` recorded other than the
    registry's defaults (``sanity --param``: a many-pass method's smaller budget)."""
    from explainers import METHODS
    from explainers.run_folder import method_params

    recorded = body.get("methods") if isinstance(body.get("methods"), dict) else {}
    out = {}
    for m, params in recorded.items():
        if m in METHODS and isinstance(params, dict):
            default = method_params([m])[m]
            changed = {k: v for k, v in params.items() if k in default and v != default[k]}
            if changed:
                out[m] = changed
    return out


def _sanity(folder: Path, order: list[str]) -> dict:
    path = folder / "sanity.csv"
    results = read_sanity(folder) if path.exists() else []
    body = _run_json(folder)
    out = {"settings": _settings(body), "methods": {}}
    budgets = _budgets(body)
    summary = {s["method"]: s for s in S.summarize(results)}
    present = list(dict.fromkeys(r.method for r in results))
    for m in [m for m in order if m in present] + [m for m in present if m not in order]:
        casc = [r for r in results if r.method == m and r.mode == "cascading"]
        ind = [r for r in results if r.method == m and r.mode == "independent"]
        entry = {"images": len({r.image for r in casc}), "independent_images": len({r.image for r in ind}),
                 "budget": budgets.get(m, {})}
        if m in summary:
            s = summary[m]
            entry.update({k: _r(s[f"spearman_{k}"]) for k in ("top_block", "top_half", "all_blocks", "random_logit")})
            entry["passes"] = bool(s["passes"])
        for key, label in (("independent_top_block", "block {top}"), ("independent_first_block", "block 0")):
            vals = [v for r in ind for st, v in zip(r.steps, r.spearman)
                    if st.label == label.format(top=r.num_layers - 1)]
            entry[key] = _r(np.mean(vals)) if vals else None
        out["methods"][m] = entry
    return out


def _sanity_done(entry: dict) -> int:
    """Images with both modes (cascading and independent, the plan's ``--mode both``)."""
    return min(entry.get("images", 0), entry.get("independent_images", 0))


def collect(root: Path | None = None, models=None) -> dict:
    """The summary of every model's reference runs under ``root`` (default ``results/``; see the module
    docstring); ``models``: default the plan's."""
    root, models = root or plan.RESULTS, models or plan.MODELS
    order = plan.methods()
    out = {"format": FORMAT, "plan": {"eval_images": plan.EVAL_IMAGES, "sanity_images": plan.SANITY_IMAGES,
                                       "many_pass_sanity_images": plan.HEAVY_SANITY_IMAGES,
                                       "many_pass": list(plan.MANY_PASS), "methods": order,
                                       "sanity_params": plan.SANITY_PARAMS,
                                       "reference": list(plan.REFERENCE)},
           "metrics": {k: {"title": METRICS[k].title, "higher_is_better": METRICS[k].higher_is_better}
                       for k in MAIN_METRICS + tuple(EXTRA_METRICS)},
           "models": []}
    for m in models:
        folder = Path(root) / m.key
        ev, san = _evaluation(folder / "evaluate", order), _sanity(folder / "sanity", order)
        coverage = {"evaluate": {x: {"done": ev["methods"].get(x, {}).get("images", 0), "expected": plan.EVAL_IMAGES}
                                 for x in order},
                    "sanity": {x: {"done": _sanity_done(san["methods"].get(x, {})), "expected": plan.sanity_images(x)}
                               for x in order}}
        entry = {"key": m.key, "title": m.title, "evaluate": ev, "sanity": san, "coverage": coverage}
        entry["reading"] = reading(entry, plan.REFERENCE)
        out["models"].append(entry)
    return out


def gaps(summary: dict) -> list[str]:
    """One line per (model, part, method) with fewer images than the plan asks for (empty when complete)."""
    out = []
    for m in summary["models"]:
        for part, cov in m["coverage"].items():
            for method, c in cov.items():
                if c["done"] < c["expected"]:
                    out.append(f"{m['key']} {part} {method}: {c['done']} of {c['expected']} images")
        errs = {x: e["errors"] for x, e in m["evaluate"]["methods"].items() if e["errors"]}
        out += [f"{m['key']} evaluate {x}: {n} rows with an error" for x, n in errs.items()]
    return out


def remaining_evaluation(summary: dict, root: Path | None = None, models=None) -> dict[str, float | None]:
    """{model key: the single-core seconds the evaluation's missing (image, method) pairs should take}: per method
    the median of (explanation + metric seconds) over its rows on that model, else on another model; None when a
    method with gaps has no rows anywhere. An estimate from the runs so far (their CPU was shared at times)."""
    root, models = Path(root or plan.RESULTS), models or plan.MODELS
    per_pair: dict[tuple[str, str], float] = {}
    for m in models:
        path = root / m.key / "evaluate" / "results.csv"
        rows = [r for r in read_results(path) if not r.get("error")] if path.exists() else []
        for method in {r["method"] for r in rows}:
            t = [float(r["seconds"]) + float(r["metric_seconds"]) for r in rows if r["method"] == method
                 and r.get("seconds") not in (None, "") and r.get("metric_seconds") not in (None, "")]
            t = [v for v in t if math.isfinite(v)]
            if t:
                per_pair[m.key, method] = float(np.median(t))
    out: dict[str, float | None] = {}
    for entry in summary["models"]:
        total = 0.0
        for method, c in entry["coverage"]["evaluate"].items():
            missing = max(0, c["expected"] - c["done"])
            if not missing:
                continue
            t = per_pair.get((entry["key"], method))
            t = t if t is not None else next((v for (k, x), v in per_pair.items() if x == method), None)
            if t is None:
                total = None
                break
            total += missing * t
        out[entry["key"]] = total
    return out


def write_json(summary: dict, path: Path) -> None:
    Path(path).write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n")  # strict JSON: no NaN
