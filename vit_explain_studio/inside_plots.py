"""Figures of the "Inside the model" page: the logit-lens curve, the layers x heads grid (a click picks a cell),
the token-norm histogram with the registers beside it."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from explainers.inside import HeadResult, LensResult, NormResult

from . import plots

DIVERGING = "RdBu_r"  # red: the head supports the target, blue: it works against it


def lens_curve(r: LensResult, score_name: str) -> go.Figure:
    """The target's pooled score after every block; hover: the block's top classes."""
    L = r.layers
    x = np.arange(1, L + 1)
    if r.top_classes.size:
        hover = ["<br>".join(f"{i + 1}. {lab} {p:.1%}" for i, (lab, p) in enumerate(zip(labs, probs)))
                 for labs, probs in zip(r.top_labels, r.top_probs)]
    else:
        hover = ["" for _ in range(L)]
    fig = go.Figure(go.Scatter(
        x=x, y=r.pooled, mode="lines+markers", customdata=hover, name=score_name,
        hovertemplate="block %{x}: " + score_name + " %{y:.4f}<br>%{customdata}<extra></extra>"))
    if r.decided_at is not None:
        fig.add_vline(x=r.decided_at + 1, line=dict(color="#888", dash="dot"),
                      annotation_text=f"top class settled at block {r.decided_at + 1}", annotation_position="top left")
    fig.update_xaxes(title="block", dtick=1 if L <= 24 else None)
    fig.update_yaxes(title=score_name)
    fig.update_layout(title=dict(text=f"Logit lens: {r.label}", font=dict(size=14)), showlegend=False,
                      hovermode="closest")
    return plots._compact(fig, 320)


def head_grid(r: HeadResult, selected: tuple[int, int] | None) -> go.Figure:
    """Layers (rows, block 1 on top) x heads, the drop of the target's score with that head removed, 0 in the
    middle of a diverging scale; one invisible marker per cell carries the click; the picked cell outlined."""
    L, H = r.scores.shape
    m = float(np.abs(r.scores).max()) or 1.0
    heads, layers = np.arange(1, H + 1), np.arange(1, L + 1)
    fig = go.Figure(go.Heatmap(z=r.scores, x=heads, y=layers, colorscale=DIVERGING, zmid=0.0, zmin=-m, zmax=m,
                               colorbar=dict(title="drop", thickness=10), hoverinfo="skip"))
    ys, xs = np.mgrid[1:L + 1, 1:H + 1]
    fig.add_trace(go.Scatter(
        x=xs.ravel(), y=ys.ravel(), mode="markers", showlegend=False,
        marker=dict(size=max(8, min(28, 360 // max(L, H))), symbol="square", opacity=0.0),
        customdata=np.stack([r.scores.ravel(), r.predicted.ravel()], -1),
        hovertemplate="block %{y}, head %{x}<br>score drop %{customdata[0]:.4f}<extra>click: its attention</extra>"))
    if selected is not None:
        layer, head = selected
        fig.add_shape(type="rect", x0=head + 0.5, x1=head + 1.5, y0=layer + 0.5, y1=layer + 1.5,
                      line=dict(color="black", width=3))
    fig.update_xaxes(title="head", dtick=1 if H <= 16 else None, range=[0.5, H + 0.5])
    fig.update_yaxes(title="block", range=[L + 0.5, 0.5], dtick=1 if L <= 24 else None)
    fig.update_layout(title=dict(text=f"Score drop with one head removed ({r.ablation} ablation)", font=dict(size=14)),
                      clickmode="event+select", dragmode=False)
    return plots._compact(fig, 80 + 26 * L)


def layer_bars(r: HeadResult) -> go.Figure:
    L = r.layer_scores.shape[0]
    fig = go.Figure(go.Bar(x=np.arange(1, L + 1), y=r.layer_scores, marker_color=plots.COLORS[0],
                           hovertemplate="block %{x}: drop %{y:.4f}<extra></extra>"))
    fig.update_xaxes(title="block", dtick=1 if L <= 24 else None)
    fig.update_yaxes(title="score drop")
    fig.update_layout(title=dict(text="Score drop with a whole layer's attention removed", font=dict(size=14)))
    return plots._compact(fig, 240)


def norm_histogram(r: NormResult, layer: int, threshold: float) -> go.Figure:
    """Histogram of the patch tokens' norms after ``layer``, the high-norm cut, and the prefix tokens' norms
    (class token, registers) as marked lines beside them."""
    patches = r.patch_maps[layer].ravel()
    fig = go.Figure(go.Histogram(x=patches, nbinsx=40, name="patch tokens", marker_color=plots.COLORS[0],
                                 hovertemplate="norm %{x}<br>%{y} patches<extra></extra>"))
    fig.add_vline(x=threshold, line=dict(color="#d62728", dash="dash"),
                  annotation_text=f"high-norm cut {threshold:.1f}", annotation_position="top right")
    for i, name in enumerate(r.prefix_names):
        color = plots.COLORS[2] if name.startswith("register") else plots.COLORS[3]
        fig.add_vline(x=float(r.norms[layer, i]), line=dict(color=color, width=2),
                      annotation_text=name, annotation_position="bottom right", annotation_font_size=10)
    fig.update_xaxes(title="L2 norm")
    fig.update_yaxes(title="patches")
    fig.update_layout(title=dict(text=f"Token norms after block {layer + 1}", font=dict(size=14)), showlegend=False)
    return plots._compact(fig, 300)
