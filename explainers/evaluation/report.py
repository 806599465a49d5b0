"""Summary statistics of evaluation rows: mean and 95% CI per method, the markdown table and the curves page."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ..metrics import EXTRA_METRICS, METRICS
from .core import REFERENCE_METHODS

SUMMARY_METRICS = ("insertion_auc", "deletion_auc", "pointing_game", "energy_pointing_game", "seconds")
# column titles of the tables (markdown summary, the app's Evaluate and Compare pages): the title and its arrow
COLUMN_TITLES = {"insertion_auc": "insertion AUC ↑", "deletion_auc": "deletion AUC ↓",
                 "pointing_game": "pointing game ↑", "energy_pointing_game": "energy pointing ↑",
                 **{m: f"{METRICS[m].title} {'↑' if METRICS[m].higher_is_better else '↓'}" for m in EXTRA_METRICS}}


def _t975(n: int) -> float:
    if n < 2:
        return math.nan
    try:
        from scipy.stats import t

        return float(t.ppf(0.975, n - 1))
    except ImportError:  # pragma: no cover
        return 1.96


def _values(rows, method, metric) -> np.ndarray:
    vals = []
    for r in rows:
        if r["method"] != method:
            continue
        v = r.get(metric)
        if v is None or v == "":
            continue
        v = float(v)
        if math.isfinite(v):
            vals.append(v)
    return np.asarray(vals, dtype=np.float64)


def summarize(rows: list[dict], metrics: Iterable[str] | None = None) -> list[dict]:
    """Mean and 95% confidence interval (Student t) per method and metric, best first within each metric.

    metrics: default :data:`SUMMARY_METRICS` and the newer metrics (``EXTRA_METRICS``) the rows hold.

    Returns rows {"metric", "method", "n", "mean", "ci95" (half-width), "low", "high", "higher_is_better"}.
    Skipped values (pointing game on images whose boxes cover half the frame) and failures are left out.
    """
    methods = list(dict.fromkeys(r["method"] for r in rows))
    if metrics is None:
        metrics = SUMMARY_METRICS + tuple(m for m in EXTRA_METRICS if any(r.get(m) not in (None, "") for r in rows))
    out = []
    for metric in metrics:
        hib = METRICS[metric].higher_is_better if metric in METRICS else False
        block = []
        for m in methods:
            v = _values(rows, m, metric)
            n = len(v)
            mean = float(v.mean()) if n else math.nan
            half = float(_t975(n) * v.std(ddof=1) / math.sqrt(n)) if n >= 2 else math.nan
            block.append({"metric": metric, "method": m, "n": n, "mean": mean, "ci95": half,
                          "low": mean - half, "high": mean + half, "higher_is_better": hib})
        block.sort(key=lambda d: (math.isnan(d["mean"]), -d["mean"] if hib else d["mean"], d["method"]))
        out += block
    return out


def _fmt(mean, half, digits=3) -> str:
    if mean is None or not math.isfinite(mean):
        return "n/a"
    s = f"{mean:.{digits}f}"
    return s + (f" ± {half:.{digits}f}" if half is not None and math.isfinite(half) else "")


def summary_markdown(summary: list[dict], sort_by: str = "insertion_auc") -> str:
    """One wide markdown table (method x metric, mean ± 95% CI half-width), sorted best first by ``sort_by``."""
    by = {(s["metric"], s["method"]): s for s in summary}
    order = [s["method"] for s in summary if s["metric"] == sort_by] or list(dict.fromkeys(
        s["method"] for s in summary))
    cols = [m for m in SUMMARY_METRICS + tuple(EXTRA_METRICS) if any(s["metric"] == m for s in summary)]
    titles = {**COLUMN_TITLES, "seconds": "s / image"}
    lines = ["| method | " + " | ".join(titles.get(c, c) for c in cols) + " | n |",
             "|---|" + "---:|" * len(cols) + "---:|"]
    for m in order:
        cells = []
        for c in cols:
            s = by.get((c, m))
            cells.append("n/a" if s is None else _fmt(s["mean"], None if c == "seconds" else s["ci95"],
                                                       2 if c == "seconds" else 3))
        n = by.get((sort_by, m), {}).get("n", "")
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {n} |")
    return "\n".join(lines) + "\n"


def curves_figure(rows: list[dict], title: str = "Mean insertion and deletion curves"):
    """Plotly figure: mean insertion and deletion curve per method (rows need the curve lists)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("Insertion (higher is better)",
                                                        "Deletion (lower is better)"))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for i, m in enumerate(methods):
        rs = [r for r in rows if r["method"] == m and r.get("insertion_curve")]
        if not rs:
            continue
        fr = np.asarray(rs[0]["fractions"], dtype=float)
        rs = [r for r in rs if len(r["insertion_curve"]) == len(fr)]
        for col, key in ((1, "insertion_curve"), (2, "deletion_curve")):
            y = np.mean([r[key] for r in rs], axis=0)
            fig.add_trace(go.Scatter(x=fr, y=y, mode="lines", name=m, legendgroup=m, showlegend=col == 1,
                                     line={"color": _COLOURS[i % len(_COLOURS)],
                                           "dash": "dot" if m in REFERENCE_METHODS else "solid"},
                                     hovertemplate=f"{m}<br>fraction %{{x:.3f}}<br>score %{{y:.3f}}"
                                                   f"<extra>n={len(rs)}</extra>"), row=1, col=col)
    fig.update_xaxes(title_text="fraction of pixels", range=[0, 1])
    fig.update_yaxes(title_text="score")
    fig.update_layout(title=title, template="plotly_white", height=480)
    return fig


_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd")
