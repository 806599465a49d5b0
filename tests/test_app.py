"""The Streamlit app through ``streamlit.testing.v1.AppTest``: every page with the real DeiT-Tiny weights
(``VIT_EXPLAIN_WEIGHTS``), the cheapest parameters, and the error paths (bad uploads, refused models)."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
from conftest import ROOT, SAMPLES, WEIGHTS
from PIL import Image

pytest.importorskip("streamlit")

from app_support import (  # noqa: E402, F401  (offline_weights: an autouse fixture)
    TIMEOUT,
    check_clean,
    curves_spec,
    decode,
    grid_values,
    new_app,
    offline_weights,
    open_page,
    plotly_specs,
)

import explainers  # noqa: E402
import explainers.geometry  # noqa: E402
import explainers.metrics  # noqa: E402
import explainers.viz  # noqa: E402


def test_landing_shows_the_two_class_story_without_clicks(deit_tiny, both_image):
    """The landing page opens on both.png with a class-specific method: the bull mastiff's and the tiger cat's
    maps side by side (those the library gives), and one click explains another class."""
    import dataclasses

    from vit_explain_studio import compute

    at = new_app()
    at.run()
    check_clean(at)
    ctx = at.session_state["ctx"]
    assert ctx.image_name == "both.png"
    import torch

    with torch.inference_mode():
        probs = deit_tiny.forward(deit_tiny.preprocess(both_image)).float().softmax(-1)[0].numpy()
    np.testing.assert_allclose(ctx.probs, probs, rtol=1e-4, atol=1e-6)  # the sidebar predicted with the weights
    assert {243, 282} <= set(ctx.top5)
    captions = [i.proto.imgs[0].caption for i in at.main.image]
    assert len(captions) == 2 and captions[0].startswith("bull mastiff · ") and captions[1].startswith("tiger cat · ")
    assert all("Transformer Attribution" in c for c in captions)
    store = compute.explanation_store()
    misses = store.misses
    for cls in (243, 282):  # the app computed exactly these two explanations (now served from its cache)
        exp = compute.explain(dataclasses.replace(ctx, target=cls), "transformer_attribution", {})
        ref = explainers.explain(deit_tiny, both_image, "transformer_attribution", target=cls)
        np.testing.assert_allclose(exp.patch_map, ref.patch_map, rtol=1e-3, atol=1e-7)
    assert store.misses == misses
    # the two maps differ: each class has its own evidence
    maps = [compute.explain(dataclasses.replace(ctx, target=c), "transformer_attribution", {}).patch_map
            for c in (243, 282)]
    assert np.corrcoef(maps[0].ravel(), maps[1].ravel())[0, 1] < 0.9
    # one click on another class redraws the right-hand map for it
    other = [c for c in ctx.top5 if c not in (243, 282)][0]
    at.button_group(key="home.other").set_value(other).run()
    check_clean(at)
    captions = [i.proto.imgs[0].caption for i in at.main.image]
    assert captions[0].startswith("bull mastiff") and captions[1].startswith(deit_tiny.labels[other].split(",")[0])


def test_attention_page_cheap_slider_needs_no_new_capture():
    from vit_explain_studio import compute

    at = open_page("attention", **{"attention.steps": 5})
    spec = curves_spec(at)
    aucs = [t["name"] for t in spec["data"] if "AUC" in (t.get("name") or "")]
    assert len(aucs) == 3 and aucs[1].startswith("random map") and aucs[2].startswith("gaussian map"), aucs
    # a class-agnostic method says so instead of naming a class
    assert any(c.value.startswith("**Class-agnostic**") for c in at.caption)
    assert not any(c.value.startswith("Explained class") for c in at.caption)
    before = grid_values(at)
    store = compute.captures()
    misses = store.misses
    at.slider(key="p.attention_rollout.discard_ratio").set_value(0.2).run()
    check_clean(at)
    after = grid_values(at)
    assert store.misses == misses, "a cheap parameter ran the model again"
    assert not np.allclose(before, after), "the map did not change with the discard ratio"
    at.selectbox(key="p.attention_rollout.head_fusion").set_value("max").run()
    check_clean(at)
    assert store.misses == misses
    assert not np.allclose(after, grid_values(at))
    # the other method of the page
    at.radio(key="attention.method").set_value("gradient_rollout").run()
    check_clean(at)
    assert store.misses == misses + 1
    curves_spec(at)


def test_chefer_page_explains_the_class_chosen_in_the_sidebar(deit_tiny, cat_image):
    at = open_page("attention", sample="chelsea.png", **{"chefer.steps": 5, "attention.steps": 5})
    # tiger cat (282) from the searchable list of all classes (the sidebar keeps it across pages)
    anyclass = [s for s in at.sidebar.selectbox if s.key and s.key.startswith("anyclass.")][0]
    anyclass.set_value(282).run()
    check_clean(at)
    assert at.session_state["ctx"].target == 282
    pills = [b for b in at.sidebar.button_group if b.key and b.key.startswith("top5.")][0]
    assert pills.value is None  # the search box's choice replaced the pill's
    pills.set_value(281).run()  # then a top-5 pill wins again
    assert at.session_state["ctx"].target == 281
    anyclass = [s for s in at.sidebar.selectbox if s.key and s.key.startswith("anyclass.")][0]
    assert anyclass.value is None
    anyclass.set_value(282).run()
    at.switch_page("vit_explain_studio/app_pages/chefer.py").run()
    check_clean(at)
    assert at.session_state["ctx"].target == 282
    assert at.radio(key="chefer.method").value == "transformer_attribution"
    assert any("282 · tiger cat" in c.value for c in at.caption)
    ref = explainers.explain(deit_tiny, cat_image, "transformer_attribution", target=282)
    other = explainers.explain(deit_tiny, cat_image, "transformer_attribution", target=281)
    drawn = grid_values(at)
    np.testing.assert_allclose(drawn, ref.patch_map, rtol=1e-3, atol=1e-7)
    assert not np.allclose(drawn, other.patch_map, rtol=1e-3, atol=1e-7)
    curves_spec(at)


def test_generic_attention_page_downloads(deit_tiny, cat_image):
    from vit_explain_studio import report
    from vit_explain_studio.state import Context

    at = open_page("generic_attention", **{"generic_attention.steps": 5})
    curves_spec(at)
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Heatmap PNG", "Overlay PNG", "Raw map .npy", "JSON report"]

    # what the buttons hand out
    exp = explainers.explain(deit_tiny, cat_image, "generic_attention")
    ctx = Context(model=deit_tiny, model_key=("deit_tiny_patch16_224", None, "cpu"), image=cat_image,
                  image_hash="abc", image_name="chelsea.png", probs=np.zeros(1000), target=exp.target)
    overlay = explainers.viz.overlay(cat_image, exp.heatmap)
    curves = explainers.metrics.insertion_deletion(deit_tiny, deit_tiny.preprocess(cat_image), exp.heatmap,
                                                   exp.target, steps=4)
    files = report.downloads(ctx, exp.with_display(cmap="viridis"), overlay, curves, {"preset": "standard", "steps": 4})
    data = {name.rsplit("_", 1)[1]: make() for name, (make, _) in files.items()}
    heat = np.asarray(Image.open(io.BytesIO(data["heatmap.png"])))
    # at the photo's own resolution: the map mapped back through the model's resize and crop
    assert heat.shape == (cat_image.size[1], cat_image.size[0], 3)
    g = explainers.geometry.crop_geometry(deit_tiny.preprocessing, cat_image.size)
    np.testing.assert_array_equal(heat, explainers.geometry.photo_heatmap(exp.display(), g, "viridis"))
    assert Image.open(io.BytesIO(data["overlay.png"])).size == overlay.size
    np.testing.assert_array_equal(np.load(io.BytesIO(data["map.npy"])), exp.patch_map)
    rep = json.loads(data["report.json"])
    assert rep["method"]["name"] == "generic_attention"
    assert rep["target"]["index"] == exp.target and rep["target"]["label"] == exp.label
    assert rep["model"]["name"] == "deit_tiny_patch16_224" and rep["model"]["layers"] == 12
    assert rep["metrics"]["insertion_auc"] == pytest.approx(curves.insertion_auc)
    assert rep["versions"]["torch"] and rep["versions"]["explainers"] == explainers.__version__


@pytest.mark.parametrize("page,method,params", [
    ("vit_cx", "vit_cx", {"distance_threshold": 0.6}),
    ("similarity_graph", "similarity_graph", {"masks_layer": 1, "starting_layer": 9}),
    ("gradmask", "gradmask", {"masks_layer": 1}),
    ("attribution", "gradient_x_input", {}),  # issue 26: the page's first method (captum baselines)
])
def test_perturbation_pages(page, method, params):
    if method not in explainers.METHODS:
        pytest.fail(f"method {method} is not registered")
    state = {f"p.{method}.{k}": v for k, v in params.items()}
    at = open_page(page, **state, **{f"{page}.steps": 5})
    grid = grid_values(at)
    assert grid.shape == (14, 14) and np.isfinite(grid).all() and np.ptp(grid) > 0
    curves_spec(at)


def test_compare_page_table_and_pointing_game():
    methods = ["attention_rollout", "generic_attention", "attention_last_layer"]
    at = open_page("compare", **{"cmp.methods": methods, "cmp.steps": 5, "cmp.box.on": True,
                                 "cmp.box.x0": 40, "cmp.box.y0": 40, "cmp.box.x1": 180, "cmp.box.y1": 200})
    table = at.dataframe[0].value
    names = [explainers.METHODS[m].display_name for m in methods]
    assert set(table["method"]) == {*names, "random (reference)", "gaussian (reference)"}
    assert table["insertion AUC ↑"].between(0, 1).all() and table["deletion AUC ↓"].between(0, 1).all()
    assert list(table["insertion AUC ↑"]) == sorted(table["insertion AUC ↑"], reverse=True)  # sorted, best first
    assert set(table["pointing game"].dropna()) <= {"hit", "miss"}
    assert any(c.value.startswith("Best by insertion AUC") for c in at.caption)
    at.selectbox(key="cmp.sort").set_value("deletion AUC ↓").run()
    table = at.dataframe[0].value
    assert list(table["deletion AUC ↓"]) == sorted(table["deletion AUC ↓"])
    overlaid = curves_spec(at)
    assert len(overlaid["data"]) == len(methods) + 2  # one insertion curve per method and the two references


def test_evaluate_page_runs_a_batch():
    at = open_page("evaluate", **{"ev.samples": ["chelsea.png"], "ev.methods": ["attention_rollout", "random"],
                                  "ev.steps": 5})
    at.file_uploader(key="ev.boxes").set_value(("boxes.json", b"{not json", "application/json"))
    at.run()
    assert [e.value for e in at.error] and at.error[0].value.startswith("boxes.json cannot be used")
    boxes = {"chelsea.png": {"label": 285, "width": 451, "height": 300, "boxes_xyxy": [[150, 60, 280, 230]]}}
    at.file_uploader(key="ev.boxes").set_value(("boxes.json", json.dumps(boxes).encode(), "application/json"))
    at.run()
    check_clean(at)
    at.button(key="ev.run").click().run()
    check_clean(at)
    summary = at.dataframe[0].value
    assert set(summary["method"]) == {"Attention Rollout", "random"}
    assert summary["insertion AUC ↑"].between(0, 1).all()
    assert summary["pointing game ↑"].isin([0.0, 1.0]).all()  # one image: a hit or a miss
    assert summary["energy pointing ↑"].between(0, 1).all()
    assert any(s["data"] for s in plotly_specs(at))


def _png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.open(SAMPLES / "chelsea.png").save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("name,data", [
    ("empty.png", b""),
    ("truncated.png", _png_bytes()[:300]),
    ("notes.png", b"this is a text file, not a picture\n" * 20),
])
def test_bad_upload_gives_a_message_not_a_traceback(name, data):
    at = new_app()
    at.run()
    at.sidebar.radio(key="image_source").set_value("Upload").run()
    assert not at.exception
    at.sidebar.get("file_uploader")[0].set_value((name, data, "image/png"))
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    msgs = [e.value for e in at.error]
    assert len(msgs) == 1 and msgs[0].startswith("This image cannot be used:"), msgs
    assert at.session_state["ctx"] is None
    assert not at.main.image


def test_upload_of_a_real_photo_is_explained(both_image):
    buf = io.BytesIO()
    both_image.save(buf, format="JPEG", quality=90)
    at = new_app()
    at.run()
    at.sidebar.radio(key="image_source").set_value("Upload").run()
    at.sidebar.get("file_uploader")[0].set_value(("both.jpg", buf.getvalue(), "image/jpeg"))
    at.run()
    check_clean(at)
    assert at.session_state["ctx"].image_name == "both.jpg"
    assert set(at.session_state["ctx"].top5) & {243, 282}


def test_typed_models_outside_the_allowed_folders_are_refused(tmp_path):
    from vit_explain_studio.state import ChoiceError, check_model_choice

    assert check_model_choice("deit_small_patch16_224") == ("deit_small_patch16_224", None)
    assert check_model_choice("facebook/deit-tiny-patch16-224")[0] == "facebook/deit-tiny-patch16-224"
    for bad in ("/etc", "../../etc/passwd", "rm -rf /", "a/b/c"):
        with pytest.raises(ChoiceError):
            check_model_choice(bad)
    with pytest.raises(ChoiceError):
        check_model_choice("deit_tiny_patch16_224", weights=str(tmp_path))
    # the default model's own weights folder is always allowed
    assert check_model_choice("deit_tiny_patch16_224", str(WEIGHTS))[1] == str(WEIGHTS.resolve())

    at = new_app()
    at.run()
    at.sidebar.selectbox(key="model_choice").set_value("Other: timm name, Hugging Face id or local folder…").run()
    at.sidebar.text_input(key="model_typed").input(str(tmp_path)).run()
    assert not at.exception
    assert any("VIT_EXPLAIN_ALLOWED_PATHS" in e.value for e in at.error)
    assert at.session_state["ctx"] is None


def test_a_model_without_weights_offline_gives_a_message():
    """Offline (the tests set HF_HUB_OFFLINE), a curated hub model without local weights cannot load: the
    sidebar says why and how to fix it, the pages wait, nothing crashes."""
    at = new_app()
    at.run()
    at.sidebar.selectbox(key="model_choice").set_value("deit_small_patch16_224").run()
    assert not at.exception, [e.message for e in at.exception]
    msgs = [e.value for e in at.main.error]
    assert len(msgs) == 1 and msgs[0].startswith("The model could not be loaded:") and "VIT_EXPLAIN_WEIGHTS" in msgs[0]
    assert [e.label for e in at.main.expander] == ["Details"]  # the technical detail, folded
    assert "WeightsUnavailableError" in at.main.expander[0].get("code")[0].value
    assert at.session_state["ctx"] is None
    assert any("Choose a model and an image" in i.value for i in at.info)
    # back to the default model: explained again
    at.sidebar.selectbox(key="model_choice").set_value("deit_tiny_patch16_224").run()
    check_clean(at)
    assert at.session_state["ctx"] is not None and at.main.image


def test_perturbed_step_images_follow_the_protocol(deit_tiny, cat_image):
    """The images shown beside the curves: with Chefer et al.'s negative test the first curve removes the
    least relevant pixels (blacked out), the second the most relevant; with the standard protocol insertion
    shows only the most relevant pixels."""
    from vit_explain_studio import compute
    from vit_explain_studio.state import Context

    exp = explainers.explain(deit_tiny, cat_image, "attention_rollout")
    ctx = Context(model=deit_tiny, model_key=("deit_tiny", None, "cpu"), image=cat_image, image_hash="h",
                  image_name="c", probs=np.zeros(1000), target=exp.target)
    chefer = compute.CurveSettings("chefer", None)
    neg = compute.perturbed_image(ctx, exp, 0.3, "insertion", chefer).sum(-1) == 0
    pos = compute.perturbed_image(ctx, exp, 0.3, "deletion", chefer).sum(-1) == 0
    assert abs(neg.mean() - 0.3) < 0.01 and abs(pos.mean() - 0.3) < 0.01
    assert exp.heatmap[neg].max() <= exp.heatmap[pos].min() + 1e-6
    std = compute.CurveSettings("standard", 10)
    shown = compute.perturbed_image(ctx, exp, 0.2, "insertion", std)
    full = np.asarray(ctx.shown(), dtype=np.int16)
    same = (np.abs(shown.astype(np.int16) - full).max(-1) <= 1)
    assert exp.heatmap[same].mean() > exp.heatmap[~same].mean()


def test_a_local_model_folder_under_an_allowed_path_is_loaded(monkeypatch, deit_tiny_hf, both_image):
    """The operator allows ../shared/weights: a user types the Hugging Face DeiT-Tiny folder there (relative
    to the repository), and the app explains with it (its own preprocessing included)."""
    monkeypatch.setenv("VIT_EXPLAIN_ALLOWED_PATHS", str(WEIGHTS.parent))
    rel = os.path.relpath(WEIGHTS / "hf", ROOT)
    at = new_app()
    at.run()
    at.sidebar.selectbox(key="model_choice").set_value("Other: timm name, Hugging Face id or local folder…").run()
    at.sidebar.text_input(key="model_typed").input(rel).run()
    check_clean(at)
    ctx = at.session_state["ctx"]
    assert ctx.model.source == "hf" and ctx.model_key[0] == str((WEIGHTS / "hf").resolve())
    at.switch_page("vit_explain_studio/app_pages/attention.py").run()
    check_clean(at)
    ref = explainers.explain(deit_tiny_hf, both_image, "attention_rollout")
    assert at.session_state["ctx"].target == ref.target
    np.testing.assert_allclose(grid_values(at), ref.patch_map, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("typed", ["resnet50", "vit_" + "x" * 240, "nobody-here/no-such-model"])
def test_typed_model_names_give_a_short_message_never_a_traceback(typed):
    """Any typed name ends in one short message in the main area (details folded, no server path), never a
    traceback: a CNN, a name too long for the file system, an unknown hub id offline."""
    at = new_app()
    at.run()
    at.sidebar.selectbox(key="model_choice").set_value("Other: timm name, Hugging Face id or local folder…").run()
    at.sidebar.text_input(key="model_typed").input(typed).run()
    assert not at.exception, [e.message for e in at.exception]
    msgs = [e.value for e in at.error]
    assert len(msgs) == 1 and msgs[0].startswith("The model could not be loaded:"), msgs
    assert len(msgs[0]) < 400 and "Traceback" not in msgs[0]
    details = [c.value for c in at.main.expander[0].get("code")]
    assert details and not any(str(ROOT) in d or "/site-packages/" in d for d in details + msgs), details
    assert at.session_state["ctx"] is None
    # a rerun does not load again (the failure is remembered), and the default model still works after it
    at.run()
    assert [e.value for e in at.error] == msgs
    at.sidebar.selectbox(key="model_choice").set_value("deit_tiny_patch16_224").run()
    check_clean(at)
    assert at.session_state["ctx"] is not None


def test_worse_than_random_is_flagged():
    from types import SimpleNamespace

    from vit_explain_studio.views import worse_than_random

    rnd = SimpleNamespace(insertion_auc=0.40, deletion_auc=0.35)
    assert worse_than_random(SimpleNamespace(insertion_auc=0.50, deletion_auc=0.20), rnd) == []
    assert worse_than_random(SimpleNamespace(insertion_auc=0.30, deletion_auc=0.20), rnd) == ["insertion"]
    assert worse_than_random(SimpleNamespace(insertion_auc=0.30, deletion_auc=0.50), rnd) == ["insertion", "deletion"]
