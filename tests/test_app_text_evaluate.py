"""The Evaluate page with text prompts (issue 11), through ``streamlit.testing.v1.AppTest``.

A tiny randomly initialised HF CLIP (saved with its tokenizer, loaded as a user would) has no classes: the page
evaluates zero-shot, and its rows are those of ``explainers.evaluate`` run on the library's zero-shot classifier
over the same labels and templates (the sidebar's labels, shared both ways with the explainer pages, or the 1000
ImageNet class names); the downloads record the labels and templates. Switching to DeiT-Tiny goes back to the
class-based run; a model with neither classes nor a text side offers no run."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from app_support import check_clean, offline_weights  # noqa: F401
from test_app_targets import LABELS, clip_app, tiny_clip  # noqa: F401

from explainers import evaluate, text
from vit_explain_studio import evaluate_text, evaluate_view, settings, targets_ui
from vit_explain_studio.loading import read_sample

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def clip(tiny_clip):  # noqa: F811  (the tiny CLIP folder and model of test_app_targets)
    return tiny_clip


SAMPLES = ["both.png", "chelsea.png"]
METHODS = ["attention_rollout", "random"]
COMPARED = ["target", "target_label", "probability", "insertion_auc", "deletion_auc"]


def library_rows(model, labels, templates, samples=SAMPLES, methods=METHODS):
    clf = text.zero_shot_classifier(model, labels, templates)
    return evaluate.evaluate_images(clf, [(n, read_sample(n)[0]) for n in samples], methods, steps=5)


def assert_same_rows(page_rows, lib_rows):
    assert [(r["image"], r["method"]) for r in page_rows] == [(r["image"], r["method"]) for r in lib_rows]
    for p, q in zip(page_rows, lib_rows):
        assert not p["error"], p["error"]
        assert (p["target"], p["target_label"]) == (q["target"], q["target_label"])
        np.testing.assert_allclose([p[k] for k in COMPARED[2:]], [q[k] for k in COMPARED[2:]], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(p["insertion_curve"], q["insertion_curve"], rtol=1e-4, atol=1e-6)


def run_page(at):
    at.button(key="ev.run").click().run()
    check_clean(at)
    return at.session_state["ev.result"]


def result_caption(at) -> str:
    return [c.value for c in at.caption if c.value.startswith("Model ")][0]


def test_clip_evaluates_zero_shot_over_the_sidebars_labels(clip):
    folder, model = clip
    at = clip_app(folder, "evaluate", **{"ev.samples": SAMPLES, "ev.methods": METHODS, "ev.steps": 5})
    assert not [r for r in at.radio if r.key == "ev.mode"]  # no classes: no class-based run offered
    assert at.radio(key="ev.zs.source").value == "sidebar"
    assert at.text_area(key="ev.zs.labels").value == targets_ui.DEFAULT_LABELS  # the sidebar's default labels
    result = run_page(at)
    zs = result["zero_shot"]
    assert zs == evaluate_text.ZeroShot("sidebar", LABELS, "simple")
    lib = library_rows(model, list(LABELS), "simple")
    assert_same_rows(result["rows"], lib)
    assert {r["target_label"] for r in result["rows"]} <= set(LABELS)
    assert "zero-shot top label among 5 labels (dog, cat, bird, car, person), templates: a photo of a {}." \
        in result_caption(at)
    summary = at.dataframe[0].value
    assert set(summary["method"]) == {"Attention Rollout", "random"}
    # the downloads record the labels and templates
    files = evaluate_view.exports(result, *evaluate_view.result_views(result))
    rows_csv = pd.read_csv(io.BytesIO(files["results.csv"]))
    assert (rows_csv["zero_shot_labels"] == "dog,cat,bird,car,person").all()
    assert (rows_csv["zero_shot_templates"] == "simple").all()
    assert list(rows_csv["target_label"]) == [r["target_label"] for r in lib]
    summary_csv = pd.read_csv(io.BytesIO(files["summary.csv"]))
    assert (summary_csv["zero_shot_labels"] == "dog,cat,bird,car,person").all()
    assert b"its top label among 5 labels (dog, cat, bird, car, person)" in files["evaluation.html"]

    # labels and templates typed on the page: the run uses them, and the explainer pages' sidebar shows them
    at.text_area(key="ev.zs.labels").set_value("a cat, a dog, a red car").run()
    at.selectbox(key="ev.zs.templates").set_value("none").run()
    check_clean(at)
    result = run_page(at)
    assert result["zero_shot"] == evaluate_text.ZeroShot("sidebar", ("a cat", "a dog", "a red car"), "none")
    assert_same_rows(result["rows"], library_rows(model, ["a cat", "a dog", "a red car"], "none"))
    assert "templates: as typed" in result_caption(at)
    at.switch_page("vit_explain_studio/app_pages/gradients.py").run()
    check_clean(at)
    assert at.sidebar.text_area(key="text.labels").value == "a cat, a dog, a red car"
    assert at.sidebar.selectbox(key="text.templates").value == "none"
    assert set(at.session_state["ctx"].target.labels) == {"a cat", "a dog", "a red car"}
    # and back: the sidebar's labels are the page's; the result was kept
    at.sidebar.text_area(key="text.labels").set_value("bird, plane").run()
    at.switch_page("vit_explain_studio/app_pages/evaluate.py").run()
    check_clean(at)
    assert at.text_area(key="ev.zs.labels").value == "bird, plane"
    assert at.session_state["ev.result"]["zero_shot"].labels == ("a cat", "a dog", "a red car")
    # one label cannot be classified among: a message, no run
    at.text_area(key="ev.zs.labels").set_value("bird").run()
    assert not at.exception and any("at least two labels" in e.value for e in at.error)
    assert at.button(key="ev.run").disabled


def test_clip_evaluates_zero_shot_over_imagenet_class_names(clip):
    folder, model = clip
    at = clip_app(folder, "evaluate", **{"ev.samples": SAMPLES[:1], "ev.methods": METHODS[:1], "ev.steps": 5})
    at.radio(key="ev.zs.source").set_value("imagenet").run()
    check_clean(at)
    assert not [t for t in at.text_area if t.key == "ev.zs.labels"]
    result = run_page(at)
    assert result["zero_shot"].source == "imagenet"
    lib = library_rows(model, "imagenet", "simple", SAMPLES[:1], METHODS[:1])
    assert_same_rows(result["rows"], lib)
    assert result["rows"][0]["target_label"] == text.imagenet_classnames()[result["rows"][0]["target"]]
    assert "among the 1000 ImageNet class names" in result_caption(at)
    files = evaluate_view.exports(result, *evaluate_view.result_views(result))
    assert (pd.read_csv(io.BytesIO(files["results.csv"]))["zero_shot_labels"] == "imagenet").all()


def test_switching_to_a_class_model_goes_back_to_class_mode(clip, deit_tiny):
    folder, _ = clip
    at = clip_app(folder, "evaluate", **{"ev.samples": SAMPLES[:1], "ev.methods": ["random"], "ev.steps": 5})
    assert at.radio(key="ev.zs.source")
    at.sidebar.selectbox(key="model_choice").set_value(settings.default_model()).run()
    check_clean(at)
    assert not [r for r in at.radio if r.key in ("ev.zs.source", "ev.mode")]  # no text side: the classes only
    result = run_page(at)
    assert result["zero_shot"] is None
    lib = evaluate.evaluate_images(deit_tiny, [(SAMPLES[0], read_sample(SAMPLES[0])[0])], ["random"], steps=5)
    assert_same_rows(result["rows"], lib)
    assert result["rows"][0]["target_label"] == deit_tiny.labels[result["rows"][0]["target"]]
    assert result_caption(at).endswith("the predicted class of each image is explained")
    files = evaluate_view.exports(result, *evaluate_view.result_views(result))
    assert "zero_shot_labels" not in pd.read_csv(io.BytesIO(files["results.csv"])).columns


def test_a_model_without_classes_or_text_offers_no_run(deit_tiny):
    from app_support import open_page

    at = open_page("evaluate", **{"ev.samples": SAMPLES[:1], "ev.methods": ["random"]})
    assert at.button(key="ev.run")  # DeiT-Tiny: a class-based run
    at.text_input(key="model.num_classes").set_value("0").run()
    assert not at.exception
    assert at.session_state["ctx"].model.num_classes == 0
    assert any("no classifier and no text side" in i.value for i in at.info), [i.value for i in at.info]
    assert not [b for b in at.button if b.key == "ev.run"]
    at.text_input(key="model.num_classes").set_value("").run()
    check_clean(at)
    assert at.button(key="ev.run")


def test_zero_shot_record_matches_the_command_line_option(clip):
    """The labels a download records are what ``evaluate --zero-shot`` takes: they give the same classifier."""
    from types import SimpleNamespace

    from explainers.text_cli import evaluate_model

    _, model = clip
    zs = evaluate_text.ZeroShot("sidebar", ("a cat", "a dog"), "none")
    rec = zs.record()
    clf = evaluate_model(model, SimpleNamespace(zero_shot=rec["zero_shot_labels"],
                                                zero_shot_templates=rec["zero_shot_templates"]))
    ours = zs.classifier(model)
    assert clf.labels == ours.labels == ["a cat", "a dog"]
    np.testing.assert_allclose(clf.head.head.weight.numpy(), ours.head.head.weight.numpy())


def _mode_page(model):
    import streamlit as st

    from vit_explain_studio import evaluate_text

    st.session_state["mode"] = evaluate_text.mode_section(model)


def test_a_clip_model_with_classes_offers_both_runs(clip):
    """A model with classes and a text side (here the zero-shot classifier, which keeps the CLIP text tower):
    a choice between its predicted class and a zero-shot run, zero-shot first."""
    from streamlit.testing.v1 import AppTest

    _, model = clip
    clf = text.zero_shot_classifier(model, ["a cat", "a dog"], "none")
    at = AppTest.from_function(_mode_page, args=(clf,), default_timeout=120).run()
    check_clean(at)
    assert at.radio(key="ev.mode").value == "zero-shot"
    assert at.session_state["mode"] == evaluate_text.ZeroShot("sidebar", LABELS, "simple")
    at.radio(key="ev.mode").set_value("class").run()
    check_clean(at)
    assert at.session_state["mode"] == "class" and not [r for r in at.radio if r.key == "ev.zs.source"]
