"""The bodies of the app's pages. ``app_pages/*.py`` are one-line calls into this module.

An explainer page runs a method's model passes in the page body (with a progress bar and a Cancel button
that interrupts the run), then draws everything else inside ``st.fragment``: moving a cheap parameter
(discard ratio, head fusion, start layer, colour map, opacity) reruns that fragment only and redraws from the
cached capture without any model pass.
"""

from __future__ import annotations

import inspect
import json

import numpy as np
import pandas as pd
import streamlit as st

import explainers
from explainers import METHODS, metrics, viz

from . import compute, plots, report, settings, state, widgets
from .state import Context

STEP_CHOICES = (5, 10, 20, 50)


def _name(method: str) -> str:
    return METHODS[method].display_name if method in METHODS else method


# -- shared pieces -----------------------------------------------------------------------------------------
def how_it_works(method: str) -> None:
    m = METHODS[method]
    with st.expander(f"How it works: {m.display_name}"):
        st.markdown(m.description)
        st.markdown(f"**Paper:** [{m.paper}]({m.paper_url})" if m.paper_url else f"**Paper:** {m.paper}")
        st.markdown(f"**Cost:** {m.cost}. **Class-specific:** {'yes' if m.class_specific else 'no'} "
                    f"(family: {m.family or '—'}).")
        doc = inspect.getdoc(type(m))
        if doc:
            st.markdown("**Implementation notes**")
            st.text(doc)


def _cancel(flag_key: str, job) -> None:
    st.session_state[flag_key] = job


def ensure_capture(ctx: Context, method: str, heavy: dict, key: str) -> bool:
    """Make sure the method's capture (its model passes) for these parameters is cached: at once when it
    is, else with a progress bar and a Cancel button. Runs outside the page's fragment on purpose: a click
    on a fragment's widget never interrupts a running script, a click on this Cancel does. Errors become
    messages (no traceback). Returns whether the capture is ready."""
    flag = f"{key}.cancelled"
    try:
        full_heavy, _ = compute.split_params(method, heavy, ctx.model)
        job = compute.capture_key(ctx, method, full_heavy)
        if job in compute.captures():
            return True
        if st.session_state.get(flag) == job:
            st.warning("Cancelled. Change a parameter, or run it again.")
            if st.button("Run again", key=f"{key}.again"):
                st.session_state.pop(flag, None)
                st.rerun()
            return False
        slot = st.empty()
        with slot.container():
            st.button("Cancel", key=f"{key}.cancel", on_click=_cancel, args=(flag, job),
                      help="Stop this computation (nothing is kept).")
            prog = compute.Progress(f"{_name(method)}: {METHODS[method].cost}…")
            compute.get_capture(ctx, method, heavy, prog)
        slot.empty()
        return True
    except explainers.Cancelled:
        st.warning("Cancelled.")
    except explainers.ExplainerError as e:
        st.error(f"{_name(method)} failed: {e}")
    return False


def show_result(ctx: Context, exp: explainers.Explanation, cmap: str, alpha: float, key: str):
    """Overlay beside the raw patch grid, target line and warnings; returns the overlay image."""
    shown = ctx.shown()
    ov = viz.overlay(shown, exp.heatmap, alpha=alpha, cmap=cmap)
    c1, c2 = st.columns([1, 1.15])
    c1.image(ov, caption=f"{_name(exp.method)} · {exp.label.split(',')[0]} ({exp.probability:.1%})",
             width="stretch")
    c1.image(plots.colorbar_strip(cmap), caption="low → high relevance", width="stretch")
    c2.plotly_chart(plots.patch_grid(exp.patch_map, cmap), key=f"{key}.grid", width="stretch")
    st.caption(f"Explained class **{exp.target} · {exp.label}** (probability {exp.probability:.2%}) · "
               f"{exp.seconds:.2f} s")
    for w in exp.warnings:
        st.warning(w)
    return ov


