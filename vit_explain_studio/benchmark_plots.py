"""The Benchmark page's figures, from one model's entry of results/summary.json (plain dictionaries, no model):
the ranking with 95 % intervals and the reference rows as the floor, the mean insertion and deletion curves, and
cost against faithfulness (seconds per image on a log axis)."""

from __future__ import annotations

import plotly.graph_objects as go

from .plots import COLORS, REFERENCE_STYLE, _compact
from .results_summary import stat

VERDICT_COLOURS = {"pass": "#2ca02c", "flagged": "#d62728", "not checked": "#7f7f7f"}


def verdict(model: dict, method: str) -> str:
    """"pass", "flagged" or "not checked" (the sanity check's cascading verdict)."""
    s = model["sanity"]["methods"].get(method, {})
    return "not checked" if "passes" not in s else ("pass" if s["passes"] else "flagged")


def ranking(model: dict, order: list[str], metric: str, title: str, reference: tuple[str, ...]) -> go.Figure:
    """One dot per method with its 95 % interval, best at the top; the reference rows as grey dots and vertical
    lines (the floor a method has to clear)."""
    shown = [m for m in order if stat(model, m, metric)]
    fig = go.Figure()
    for kind in ("pass", "flagged", "not checked"):
        ms = [m for m in shown if m not in reference and verdict(model, m) == kind]
        if not ms:
            continue
        fig.add_trace(go.Scatter(
            x=[stat(model, m, metric)["mean"] for m in ms], y=ms, mode="markers", name=f"sanity: {kind}",
            marker=dict(size=9, color=VERDICT_COLOURS[kind]),
            error_x=dict(type="data", array=[stat(model, m, metric)["ci95"] or 0 for m in ms], thickness=1.5),
            hovertemplate="%{y}: %{x:.3f} ± %{error_x.array:.3f}<extra></extra>"))
    for ref in reference:
        s = stat(model, ref, metric)
        if s is None:
            continue
        fig.add_trace(go.Scatter(x=[s["mean"]], y=[ref], mode="markers", name=f"{ref} map (reference)",
                                 marker=dict(size=9, color=REFERENCE_STYLE[ref]["color"], symbol="diamond"),
                                 error_x=dict(type="data", array=[s["ci95"] or 0], thickness=1.5),
                                 hovertemplate="%{y}: %{x:.3f} ± %{error_x.array:.3f}<extra></extra>"))
        fig.add_vline(x=s["mean"], line=dict(width=1, **REFERENCE_STYLE[ref]))
    fig.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=shown, automargin=True)
    # the legend about 45 px under the axis whatever the number of rows (y is a fraction of the plot's height)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-45 / (24 * len(shown) + 60), x=0,
                                  font=dict(size=11)),
                      title=dict(text=f"{title}: mean and 95 % interval", font=dict(size=14)))
    return _compact(fig, 140 + 24 * len(shown))


def curves(model: dict, fractions: list[float], methods: list[str], kind: str,
           reference: tuple[str, ...]) -> go.Figure:
    """The mean ``kind`` ("insertion" or "deletion") curve of each method, the reference maps dashed grey."""
    fig = go.Figure()
    entries = model["evaluate"]["methods"]
    for i, m in enumerate(x for x in methods if x not in reference):
        c = entries.get(m, {}).get("curves")
        if c:
            fig.add_trace(go.Scatter(x=fractions, y=c[kind], mode="lines", name=m,
                                     line=dict(color=COLORS[i % len(COLORS)], width=1.8),
                                     hovertemplate=f"{m}<br>%{{x:.0%}}: %{{y:.3f}}<extra>n={c['n']}</extra>"))
    for ref in reference:
        c = entries.get(ref, {}).get("curves")
        if c and ref in methods:
            fig.add_trace(go.Scatter(x=fractions, y=c[kind], mode="lines", name=f"{ref} map",
                                     line=dict(width=1.5, **REFERENCE_STYLE[ref]),
                                     hovertemplate=f"{ref} map<br>%{{x:.0%}}: %{{y:.3f}}<extra></extra>"))
    better = "higher" if kind == "insertion" else "lower"
    verb = "revealed" if kind == "insertion" else "removed"
    fig.update_xaxes(title_text=f"fraction of pixels {verb}", tickformat=".0%", range=[0, 1])
    fig.update_yaxes(title_text="probability of the class (mean)", rangemode="tozero")
    fig.update_layout(title=dict(text=f"Mean {kind} curve ({better} is better)", font=dict(size=14)),
                      legend=dict(orientation="h", yanchor="top", y=-0.32, x=0, font=dict(size=11)))
    return _compact(fig, 340 + 11 * len(fig.data))


def cost(model: dict, metric: str, title: str, reference: tuple[str, ...]) -> go.Figure:
    """Seconds per image (log axis) against ``metric``: one labelled point per method, coloured by its sanity
    verdict; the reference rows (no cost) as horizontal lines."""
    fig = go.Figure()
    for kind in ("pass", "flagged", "not checked"):
        ms = [m for m in model["evaluate"]["methods"] if m not in reference and verdict(model, m) == kind
              and stat(model, m, metric) and stat(model, m, "seconds") and stat(model, m, "seconds")["mean"] > 0]
        if not ms:
            continue
        fig.add_trace(go.Scatter(
            x=[stat(model, m, "seconds")["mean"] for m in ms], y=[stat(model, m, metric)["mean"] for m in ms],
            mode="markers+text", text=ms, textposition="top center", textfont=dict(size=10),
            name=f"sanity: {kind}", marker=dict(size=9, color=VERDICT_COLOURS[kind]),
            hovertemplate="%{text}<br>%{x:.2f} s per image<br>" + title + " %{y:.3f}<extra></extra>"))
    for ref in reference:
        s = stat(model, ref, metric)
        if s is not None:
            fig.add_hline(y=s["mean"], line=dict(width=1, **REFERENCE_STYLE[ref]),
                          annotation_text=f"{ref} map", annotation_position="bottom right")
    fig.update_xaxes(type="log", title_text="seconds per image (explanation alone, log scale)")
    fig.update_yaxes(title_text=title)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.18, x=0, font=dict(size=11)),
                      title=dict(text=f"Cost against {title}", font=dict(size=14)))
    return _compact(fig, 480)
