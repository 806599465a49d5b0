"""The Evaluate page: the batch evaluation (``explainers.evaluate``) over bundled samples or uploaded photos.
Its inputs (uploads, boxes, methods, protocol) and results live in the session state, so they survive page
switches; the summary can be exported as CSV and HTML. With a CLIP or SigLIP model the run is zero-shot
(:mod:`vit_explain_studio.evaluate_text`: each image explained for its top label among the chosen labels; the
downloads record the labels and templates); a model with neither classes nor a text side offers no run."""

from __future__ import annotations

import io
import json
from html import escape

import numpy as np
import pandas as pd
import streamlit as st

import explainers
from explainers import METHODS, metrics
from explainers.evaluation.report import COLUMN_TITLES

from . import evaluate_text, state
from .views import STEP_CHOICES, name_of

MIN_IMAGES_FOR_CI = 5
MAX_UPLOADS = 20
IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"]


def _keep_uploads() -> None:
    """Copy the uploaded photos into the session state (a file uploader forgets them on a page switch)."""
    ups = st.session_state.get("ev.upload") or []
    kept = st.session_state.setdefault("ev.files", {})
    for up in ups[:MAX_UPLOADS]:
        kept[up.name] = up.getvalue()


def _images(source: str) -> list[tuple[str, object]]:
    from . import settings

    if source == "Bundled samples":
        files = [p.name for p in settings.samples()]
        picked = st.multiselect("Samples", files, default=files[:3], key="ev.samples", persist_state="session")
        return [(n, state.read_sample(n)[0]) for n in picked]
    st.file_uploader("Photos", accept_multiple_files=True, key="ev.upload", type=IMAGE_TYPES,
                     on_change=_keep_uploads, help=f"Up to {MAX_UPLOADS} photos; they stay for this session.")
    kept: dict = st.session_state.get("ev.files", {})
    images = []
    for name, data in list(kept.items()):
        try:
            images.append((name, state.decode(data)[0]))
        except explainers.ImageError as e:
            st.error(f"{name} is skipped: {e}")
            kept.pop(name, None)
    if kept:
        c1, c2 = st.columns([4, 1])
        c1.caption(f"{len(kept)} uploaded photos: {', '.join(kept)}")
        if c2.button("Clear", key="ev.clear"):
            st.session_state["ev.files"] = {}
            st.rerun()
    return images


def evaluate_page() -> None:
    from explainers import evaluate

    ctx = state.page_context("Evaluate", "Batch evaluation: every chosen method on every image (its predicted "
                             "class, or for a CLIP or SigLIP model its zero-shot label), scored with the "
                             "insertion/deletion protocol; a summary table per method and the mean curves.")
    if ctx is None:
        return
    mode = evaluate_text.mode_section(ctx.model)
    if mode is None:
        show_result(st.session_state.get("ev.result"))
        return
    zero_shot = mode if isinstance(mode, evaluate_text.ZeroShot) else None
    source = st.radio("Images", ["Bundled samples", "Upload"], key="ev.source", horizontal=True,
                      persist_state="session")
    images = _images(source)
    boxes = _boxes_upload()
    names = list(METHODS) + [m for m in evaluate.REFERENCE_METHODS if m not in METHODS]
    default = [n for n in ("attention_rollout", "generic_attention", "random") if n in names]
    chosen = st.multiselect("Methods", names, default=default, key="ev.methods", persist_state="session",
                            format_func=lambda n: name_of(n) if n in METHODS else f"{n} (reference map)")
    c1, c2 = st.columns([2, 1])
    presets = list(metrics.PRESETS)
    preset = c1.selectbox("Protocol", presets, index=presets.index(metrics.DEFAULT_PRESET), key="ev.preset",
                          format_func=lambda n: metrics.PRESETS[n].title.split(",")[0], persist_state="session")
    steps = c2.selectbox("Steps", [None, *STEP_CHOICES], index=2, key="ev.steps", persist_state="session",
                         format_func=lambda s: "preset's own" if s is None else str(s))
    st.caption(metrics.PRESETS[preset].doc)
    extra = st.toggle("Also score the newer metrics (slower)", key="ev.extra", persist_state="session",
                      help="ROAD (MoRF / LeRF AUC and their gap), faithfulness correlation, sparseness and, with "
                           "boxes, relevance mass / rank accuracy: about 90 more forward passes per map.")
    if images and len(images) < MIN_IMAGES_FOR_CI:
        st.warning(f"{len(images)} image(s): the 95% confidence intervals need at least {MIN_IMAGES_FOR_CI} images "
                   "to mean much (with one image there is none).")
    run = st.button("Run the evaluation", type="primary", key="ev.run",
                    disabled=not (images and chosen and (mode == "class" or zero_shot is not None)))
    if run:
        bar = st.progress(0.0, text="Evaluating…")
        st.button("Cancel", key="ev.cancel", help="Stop the evaluation (a click interrupts it).")

        def progress(done, total):
            bar.progress(done / max(total, 1), text=f"Evaluating… {done}/{total} (image, method) pairs")

        try:
            model = ctx.model
            if zero_shot is not None:
                bar.progress(0.0, text="Encoding the labels' prompts…")
                model = zero_shot.classifier(ctx.model)
            rows = evaluate.evaluate_images(model, images, chosen, boxes=boxes, preset=preset, steps=steps,
                                            progress=progress, extra=extra)
        except explainers.ExplainerError as e:
            st.error(f"The evaluation failed: {e}")
            return
        finally:
            bar.empty()
        st.session_state["ev.result"] = {"model": ctx.model_key[0].rsplit("/", 1)[-1], "preset": preset,
                                         "steps": steps, "rows": rows, "zero_shot": zero_shot}
        st.rerun()
    show_result(st.session_state.get("ev.result"))


