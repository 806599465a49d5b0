"""The Benchmark page: the committed reference runs (``benchmarks/run_reference.py``) as their researchers read
them. It reads only ``results/summary.json`` (written with the docs tables by ``benchmarks/results_tables.py
--write``; :data:`settings.RESULTS`), parsed once per file version for all sessions (``st.cache_data``): nothing
is computed when the page opens.

Per model: a reading in words (the same sentences as docs/benchmark-results.md), the methods ranked by a chosen
metric with their 95 % intervals, the reference rows as the floor and each method's sanity verdict beside its
scores; the mean insertion and deletion curves; cost against faithfulness (seconds per image on a log axis); the
sanity table; and, where a method's rows are incomplete, which ones and how many images they hold."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import streamlit as st

from . import benchmark_plots as bp
from . import settings
from .results_summary import fmt, params_text, ranked, seconds, versus
from .views import CHART_CONFIG

SUMMARY = "summary.json"
SORT_METRICS = ("insertion_auc", "deletion_auc", "pointing_game", "energy_pointing_game", "road_gap",
                "road_morf_auc", "road_lerf_auc", "faithfulness_correlation", "sparseness", "relevance_rank_accuracy")


@st.cache_data(show_spinner=False, max_entries=4)
def load_summary(path: str, mtime_ns: int) -> dict | None:
    """The parsed summary (``mtime_ns`` keys the cache: a rewritten file is read again); None when unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("models"), list) else None


def summary() -> dict | None:
    path = Path(settings.RESULTS) / SUMMARY
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    return load_summary(str(path), mtime)


def on_phone() -> bool:
    """Whether the visitor's browser says it is a phone: Chromium's ``Sec-CH-UA-Mobile: ?1`` client hint or
    "Mobi" in the User-Agent (Safari, Firefox). The server cannot see a window's width, so a narrow desktop
    window gets the desktop drawing."""
    headers = st.context.headers
    return headers.get("Sec-CH-UA-Mobile", "") == "?1" or "Mobi" in headers.get("User-Agent", "")


def _images(model: dict, method: str) -> str:
    """"100", or "37 of 100" while the method's evaluation rows are incomplete."""
    done = model["evaluate"]["methods"][method]["images"]
    want = model["coverage"]["evaluate"].get(method, {}).get("expected", done)
    return str(done) if done >= want else f"{done} of {want}"


def table(model: dict, order: list[str], metric: str, reference: tuple[str, ...]) -> pd.DataFrame:
    """The ranking as a table: the chosen metric, both AUCs, sanity verdict, paired comparisons, cost."""
    rows = []
    for rank, m in enumerate(order, 1):
        e = model["evaluate"]["methods"][m]
        sec = seconds(model, m)
        rows.append({"rank": rank, "method": m + (" (reference)" if m in reference else ""),
                     "score (95 % CI)": fmt(bp.stat(model, m, metric)),
                     "sanity": bp.verdict(model, m) if m not in reference else "reference",
                     "insertion AUC": fmt(bp.stat(model, m, "insertion_auc")),
                     "deletion AUC": fmt(bp.stat(model, m, "deletion_auc")),
                     "beats random on": versus(e, "random"), "beats Gaussian on": versus(e, "gaussian"),
                     "median s / image": None if sec is None else round(sec, 3), "images": _images(model, m)})
    return pd.DataFrame(rows)


def coverage_note(model: dict) -> None:
    """Say which methods' rows are incomplete (or missing) for this model, per part of the plan."""
    notes = []
    for part, title in (("evaluate", "evaluation"), ("sanity", "sanity checks")):
        cov = model["coverage"][part]
        short = [f"{m} ({c['done']} of {c['expected']})" for m, c in cov.items() if 0 < c["done"] < c["expected"]]
        missing = [m for m, c in cov.items() if c["done"] == 0]
        if short:
            notes.append(f"**{title.capitalize()}: incomplete rows** for {', '.join(short)}.")
        if len(missing) == len(cov):
            notes.append(f"**{title.capitalize()}: not run yet.**")
        elif missing:
            notes.append(f"**{title.capitalize()}: not run yet** for {', '.join(missing)}.")
    if notes:
        st.warning("The reference runs for this model are not complete; the numbers below cover what has been "
                   "computed so far.\n\n" + "\n\n".join(notes), icon=":material/hourglass_top:")
    else:
        st.success("Complete: every method on every planned image.", icon=":material/check_circle:")


def sanity_frame(model: dict) -> pd.DataFrame:
    rows = []
    for m, s in model["sanity"]["methods"].items():
        if "passes" in s:
            budget = params_text(s.get("budget"))
            # the verdict beside the name: on a phone the numbers scroll sideways, the verdict stays in view
            rows.append({"method": f"{m} ({budget})" if budget else m,
                         "verdict": "pass" if s["passes"] else "flagged", "images": s["images"],
                         "top block": s.get("top_block"),
                         "top half": s.get("top_half"), "all blocks": s.get("all_blocks"),
                         "top block alone": s.get("independent_top_block"),
                         "block 0 alone": s.get("independent_first_block"),
                         "random logit": s.get("random_logit")})
    return pd.DataFrame(rows)


