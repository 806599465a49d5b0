"""Sanity checks for explanation methods: model parameter randomisation (Adebayo et al. 2018) and the
random-logit test (Sixt et al. 2020).

    results = sanity_check(model, image, ["attention_rollout", "chefer_rollout"], mode="cascading")
    results[0].spearman      # similarity to the original map at each step (original first)
    results[0].passes()      # False: the map barely changes once the top half of the model is random

A copy of the model is randomised step by step (cascading: the head, then the blocks from the last down to the
first, then the embeddings; independent: one group at a time) and every method explains the same class on it
(the original model's prediction unless ``target`` is given). The shared model is never changed.

**Pass rule**: a method passes when the Spearman rank correlation between its original map and its map with the
head and the top half of the blocks randomised is below :data:`PASS_THRESHOLD` (0.5). A map that does not
depend on the weights keeps a similarity of 1 and fails. The random-logit test explains a random other class on
the original model; a similarity near 1 means the map does not depend on the class.

Command line::

    python -m explainers sanity --model M [--weights P] --methods all|a,b --images DIR [--limit N] --out DIR

(:mod:`explainers.sanity_run`: resumable) writes ``sanity.csv`` (one row per image, method, mode and
step), ``summary.csv`` / ``summary.md`` (mean
similarity after randomising the top block, the top half and all blocks, random-logit similarity, verdict) and
``sanity.html`` (a self-contained Plotly page: similarity against randomised depth, one curve per method).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from .errors import Cancelled, InvalidParameterError
from .metrics import randomisation as R
from .metrics.reference import gaussian_map, random_map, seed_for

__all__ = ["PASS_THRESHOLD", "SanityResult", "sanity_check", "random_logit_check", "resolve_methods", "summarize",
           "summary_markdown", "figure"]  # run_sanity, read_results, add_cli: explainers.sanity_run (also here)

PASS_THRESHOLD = 0.5
REFERENCE = ("random", "gaussian")  # maps that ignore the model: they must fail


@dataclass
class SanityResult:
    """One method on one image in one mode: the similarity of each step's map to the original map."""

    method: str
    image: str
    mode: str
    target: int
    steps: list[R.Step]
    spearman: list[float]
    ssim: list[float]
    topk: list[float]
    seconds: float = 0.0
    num_layers: int = 0
    maps: list[np.ndarray] = field(default_factory=list)  # (H, W) heatmaps per step, when kept
    other_class: int | None = None  # random-logit test
    random_logit: dict = field(default_factory=dict)

    def at_blocks(self, blocks: int, metric: str = "spearman") -> float:
        """Similarity once ``blocks`` blocks (from the top, with the head) are random (cascading mode)."""
        vals = getattr(self, metric)
        for s, v in zip(self.steps, vals):
            if s.blocks == blocks and "head" in s.groups and "embeddings" not in s.groups and len(s.groups) > 1:
                return v
        return float("nan")

    def passes(self, threshold: float = PASS_THRESHOLD, num_layers: int | None = None) -> bool:
        """Spearman similarity below ``threshold`` once the head and the top half of the blocks are random
        (False when that step was not run)."""
        L = num_layers or self.num_layers or max(s.blocks for s in self.steps)
        v = self.at_blocks(max(1, math.ceil(L / 2)))
        return bool(np.isfinite(v) and v < threshold)

    def rows(self) -> list[dict]:
        base = {"image": self.image, "method": self.method, "target": self.target}
        out = [{**base, "mode": self.mode, "step": s.index, "label": s.label, "blocks_randomised": s.blocks,
                "spearman": a, "ssim": b, "topk": c} for s, a, b, c in zip(self.steps, self.spearman, self.ssim,
                                                                             self.topk)]
        if self.random_logit:
            out.append({**base, "mode": "random_logit", "step": 1, "label": f"class {self.other_class}",
                        "blocks_randomised": 0, **self.random_logit})
        return out


def resolve_methods(methods) -> list[str]:
    """"all" (every registered method) / "a,b" / a list; "random" and "gaussian" add reference maps."""
    from .registry import METHODS

    if methods is None or methods == "all" or methods == ["all"]:
        return list(METHODS)
    names = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else [str(m) for m in methods]
    out: list[str] = []
    for n in filter(None, names):
        if n == "all":
            out += [m for m in METHODS if m not in out]
        elif n not in METHODS and n not in REFERENCE:
            raise InvalidParameterError(f"unknown method {n!r}; available: {', '.join([*METHODS, *REFERENCE])}")
        elif n not in out:
            out.append(n)
    if not out:
        raise InvalidParameterError("no methods to check")
    return out