def show_result(result) -> None:
    if result is None:
        st.info("Choose images and methods, then run the evaluation.")
        return
    rows, zero_shot = result["rows"], result.get("zero_shot")
    n_images = len({r["image"] for r in rows})
    explained = "the predicted class of each image is explained" if zero_shot is None else \
        f"each image is explained for its zero-shot top label among {zero_shot.describe()}"
    st.caption(f"Model {result['model']} · {metrics.PRESETS[result['preset']].title.split(',')[0]} · "
               f"{result['steps'] or 'preset'} steps · {n_images} images · {len(rows)} (image, method) pairs · "
               f"{explained}")
    for r in rows:
        if r.get("error"):
            st.warning(f"{r['image']} / {r['method']}: {r['error']}")
    st.subheader("Summary (mean ± 95% confidence interval)")
    table, flat, fig = result_views(result)
    st.dataframe(table, hide_index=True, width="stretch", key="ev.summary")
    with st.expander("All rows"):
        st.dataframe(flat, hide_index=True, width="stretch", key="ev.rows")
    st.plotly_chart(fig, key="ev.curves", width="stretch", config={"displaylogo": False})
    files = exports(result, table, flat, fig)
    for col, (name, kind, title, key) in zip(st.columns(3), EXPORTS):
        col.download_button(title, files[name], name, kind, key=key, on_click="ignore", icon=":material/download:")


EXPORTS = [("summary.csv", "text/csv", "Summary CSV", "ev.dl.summary"),
           ("results.csv", "text/csv", "All rows CSV", "ev.dl.rows"),
           ("evaluation.html", "text/html", "Report HTML", "ev.dl.html")]


def result_views(result) -> tuple[pd.DataFrame, pd.DataFrame, object]:
    """The summary table, the table of all rows (no curves) and the mean curves' figure of a result."""
    from explainers import evaluate

    rows = result["rows"]
    table = summary_table(evaluate.summarize(rows))
    flat = pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, (list, dict))} for r in rows])
    named = [{**r, "method": name_of(r["method"]) if r["method"] in METHODS else f"{r['method']} (reference)"}
             for r in rows]
    fig = evaluate.curves_figure(named)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-0.2), modebar=dict(orientation="v"))
    return table, flat, fig


def exports(result, table: pd.DataFrame, flat: pd.DataFrame, fig) -> dict[str, bytes]:
    """The downloads by file name. A zero-shot run records its labels (as ``--zero-shot`` takes them) and templates
    in two columns of each CSV and a line of the report."""
    zero_shot = result.get("zero_shot")
    record = zero_shot.record() if zero_shot is not None else {}
    html = io.StringIO()
    html.write(f"<h1>Evaluation: {escape(result['model'])}</h1>")
    if zero_shot is not None:
        html.write(f"<p>Zero-shot: each image is explained for its top label among "
                   f"{escape(zero_shot.describe())}.</p>")
    html.write(table.to_html(index=False))
    html.write(fig.to_html(full_html=False, include_plotlyjs="cdn"))
    return {"summary.csv": table.assign(**record).to_csv(index=False).encode(),
            "results.csv": flat.assign(**record).to_csv(index=False).encode(),
            "evaluation.html": html.getvalue().encode()}


def _keep_boxes() -> None:
    up = st.session_state.get("ev.boxes")
    st.session_state["ev.boxes_file"] = None if up is None else (up.name, up.getvalue())


def _boxes_upload() -> dict | None:
    """Optional ground-truth boxes for the pointing game: a ``boxes.json`` as the evaluation reads it
    ({image name: {"label", "width", "height", "boxes_xyxy"}}); kept for the session."""
    st.file_uploader("Object boxes for the pointing game (optional boxes.json)", type=["json"],
                     key="ev.boxes", on_change=_keep_boxes,
                     help='{"image.png": {"label": 282, "width": 451, "height": 300, '
                          '"boxes_xyxy": [[x0, y0, x1, y1]]}, ...} in the stored image\'s pixels.')
    kept = st.session_state.get("ev.boxes_file")
    if kept is None:
        return None
    name, data = kept
    try:
        boxes = json.loads(data.decode("utf-8"))
        if not isinstance(boxes, dict) or not all(isinstance(v, dict) for v in boxes.values()):
            raise ValueError("expected an object mapping image names to {label, width, height, boxes_xyxy}")
    except (UnicodeDecodeError, ValueError) as e:
        st.error(f"{name} cannot be used: {e}")
        return None
    st.caption(f"Boxes for {len(boxes)} images ({name}).")
    return boxes


SUMMARY_TITLES = {**COLUMN_TITLES, "seconds": "seconds / image"}


def summary_table(summary: list[dict]) -> pd.DataFrame:
    """``evaluate.summarize`` rows -> one row per method, a mean and a ± column per metric (sortable)."""
    table: dict[str, dict] = {}
    for s in summary:
        row = table.setdefault(s["method"], {"method": name_of(s["method"]) if s["method"] in METHODS
                                             else s["method"], "n": 0})
        if s["n"] == 0:
            continue
        title = SUMMARY_TITLES.get(s["metric"], s["metric"])
        row[title] = round(s["mean"], 4)
        if s["metric"] != "seconds":
            row[f"{title} ±"] = None if np.isnan(s["ci95"]) else round(s["ci95"], 4)
        row["n"] = max(row.get("n", 0), s["n"])
    return pd.DataFrame(list(table.values()))
