"""The Sanity check page: model parameter randomisation (Adebayo et al. 2018) and the random-logit test (Sixt et
al. 2020) on the current image. For each chosen method, a strip of maps as the model copy is randomised from the
top (the original first), and beneath, the similarity to the original map at each step, one curve per method.

Each method's run is computed with a progress bar and a Cancel button (a click reruns the script, which stops
the run; nothing is kept) and cached per (model, image, class, method, mode, seed) in a memory-bounded store
shared by all sessions, so adding a method computes only that one. The library does the work
(:func:`explainers.sanity.sanity_check`, on a copy: the shared model is never changed).
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

import explainers
from explainers import METHODS, sanity, viz

from . import cache, compute, state
from .views import CHART_CONFIG, name_of

DEFAULT_METHODS = ("attention_rollout", "chefer_rollout", "attention_gradcam", "transformer_attribution")
THUMB = 112  # pixels per map in the strip
SIMILARITY = {"spearman": "Spearman rank correlation", "ssim": "SSIM", "topk": "Top-10% intersection"}


def _store() -> cache.LRU:
    """Sanity results of all sessions (maps kept as uint8 thumbnails-to-be): the "sanity" share of the one cache
    budget (:data:`studio.cache.SHARES`)."""
    return cache.store("sanity")


def _job(ctx, method: str, mode: str, seed: int) -> tuple:
    return ("sanity", ctx.model_key, ctx.image_hash, ctx.target_key, method, mode, int(seed))


def _cancel(flag: str, job) -> None:
    st.session_state[flag] = job


def _compute(ctx, method: str, mode: str, seed: int, key: str, stopped: bool):
    """The cached result, or computed now with a progress bar and Cancel; None when cancelled, stopped (a
    previous method of this run was cancelled) or failed."""
    job = _job(ctx, method, mode, seed)
    res = _store().get(job)
    if res is not None or stopped:
        return res
    flag = f"{key}.cancelled"
    if st.session_state.get(flag) == job:
        st.warning(f"{name_of(method)}: cancelled; the methods after it were not run.")
        if st.button("Run again", key=f"{key}.again.{method}"):
            st.session_state.pop(flag, None)
            st.rerun()
        return None
    slot = st.empty()
    try:
        with slot.container(), cache.compute_slot():  # one computation at a time (bounded memory)
            st.button("Cancel", key=f"{key}.cancel.{method}", on_click=_cancel, args=(flag, job),
                      icon=":material/stop:", help="Stop this check (nothing is kept).")
            prog = compute.Progress(f"{name_of(method)}: explaining on the randomised copies…")
            res, = sanity.sanity_check(ctx.model, ctx.image, [method], mode=mode, target=ctx.target, seed=seed,
                                       name=ctx.image_name, keep_maps=True, progress=prog)
    except explainers.Cancelled:
        slot.empty()
        st.warning(f"{name_of(method)}: cancelled.")
        return None
    except explainers.ExplainerError as e:
        slot.empty()
        st.error(f"{name_of(method)} failed: {e}")
        return None
    slot.empty()
    res.maps = [np.round(np.clip(m, 0, 1) * 255).astype(np.uint8) for m in res.maps]
    _store().put(job, res)
    return res


def _strip(ctx, res) -> None:
    shown = ctx.shown()
    tiles, captions = [], []
    for step, m, sim in zip(res.steps, res.maps, res.spearman):
        ov = viz.overlay(shown, m.astype(np.float32) / 255.0, 0.5, "jet").resize((THUMB, THUMB), Image.BILINEAR)
        tiles.append(ov)
        captions.append(step.label if step.index == 0 else f"{step.label} · ρ={sim:.2f}")
    st.image(tiles, caption=captions, width=THUMB)


def _figure(results: list, metric: str) -> go.Figure:
    fig = go.Figure()
    labels = [s.label for s in results[0].steps]
    for r in results:
        fig.add_trace(go.Scatter(x=list(range(len(labels))), y=getattr(r, metric), mode="lines+markers",
                                 name=name_of(r.method), customdata=labels,
                                 hovertemplate=f"{name_of(r.method)}<br>%{{customdata}}<br>%{{y:.3f}}<extra></extra>"))
    if metric == "spearman":
        fig.add_hline(y=sanity.PASS_THRESHOLD, line_dash="dash", line_color="grey",
                      annotation_text="pass threshold", annotation_position="bottom right")
    fig.update_xaxes(tickmode="array", tickvals=list(range(len(labels))), ticktext=labels, tickangle=-40)
    fig.update_yaxes(title_text=f"{SIMILARITY[metric]} to the original map", range=[-0.25, 1.05])
    fig.update_layout(height=440, margin=dict(l=10, r=36, t=30, b=10), template="plotly_white",
                      legend=dict(orientation="h", y=-0.45))
    return fig


def sanity_page() -> None:
    st.title("Sanity checks")
    st.caption("Does a map read the model? The model's weights are randomised step by step on a copy (the head "
               "first, then the blocks from the last down, then the embeddings) and each method explains the same "
               f"class again. A method passes when its map's rank correlation with the original falls below "
               f"{sanity.PASS_THRESHOLD} once the top half of the blocks is random (Adebayo et al. 2018); a map "
               "that stays the same does not depend on what the model learnt.")
    ctx = state.context()
    if ctx is None:
        return
    if not isinstance(ctx.target, int):  # the randomisation tests compare maps of one class
        st.info("The sanity checks explain a class: choose **Class** as the target in the sidebar." if
                ctx.model.num_classes else "The sanity checks explain a class, and this model has no classifier.")
        return
    names = list(METHODS)
    chosen = st.multiselect("Methods", names, default=[n for n in DEFAULT_METHODS if n in names],
                            format_func=name_of, key="san.methods", persist_state="session")
    c1, c2, c3 = st.columns([1.4, 1.4, 1])
    mode = c1.radio("Randomisation", ["cascading", "independent"], key="san.mode", horizontal=True,
                    help="Cascading: layers stay random as the next ones are randomised. Independent: one layer "
                         "at a time, the rest trained.")
    metric = c2.radio("Similarity", list(SIMILARITY), format_func=SIMILARITY.get, key="san.metric", horizontal=True)
    seed = int(c3.number_input("Seed", 0, 10_000, 0, key="san.seed"))
    if not chosen:
        st.info("Choose at least one method.")
        return
    steps = ctx.model.num_layers + 3
    st.caption(f"Each method explains {steps} times (the original and {steps - 1} randomised copies) plus once "
               f"for the random-logit test. Explained: **{ctx.label}**.")
    results, stopped, skipped = [], False, []
    for method in chosen:
        res = _compute(ctx, method, mode, seed, "san", stopped)
        if res is None:
            stopped = True
            if st.session_state.get("san.cancelled") != _job(ctx, method, mode, seed):
                skipped.append(name_of(method))
            continue
        results.append(res)
        st.subheader(name_of(method))
        _strip(ctx, res)
        verdict = ("passes" if res.passes() else "**flagged**: the map barely changes") if mode == "cascading" \
            else "independent mode: see the curve"
        rl = res.random_logit.get("spearman")
        st.caption(f"{verdict} · random-logit test (class {res.other_class}): ρ = {rl:.2f}"
                   + (" (the map ignores the class)" if rl is not None and rl > 0.9 else "")
                   + f" · {res.seconds:.1f} s")
    if skipped:
        st.caption(f"Not run: {', '.join(skipped)}.")
    if results:
        st.subheader("Similarity to the original map")
        st.plotly_chart(_figure(results, metric), key="san.curve", width="stretch", config=CHART_CONFIG)
