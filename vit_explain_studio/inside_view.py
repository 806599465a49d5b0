"""Inside the model: the logit lens, head importance and high-norm artefact tokens of the chosen image and target
(:mod:`explainers.inside`), plus the small high-norm check on the attention-based method pages.

Every result is cached with the captures per (model, image, target[, ablation]): moving a slider, changing the
colour range or clicking a cell of the head grid only redraws. The head's attention shown for a clicked cell is the
attention browser's traced pass (cached under the same key, shared with that page).
"""

from __future__ import annotations

import numpy as np
import streamlit as st
from PIL import Image

import explainers
from explainers import viz
from explainers.inside import ABLATIONS, RATIO, high_norm

from . import cache, inside_plots, state
from .attention_browser import POOLING_LABELS, attention_data
from .state import Context

CHART_CONFIG = {"displaylogo": False}
VIEWS = {"lens": "Logit lens", "heads": "Head importance", "norms": "Artefact tokens"}
AUTO_HEADS = 64  # head importance runs by itself up to this many (layer, head) cells; larger models ask first
TILE = 128
ATTENTION_BASED = ("attention", "transformer_attribution")  # a method family, or a method name


def lens(ctx: Context):
    return cache.cached("captures", ("inside-lens", ctx.model_key, ctx.image_hash, ctx.target_key),
                        lambda: explainers.logit_lens(ctx.model, ctx.x(), ctx.target))


def heads_key(ctx: Context, ablation: str) -> tuple:
    return ("inside-heads", ctx.model_key, ctx.image_hash, ctx.target_key, ablation)


def heads(ctx: Context, ablation: str, progress=None):
    return cache.cached("captures", heads_key(ctx, ablation),
                        lambda: explainers.head_importance(ctx.model, ctx.x(), ctx.target, ablation, progress))


def norms(ctx: Context):
    return cache.cached("captures", ("inside-norms", ctx.model_key, ctx.image_hash),
                        lambda: explainers.token_norms(ctx.model, ctx.x()))


def _tile(shown: Image.Image, m: np.ndarray, lo: float, hi: float, cmap: str) -> Image.Image:
    z = np.zeros_like(m) if hi - lo <= 1e-12 else (m - lo) / (hi - lo)
    heat = np.asarray(Image.fromarray((np.clip(z, 0, 1) * 255).astype(np.uint8)).resize((TILE, TILE),
                                                                                      Image.BILINEAR)) / 255.0
    return viz.overlay(shown.convert("RGB").resize((TILE, TILE)), heat, alpha=0.55, cmap=cmap)


def _score_name(ctx: Context, r) -> str:
    """What the pooled score is: a class probability, a difference of two, or the target's own score."""
    from explainers.targets import ClassLogit, Contrast

    t = ctx.target
    if t is None or isinstance(t, (int, np.integer, ClassLogit)):
        return "probability"
    return "probability difference" if isinstance(t, Contrast) else "score"


def lens_view(ctx: Context) -> None:
    with st.spinner("Reading the residual stream after every block…"):
        r = lens(ctx)
    st.plotly_chart(inside_plots.lens_curve(r, _score_name(ctx, r)), key="inside.lens_curve", width="stretch",
                    config=CHART_CONFIG)
    if r.decided_at is not None:
        st.caption(f"The pooled representation's top class is the model's final one from block {r.decided_at + 1} "
                   f"of {r.layers} on. Hover a point for the five most probable classes after that block.")
    c1, c2 = st.columns(2)
    shared = c1.toggle("One colour range for all blocks", value=False, key="inside.lens_shared",
                       help="Off: each block's map on its own range (where, within the block); on: one range "
                            "(how strongly, across blocks).")
    cmap = c2.selectbox("Colour map", list(viz.COLORMAPS), key="inside.cmap")
    maps = r.patch_maps
    shown = ctx.shown()
    tiles = [_tile(shown, m, float((maps if shared else m).min()), float((maps if shared else m).max()), cmap)
             for m in maps]
    st.image(tiles, caption=[f"block {i + 1}: {r.pooled[i]:.3f}" for i in range(r.layers)], width=TILE)
    st.caption(f"Each map: the value of *{r.label}* when the model's final norm and head read one patch token "
               "alone after that block (the pooled score under each block).")


def _on_cell(chart_key: str, L: int, H: int) -> None:
    sel = st.session_state.get(chart_key)
    try:
        pt = sel["selection"]["points"][0]
        head, layer = int(round(float(pt["x"]))), int(round(float(pt["y"])))
    except (TypeError, KeyError, IndexError, ValueError):
        return
    if 1 <= layer <= L and 1 <= head <= H:
        st.session_state["inside.layer"], st.session_state["inside.head"] = layer, head


def _head_attention(ctx: Context, layer: int, head: int) -> None:
    data = attention_data(ctx)
    maps, to_prefix = data.maps(layer - 1, None)
    pooling = POOLING_LABELS.get(ctx.model.pooling.kind, ctx.model.pooling.kind)
    m = maps[head - 1]
    st.image(_tile(ctx.shown(), m, float(m.min()), float(m.max()), "jet").resize((256, 256)),
             caption=f"Block {layer}, head {head}: attention from the {pooling}"
                     + (f" ({to_prefix[head - 1]:.0%} to the prefix tokens)" if data.prefix else ""))