def _heatmap(model, x, method, target, params: dict, name: str) -> tuple[np.ndarray, int]:
    """(H, W) map in [0, 1] and the explained class. ``method``: a registered name, a reference map name, or a
    callable ``(model, x, target) -> (H, W) map`` (e.g. a map that ignores the model)."""
    from .api import explain, upsample

    if callable(method):
        return np.asarray(method(model, x, target), dtype=np.float64), int(target)
    if method in REFERENCE:
        import torch

        grid = model.grid(x)
        m = random_map(grid, seed_for(name)) if method == "random" else gaussian_map(grid)
        return upsample(torch.from_numpy(m)[None], tuple(x.shape[-2:]))[0].numpy().astype(np.float64), int(target)
    exp = explain(model, x, method, target=target, **params.get(method, {}))
    return exp.heatmap.astype(np.float64), int(exp.target)


def sanity_check(model, image, methods: Iterable, mode: str = "cascading", target=None, seed: int = 0,
                 params: dict | None = None, name: str = "image", random_logit: bool = True, keep_maps: bool = False,
                 k: float = 0.1, steps: int | None = None, progress: Callable | None = None) -> list[SanityResult]:
    """Randomisation check of ``methods`` on one image (a PIL image, path or (1, 3, H, W) model input).

    methods: names (registered methods, "random", "gaussian") or ``(name, callable)`` pairs.
    mode: "cascading" or "independent". target: the class explained at every step (default: the original
    model's prediction). seed: the randomisation (and random-logit) seed. params: {method: parameters}.
    keep_maps: keep every step's heatmap (for display). steps: run only the first ``steps`` randomisation steps
    (default: all; the verdict needs the top half). progress: ``callback(done, total)``; returning False
    (or raising :class:`Cancelled`) stops the run.
    """
    import torch

    from .api import to_input

    if mode not in ("cascading", "independent"):
        raise InvalidParameterError(f"mode must be 'cascading' or 'independent', got {mode!r}")
    named = [(m if isinstance(m, str) else m[0], m if isinstance(m, str) else m[1]) for m in methods]
    if not named:
        raise InvalidParameterError("no methods to check")
    params = params or {}
    x, _ = to_input(model, image)
    x = x[:1]
    if target is None:
        with torch.inference_mode():
            target = int(model.forward(x).argmax(-1)[0])
    twin = R.copy_model(model)
    groups = dict(R.parameter_groups(twin))
    plan = (R.cascading_steps if mode == "cascading" else R.independent_steps)(twin.num_layers)
    if steps is not None:
        if int(steps) < 1:
            raise InvalidParameterError(f"steps must be >= 1, got {steps}")
        plan = plan[:int(steps) + 1]
    total = len(plan) * len(named) + (len(named) if random_logit else 0)
    done = 0

    def tick():
        nonlocal done
        done += 1
        if progress is not None and progress(done, total) is False:
            raise Cancelled("the sanity check was cancelled")

    maps: dict[str, list[np.ndarray]] = {n: [] for n, _ in named}
    secs = dict.fromkeys(maps, 0.0)
    saved: dict[str, dict] = {}
    random_now: set[str] = set()
    params_of = dict(twin.module.named_parameters())
    for step in plan:
        want = set(step.groups)
        for g in sorted(random_now - want):  # independent mode: put the previous group back
            with torch.no_grad():
                for pname, value in saved.pop(g).items():
                    params_of[pname].copy_(value)
            random_now.discard(g)
        for g in step.groups:
            if g not in random_now:
                if mode == "independent":
                    saved[g] = {p: params_of[p].detach().clone() for p in groups[g]}
                R.randomise_(twin.module, groups[g], seed, g)
                random_now.add(g)
        for n, fn in named:
            t0 = time.perf_counter()
            maps[n].append(_heatmap(twin, x, fn, target, params, name)[0])
            secs[n] += time.perf_counter() - t0
            tick()
    results = []
    for n, fn in named:
        compare = R.MapComparer(maps[n][0], k)
        sims = [compare(m) for m in maps[n]]
        res = SanityResult(method=n, image=name, mode=mode, target=int(target), steps=plan,
                           spearman=[s["spearman"] for s in sims], ssim=[s["ssim"] for s in sims],
                           topk=[s["topk"] for s in sims], seconds=secs[n], num_layers=twin.num_layers,
                           maps=maps[n] if keep_maps else [])
        if random_logit:
            res.other_class, res.random_logit = _random_logit(model, x, fn, maps[n][0], target, seed, params, name, k)
            tick()
        results.append(res)
    return results