def curve_settings(key: str) -> compute.CurveSettings | None:
    c1, c2, c3 = st.columns([2.2, 1, 1])
    names = list(metrics.PRESETS)
    preset = c1.selectbox("Protocol", names, index=names.index(metrics.DEFAULT_PRESET), key=f"{key}.preset",
                          format_func=lambda n: metrics.PRESETS[n].title, persist_state="session",
                          help="The insertion/deletion protocol (baseline, step grid, score, AUC rule).")
    steps = c2.selectbox("Steps", [None, *STEP_CHOICES], index=2, key=f"{key}.steps", persist_state="session",
                         format_func=lambda s: "preset's own" if s is None else str(s),
                         help="Equal steps over the preset's range (fewer = faster); 'preset's own' keeps its grid.")
    on = c3.toggle("Compute curves", value=True, key=f"{key}.curves_on", persist_state="session",
                   help="Each step scores perturbed images with the model (2 forward passes per step).")
    return compute.CurveSettings(preset, steps) if on else None


def _pick_step(chart_key: str, step_key: str, fractions: list[float]) -> None:
    """Clicking a curve point selects that step."""
    sel = st.session_state.get(chart_key)
    try:
        x = float(sel["selection"]["points"][0]["x"])
    except (TypeError, KeyError, IndexError, ValueError):
        return
    st.session_state[step_key] = min(fractions, key=lambda f: abs(f - x))


