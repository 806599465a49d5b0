"""The landing page: the two-class story with no click. A class-specific method explains the photo of a dog
and a cat (``both.png``, the sidebar's default) twice, once for the bull mastiff and once for the tiger cat,
side by side; one click on another class redraws the right-hand map for it."""

from __future__ import annotations

import dataclasses

import streamlit as st

import explainers
from explainers import METHODS

from . import compute, settings, state
from .views import name_of, overlay_tile

STORY = (243, 282)  # bull mastiff, tiger cat: the classic two-class example (Chefer et al.'s figure)
LANDING_METHODS = ("transformer_attribution", "generic_attention", "gradient_rollout")


def story_classes(ctx: state.Context) -> tuple[int, int]:
    """The two classes shown first: the dog and the cat when the model ranks both in its top 5 (the bundled
    both.png), else the model's two most likely classes."""
    if all(c in ctx.top5 for c in STORY) and ctx.model.num_classes == 1000:
        return STORY
    return ctx.top5[0], ctx.top5[1]


def _map(ctx: state.Context, method: str, target: int, slot) -> None:
    c = dataclasses.replace(ctx, target=int(target))
    label = ctx.model.labels[target].split(",")[0]
    try:
        with slot.container(), st.spinner(f"Explaining “{label}”…"):
            exp = compute.explain(c, method, {})
    except explainers.ExplainerError as e:
        slot.error(f"{name_of(method)} failed for {label}: {e}")
        return
    with slot.container():
        st.image(overlay_tile(c, exp), width="stretch",
                 caption=f"{label} · {exp.probability:.1%} · {name_of(method)}")


def home_page() -> None:
    st.title("ViT Explain Studio")
    st.markdown("**Why did the Vision Transformer say that?** The same photo, explained for two different "
                "classes: a class-specific explanation lights up the dog for *bull mastiff* and the cat for "
                "*tiger cat*.")
    ctx = state.context()
    if ctx is None:
        return
    if ctx.model.num_classes < 2:  # a backbone or an image-text tower: no classes to tell apart
        st.info(f"{ctx.model_key[0].rsplit('/', 1)[-1]} has no classifier, so there is no two-class story here. The "
                "explainer pages explain what the sidebar's target says: the similarity to a region of the image, or "
                "for CLIP/SigLIP models a text prompt.")
        return
    methods = [m for m in LANDING_METHODS if m in METHODS] or [m for m in METHODS if METHODS[m].class_specific][:1]
    a, b = story_classes(ctx)
    others = [c for c in ctx.top5 if c != a]
    left_col, right_col, side = st.columns([1, 1, 0.8], gap="medium")
    slots = (left_col.empty(), right_col.empty())
    for slot in slots:  # placeholders at once; the maps replace them as they finish
        slot.caption("Explaining…")
    with side:
        pick = st.pills("Explain another class (one click)", others, default=b if b in others else others[0],
                        key="home.other",
                        format_func=lambda i: f"{ctx.model.labels[i].split(',')[0]} · {ctx.probs[i]:.0%}")
        searched = st.selectbox("…or search all the classes", range(ctx.model.num_classes), index=None,
                                key="home.any", placeholder="Search all classes…",
                                format_func=lambda i: f"{i} · {ctx.model.labels[i]} ({ctx.probs[i]:.2%})")
        method = st.radio("Method", methods, format_func=name_of, key="home.method",
                          help="Class-specific methods: each class gets its own map.")
    right = searched if searched is not None else (pick if pick is not None else b)
    _map(ctx, method, a, slots[0])
    _map(ctx, method, right, slots[1])
    st.caption(f"{ctx.image_name} · model {ctx.model_key[0].rsplit('/', 1)[-1]} · red = most relevant. The sidebar "
               "chooses the model, the photo (gallery, upload or camera) and the class the other pages explain.")
    st.subheader("More methods")
    cols = st.columns(3)
    for i, spec in enumerate(s for s in settings.EXPLAINER_PAGES if s.available()):
        cols[i % 3].page_link(settings.page(spec.key), label=spec.title, icon=spec.icon)
    cols = st.columns(3)
    cols[0].page_link(settings.page("compare"), label="Compare all methods", icon=":material/compare:")
    cols[1].page_link(settings.page("evaluate"), label="Evaluate on many images", icon=":material/analytics:")
