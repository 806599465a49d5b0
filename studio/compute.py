"""Captures, explanations, curves and perturbed images, cached across reruns and sessions.

A *capture* (``explainers.capture``: the forward/backward/masked passes of a method) is stored per
(model, image, method, target, non-cheap parameters) in a memory-bounded LRU shared by all sessions
(``st.cache_resource``). Moving a cheap slider only calls ``explainers.render`` on the stored capture: no
model pass. Curves are cached per (capture, cheap parameters, curve settings).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch

import explainers
from explainers import metrics

from . import settings
from .state import Context


def _nbytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.element_size() * obj.nelement()
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    if hasattr(obj, "__dict__"):
        return sum(_nbytes(v) for v in vars(obj).values())
    return 64


class LRU:
    """A thread-safe least-recently-used map bounded by the bytes of its values."""

    def __init__(self, max_bytes: int):
        self.max_bytes = int(max_bytes)
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = self.misses = 0

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key][0]
            self.misses += 1
            return None

    def __contains__(self, key) -> bool:
        with self._lock:
            return key in self._items

    def put(self, key, value) -> None:
        size = _nbytes(value)
        with self._lock:
            if key in self._items:
                self.bytes -= self._items.pop(key)[1]
            self._items[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes and len(self._items) > 1:
                _, (_, s) = self._items.popitem(last=False)
                self.bytes -= s

    def __len__(self) -> int:
        return len(self._items)


@st.cache_resource(show_spinner=False)
def captures() -> LRU:
    """The captures of all sessions (bounded by VIT_EXPLAIN_CACHE_MB; curves share the budget's tenth)."""
    return LRU(settings.cache_bytes())


@st.cache_resource(show_spinner=False)
def explanation_store() -> LRU:
    """Rendered explanations per (capture, cheap parameters): moving a slider back costs nothing."""
    return LRU(max(16 * 2**20, settings.cache_bytes() // 10))


@st.cache_resource(show_spinner=False)
def curve_store() -> LRU:
    return LRU(max(16 * 2**20, settings.cache_bytes() // 10))


def freeze(params: dict) -> tuple:
    return tuple(sorted((k, v) for k, v in params.items()))


def split_params(method: str, params: dict, model) -> tuple[dict, dict]:
    m = explainers.METHODS[method]
    return m.split(m.validate(params, model))


def capture_key(ctx: Context, method: str, heavy: dict) -> tuple:
    return (ctx.model_key, ctx.image_hash, method, int(ctx.target), freeze(heavy))


def get_capture(ctx: Context, method: str, params: dict,
                progress: Callable[[int, int], object] | None = None) -> explainers.Capture:
    """The method's capture for the context, from the shared cache or computed now."""
    heavy, _ = split_params(method, params, ctx.model)
    key = capture_key(ctx, method, heavy)
    store = captures()
    cap = store.get(key)
    if cap is None:
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
        c = metrics.insertion_deletion(ctx.model, ctx.x(), exp.heatmap, exp.target, preset=cs.preset,
                                       steps=cs.steps)
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