def curves_section(ctx: Context, method: str, params: dict, exp, key: str):
    st.subheader("Faithfulness: insertion and deletion")
    cs = curve_settings(key)
    if cs is None:
        st.caption("Curves are off.")
        return None, None
    try:
        with st.spinner("Scoring perturbed images…"):
            c = compute.curves(ctx, method, params, exp, cs)
    except explainers.ExplainerError as e:
        st.error(f"The curves could not be computed: {e}")
        return None, None
    m1, m2, m3 = st.columns(3)
    m1.metric(f"{c.insertion_label.capitalize()} AUC ↑", f"{c.insertion_auc:.3f}")
    m2.metric(f"{c.deletion_label.capitalize()} AUC ↓", f"{c.deletion_auc:.3f}")
    m3.metric("Scored images", f"{c.forward_passes}", help=f"{c.seconds:.2f} s; baseline {c.baseline}")
    fractions = [round(float(f), 6) for f in c.fractions]
    step_key, chart_key = f"{key}.step", f"{key}.curves"
    if st.session_state.get(step_key) not in fractions:
        st.session_state[step_key] = fractions[len(fractions) // 2]
    st.plotly_chart(plots.curves({_name(method): c}, st.session_state[step_key]), key=chart_key,
                    width="stretch", on_select=lambda: _pick_step(chart_key, step_key, fractions),
                    selection_mode="points")
    c1, c2, c3 = st.columns([1.2, 1, 1])
    frac = c1.select_slider("Step (or click a curve point)", fractions, key=step_key,
                            format_func=lambda f: f"{f:.0%}")
    try:
        c2.image(compute.perturbed_image(ctx, exp, frac, "insertion", cs),
                 caption=f"{c.insertion_label}: {frac:.0%} of the pixels", width="stretch")
        c3.image(compute.perturbed_image(ctx, exp, frac, "deletion", cs),
                 caption=f"{c.deletion_label}: {frac:.0%} of the pixels", width="stretch")
    except explainers.ExplainerError as e:
        st.error(str(e))
    return c, cs


def download_buttons(ctx, exp, overlay, cmap, alpha, c=None, cs=None, key: str = "dl") -> None:
    files = report.downloads(ctx, exp, overlay, cmap, c, cs.describe() if cs else None,
                             {"colour_map": cmap, "opacity": alpha})
    cols = st.columns(len(files))
    labels = ("Heatmap PNG", "Overlay PNG", "Raw map .npy", "JSON report")
    for col, label, (fname, (data, mime)) in zip(cols, labels, files.items()):
        col.download_button(label, data, file_name=fname, mime=mime, key=f"{key}.{label}", on_click="ignore",
                            icon=":material/download:")


# -- explainer pages ---------------------------------------------------------------------------------------
def explainer_view(ctx: Context, names: list[str], key: str, with_curves: bool = True) -> None:
    """Method choice and the parameters that need model passes (with progress and Cancel), then the
    fragment with everything that does not."""
    if len(names) > 1:
        method = st.radio("Method", names, format_func=_name, key=f"{key}.method", horizontal=True,
                          persist_state="session")
    else:
        method = names[0]
    how_it_works(method)
    left, right = st.columns([1, 2.6], gap="large")
    with left:
        heavy = widgets.heavy_params(method, ctx.model)
    with right:
        ready = ensure_capture(ctx, method, heavy, key)
    if ready:
        result_view(ctx, method, heavy, key, with_curves)


@st.fragment
def result_view(ctx: Context, method: str, heavy: dict, key: str, with_curves: bool) -> None:
    """Post-processing parameters, heatmap, top-5, curves and downloads from the cached capture. A
    fragment: its widgets rerun it alone, and none of them runs the model (the curves excepted)."""
    left, right = st.columns([1, 2.6], gap="large")
    with left:
        params = {**heavy, **widgets.cheap_params(method, ctx.model)}
        st.divider()
        cmap, alpha = widgets.display_controls(key)
    with right:
        try:
            exp = compute.explain(ctx, method, params)
        except explainers.ExplainerError as e:
            st.error(f"{_name(method)} failed: {e}")
            return
        overlay = show_result(ctx, exp, cmap, alpha, key)
        st.plotly_chart(plots.top5(exp.top5, exp.target), key=f"{key}.top5", width="stretch")
    c = cs = None
    if with_curves:
        c, cs = curves_section(ctx, method, params, exp, key)
    download_buttons(ctx, exp, overlay, cmap, alpha, c, cs, key=f"{key}.dl")


def method_page(page_key: str) -> None:
    spec = settings.page_spec(page_key)
    st.title(spec.title)
    st.caption(spec.intro)
    names = spec.available()
    if not names:
        st.warning("The methods of this page are not part of this installation of the library.")
        return
    ctx = state.context()
    if ctx is not None:
        explainer_view(ctx, names, key=spec.key)


def home_page() -> None:
    st.title("ViT Explain Studio")
    st.markdown("Why did the Vision Transformer say that? Pick a model and a photo in the sidebar; every page "
                "explains the prediction with one family of methods, scores the explanation with insertion "
                "and deletion curves, and lets you download the maps.")
    ctx = state.context()
    if ctx is None:
        return
    quick = [n for n in ("attention_rollout", "generic_attention") if n in METHODS] or list(METHODS)[:1]
    explainer_view(ctx, quick, key="home", with_curves=False)
    st.subheader("More methods")
    cols = st.columns(3)
    for i, spec in enumerate(s for s in settings.EXPLAINER_PAGES if s.available()):
        cols[i % 3].page_link(f"app_pages/{spec.key}.py", label=spec.title, icon=spec.icon)
    cols = st.columns(3)
    cols[0].page_link("app_pages/compare.py", label="Compare all methods", icon=":material/compare:")
    cols[1].page_link("app_pages/evaluate.py", label="Evaluate on many images", icon=":material/analytics:")


# -- compare -----------------------------------------------------------------------------------------------
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


def compare_page() -> None:
    st.title("Compare methods")
    st.caption("Every method on the current image with its default parameters: maps, faithfulness and cost.")
    ctx = state.context()
    if ctx is None:
        return
    names = list(METHODS)
    chosen = st.multiselect("Methods", names, default=names, format_func=_name, key="cmp.methods",
                            persist_state="session")
    cs = curve_settings("cmp")
    with st.expander("Pointing game box", expanded=False):
        box = _box_inputs(ctx)
    if not chosen:
        st.info("Choose at least one method.")
        return
    bar = st.progress(0.0, text="Explaining…")
    rows, tiles, named_curves = [], [], {}
    shown = ctx.shown()
    H, W = ctx.model.input_size
    for i, name in enumerate(chosen):
        bar.progress(i / len(chosen), text=f"{_name(name)} ({i + 1}/{len(chosen)})…")
        defaults = METHODS[name].defaults()
        try:
            exp = compute.explain(ctx, name, defaults)
            c = compute.curves(ctx, name, defaults, exp, cs) if cs is not None else None
        except explainers.ExplainerError as e:
            st.error(f"{_name(name)}: {e}")
            continue
        row = {"method": _name(name), "seconds": round(exp.seconds, 3), "cost": METHODS[name].cost}
        if c is not None:
            named_curves[_name(name)] = c
            row["insertion AUC ↑"] = round(c.insertion_auc, 4)
            row["deletion AUC ↓"] = round(c.deletion_auc, 4)
        if box is not None:
            hit = metrics.pointing_game(exp.heatmap, [box], (H, W))
            row["pointing game"] = None if hit is None else ("hit" if hit else "miss")
            row["energy in box"] = round(metrics.energy_pointing_game(exp.heatmap, [box], (H, W)), 4)
        rows.append(row)
        tiles.append((name, viz.overlay(shown, exp.heatmap, 0.5, "jet"), exp))
    bar.empty()
    if box is not None and any(r.get("pointing game") is None for r in rows):
        st.caption("Pointing game skipped: the box covers half of the image or more.")
    cols = st.columns(4)
    for i, (name, ov, exp) in enumerate(tiles):
        cols[i % 4].image(ov, caption=f"{_name(name)} · {exp.seconds:.2f} s", width="stretch")
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch", key="cmp.table",
                     height=36 * (len(rows) + 1) + 4)
    if named_curves:
        st.plotly_chart(plots.curves(named_curves), key="cmp.curves", width="stretch")


