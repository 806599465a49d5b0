"""Captures, explanations, curves and perturbed images, cached across reruns and sessions.

A *capture* (``explainers.capture``: the forward/backward/masked passes of a method) is stored per
(model, image, method, target (its stable key, :attr:`Context.target_key`), non-cheap parameters) in a
memory-bounded LRU shared by all sessions
(:mod:`vit_explain_studio.cache`, one budget for every cache). Moving a cheap slider only calls ``explainers.render`` on
the stored capture: no model pass. Curves are cached per (capture, cheap parameters, curve settings).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import streamlit as st

import explainers
from explainers import metrics

from . import cache
from .cache import LRU
from .state import Context


def captures() -> LRU:
    """The captures of all sessions (their share of VIT_EXPLAIN_CACHE_MB, see :mod:`vit_explain_studio.cache`)."""
    return cache.store("captures")


def explanation_store() -> LRU:
    """Rendered explanations per (capture, cheap parameters): moving a slider back costs nothing."""
    return cache.store("renders")


def curve_store() -> LRU:
    return cache.store("curves")


def freeze(params: dict) -> tuple:
    return tuple(sorted((k, v) for k, v in params.items()))


def split_params(method: str, params: dict, model) -> tuple[dict, dict]:
    m = explainers.METHODS[method]
    return m.split(m.validate(params, model))


def capture_key(ctx: Context, method: str, heavy: dict) -> tuple:
    return (ctx.model_key, ctx.image_hash, method, ctx.target_key, freeze(heavy))


def get_capture(ctx: Context, method: str, params: dict,
                progress: Callable[[int, int], object] | None = None) -> explainers.Capture:
    """The method's capture for the context, from the shared cache or computed now."""
    heavy, _ = split_params(method, params, ctx.model)
    key = capture_key(ctx, method, heavy)
    store = captures()
    cap = store.get(key)
    if cap is None:
        with cache.compute_slot():  # one model pass at a time: bounded memory (studio.cache)
            cap = explainers.capture(ctx.model, ctx.image, method, ctx.target, progress, **heavy)
        store.put(key, cap)
    return cap


def explain(ctx: Context, method: str, params: dict, progress=None) -> explainers.Explanation:
    """Capture (cached) and render with the cheap parameters: no model pass when the capture is cached."""
    heavy, cheap = split_params(method, params, ctx.model)
    key = (capture_key(ctx, method, heavy), freeze(cheap))
    store = explanation_store()
    exp = store.get(key)
    if exp is None:
        cap = get_capture(ctx, method, params, progress)
        exp = explainers.render(cap, ctx.model, **cheap)
        store.put(key, exp)
    return exp


@dataclass(frozen=True)
class CurveSettings:
    preset: str = "standard"
    steps: int | None = 10  # None: the preset's own grid

    def describe(self) -> dict:
        p = metrics.get_preset(self.preset)
        return {"preset": p.name, "steps": self.steps if self.steps is not None else p.steps,
                "baseline": p.baseline.name, "score": p.score}


def curves(ctx: Context, method: str, params: dict, exp: explainers.Explanation,
           cs: CurveSettings) -> metrics.Curves:
    """Insertion/deletion curves of the explanation (cached per capture, parameters and settings)."""
    heavy, _ = split_params(method, params, ctx.model)
    key = (capture_key(ctx, method, heavy), freeze(exp.params), cs)
    store = curve_store()
    c = store.get(key)
    if c is None:
        with cache.compute_slot():
            c = metrics.insertion_deletion(ctx.model, ctx.x(), exp.heatmap, ctx.target, preset=cs.preset,
                                           steps=cs.steps)
        store.put(key, c)
    return c


REFERENCE_MAPS = ("random", "gaussian")


def reference_curves(ctx: Context, kind: str, cs: CurveSettings) -> metrics.Curves:
    """The curves of a reference map for the context's image and class: ``random`` (uniform noise seeded from
    the image) or ``gaussian`` (a centred Gaussian). Every score has a floor beside it."""
    key = ("reference", ctx.model_key, ctx.image_hash, ctx.target_key, kind, cs)
    store = curve_store()
    c = store.get(key)
    if c is None:
        grid = ctx.model.grid()
        sal = metrics.random_map(grid, metrics.seed_for(ctx.image_hash)) if kind == "random" else \
            metrics.gaussian_map(grid)
        with cache.compute_slot():
            c = metrics.insertion_deletion(ctx.model, ctx.x(), sal, ctx.target, preset=cs.preset, steps=cs.steps)
        store.put(key, c)
    return c


def perturbed_image(ctx: Context, exp: explainers.Explanation, fraction: float, kind: str, cs: CurveSettings):
    """The model input at one step of the ``kind`` curve, as an RGB uint8 array. For a negative-perturbation
    preset (Chefer et al.'s) the "insertion" curve removes the *least* relevant pixels first."""
    saliency = exp.heatmap
    if kind == "insertion" and metrics.get_preset(cs.preset).negative:
        saliency, kind = -saliency, "deletion"
    x = metrics.perturb(ctx.model, ctx.x(), saliency, fraction, kind, preset=cs.preset)
    return (ctx.model.to_pixels(x)[0].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)


class Progress:
    """A Streamlit progress bar as an ``explainers`` progress callback (the long methods report through it)."""

    def __init__(self, label: str):
        self.label = label
        self.bar = st.progress(0.0, text=label)
        self.t0 = time.perf_counter()

    def __call__(self, done: int, total: int) -> bool:
        frac = 0.0 if total <= 0 else min(1.0, done / total)
        self.bar.progress(frac, text=f"{self.label} {done}/{total} ({time.perf_counter() - self.t0:.1f} s)")
        return True

    def done(self) -> None:
        self.bar.empty()
