"""The Benchmark page's figures, from one model's entry of results/summary.json (plain dictionaries, no model):
the ranking with 95 % intervals and the reference rows as the floor, the mean insertion and deletion curves, and
cost against faithfulness (seconds per image on a log axis)."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from .plots import COLORS, REFERENCE_STYLE, _compact
from .results_summary import seconds, stat

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
    height = 140 + 24 * len(shown)
    # the legend about 45 px under the axis whatever the number of rows: y is a fraction of the plot area's
    # height, the figure's less about 80 px (title, margins, tick labels)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-45 / (height - 80), x=0, font=dict(size=11)),
                      title=dict(text=f"{title}: mean and 95 % interval", font=dict(size=14)))
    return _compact(fig, height)


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


def _area(r, o) -> float:
    """The area shared by two boxes (x0, y0, x1, y1)."""
    return max(0.0, min(r[2], o[2]) - max(r[0], o[0])) * max(0.0, min(r[3], o[3]) - max(r[1], o[1]))


def plot_pixels(xs: list[float], ys: list[float], width: float, height: float,
                y_also: tuple[float, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Where the points fall in a plot of ``width`` by ``height`` pixels with a log x axis and a linear y axis, the
    data's range padded by 5 % as Plotly does (x right, y up). y_also: other heights the y axis spans (the
    reference rows' lines)."""
    lx, y = np.log10(np.asarray(xs, float)), np.asarray(ys, float)
    lo, hi = min([y.min(), *y_also]), max([y.max(), *y_also])
    return (0.05 + (lx - lx.min()) / ((lx.max() - lx.min()) or 1.0) * 0.9) * width, \
        (0.05 + (y - lo) / ((hi - lo) or 1.0) * 0.9) * height


def label_offsets(xs: list[float], ys: list[float], names: list[str], width: float = 860, height: float = 320,
                  char_px: float = 6.0, line_px: float = 13.0, marker_px: float = 10.0, order: list[int] | None = None,
                  drop: bool = False, y_also: tuple[float, ...] = ()) -> list[tuple[float, float] | None]:
    """For each point, where its label's centre goes, in pixels from the point (x right, y up), such that labels
    overlap one another and the points as little as possible and stay inside the plot: greedy, the nearest free
    place among 8 directions at growing distances (a thin line then joins a far label to its point). The points
    are placed by ``plot_pixels``. Plotly's own text labels never move apart.

    order: the indices in the order their labels are placed (default: the most crowded points first, as they have
    the fewest free places). drop: a label that finds no free place inside the plot is left out (None) instead of
    overlapping another, for a plot too small for every label (a phone's). y_also: the reference rows' heights, as
    in ``plot_pixels``; a label also keeps off their lines and off their names under the lines' right ends where it
    can (a label crossed by a line reads as struck out), without being left out for them."""
    n = len(ys)  # the reference lines' heights placed with the points (at the first point's x, which moves nothing)
    px, py = plot_pixels([*xs, *[xs[0]] * len(y_also)], [*ys, *y_also], width, height, y_also)
    px, py, line_y = px[:n], py[:n], py[n:]
    boxes = [(a - marker_px / 2, b - marker_px / 2, a + marker_px / 2, b + marker_px / 2) for a, b in zip(px, py)]
    plot = (0.0, 0.0, width, height)
    lines = [box for y in line_y for box in  # a line and its name ("gaussian map": 12 characters) at its right end
             ((0.0, y - 2, width, y + 2), (width - 12 * char_px, y - line_px - 2, width, y))]
    if order is None:
        crowd = [int((np.hypot(px - a, py - b) < 60).sum()) for a, b in zip(px, py)]
        order = sorted(range(len(names)), key=lambda i: -crowd[i])
    offsets: list[tuple[float, float] | None] = [None] * len(names)
    directions = [(0, 1), (1, 0), (-1, 0), (0, -1), (0.7, 0.7), (-0.7, 0.7), (0.7, -0.7), (-0.7, -0.7)]
    for i in order:
        w, h = char_px * len(names[i]), line_px
        best = None
        for gap in (4, 16, 30, 46):
            for cx, cy in directions:
                dx, dy = cx * (w / 2 + gap), cy * (h / 2 + gap)
                r = (px[i] + dx - w / 2, py[i] + dy - h / 2, px[i] + dx + w / 2, py[i] + dy + h / 2)
                # overlaps and twice the part cut off by the plot's edge; then a little for the distance (with
                # ``drop``, any free place first: a far free place beats a near one with a small overlap)
                clash = sum(_area(r, o) for o in boxes) + 2 * (w * h - _area(r, plot))
                key = (drop and clash > 1e-9, clash + sum(_area(r, o) for o in lines) + 0.5 * gap)
                if best is None or key[0] < best[0][0] or (key[0] == best[0][0] and key[1] < best[0][1] - 1e-9):
                    best = (key, (dx, dy), r)
        if best[0][0]:  # drop, and no free place
            continue
        offsets[i] = best[1]
        boxes.append(best[2])
    return offsets