# -- evaluate ----------------------------------------------------------------------------------------------
def evaluate_page() -> None:
    from explainers import evaluate

    st.title("Evaluate")
    st.caption("Batch evaluation: every chosen method on every image, scored with the insertion/deletion "
               "protocol; a summary table per method and the mean curves.")
    ctx = state.context()
    if ctx is None:
        return
    source = st.radio("Images", ["Bundled samples", "Upload"], key="ev.source", horizontal=True)
    images: list[tuple[str, object]] = []
    if source == "Bundled samples":
        files = [p.name for p in settings.samples()]
        picked = st.multiselect("Samples", files, default=files[:3], key="ev.samples")
        images = [(n, state.read_sample(n)[0]) for n in picked]
    else:
        ups = st.file_uploader("Photos", accept_multiple_files=True, key="ev.upload",
                               type=["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"]) or []
        for up in ups:
            try:
                images.append((up.name, state.decode(up.getvalue())[0]))
            except explainers.ImageError as e:
                st.error(f"{up.name} is skipped: {e}")
    boxes = _boxes_upload()
    names = list(METHODS) + [m for m in evaluate.REFERENCE_METHODS if m not in METHODS]
    default = [n for n in ("attention_rollout", "generic_attention", "random") if n in names]
    chosen = st.multiselect("Methods", names, default=default, key="ev.methods",
                            format_func=lambda n: _name(n) if n in METHODS else f"{n} (reference map)")
    c1, c2 = st.columns([2, 1])
    presets = list(metrics.PRESETS)
    preset = c1.selectbox("Protocol", presets, index=presets.index(metrics.DEFAULT_PRESET), key="ev.preset",
                          format_func=lambda n: metrics.PRESETS[n].title)
    steps = c2.selectbox("Steps", [None, *STEP_CHOICES], index=2, key="ev.steps",
                         format_func=lambda s: "preset's own" if s is None else str(s))
    st.caption(metrics.PRESETS[preset].doc)
    run = st.button("Run the evaluation", type="primary", key="ev.run", disabled=not (images and chosen))
    if run:
        bar = st.progress(0.0, text="Evaluating…")

        def progress(done, total):
            bar.progress(done / max(total, 1), text=f"Evaluating… {done}/{total} (image, method) pairs")

        try:
            rows = evaluate.evaluate_images(ctx.model, images, chosen, boxes=boxes, preset=preset, steps=steps,
                                            progress=progress)
        except explainers.ExplainerError as e:
            st.error(f"The evaluation failed: {e}")
            return
        finally:
            bar.empty()
        st.session_state["ev.result"] = (ctx.model_key[0], preset, steps, rows)
    result = st.session_state.get("ev.result")
    if result is None:
        st.info("Choose images and methods, then run the evaluation.")
        return
    model_name, preset_used, steps_used, rows = result
    st.caption(f"Model {model_name} · {metrics.PRESETS[preset_used].title} · "
               f"{steps_used or 'preset'} steps · {len(rows)} (image, method) pairs · the predicted class of "
               "each image is explained")
    for r in rows:
        if r.get("error"):
            st.warning(f"{r['image']} / {r['method']}: {r['error']}")
    st.subheader("Summary (mean ± 95% confidence interval)")
    st.dataframe(summary_table(evaluate.summarize(rows)), hide_index=True, width="stretch", key="ev.summary")
    with st.expander("All rows"):
        flat = [{k: v for k, v in r.items() if not isinstance(v, (list, dict))} for r in rows]
        st.dataframe(pd.DataFrame(flat), hide_index=True, width="stretch", key="ev.rows")
    st.plotly_chart(evaluate.curves_figure(rows), key="ev.curves", width="stretch")


