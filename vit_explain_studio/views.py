"""The explainer pages and the pieces every page shares. ``app_pages/*.py`` are one-line calls into
:mod:`vit_explain_studio.views`, :mod:`vit_explain_studio.landing`, :mod:`vit_explain_studio.compare` and
:mod:`vit_explain_studio.evaluate_view`.

An explainer page draws its controls (the parameters that need model passes in a form applied with *Run*,
the post-processing ones as plain widgets) beside the result, then runs the method's model passes once
(progress bar and Cancel) and renders everything else from the cached capture: moving a cheap parameter
(discard ratio, head fusion, scaling, colour map, opacity) reruns the script, which finds the passes in the cache and
only redraws. There is deliberately no ``st.fragment``: a fragment rerun that reaches the server after a
page switch carries the old page's id, and Streamlit then clears the new page and writes the fragment's
elements at paths that no longer exist ("Bad delta path index", a blank app). A whole rerun cannot race a
page switch that way, and served from the caches it costs about as little (issue 16).
"""

from __future__ import annotations

import numpy as np
import streamlit as st

import explainers
from explainers import METHODS, metrics, viz

from . import cache, compute, inside_view, photo_view, plots, report, runs, settings, state, targets_ui, widgets
from .state import Context

STEP_CHOICES = (5, 10, 20, 50)
CHART_CONFIG = {"displaylogo": False}


def name_of(method: str) -> str:
    return METHODS[method].display_name if method in METHODS else method


def shown_name(exp: explainers.Explanation) -> str:
    """The method's name as a map's caption gives it, with the LibraGrad option when it is on."""
    return name_of(exp.method) + (" with LibraGrad" if exp.params.get("libragrad") else "")


def class_specific(method: str) -> bool:
    return method not in METHODS or bool(METHODS[method].class_specific)


def target_text(exp: explainers.Explanation, short: bool = False) -> str:
    """What the map explains: the class, or that it ignores the class (class-agnostic methods)."""
    if not class_specific(exp.method):
        return "class-agnostic: the same map for every class"
    if exp.target < 0 or " rather than " in exp.label:  # a contrast, region or text target
        return targets_ui.short_text(exp)
    label = exp.label.split(",")[0] if short else exp.label
    return f"{label} ({exp.probability:.1%})" if short else f"{exp.target} · {label} ({exp.probability:.2%})"


# -- shared pieces -----------------------------------------------------------------------------------------
def how_it_works(method: str) -> None:
    m = METHODS[method]
    with st.expander(f"How it works: {m.display_name}"):
        st.markdown(m.description)
        st.markdown(f"**Paper:** [{m.paper}]({m.paper_url})" if m.paper_url else f"**Paper:** {m.paper}")
        st.markdown(f"**Cost:** {m.cost}. **Class-specific:** "
                    f"{'yes' if m.class_specific else 'no (the map is the same for every class)'} "
                    f"(family: {m.family or '—'}).")
        doc = (type(m).__doc__ or "").strip()
        if doc:
            st.markdown("**Implementation notes**")
            st.markdown(widgets.rst_to_markdown(doc))


def show_result(ctx: Context, exp: explainers.Explanation, alpha: float, key: str, colour_bar: bool = True):
    """The overlay on the photo beside the original (:mod:`vit_explain_studio.photo_view`), what the map explains,
    warnings, the raw patch grid; returns the overlay image and the column beside the grid (for the top-5 chart)."""
    ov = photo_view.show_on_photo(ctx, exp, alpha, f"{shown_name(exp)} · {target_text(exp, short=True)}",
                                  colour_bar)
    if class_specific(exp.method):
        st.caption(f"{targets_ui.explained_caption(ctx, exp)} · {exp.seconds:.2f} s")
    else:
        st.caption(f"**Class-agnostic**: {shown_name(exp)} gives the same map whatever class is chosen · "
                   f"{exp.seconds:.2f} s")
    for w in exp.warnings:
        st.warning(w)
    grid_col, side = st.columns([1, 1.1])
    grid_col.plotly_chart(plots.patch_grid(exp.patch_map, exp.cmap, scale=exp.scale, clip=exp.clip),
                          key=f"{key}.grid", width="stretch", config=CHART_CONFIG)
    return ov, side


