"""The attention browser: every layer's and head's attention, for a query the user picks (a patch, clicked on
the image or chosen by row and column, or the pooling's own row: class token, average or probe).

One traced forward per (model, image) gives all the attention probabilities; they are cached with the
captures, so moving the layer slider or picking another query only redraws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
from PIL import Image
from plotly.subplots import make_subplots

import explainers
from explainers import viz
from explainers.methods._common import pooling_query

from . import cache, plots, state
from .state import Context

CHART_CONFIG = {"displaylogo": False}
POOLING_LABELS = {"token": "class token", "dist": "class + distillation tokens", "avg": "average of the patches",
                  "avg_all": "average of all tokens", "token_avg": "class token + patch average",
                  "map": "attention-pooling probe"}
POOLING, PATCH = "pooling", "patch"


@dataclass
class AttentionData:
    """One image's attention: ``A`` (layers, heads, N, N) float16 probabilities, the pooling's token weights
    ``query`` (N,), ``prefix`` tokens before the patches, the patch ``grid`` and ``patch`` (height, width) in
    pixels."""

    A: np.ndarray
    query: np.ndarray
    prefix: int
    grid: tuple[int, int]
    patch: tuple[int, int]

    def row(self, layer: int, query: tuple[int, int] | None) -> np.ndarray:
        """(heads, N) attention of the query (a patch (row, col), or None: the pooling's weighted row)."""
        A = self.A[layer].astype(np.float32)
        if query is None:
            return np.einsum("n,hnm->hm", self.query.astype(np.float32), A)
        r, c = query
        return A[:, self.prefix + r * self.grid[1] + c]

    def maps(self, layer: int, query: tuple[int, int] | None) -> tuple[np.ndarray, np.ndarray]:
        """(heads, gh, gw) attention to the patches and (heads,) the share that goes to the prefix tokens."""
        rows = self.row(layer, query)
        return rows[:, self.prefix:].reshape(-1, *self.grid), rows[:, :self.prefix].sum(-1)

    def patch_at(self, x: float, y: float) -> tuple[int, int]:
        """The (row, column) of the patch under the model-input pixel (x, y), clamped to the grid."""
        (gh, gw), (ph, pw) = self.grid, self.patch
        return int(min(gh - 1, max(0, y // ph))), int(min(gw - 1, max(0, x // pw)))


def attention_data(ctx: Context) -> AttentionData:
    """The traced attention of the context's image (one forward, cached per model and image)."""
    def make():
        model = ctx.model
        x = ctx.x()
        with torch.inference_mode():
            tr = model.trace(x)
            A = torch.stack(tr.attentions)[:, 0].float().cpu().numpy().astype(np.float16)
            q = pooling_query(model, tr)[0].float().cpu().numpy()
        ps = model.patch_size
        patch = (int(ps[0]), int(ps[1])) if isinstance(ps, (tuple, list)) else (int(ps), int(ps))
        return AttentionData(A, q, int(model.num_prefix_tokens), tuple(model.grid(x)), patch)

    return cache.cached("captures", ("attention-browser", ctx.model_key, ctx.image_hash), make)


def grid_shape(heads: int) -> tuple[int, int]:
    """(rows, cols) of the head grid: at most 4 columns, 3 for 6 or 9 heads."""
    cols = heads if heads <= 4 else (3 if heads in (6, 9) else 4)
    return math.ceil(heads / cols), cols


def _patch_box(query, patch: tuple[int, int]) -> dict | None:
    if query is None:
        return None
    (r, c), (ph, pw) = query, patch
    return dict(x0=c * pw, x1=(c + 1) * pw, y0=r * ph, y1=(r + 1) * ph)


def picker(shown: Image.Image, mean_map: np.ndarray, data: AttentionData, query, cmap: str) -> go.Figure:
    """The model input with the head-mean attention over it; a click on a patch picks it as the query (one
    invisible marker per patch centre carries the click); the query patch is outlined."""
    arr = np.asarray(shown.convert("RGB"))
    gh, gw = data.grid
    ph, pw = data.patch
    fig = go.Figure(go.Image(z=arr, hoverinfo="skip"))
    centres = (np.arange(gw) + 0.5) * pw, (np.arange(gh) + 0.5) * ph
    fig.add_trace(go.Heatmap(z=mean_map, x=centres[0], y=centres[1], colorscale=plots.colorscale(cmap),
                             opacity=0.45, showscale=False, hoverinfo="skip"))
    ys, xs = np.mgrid[0:gh, 0:gw]
    fig.add_trace(go.Scatter(
        x=((xs + 0.5) * pw).ravel(), y=((ys + 0.5) * ph).ravel(), mode="markers", showlegend=False,
        marker=dict(size=max(6, min(18, 300 // max(gh, gw))), symbol="square", opacity=0.0),
        customdata=np.stack([ys.ravel(), xs.ravel(), mean_map.ravel()], -1),
        hovertemplate="patch row %{customdata[0]}, col %{customdata[1]}<br>head-mean attention "
                      "%{customdata[2]:.3f}<extra>click to query</extra>"))
    box = _patch_box(query, data.patch)
    if box:
        fig.add_shape(type="rect", line=dict(color="white", width=3), **box)
        fig.add_shape(type="rect", line=dict(color="black", width=1), **box)
    H, W = arr.shape[:2]
    fig.update_xaxes(range=[0, W], visible=False, constrain="domain")
    fig.update_yaxes(range=[H, 0], visible=False, scaleanchor="x", constrain="domain")
    fig.update_layout(title=dict(text="Click a patch (mean of the heads shown)", font=dict(size=14)),
                      clickmode="event+select", dragmode=False)
    return plots._compact(fig, 380)


def head_grid(maps: np.ndarray, prefix_share: np.ndarray, query, data: AttentionData, cmap: str,
              layer: int) -> go.Figure:
    """One small map per head (each on its own colour range), the query patch outlined."""
    heads = maps.shape[0]
    rows, cols = grid_shape(heads)
    titles = [f"head {h + 1}" + (f" · {prefix_share[h]:.0%} to prefix" if data.prefix else "")
              for h in range(heads)]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=0.03,
                        vertical_spacing=0.12 / rows + 0.02)
    scale = plots.colorscale(cmap)
    for h in range(heads):
        r, c = divmod(h, cols)
        fig.add_trace(go.Heatmap(z=maps[h].astype(np.float64), colorscale=scale, showscale=False,
                                 hovertemplate=f"head {h + 1}<br>row %{{y}}, col %{{x}}<br>attention %{{z:.4f}}"
                                               "<extra></extra>"), row=r + 1, col=c + 1)
        if query is not None:
            qr, qc = query
            fig.add_shape(type="rect", x0=qc - 0.5, x1=qc + 0.5, y0=qr - 0.5, y1=qr + 0.5,
                          line=dict(color="white", width=2), row=r + 1, col=c + 1)
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", constrain="domain")
    for i in range(2, heads + 1):  # each subplot square
        fig.update_yaxes(scaleanchor=f"x{i}", row=(i - 1) // cols + 1, col=(i - 1) % cols + 1)
    for a in fig.layout.annotations:
        a.font = dict(size=11)
    fig.update_layout(title=dict(text=f"Layer {layer}: every head", font=dict(size=14)))
    return plots._compact(fig, 60 + 190 * rows)


def _on_click(chart_key: str, data: AttentionData) -> None:
    """A click on the picker: that patch becomes the query."""
    sel = st.session_state.get(chart_key)
    try:
        pt = sel["selection"]["points"][0]
        x, y = float(pt["x"]), float(pt["y"])
    except (TypeError, KeyError, IndexError, ValueError):
        return
    st.session_state["attn.row"], st.session_state["attn.col"] = data.patch_at(x, y)
    st.session_state["attn.query"] = PATCH


def _query_controls(data: AttentionData, pooling_label: str):
    gh, gw = data.grid
    for k, hi in (("attn.row", gh - 1), ("attn.col", gw - 1)):  # a model switch may shrink the grid
        if st.session_state.get(k) is not None and not 0 <= st.session_state[k] <= hi:
            st.session_state[k] = hi // 2
    kind = st.radio("Query", [POOLING, PATCH], horizontal=True, key="attn.query",
                    format_func=lambda k: f"The pooling's row ({pooling_label})" if k == POOLING else "A patch",
                    help="Whose attention row to show: the tokens the classifier reads, or one patch.")
    slot = st.container()  # the picker goes here, above the row and column fields
    c1, c2 = st.columns(2)
    r = c1.number_input("Patch row", 0, gh - 1, gh // 2, key="attn.row", disabled=kind == POOLING)
    c = c2.number_input("Patch column", 0, gw - 1, gw // 2, key="attn.col", disabled=kind == POOLING)
    return (None if kind == POOLING else (int(r), int(c))), slot


def page() -> None:
    st.title("Attention browser")
    st.caption("Where each head of each layer attends, for a patch you click or for the row the classifier "
               "pools. Raw softmax attention of one forward pass: no gradients, the same for every class.")
    ctx = state.context()
    if ctx is None:
        return
    try:
        with st.spinner("Tracing the attention of every layer…"):
            data = attention_data(ctx)
    except (explainers.ExplainerError, RuntimeError) as e:
        st.error(f"The attention could not be read from this model: {e}")
        return
    L, heads = data.A.shape[:2]
    pooling_label = POOLING_LABELS.get(ctx.model.pooling.kind, ctx.model.pooling.kind)
    left, right = st.columns([1, 1.6], gap="medium")
    with left:
        layer = st.slider("Layer", 1, L, L, key="attn.layer", help="1 = first block.")
        query, slot = _query_controls(data, pooling_label)
        cmap = st.selectbox("Colour map", list(viz.SEQUENTIAL), key="attn.cmap")
    maps, to_prefix = data.maps(layer - 1, query)
    with slot:
        chart_key = "attn.picker"
        st.plotly_chart(picker(ctx.shown(), maps.mean(0), data, query, cmap), key=chart_key, width="stretch",
                        config=CHART_CONFIG, on_select=lambda: _on_click(chart_key, data), selection_mode="points")
        who = f"patch (row {query[0]}, column {query[1]})" if query is not None else f"the {pooling_label}"
        st.caption(f"Query: {who} · layer {layer} of {L} · {heads} heads.")
    with right:
        st.plotly_chart(head_grid(maps, to_prefix, query, data, cmap, layer), key="attn.heads", width="stretch",
                        config=CHART_CONFIG)
        if data.prefix:
            st.caption(f"Each map is the query's attention to the {data.grid[0]}×{data.grid[1]} patches (its own "
                       f"colour range); the share that goes to the {data.prefix} prefix token(s) is in the title.")