def _boxes_upload() -> dict | None:
    """Optional ground-truth boxes for the pointing game: a ``boxes.json`` as the evaluation reads it
    ({image name: {"label", "width", "height", "boxes_xyxy"}})."""
    up = st.file_uploader("Object boxes for the pointing game (optional boxes.json)", type=["json"],
                          key="ev.boxes",
                          help='{"image.png": {"label": 282, "width": 451, "height": 300, '
                               '"boxes_xyxy": [[x0, y0, x1, y1]]}, ...} in the stored image\'s pixels.')
    if up is None:
        return None
    try:
        boxes = json.loads(up.getvalue().decode("utf-8"))
        if not isinstance(boxes, dict) or not all(isinstance(v, dict) for v in boxes.values()):
            raise ValueError("expected an object mapping image names to {label, width, height, boxes_xyxy}")
    except (UnicodeDecodeError, ValueError) as e:
        st.error(f"{up.name} cannot be used: {e}")
        return None
    st.caption(f"Boxes for {len(boxes)} images.")
    return boxes


SUMMARY_TITLES = {"insertion_auc": "insertion AUC ↑", "deletion_auc": "deletion AUC ↓",
                  "pointing_game": "pointing game ↑", "energy_pointing_game": "energy pointing ↑",
                  "seconds": "seconds / image"}


def summary_table(summary: list[dict]) -> pd.DataFrame:
    """``evaluate.summarize`` rows -> one row per method, a mean and a ± column per metric (sortable)."""
    table: dict[str, dict] = {}
    for s in summary:
        row = table.setdefault(s["method"], {"method": _name(s["method"]) if s["method"] in METHODS
                                             else s["method"], "n": 0})
        if s["n"] == 0:
            continue
        title = SUMMARY_TITLES.get(s["metric"], s["metric"])
        row[title] = round(s["mean"], 4)
        if s["metric"] != "seconds":
            row[f"{title} ±"] = None if np.isnan(s["ci95"]) else round(s["ci95"], 4)
        row["n"] = max(row.get("n", 0), s["n"])
    return pd.DataFrame(list(table.values()))