def curve_settings(key: str) -> compute.CurveSettings | None:
    c1, c2, c3 = st.columns([2.2, 1, 1])
    names = list(metrics.PRESETS)
    preset = c1.selectbox("Protocol", names, index=names.index(metrics.DEFAULT_PRESET), key=f"{key}.preset",
                          format_func=lambda n: metrics.PRESETS[n].title.split(",")[0], persist_state="session",
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


def worse_than_random(c, rnd) -> list[str]:
    """The curves on which a map does worse than the random map: less insertion AUC, more deletion AUC."""
    return [w for w, bad in (("insertion", c.insertion_auc < rnd.insertion_auc),
                             ("deletion", c.deletion_auc > rnd.deletion_auc)) if bad]


def reference_table(method: str, c: metrics.Curves, refs: dict[str, metrics.Curves]) -> None:
    """The method's AUCs beside the reference maps', with a flag when it does worse than the random map."""
    rows = [{"map": name_of(method), "insertion AUC ↑": c.insertion_auc, "deletion AUC ↓": c.deletion_auc}]
    rows += [{"map": f"{kind} (reference)", "insertion AUC ↑": r.insertion_auc, "deletion AUC ↓": r.deletion_auc}
             for kind, r in refs.items()]
    st.dataframe(rows, hide_index=True, width="stretch", key=f"{method}.refs",
                 column_config={k: st.column_config.NumberColumn(format="%.3f")
                                for k in ("insertion AUC ↑", "deletion AUC ↓")})
    rnd = refs.get("random")
    if rnd is not None:
        worse = worse_than_random(c, rnd)
        if worse:
            st.warning(f"⚠ Worse than a random map on {' and '.join(worse)} for this image and class: this map "
                       "is not faithful to the model here.")


def curves_section(ctx: Context, method: str, params: dict, exp, key: str):
    st.subheader("Faithfulness: insertion and deletion")
    cs = curve_settings(key)
    if cs is None:
        st.caption("Curves are off.")
        return None, None
    st.caption(metrics.PRESETS[cs.preset].title.split(",")[0] + f" · {cs.describe()['steps']} steps")
    try:
        with st.spinner("Scoring perturbed images…"):
            c = compute.curves(ctx, method, params, exp, cs)
            refs = {kind: compute.reference_curves(ctx, kind, cs) for kind in compute.REFERENCE_MAPS}
    except explainers.ExplainerError as e:
        st.error(f"The curves could not be computed: {e}")
        return None, None
    fractions = [round(float(f), 6) for f in c.fractions]
    step_key = f"{key}.step"
    if st.session_state.get(step_key) not in fractions:
        st.session_state[step_key] = fractions[len(fractions) // 2]
    reference_table(method, c, refs)
    cols = st.columns(2)
    for col, kind in zip(cols, ("insertion", "deletion")):
        chart_key = f"{key}.curves.{kind}"
        col.plotly_chart(plots.curve_panel({name_of(method): c}, kind, st.session_state[step_key], refs),
                         key=chart_key, width="stretch", config=CHART_CONFIG,
                         on_select=lambda k=chart_key: _pick_step(k, step_key, fractions), selection_mode="points")
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


def download_buttons(ctx, exp, overlay, alpha, c=None, cs=None, key: str = "dl") -> None:
    """The four downloads (the PNGs at the photo's own resolution), made now and kept in the "downloads" cache:
    identical bytes keep the same media
    file across reruns, so a button on screen never points at an expired file (Streamlit's deferred
    downloads expired under load, issue 16)."""
    display = {**exp.display_dict(), "signed": exp.signed, "opacity": alpha}
    ckey = ("dl", ctx.model_key, ctx.image_hash, exp.method, ctx.target_key, repr(sorted(exp.params.items())),
            *photo_view.display_key(exp), alpha, None if c is None else (c.insertion_auc, c.deletion_auc), cs)
    full_overlay = lambda: photo_view.photo_overlay(ctx, exp, alpha, full=True)  # noqa: E731
    files = cache.cached("downloads", ckey, lambda: {
        name: (make(), mime) for name, (make, mime) in
        report.downloads(ctx, exp, full_overlay, c, cs.describe() if cs else None, display).items()})
    cols = st.columns(len(files))
    labels = ("Heatmap PNG", "Overlay PNG", "Raw map .npy", "JSON report")
    for col, label, (fname, (data, mime)) in zip(cols, labels, files.items()):
        col.download_button(label, data, file_name=fname, mime=mime, key=f"{key}.{label}", on_click="ignore",
                            icon=":material/download:")


# -- explainer pages ---------------------------------------------------------------------------------------
def explainer_view(ctx: Context, names: list[str], key: str, with_curves: bool = True) -> None:
    """Method choice; the result (left, first on a phone) beside its controls (right, in an expander)."""
    if len(names) > 1:
        method = st.radio("Method", names, format_func=name_of, key=f"{key}.method", horizontal=True,
                          persist_state="session")
    else:
        method = names[0]
    result_col, control_col = st.columns([2.6, 1], gap="large")
    with control_col, st.expander("Parameters", expanded=True, icon=":material/tune:"):
        current, run_clicked = widgets.heavy_params(method, ctx.model)
        heavy, pending = runs.applied(ctx, method, current, run_clicked, key)
        params = {**heavy, **widgets.cheap_params(method, ctx.model)}
        st.divider()
        drawn, alpha = widgets.display_controls(key, explainers.api.is_signed(method, params, ctx.target))
        colour_bar = st.toggle("Colour bar", value=True, key=f"{key}.colour_bar", persist_state="session")
    with result_col:
        if pending:
            runs.pending_hint(method)
        if not runs.ensure_capture(ctx, method, heavy, key):
            how_it_works(method)
            return
        try:
            exp = compute.explain(ctx, method, params).with_display(**drawn)
        except explainers.ExplainerError as e:
            st.error(f"{name_of(method)} failed: {e}")
            return
        overlay, side = show_result(ctx, exp, alpha, key, colour_bar)
        inside_view.high_norm_toggle(ctx, exp, key)
        if exp.top5:  # a model without classes has no top-5
            side.plotly_chart(plots.top5(exp.top5, exp.target if class_specific(method) else None),
                              key=f"{key}.top5", width="stretch", config=CHART_CONFIG)
    how_it_works(method)
    c = cs = None
    if with_curves:
        c, cs = curves_section(ctx, method, params, exp, key)
    download_buttons(ctx, exp, overlay, alpha, c, cs, key=f"{key}.dl")


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


def overlay_tile(ctx: Context, exp) -> np.ndarray:
    """The map over the model's view, drawn in the explanation's own scaling and colour map."""
    return viz.overlay(ctx.shown(), exp.display(), 0.5, exp.cmap)
