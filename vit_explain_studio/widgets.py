"""Widgets built from the method registry: one per :class:`explainers.Param`, with its default, range, step
and help resolved for the loaded model, plus the display controls (scaling, clip, colour map, opacity)."""

from __future__ import annotations

import re

import streamlit as st

import explainers
from explainers import viz

CHEAP_NOTE = "Redraws from the cached passes: no new forward pass."
HEAVY_NOTE = "Changing it runs the model again."


LABELS = {"libragrad": "LibraGrad (balanced backward)"}


def pretty(name: str) -> str:
    return LABELS.get(name) or name.replace("_", " ").capitalize()


def rst_to_markdown(doc: str) -> str:
    """A docstring in reStructuredText as Markdown: ``code`` and :role:`name` become `code`, paragraphs kept."""
    doc = re.sub(r":[a-z]+:`~?([^`]+)`", r"`\1`", doc)
    doc = re.sub(r"``([^`]+)``", r"`\1`", doc)
    out = []
    for block in re.split(r"\n\s*\n", doc):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        if any(line.startswith(("* ", "- ", "1. ")) for line in lines):
            out.append("\n".join(lines))  # a list: one item per line
        elif lines:
            out.append(" ".join(lines))
    return "\n\n".join(out)


def _clamp_state(key: str, lo, hi, kind: str) -> None:
    """Keep a remembered value inside the range the current model allows (e.g. start_layer after a switch
    to a shallower model); drop it when it has the wrong type."""
    if key not in st.session_state:
        return
    v = st.session_state[key]
    if v is None:
        return
    if kind in ("int", "float") and (isinstance(v, bool) or not isinstance(v, (int, float))):
        del st.session_state[key]
        return
    if lo is not None and v < lo:
        st.session_state[key] = lo
    elif hi is not None and v > hi:
        st.session_state[key] = hi


def param_widget(method: str, d: dict, key: str):
    """One widget for a parameter description ``Param.describe(model)``; returns its value."""
    label = pretty(d["name"]) + (" (0 = automatic)" if d["name"] == "batch_size" else "")
    help_ = f"{d['help']}  \n*{CHEAP_NOTE if d['cheap'] else HEAVY_NOTE}*"
    kind, lo, hi, default = d["type"], d["min"], d["max"], d["default"]
    if kind == "bool":
        return st.toggle(label, value=bool(default), key=key, help=help_, persist_state="session")
    if kind == "choice":
        choices = list(d["choices"])
        if key in st.session_state and st.session_state[key] not in choices:
            del st.session_state[key]
        return st.selectbox(label, choices, index=choices.index(default) if default in choices else 0, key=key,
                            help=help_, persist_state="session")
    cast = int if kind == "int" else float
    lo = cast(lo) if lo is not None else None
    hi = cast(hi) if hi is not None else None
    _clamp_state(key, lo, hi, kind)
    if default is not None:
        default = cast(default)
        if lo is not None:
            default = max(lo, default)
        if hi is not None:
            default = min(hi, default)
    if kind == "int":
        step = int(d["step"] or 1)
    else:
        step = float(d["step"]) if d["step"] else (float(hi - lo) / 100 if lo is not None and hi is not None
                                                    else 0.01)
    small_range = lo is not None and hi is not None and (kind == "float" or hi - lo <= 512)
    if small_range and default is not None and hi > lo:
        return st.slider(label, min_value=lo, max_value=hi, value=default, step=step, key=key, help=help_,
                         persist_state="session")
    return st.number_input(label, min_value=lo, max_value=hi, value=default, step=step, key=key, help=help_,
                           placeholder="auto", persist_state="session")


def _described(method: str, model, cheap: bool) -> list[dict]:
    return [d for d in (p.describe(model) for p in explainers.METHODS[method].params) if d["cheap"] == cheap]


def heavy_params(method: str, model, key_prefix: str = "p") -> tuple[dict, bool]:
    """The widgets of the parameters that change the model passes, in a bordered box with a Run button:
    several can be changed before the (possibly long) passes run again (see :mod:`vit_explain_studio.runs`).
    Returns ({name: value}, whether Run was clicked)."""
    values, clicked = {}, False
    heavy = _described(method, model, cheap=False)
    if heavy:
        with st.container(border=True):
            st.caption("Model passes (applied with Run)")
            for d in heavy:
                values[d["name"]] = param_widget(method, d, f"{key_prefix}.{method}.{d['name']}")
            clicked = st.button("Run", type="primary", icon=":material/play_arrow:", key=f"{key_prefix}.{method}.run")
    return values, clicked


def cheap_params(method: str, model, key_prefix: str = "p") -> dict:
    """The widgets of the post-processing parameters (no model pass). Returns {name: value}."""
    values = {}
    cheap = _described(method, model, cheap=True)
    if cheap:
        st.caption("Post-processing (instant)")
    elif not explainers.METHODS[method].params:
        st.caption("This method has no parameters.")
    for d in cheap:
        values[d["name"]] = param_widget(method, d, f"{key_prefix}.{method}.{d['name']}")
    return values


def display_controls(key_prefix: str = "view", signed: bool = False) -> tuple[dict, float]:
    """How the map is drawn (pure display: never recompute anything, never change a metric). A signed map offers
    the scalings (default symmetric: 0 is the diverging map's centre colour); every map the outlier clip, the colour
    map (its default follows the scaling: bwr for symmetric, jet otherwise) and the opacity.
    Returns ({"scale", "clip", "cmap"} for :meth:`explainers.Explanation.with_display`, opacity)."""
    scale = viz.default_scale(signed)
    if signed:
        scale = st.selectbox("Scaling", list(viz.SCALES), index=viz.SCALES.index(scale), key=f"{key_prefix}.scale",
                             persist_state="session",
                             help="How the signed map becomes colours:  \n" + "  \n".join(
                                 f"**{k}**: {v}" for k, v in viz.SCALE_HELP.items()))
    clip = st.slider(
        "Clip outliers (%)", 0.0, 10.0, 0.0, 0.5, key=f"{key_prefix}.clip", persist_state="session",
        help="The largest |values|, holding this share of the total, get the end colour, so a few extreme pixels "
             "do not wash out the rest (captum's outlier_perc).")
    diverging = scale == "symmetric"
    options = list(viz.DIVERGING + viz.SEQUENTIAL if diverging else viz.SEQUENTIAL + viz.DIVERGING)
    c1, c2 = st.columns(2)
    cmap = c1.selectbox("Colour map", options, key=f"{key_prefix}.cmap.{'div' if diverging else 'seq'}",
                        persist_state="session", help="matplotlib's colour maps (exact 256-level tables).")
    alpha = c2.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key=f"{key_prefix}.alpha", persist_state="session",
                      help="Opacity of the heatmap over the photo.")
    return {"scale": scale, "clip": clip, "cmap": cmap}, alpha
