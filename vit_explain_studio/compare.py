"""The Compare page: every chosen method on the current image, each shown as soon as it finishes (with a
Stop button), one table sortable by a chosen metric with the best highlighted and the reference maps (random,
centred Gaussian) as the floor, and the insertion / deletion curves of all methods with the legend under
the axes. Optional columns add the newer metrics (ROAD, faithfulness correlation, sparseness, relevance
mass / rank accuracy: the numbers of ``explainers.metrics.extra_scores``), cached like the curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

import explainers
from explainers import METHODS, metrics
from explainers.evaluation.report import COLUMN_TITLES

from . import compute, plots, state
from .state import Context
from .views import CHART_CONFIG, class_specific, curve_settings, name_of, overlay_tile

# Fast by default (one or two passes each); the many-pass methods can be added in the list.
DEFAULT_METHODS = ("attention_rollout", "gradient_rollout", "generic_attention", "transformer_attribution",
                   "attention_last_layer", "attention_gradcam", "chefer_rollout", "lrp_last_layer", "saliency",
                   "gradcam", "legrad")
METRIC_COLUMNS = {"insertion AUC ↑": True, "deletion AUC ↓": False, "energy in box ↑": True, "seconds": False}
EXTRA_COLUMNS = {COLUMN_TITLES[m]: m for m in metrics.EXTRA_METRICS}  # optional columns: title -> metric
METRIC_COLUMNS.update({t: metrics.METRICS[m].higher_is_better for t, m in EXTRA_COLUMNS.items()})
_ROAD = ("road_morf_auc", "road_lerf_auc", "road_gap")
_NEEDS_BOX = ("relevance_mass_accuracy", "relevance_rank_accuracy")


def _extra_values(ctx: Context, name: str, exp, cs, box, wanted: list[str]) -> dict:
    """The chosen newer metrics of one map, as ``metrics.extra_scores`` computes them (same seeds, ROAD at the
    curve settings' preset and steps); each metric cached per capture, parameters, settings and box."""
    heavy, _ = compute.split_params(name, METHODS[name].defaults(), ctx.model)
    base = ("extra", compute.capture_key(ctx, name, heavy), compute.freeze(exp.params),
            None if cs is None else (cs.preset, cs.steps))
    store, x, sal, size = compute.curve_store(), ctx.x(), exp.heatmap, ctx.model.input_size
    out = {}
    for m in wanted:
        if m in _NEEDS_BOX and box is None:
            continue
        key = (*base, m, box if m in _NEEDS_BOX else None)
        v = store.get(key)
        if v is None:
            if m in _ROAD:
                c = metrics.road(ctx.model, x, sal, ctx.target, preset=cs and cs.preset, steps=cs and cs.steps)
                road = {"road_morf_auc": c.morf_auc, "road_lerf_auc": c.lerf_auc, "road_gap": c.gap}
                for k2, v2 in road.items():  # one ROAD run gives the three columns
                    store.put((*base, k2, None), v2)
                v = road[m]
            elif m == "faithfulness_correlation":
                v = metrics.faithfulness_correlation(ctx.model, x, sal, ctx.target)
            elif m == "sparseness":
                v = metrics.sparseness(sal, size)
            else:
                fn = metrics.relevance_mass_accuracy if m == "relevance_mass_accuracy" else \
                    metrics.relevance_rank_accuracy
                v = fn(sal, [box], size)
            store.put(key, v)
        out[COLUMN_TITLES[m]] = round(float(v), 4)
    return out


def _box_inputs(ctx: Context) -> tuple | None:
    """The object box for the pointing game, drawn on the image or typed, in model-input pixels."""
    H, W = ctx.model.input_size
    keys = [f"cmp.box.{n}" for n in ("x0", "y0", "x1", "y1")]
    on = st.toggle("Score the pointing game against a box", key="cmp.box.on")
    if not on:
        return None

    def from_drawing():
        sel = st.session_state.get("cmp.box.fig")
        try:
            b = sel["selection"]["box"][0]
            xs, ys = sorted(b["x"]), sorted(b["y"])
        except (TypeError, KeyError, IndexError):
            return
        vals = (xs[0], ys[0], xs[1], ys[1])
        for k, v, hi in zip(keys, vals, (W, H, W, H)):
            st.session_state[k] = int(round(min(max(v, 0), hi)))

    for k, v in zip(keys, (W // 4, H // 4, 3 * W // 4, 3 * H // 4)):
        st.session_state.setdefault(k, v)
    c1, c2 = st.columns([1.4, 1])
    with c2:
        st.caption(f"Box corners in the model input ({W}×{H} pixels): drag on the image, or type them.")
        vals = [st.number_input(k.rsplit(".", 1)[1], 0, W if i % 2 == 0 else H, key=k, step=1)
                for i, k in enumerate(keys)]
    box = tuple(float(v) for v in vals)
    if box[2] <= box[0] or box[3] <= box[1]:
        c2.error("The box needs x1 > x0 and y1 > y0.")
        box = None
    with c1:
        st.plotly_chart(plots.box_picker(ctx.shown(), box), key="cmp.box.fig", on_select=from_drawing,
                        selection_mode="box", width="stretch")
    return box


def _extra_choice(ctx: Context) -> list[str]:
    """The optional metric columns chosen (metric names); they need a class target."""
    picked = st.multiselect("More metric columns", list(metrics.EXTRA_METRICS), default=[], key="cmp.extra",
                            format_func=lambda m: COLUMN_TITLES[m], persist_state="session",
                            help="ROAD (noisy linear imputation, MoRF / LeRF), faithfulness correlation, "
                                 "sparseness; relevance mass / rank accuracy need the pointing game box. ROAD and "
                                 "faithfulness correlation cost about 40 and 50 forward passes per method.")
    if picked and not isinstance(ctx.target, (int, np.integer)):
        st.info("The extra metric columns score a class: choose a class target in the sidebar.")
        return []
    if any(m in _NEEDS_BOX for m in picked) and not st.session_state.get("cmp.box.on"):
        st.caption("Relevance mass / rank accuracy appear once the pointing game box is on.")
    return picked


def _stop(job) -> None:
    st.session_state["cmp.stopped"] = job


def _row(ctx: Context, name: str, exp, c, box, extra: dict | None = None) -> dict:
    H, W = ctx.model.input_size
    row = {"method": name_of(name) if name in METHODS else f"{name} (reference)",
           "class": "—" if name not in METHODS else ("specific" if class_specific(name) else "agnostic"),
           "map": "—" if exp is None else (f"signed · {exp.scale}" if exp.signed else f"unsigned · {exp.scale}"),
           "seconds": round(exp.seconds, 3) if exp is not None else 0.0,
           "cost": METHODS[name].cost if name in METHODS else "no model pass"}
    if c is not None:
        row["insertion AUC ↑"] = round(c.insertion_auc, 4)
        row["deletion AUC ↓"] = round(c.deletion_auc, 4)
    if box is not None:
        sal = exp.heatmap if exp is not None else None
        if sal is not None:
            hit = metrics.pointing_game(sal, [box], (H, W))
            row["pointing game"] = None if hit is None else ("hit" if hit else "miss")
            row["energy in box ↑"] = round(metrics.energy_pointing_game(sal, [box], (H, W)), 4)
    row.update(extra or {})
    return row


def results_table(rows: list[dict], sort_by: str) -> None:
    """One row per method and reference map, sorted by ``sort_by`` (best first), the best row highlighted."""
    df = pd.DataFrame(rows)
    if sort_by in df.columns:
        df = df.sort_values(sort_by, ascending=not METRIC_COLUMNS[sort_by], na_position="last",
                            kind="stable").reset_index(drop=True)
    best = df.index[(~df["method"].str.endswith("(reference)"))].min() if sort_by in df.columns else None

    def highlight(row):
        if best is not None and row.name == best:
            return ["background-color: #d8f3dc; font-weight: 600"] * len(row)
        if row["method"].endswith("(reference)"):
            return ["color: #777"] * len(row)
        return [""] * len(row)

    st.dataframe(df.style.apply(highlight, axis=1), hide_index=True,
                 width="stretch", key="cmp.table", height=36 * (len(df) + 1) + 4,
                 column_config={"cost": st.column_config.TextColumn("cost", width="large"),
                                "seconds": st.column_config.NumberColumn("seconds", format="%.2f s"),
                                "method": st.column_config.TextColumn("method", width="medium")})
    if best is not None:
        st.caption(f"Best by {sort_by}: **{df.loc[best, 'method']}** (highlighted). Grey rows are the reference "
                   "maps: a method below the random map is not faithful to the model on this image.")
    if "map" in df.columns and df["map"].str.startswith("signed").any():
        st.caption("Each map is drawn in its own default scaling: a **signed** map symmetric around 0 (red: "
                   "evidence for the target, blue: against, white: 0), an unsigned one min-max (jet). The metrics "
                   "rank the raw values, most positive first, whatever the drawing.")


def compare_page() -> None:
    ctx = state.page_context("Compare methods", "The chosen methods on the current image with their default "
                             "parameters: maps, faithfulness and cost. Each appears as soon as it is done.")
    if ctx is None:
        return
    names = list(METHODS)
    default = [n for n in DEFAULT_METHODS if n in names]
    chosen = st.multiselect("Methods", names, default=default, format_func=name_of, key="cmp.methods",
                            persist_state="session")
    cs = curve_settings("cmp")
    with st.expander("Pointing game box", expanded=False):
        box = _box_inputs(ctx)
    extra = _extra_choice(ctx)
    if not chosen:
        st.info("Choose at least one method.")
        return
    sortable = [k for k in METRIC_COLUMNS if k not in EXTRA_COLUMNS and (cs is not None or "AUC" not in k)
                and (box is not None or "box" not in k)]
    sortable += [COLUMN_TITLES[m] for m in extra if box is not None or m not in _NEEDS_BOX]
    sort_by = st.selectbox("Sort the table by", sortable, key="cmp.sort", persist_state="session")
    job = (ctx.model_key, ctx.image_hash, ctx.target_key, tuple(chosen), cs, tuple(extra))
    stopped = st.session_state.get("cmp.stopped") == job
    top = st.empty()
    cols = st.columns(4)
    tiles = [cols[i % 4].empty() for i in range(len(chosen))]
    if not stopped:
        top.button("Stop", key="cmp.stop", on_click=_stop, args=(job,), icon=":material/stop:",
                   help="Stop after the method that is running; the finished ones stay.")
    rows, named_curves, missing = [], {}, []
    for i, name in enumerate(chosen):
        defaults = METHODS[name].defaults()
        heavy, _ = compute.split_params(name, defaults, ctx.model)
        if stopped and compute.capture_key(ctx, name, heavy) not in compute.captures():
            missing.append(name_of(name))
            continue
        tiles[i].caption(f"{name_of(name)}: running…")
        try:
            exp = compute.explain(ctx, name, defaults)
            c = compute.curves(ctx, name, defaults, exp, cs) if cs is not None else None
            more = _extra_values(ctx, name, exp, cs, box, extra) if extra else None
        except explainers.ExplainerError as e:
            tiles[i].error(f"{name_of(name)}: {e}")
            continue
        if c is not None:
            named_curves[name_of(name)] = c
        rows.append(_row(ctx, name, exp, c, box, more))
        agnostic = "" if class_specific(name) else " · class-agnostic"
        sign = " · signed: red for, blue against" if exp.signed else ""
        tiles[i].image(overlay_tile(ctx, exp), caption=f"{name_of(name)} · {exp.seconds:.2f} s{agnostic}{sign}",
                       width="stretch")
    top.empty()
    if missing:
        st.warning(f"Stopped: {', '.join(missing)} not computed.")
        if st.button("Continue", key="cmp.continue"):
            st.session_state.pop("cmp.stopped", None)
            st.rerun()
    refs = {}
    if cs is not None:
        for kind in compute.REFERENCE_MAPS:
            refs[kind] = compute.reference_curves(ctx, kind, cs)
            rows.append(_row(ctx, kind, None, refs[kind], None))
    if rows:
        results_table(rows, sort_by)
    if named_curves:
        c1, c2 = st.columns(2)
        for col, kind in ((c1, "insertion"), (c2, "deletion")):
            col.plotly_chart(plots.curve_panel(named_curves, kind, references=refs), key=f"cmp.curves.{kind}",
                             width="stretch", config=CHART_CONFIG)
