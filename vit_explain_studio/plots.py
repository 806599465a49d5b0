"""Plotly figures: the raw patch grid, the top-5 bar chart, insertion/deletion curves, the box drawing."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from explainers import viz

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173")


def _compact(fig: go.Figure, height: int) -> go.Figure:
    """Fixed height, small margins; the Plotly toolbar stands vertically at the right, off the title."""
    fig.update_layout(height=height, margin=dict(l=10, r=36, t=44, b=10), modebar=dict(orientation="v"))
    return fig


def colorscale(cmap: str, n: int = 33) -> list:
    """The overlay's own colour map (explainers.viz) as an explicit Plotly scale: the raw grid and the
    overlay's strip show the same colours (a named Plotly scale could be restyled by the app's theme)."""
    rgb = viz.colorize(np.linspace(0, 1, n)[None, :], cmap)[0]
    return [[i / (n - 1), f"rgb({r},{g},{b})"] for i, (r, g, b) in enumerate(rgb.tolist())]


def patch_grid(patch_map: np.ndarray, cmap: str = "jet", title: str = "Raw patch map", scale: str = "minmax",
               clip: float = 0.0) -> go.Figure:
    """The method's raw map, one cell per patch (hover shows row, column and value), in the overlay's colours:
    the same scaling (``positive``: negatives drawn as 0, ``absolute``: |v|; ``symmetric``: centred on 0) and
    outlier clip, computed on the patch values."""
    gh, gw = patch_map.shape
    lo, hi = viz.value_range(patch_map, scale, clip)
    z = viz.transform(patch_map, scale)
    fig = go.Figure(go.Heatmap(
        z=z, colorscale=colorscale(cmap), zmin=lo, zmax=hi if hi > lo else lo + 1e-12,
        customdata=np.asarray(patch_map, dtype=np.float64),
        hovertemplate="row %{y}, col %{x}<br>value %{customdata:.4g}<extra></extra>", colorbar=dict(thickness=10)))
    fig.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain", showgrid=False)
    fig.update_xaxes(constrain="domain", showgrid=False)
    fig.update_layout(title=dict(text=f"{title} ({gh}×{gw})", font=dict(size=14)))
    return _compact(fig, 330)


def top5(top: list[tuple[int, str, float]], target: int | None) -> go.Figure:
    """The five most likely classes; the explained one in red (``target`` None: a class-agnostic map)."""
    labels = [f"{lbl.split(',')[0]} ({i})" for i, lbl, _ in top][::-1]
    probs = [p for _, _, p in top][::-1]
    colors = ["#d62728" if i == target else "#1f77b4" for i, _, _ in top][::-1]
    fig = go.Figure(go.Bar(x=probs, y=labels, orientation="h", marker_color=colors,
                           text=[f"{p:.1%}" for p in probs], textposition="auto",
                           hovertemplate="%{y}: %{x:.2%}<extra></extra>"))
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    title = "Top-5 predictions" + (" (red: explained class)" if target is not None else "")
    fig.update_layout(title=dict(text=title, font=dict(size=14)))
    return _compact(fig, 260)


def curves(named: dict, selected: float | None = None) -> go.Figure:
    """Insertion and deletion curves side by side; ``named`` maps a legend name to a ``metrics.Curves``.
    Each point carries its step fraction (clicking one selects that step)."""
    first = next(iter(named.values()))
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08, subplot_titles=(
        f"{first.insertion_label.capitalize()} (higher is better)",
        f"{first.deletion_label.capitalize()} (lower is better)"))
    single = len(named) == 1
    for i, (name, c) in enumerate(named.items()):
        color = COLORS[i % len(COLORS)]
        for col, ys, auc, kind in ((1, c.insertion, c.insertion_auc, "insertion"),
                                   (2, c.deletion, c.deletion_auc, "deletion")):
            label = (f"{kind} AUC {auc:.3f}" if single else
                     f"{name} (ins {c.insertion_auc:.3f}, del {c.deletion_auc:.3f})")
            fig.add_trace(go.Scatter(
                x=c.fractions, y=ys, mode="lines+markers", name=label, legendgroup=name,
                showlegend=single or col == 1,
                line=dict(color=("#2ca02c" if kind == "insertion" else "#d62728") if single else color),
                customdata=np.full(len(ys), kind), fill="tozeroy" if single else None,
                hovertemplate=f"{name}<br>{getattr(c, kind + '_label', kind)}: %{{x:.0%}} of the pixels"
                              f"<br>score %{{y:.3f}}<extra></extra>"),
                row=1, col=col)
    if selected is not None:
        for col in (1, 2):
            fig.add_vline(x=float(selected), line_dash="dot", line_color="#555", row=1, col=col)
    ylabel = "accuracy" if first.score == "accuracy" else "probability of the class"
    fig.update_xaxes(title_text="fraction of pixels", tickformat=".0%", range=[0, 1])
    fig.update_yaxes(title_text=ylabel, rangemode="tozero")
    fig.update_layout(legend=dict(orientation="h", y=-0.25), clickmode="event+select")
    return _compact(fig, 360)


REFERENCE_STYLE = {"random": dict(color="#888", dash="dot"), "gaussian": dict(color="#bbb", dash="dash")}


def curve_panel(named: dict, kind: str, selected: float | None = None, references: dict | None = None,
                height: int | None = None) -> go.Figure:
    """One curve kind ("insertion" or "deletion") for one or more methods, the reference maps dashed grey.
    The legend sits under the axes (never over the curves); hovering a curve shows its name and score.
    Each point carries its step fraction (clicking one selects that step)."""
    first = next(iter(named.values()))
    label = getattr(first, f"{kind}_label", kind)
    better = "higher" if kind == "insertion" else "lower"
    fig = go.Figure()
    single = len(named) == 1
    for i, (name, c) in enumerate(named.items()):
        auc = getattr(c, f"{kind}_auc")
        color = ("#2ca02c" if kind == "insertion" else "#d62728") if single else COLORS[i % len(COLORS)]
        fig.add_trace(go.Scatter(
            x=c.fractions, y=getattr(c, kind), mode="lines+markers", name=f"{name} · AUC {auc:.3f}",
            line=dict(color=color, width=2.5 if single else 1.8), marker=dict(size=5),
            fill="tozeroy" if single else None, customdata=np.full(len(c.fractions), kind),
            hovertemplate=f"{name}<br>{label}: %{{x:.0%}} of the pixels<br>score %{{y:.3f}}<extra></extra>"))
    for ref, c in (references or {}).items():
        fig.add_trace(go.Scatter(
            x=c.fractions, y=getattr(c, kind), mode="lines", name=f"{ref} map · AUC {getattr(c, kind + '_auc'):.3f}",
            line=dict(width=1.5, **REFERENCE_STYLE.get(ref, {})),
            hovertemplate=f"{ref} map<br>%{{x:.0%}}: %{{y:.3f}}<extra></extra>"))
    if selected is not None:
        fig.add_vline(x=float(selected), line_dash="dot", line_color="#555")
    ylabel = "accuracy" if first.score == "accuracy" else "probability of the class"
    fig.update_xaxes(title_text="fraction of pixels", tickformat=".0%", range=[0, 1])
    fig.update_yaxes(title_text=ylabel, rangemode="tozero")
    n = len(fig.data)
    fig.update_layout(title=dict(text=f"{label.capitalize()} ({better} is better)", font=dict(size=14)),
                      legend=dict(orientation="h", yanchor="top", y=-0.22, x=0, font=dict(size=11)),
                      clickmode="event+select", hovermode="closest")
    return _compact(fig, height or (300 + 22 * n))


def box_picker(image: Image.Image, box: tuple[float, float, float, float] | None) -> go.Figure:
    """The model input with an invisible grid of points, so a box selection ('Box select' in the toolbar)
    returns the drawn rectangle; the current box is drawn in red."""
    arr = np.asarray(image.convert("RGB"))
    H, W = arr.shape[:2]
    fig = go.Figure(go.Image(z=arr, hoverinfo="skip"))
    ys, xs = np.mgrid[0:H:4, 0:W:4]
    fig.add_trace(go.Scatter(x=xs.ravel(), y=ys.ravel(), mode="markers", marker=dict(size=4, opacity=0.0),
                             hoverinfo="skip", showlegend=False))
    if box is not None:
        x0, y0, x1, y1 = box
        fig.add_shape(type="rect", x0=x0, y0=y0, x1=x1, y1=y1, line=dict(color="red", width=3))
    fig.update_layout(dragmode="select", title=dict(text="Draw the object's box (drag)", font=dict(size=14)))
    fig.update_xaxes(range=[0, W], showgrid=False)
    fig.update_yaxes(range=[H, 0], showgrid=False, scaleanchor="x")
    return _compact(fig, 360)