def benchmark_page() -> None:
    st.title("Benchmark")
    st.caption("Which method should you trust on these models? The reference runs over the 100 ImageNet "
               "validation images, kept as data in the repository (`results/`) and read here as they are: "
               "nothing is computed when this page opens.")
    data = summary()
    if data is None or not data["models"]:
        st.info("This installation has no reference results (`results/summary.json`). In a checkout: "
                "`python benchmarks/run_reference.py`, then `python benchmarks/results_tables.py --write`.")
        return
    reference = tuple(data["plan"]["reference"])
    metrics = data["metrics"]
    titles = {m["key"]: m["title"] for m in data["models"]}
    top = st.columns([1, 1])
    key = top[0].radio("Model", list(titles), format_func=titles.get, horizontal=True, key="bm.model")
    model = next(m for m in data["models"] if m["key"] == key)
    choices = [k for k in SORT_METRICS if k in metrics and any(bp.stat(model, x, k) for x in model["evaluate"]
                                                               ["methods"])] or ["insertion_auc"]
    arrow = {k: ("↑" if metrics[k]["higher_is_better"] else "↓") for k in metrics}
    metric = top[1].selectbox("Rank by", choices, key="bm.metric",
                              format_func=lambda k: f"{metrics[k]['title']} {arrow.get(k, '')}")
    coverage_note(model)
    if model.get("reading"):
        st.markdown(" ".join(model["reading"]))
    if not model["evaluate"]["methods"]:
        st.info(f"No evaluation rows for {model['title']} yet.")
        return
    hib = metrics[metric]["higher_is_better"]
    order = ranked(model, metric, hib)
    s = model["evaluate"]["settings"]
    st.subheader(f"Ranked by {metrics[metric]['title']} ({'higher' if hib else 'lower'} is better)")
    st.caption(f"{model['evaluate']['images']} images (the model is right on {model['evaluate']['correct']}); "
               f"preset `{s.get('preset', '?')}`; mean ± 95 % confidence half-width. \"Beats random / Gaussian "
               "on\": the paired 95 % interval of the per-image difference lies on the better side. Sanity: the "
               "cascading randomisation verdict (pass: the map changes once the top half of the blocks is "
               "random). Seconds: the median of a method's images, the explanation alone, on the shared 2-core CPU of "
               "the reference runs.")
    st.plotly_chart(bp.ranking(model, order, metric, metrics[metric]["title"], reference), key="bm.rank",
                    width="stretch", config=CHART_CONFIG)
    st.dataframe(table(model, order, metric, reference), hide_index=True, width="stretch",
                 column_config={"median s / image": st.column_config.NumberColumn(format="%.3f")})
    st.subheader("Mean insertion and deletion curves")
    with_curves = [m for m in order if model["evaluate"]["methods"][m].get("curves")]
    fractions = model["evaluate"].get("fractions")
    if with_curves and fractions:
        default = [m for m in with_curves if m not in reference][:5] + [r for r in reference if r in with_curves]
        shown = st.multiselect("Methods", with_curves, default=default, key=f"bm.curves.{key}")
        cols = st.columns(2)
        for col, kind in zip(cols, ("insertion", "deletion")):
            col.plotly_chart(bp.curves(model, fractions, shown, kind, reference), key=f"bm.curve.{kind}",
                             width="stretch", config=CHART_CONFIG)
    st.subheader("Cost against faithfulness")
    axis = st.radio("Faithfulness axis", ("deletion_auc", "insertion_auc"), horizontal=True, key="bm.cost",
                    format_func=lambda k: f"{metrics[k]['title']} {arrow[k]}")
    phone = on_phone()
    fig = bp.cost(model, axis, metrics[axis]["title"], reference, metrics[axis]["higher_is_better"], phone)
    st.plotly_chart(fig, key="bm.costfig", width="stretch", config=CHART_CONFIG)
    unlabelled = fig.layout.meta["unlabelled"]
    st.caption("Cheap methods as good as the expensive ones sit at the left at the same height. Seconds: the "
               "median per image of the explanation alone (the metrics not counted). The reference maps cost "
               "nothing and are drawn as lines."
               + (f" On a phone the best methods are labelled first; {len(unlabelled)} more have no room for a "
                  "label here (tap a point for its name): " + ", ".join(unlabelled) + "." if unlabelled else ""))
    st.subheader("Sanity checks")
    frame = sanity_frame(model)
    if frame.empty:
        st.info(f"No sanity results for {model['title']} yet.")
    else:
        st.caption("Mean Spearman similarity to the original map after randomising (cascading) the head and the "
                   "top block, the top half, all blocks; (independent) the top block alone, block 0 alone; and for "
                   "a random other class. Pass: top half below 0.5. The images column says how many images each "
                   "method was checked on (the many-pass methods on fewer); a parameter in brackets is a smaller "
                   "budget than the method's default, used for this check only.")
        st.dataframe(frame, hide_index=True, width="stretch",
                     column_config={c: st.column_config.NumberColumn(format="%.2f") for c in
                                    ("top block", "top half", "all blocks", "top block alone", "block 0 alone",
                                     "random logit")})