def heads_view(ctx: Context) -> None:
    model = ctx.model
    L, H = model.num_layers, model.num_heads
    ablation = st.radio("Ablation", list(ABLATIONS), horizontal=True, key="inside.ablation",
                        format_func=lambda a: f"{a}: {ABLATIONS[a]}")
    if heads_key(ctx, ablation) not in cache.store("captures") and L * H > AUTO_HEADS:
        st.info(f"{L} x {H} heads: about {(H + 1) * (L + 1) / 2:.0f} forward passes.")
        if not st.button("Compute head importance", key="inside.run_heads", icon=":material/play_arrow:"):
            return
    bar = st.progress(0.0, text="Removing each head in turn…")
    try:
        r = heads(ctx, ablation, lambda done, total: bar.progress(done / total, text=f"block {done}/{total}"))
    finally:
        bar.empty()
    for k, hi in (("inside.layer", L), ("inside.head", H)):
        if not 1 <= st.session_state.get(k, 1) <= hi:
            st.session_state[k] = 1
    left, right = st.columns([1.4, 1], gap="medium")
    with right:
        c1, c2 = st.columns(2)
        layer = c1.number_input("Block", 1, L, L, key="inside.layer")
        head = c2.number_input("Head", 1, H, 1, key="inside.head")
        _head_attention(ctx, int(layer), int(head))
        drop = r.scores[layer - 1, head - 1]
        flips = " and changes the predicted class" if r.flips[layer - 1, head - 1] else ""
        st.caption(f"Removing it moves the {_score_name(ctx, r)} of *{r.label}* from {r.base_score:.4f} by "
                   f"{-drop:+.4f}{flips}.")
    with left:
        chart_key = "inside.grid"
        st.plotly_chart(inside_plots.head_grid(r, (int(layer) - 1, int(head) - 1)), key=chart_key, width="stretch",
                        config=CHART_CONFIG, on_select=lambda: _on_cell(chart_key, L, H), selection_mode="points")
        st.caption("Click a cell to see that head's attention. Red: the head supports the target; blue: it works "
                   f"against it. {r.forward_passes:.0f} forward passes' worth of blocks.")
    st.plotly_chart(inside_plots.layer_bars(r), key="inside.layers", width="stretch", config=CHART_CONFIG)


def norms_view(ctx: Context) -> None:
    with st.spinner("Measuring the tokens…"):
        r = norms(ctx)
    layer = st.slider("After block", 1, r.layers, r.layers, key="inside.norm_layer",
                      help="The artefacts of large models appear in the middle blocks and stay to the output.") - 1
    pm = r.patch_maps[layer]
    flags, thr = high_norm(pm)
    left, right = st.columns([1, 1.3], gap="medium")
    with left:
        from explainers.inside.cli import norms_overlay

        st.image(norms_overlay(pm, flags, ctx.shown(), size=320), width=320,
                 caption=f"Patch-token norms after block {layer + 1}; high-norm tokens outlined")
    with right:
        st.plotly_chart(inside_plots.norm_histogram(r, layer, thr), key="inside.hist", width="stretch",
                        config=CHART_CONFIG)
    n = int(flags.sum())
    st.caption(f"**{n} high-norm token{'s' if n != 1 else ''}** (norm > {RATIO:g} x the median patch norm, "
               f"{thr:.1f}). Darcet et al. (2024) found such tokens in large ViTs: low-information patches reused "
               "as global stores, the bright background spots of attention maps."
               + (f" This model has {r.num_registers} registers (green lines) that absorb them."
                  if r.num_registers else ""))


def page() -> None:
    ctx = state.page_context("Inside the model", "When the model decides (logit lens), which attention heads "
                             "carry the target (head importance) and which tokens hold outsized norms (artefacts).")
    if ctx is None:
        return
    view = st.segmented_control("View", list(VIEWS), format_func=VIEWS.get, key="inside.view", default="lens")
    try:
        {"lens": lens_view, "heads": heads_view, "norms": norms_view}[view or "lens"](ctx)
    except explainers.ExplainerError as e:
        st.error(f"{VIEWS[view or 'lens']} could not be computed: {e}")


# -- the small check on the attention-based method pages ------------------------------------------------------
def is_attention_based(method: str) -> bool:
    return method in ATTENTION_BASED or explainers.METHODS[method].family in ATTENTION_BASED


def high_norm_toggle(ctx: Context, exp: explainers.Explanation, key: str) -> None:
    """A toggle: whether the map's brightest patches are the model's high-norm output tokens."""
    if not is_attention_based(exp.method) or not st.toggle(
            "High-norm tokens", key=f"{key}.high_norm",
            help="Are the map's brightest patches high-norm artefact tokens (Darcet et al. 2024)? One forward."):
        return
    r = norms(ctx)
    if tuple(exp.patch_map.shape) != tuple(r.grid):
        return
    hits, k = r.brightest_overlap(exp.patch_map)
    found = ", ".join(f"({a}, {b})" for a, b in r.outlier_patches()[:8]) or "none"
    st.caption(f"{hits} of the map's {k} brightest patch{'es' if k > 1 else ''} "
               f"{'are' if hits != 1 else 'is'} high-norm tokens. High-norm patches (row, column): {found}.")


__all__ = ["page", "high_norm_toggle", "lens", "heads", "norms"]