def _random_logit(model, x, fn, original, target, seed, params, name, k) -> tuple[int, dict]:
    other = R.random_other_class(model.num_classes, target, seed)
    return other, R.similarities(original, _heatmap(model, x, fn, other, params, name)[0], k)


def random_logit_check(model, image, methods: Iterable, target=None, seed: int = 0, params: dict | None = None,
                       name: str = "image", k: float = 0.1) -> dict[str, dict]:
    """The random-logit test alone (Sixt et al. 2020): {method: {"other_class", "spearman", "ssim", "topk"}},
    the similarity of the map for ``target`` (default: the prediction) to the map for a random other class."""
    import torch

    from .api import to_input

    x = to_input(model, image)[0][:1]
    if target is None:
        with torch.inference_mode():
            target = int(model.forward(x).argmax(-1)[0])
    out = {}
    for m in methods:
        n, fn = (m, m) if isinstance(m, str) else m
        original = _heatmap(model, x, fn, int(target), params or {}, name)[0]
        other, sims = _random_logit(model, x, fn, original, int(target), seed, params or {}, name, k)
        out[n] = {"other_class": other, **sims}
    return out


# -- batches of images, reports ------------------------------------------------------------------------------
def _mean(values) -> float:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def summarize(results: list[SanityResult], threshold: float = PASS_THRESHOLD) -> list[dict]:
    """Per method (cascading results): mean Spearman similarity after randomising the top block, the top half
    and all blocks, mean random-logit similarity, and the verdict (passes when the top-half mean < threshold)."""
    out = []
    for m in dict.fromkeys(r.method for r in results):
        rs = [r for r in results if r.method == m and r.mode == "cascading"]
        if not rs:
            continue
        L = rs[0].num_layers
        row = {"method": m, "images": len(rs)}
        for key, blocks in (("top_block", 1), ("top_half", max(1, math.ceil(L / 2))), ("all_blocks", L)):
            for metric in R.SIMILARITIES:
                row[f"{metric}_{key}"] = _mean([r.at_blocks(blocks, metric) for r in rs])
        rl = [r.random_logit.get("spearman", np.nan) for r in rs if r.random_logit]
        row["spearman_random_logit"] = _mean(rl)
        row["passes"] = bool(row["spearman_top_half"] < threshold)
        out.append(row)
    return out


def summary_markdown(summary: list[dict]) -> str:
    lines = ["| method | top block | top half | all blocks | random logit | verdict |", "|---|---|---|---|---|---|"]
    for r in summary:
        cells = [f"{r[f'spearman_{k}']:.2f}" for k in ("top_block", "top_half", "all_blocks", "random_logit")]
        lines.append(f"| {r['method']} | " + " | ".join(cells) + f" | {'pass' if r['passes'] else 'FLAGGED'} |")
    return "\n".join(lines) + "\n"


_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd")


def figure(results: list[SanityResult], mode: str = "cascading", threshold: float = PASS_THRESHOLD):
    """Plotly figure: mean Spearman and SSIM similarity against the randomisation step, one curve per method."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rs_all = [r for r in results if r.mode == mode]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Spearman rank correlation", "SSIM"))
    labels = [s.label for s in rs_all[0].steps] if rs_all else []
    for i, m in enumerate(dict.fromkeys(r.method for r in rs_all)):
        rs = [r for r in rs_all if r.method == m]
        for col, metric in ((1, "spearman"), (2, "ssim")):
            y = np.nanmean(np.array([getattr(r, metric) for r in rs], dtype=float), axis=0)
            fig.add_trace(go.Scatter(x=list(range(len(y))), y=y, mode="lines+markers", name=m, legendgroup=m,
                                     showlegend=col == 1, line={"color": _COLOURS[i % len(_COLOURS)],
                                                                "dash": "dot" if m in REFERENCE else "solid"},
                                     customdata=labels, hovertemplate=f"{m}<br>%{{customdata}}<br>%{{y:.3f}}"
                                                                      f"<extra>n={len(rs)}</extra>"),
                          row=1, col=col)
    fig.add_hline(y=threshold, line_dash="dash", line_color="grey", row=1, col=1)
    fig.update_xaxes(tickmode="array", tickvals=list(range(len(labels))), ticktext=labels, tickangle=-45)
    fig.update_yaxes(title_text="similarity to the original map", range=[-0.2, 1.05])
    fig.update_layout(title=f"Model parameter randomisation ({mode}): similarity against randomised depth",
                      template="plotly_white", height=560)
    return fig


def __getattr__(name):  # the command's code lives in sanity_run (it imports this module)
    if name in ("run_sanity", "read_results", "add_cli"):
        from . import sanity_run

        return getattr(sanity_run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