# The cost chart's plot area in pixels: Plotly's inside a wide window, and inside a 390 px phone's where the
# figure is drawn taller (PHONE_HEIGHT) with smaller labels
DESKTOP_PLOT, PHONE_PLOT, PHONE_HEIGHT = (860, 320), (250, 470), 640


def cost(model: dict, metric: str, title: str, reference: tuple[str, ...], higher_is_better: bool = False,
         phone: bool = False) -> go.Figure:
    """Seconds per image (log axis) against ``metric``: one labelled point per method, coloured by its sanity
    verdict, the labels placed apart (``label_offsets``); the reference rows (no cost) as horizontal lines.

    phone: drawn for a phone's narrow plot (taller, smaller labels, best methods labelled first); a label with no
    free place there is left out (its point keeps its name on hover) and the figure's ``meta["unlabelled"]``
    names those methods."""
    fig = go.Figure()
    shown = [m for m in model["evaluate"]["methods"] if m not in reference and stat(model, m, metric)
             and (seconds(model, m) or 0) > 0]
    xs = {m: seconds(model, m) for m in shown}
    ys = {m: stat(model, m, metric)["mean"] for m in shown}
    for kind in ("pass", "flagged", "not checked"):
        ms = [m for m in shown if verdict(model, m) == kind]
        if not ms:
            continue
        fig.add_trace(go.Scatter(
            x=[xs[m] for m in ms], y=[ys[m] for m in ms], mode="markers", text=ms,
            name=f"sanity: {kind}", marker=dict(size=9, color=VERDICT_COLOURS[kind]),
            hovertemplate="%{text}<br>%{x:.2f} s per image<br>" + title + " %{y:.3f}<extra></extra>"))
    unlabelled = []
    lines = {ref: s["mean"] for ref in reference if (s := stat(model, ref, metric)) is not None}
    if shown:
        (width, height), font = (PHONE_PLOT, 9) if phone else (DESKTOP_PLOT, 10)
        best_first = sorted(range(len(shown)), key=lambda i: -ys[shown[i]] if higher_is_better else ys[shown[i]])
        offsets = label_offsets([xs[m] for m in shown], [ys[m] for m in shown], shown, width, height,
                                char_px=0.6 * font, line_px=1.3 * font, order=best_first if phone else None,
                                drop=phone, y_also=tuple(lines.values()))
        for m, off in zip(shown, offsets):
            if off is None:
                unlabelled.append(m)
                continue
            fig.add_annotation(x=math.log10(xs[m]), y=ys[m], text=m, ax=off[0], ay=-off[1], showarrow=True,
                               arrowhead=0, arrowwidth=0.6, arrowcolor="#aaaaaa", standoff=5, font=dict(size=font))
    fig.update_layout(meta={"unlabelled": unlabelled})
    for ref, y in lines.items():
        fig.add_hline(y=y, line=dict(width=1, **REFERENCE_STYLE[ref]), annotation_text=f"{ref} map",
                      annotation_position="bottom right")
    fig.update_xaxes(type="log", title_text="median seconds per image (log scale)")
    fig.update_yaxes(title_text=title)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.14 if phone else -0.18, x=0,
                                  font=dict(size=11)), title=dict(text=f"Cost against {title}", font=dict(size=14)))
    return _compact(fig, PHONE_HEIGHT if phone else 480)
