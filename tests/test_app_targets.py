"""The sidebar's targets beyond a class index (issues 10 and 11), through ``streamlit.testing.v1.AppTest``.

DeiT-Tiny with its real weights: a contrast of two classes ("bull mastiff rather than tiger cat"), a class
probability and "similar to this region" draw the library's maps for those targets, with captions that name them;
the number of classes and the input size typed under "Advanced" reach the model. A tiny randomly initialised HF CLIP
(saved with its tokenizer to a folder, loaded as a user would) gets a text target by default: the zero-shot top-5
over the typed labels, a typed prompt that changes the map, probability and contrast of prompts, and every page runs
with it."""

from __future__ import annotations

import os

import numpy as np
import pytest
from app_support import check_clean, curves_spec, grid_values, offline_weights, open_page  # noqa: F401

import explainers
from explainers import text
from explainers.targets import ClassProbability, Contrast, Similarity
from vit_explain_studio import settings, targets_ui

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def kind_box(at):
    return [s for s in at.sidebar.selectbox if s.key and s.key.startswith("target.kind.")][0]


def kinds(*names: str) -> list[str]:
    return [targets_ui.KINDS[n] for n in names]


def sidebar_pills(at, prefix: str):
    return [b for b in at.sidebar.button_group if b.key and b.key.startswith(prefix)][0]


def explained(at) -> list[str]:
    return [c.value for c in at.caption if c.value.startswith("Explained")]


# -- DeiT-Tiny, real weights ----------------------------------------------------------------------------------
def test_contrast_target_explains_a_rather_than_b(deit_tiny, both_image):
    from vit_explain_studio import compute

    at = open_page("generic_attention", **{"generic_attention.steps": 5})
    assert kind_box(at).options == kinds("class", "prob", "contrast", "region")  # no text side on DeiT
    kind_box(at).set_value("contrast").run()
    sidebar_pills(at, "top5.").set_value(243).run()
    b = [s for s in at.sidebar.selectbox if s.key.startswith("contrast.")][0]
    b.set_value(282).run()
    check_clean(at)
    ctx = at.session_state["ctx"]
    assert isinstance(ctx.target, Contrast) and (ctx.target.a, ctx.target.b) == (243, 282)
    assert explained(at)[0].startswith("Explained **243 · bull mastiff rather than 282 · tiger cat** (p(A) − p(B) =")
    ref = explainers.explain(deit_tiny, both_image, "generic_attention", target=Contrast(243, 282))
    np.testing.assert_allclose(grid_values(at), ref.patch_map, rtol=1e-3, atol=1e-7)
    cls = explainers.explain(deit_tiny, both_image, "generic_attention", target=243)
    assert not np.allclose(ref.patch_map, cls.patch_map, rtol=1e-3, atol=1e-7)
    curves_spec(at)  # the curves score the contrast (p(A) - p(B)) on the masked images
    # the target keys the captures: back to the plain class is one new capture, the contrast again none
    store = compute.captures()
    kind_box(at).set_value("class").run()
    check_clean(at)
    np.testing.assert_allclose(grid_values(at), cls.patch_map, rtol=1e-3, atol=1e-7)
    assert explained(at)[0].startswith("Explained class **243 · bull mastiff** (probability")
    misses = store.misses
    kind_box(at).set_value("contrast").run()
    check_clean(at)
    assert store.misses == misses, "the contrast's capture was not reused"
    np.testing.assert_allclose(grid_values(at), ref.patch_map, rtol=1e-3, atol=1e-7)


def test_class_probability_target(deit_tiny, both_image):
    at = open_page("gradients", **{"gradients.curves_on": False})
    kind_box(at).set_value("prob").run()
    sidebar_pills(at, "top5.").set_value(282).run()
    check_clean(at)
    assert isinstance(at.session_state["ctx"].target, ClassProbability)
    assert explained(at)[0].startswith("Explained **probability of 282 · tiger cat** (")
    method = at.radio(key="gradients.method").value
    ref = explainers.explain(deit_tiny, both_image, method, target=ClassProbability(282))
    np.testing.assert_allclose(grid_values(at), ref.patch_map, rtol=1e-3, atol=1e-7)
    logit = explainers.explain(deit_tiny, both_image, method, target=282)
    assert not np.allclose(ref.patch_map, logit.patch_map, rtol=1e-3, atol=1e-7)


def test_region_target_puts_its_mass_in_the_region(deit_tiny, both_image):
    """both.png: the dog's head at the top, the cat lying at the bottom. A region on the dog's head gives a map with
    more than twice its area's share of the mass inside it and more mass on the top half; moved onto the cat, the
    mass follows to the bottom half. The sidebar shows the region on the image."""
    at = open_page("generic_attention", **{"generic_attention.curves_on": False})
    kind_box(at).set_value("region").run()
    at.slider(key="region.rows.14x14").set_value((2, 7)).run()
    at.slider(key="region.cols.14x14").set_value((6, 10)).run()
    check_clean(at)
    ctx = at.session_state["ctx"]
    assert isinstance(ctx.target, Similarity) and ctx.target_spec.region == (1, 5, 7, 10)
    assert explained(at)[0].startswith("Explained **similarity to patch rows 2–7, columns 6–10** (cosine similarity")
    shown = [i.proto.imgs[0].caption for i in at.sidebar.image]
    assert any(c.startswith("The region: rows 2–7, columns 6–10 of 14×14 patches") for c in shown)
    m = grid_values(at)
    ref = explainers.explain(deit_tiny, both_image, "generic_attention", target=Similarity.to_region((1, 5, 7, 10)))
    np.testing.assert_allclose(m, ref.patch_map, rtol=1e-3, atol=1e-7)
    assert m[1:7, 5:10].sum() / m.sum() > 2 * (6 * 5) / 196 and m[:7].sum() > m[7:].sum()
    # the picture outlines the region: inside is the photo, outside is dimmed
    pic = np.asarray(targets_ui.region_picture(ctx.shown(), (14, 14), (1, 5, 7, 10))).astype(float)
    img = np.asarray(ctx.shown()).astype(float)
    np.testing.assert_allclose(pic[60, 120], img[60, 120])
    assert pic[200, 20].sum() < 0.6 * img[200, 20].sum() + 1
    # on the cat
    at.slider(key="region.rows.14x14").set_value((11, 14)).run()
    at.slider(key="region.cols.14x14").set_value((4, 12)).run()
    check_clean(at)
    m = grid_values(at)
    assert at.session_state["ctx"].target_spec.region == (10, 3, 14, 12)
    assert m[10:14, 3:12].sum() / m.sum() > 2 * (4 * 9) / 196 and m[7:].sum() > m[:7].sum()


def test_model_options_reach_the_model(deit_tiny):
    at = open_page("generic_attention", **{"generic_attention.curves_on": False})
    at.text_input(key="model.img_size").set_value("160, 192").run()
    check_clean(at)
    model = at.session_state["ctx"].model
    assert model.input_size == (160, 192) and model.grid() == (10, 12) and model.num_classes == 1000
    # the real weights were kept (position embedding resampled): still a bull mastiff on both.png
    assert at.session_state["ctx"].top5[0] == 243
    assert grid_values(at).shape == (10, 12)
    at.text_input(key="model.img_size").set_value("").run()
    at.text_input(key="model.num_classes").set_value("0").run()  # a headless backbone: a region target by default
    check_clean(at)
    ctx = at.session_state["ctx"]
    assert ctx.model.num_classes == 0 and ctx.probs.size == 0
    assert kind_box(at).options == kinds("region") and isinstance(ctx.target, Similarity)
    assert explained(at)[0].startswith("Explained **similarity to patch rows")
    at.text_input(key="model.num_classes").set_value("7").run()
    check_clean(at)
    assert at.session_state["ctx"].model.num_classes == 7
    for key, bad, words in (("model.num_classes", "-3", "Number of classes"), ("model.num_classes", "many", "0 to"),
                            ("model.img_size", "abc", "Input size"), ("model.img_size", "5000", "16 to 1024"),
                            ("model.img_size", "1,2,3", "N or H,W")):
        at.text_input(key=key).set_value(bad).run()
        assert not at.exception
        assert any(words in e.value for e in at.sidebar.error), (bad, [e.value for e in at.error])
        assert at.session_state["ctx"] is None
        at.text_input(key=key).set_value("").run()


# -- a tiny CLIP ---------------------------------------------------------------------------------------------------
def save_tiny_clip(folder):
    """A tiny random HF CLIPModel and its tokenizer (open_clip's BPE vocabulary) saved to ``folder``, as a user's."""
    from test_text import _clip_tokenizer, _module

    _module("clip").save_pretrained(folder)
    _clip_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A tiny random HF CLIPModel with its tokenizer (open_clip's BPE vocabulary) saved to an allowed folder."""
    root = tmp_path_factory.mktemp("models")
    folder = save_tiny_clip(root / "tiny-clip")
    old = os.environ.get("VIT_EXPLAIN_ALLOWED_PATHS")
    os.environ["VIT_EXPLAIN_ALLOWED_PATHS"] = str(root)
    yield str(folder), explainers.load_model(str(folder), device="cpu")
    if old is None:
        os.environ.pop("VIT_EXPLAIN_ALLOWED_PATHS", None)
    else:
        os.environ["VIT_EXPLAIN_ALLOWED_PATHS"] = old


def clip_app(folder: str, page: str, **state):
    return open_page(page, model_choice=settings.OTHER_MODEL, model_typed=folder, **state)


LABELS = targets_ui.labels_from(targets_ui.DEFAULT_LABELS)


def test_clip_text_prompt_zero_shot_and_contrast(tiny_clip, both_image):
    folder, model = tiny_clip
    at = clip_app(folder, "gradients", **{"gradients.steps": 5})
    assert kind_box(at).options == kinds("text", "text_contrast", "region")  # no classifier: a text target by default
    top = text.zero_shot(model, both_image, list(LABELS), "simple", top=5)
    pills = sidebar_pills(at, "zs.")
    assert pills.options == [f"{lab} · {p:.1%}" for lab, p in top]  # the model's own zero-shot top-5
    ctx = at.session_state["ctx"]
    assert isinstance(ctx.target, text.TextSimilarity) and ctx.target.prompts == (top[0][0],)
    method = at.radio(key="gradients.method").value
    first = grid_values(at)
    ref = explainers.explain(model, both_image, method, target=text.TextSimilarity(top[0][0], LABELS, "simple"))
    np.testing.assert_allclose(first, ref.patch_map, rtol=1e-3, atol=1e-7)
    curves_spec(at)
    # typing a prompt explains it: a new map and caption
    at.text_input(key="text.prompt").set_value("a dog").run()
    check_clean(at)
    assert at.session_state["ctx"].target.prompts == ("a dog",)
    assert explained(at)[0].startswith("Explained **text: 'a dog'** (zero-shot score")
    dog = explainers.explain(model, both_image, method, target=text.TextSimilarity("a dog", LABELS, "simple"))
    np.testing.assert_allclose(grid_values(at), dog.patch_map, rtol=1e-3, atol=1e-7)
    assert not np.allclose(grid_values(at), first, rtol=1e-3, atol=1e-7)
    # a click on a zero-shot pill wins over the typed prompt
    sidebar_pills(at, "zs.").set_value(top[1][0]).run()
    assert at.session_state["ctx"].target.prompts == (top[1][0],) and at.text_input(key="text.prompt").value == ""
    # the zero-shot probability among the labels
    at.toggle(key="text.prob").set_value(True).run()
    check_clean(at)
    assert isinstance(at.session_state["ctx"].target, text.TextProbability)
    # other labels: other choices
    at.text_area(key="text.labels").set_value("cat, car, cat").run()
    check_clean(at)
    assert sorted(o.split(" · ")[0] for o in sidebar_pills(at, "zs.").options) == ["car", "cat"]
    at.text_area(key="text.labels").set_value(" , ").run()
    assert not at.exception and any("at least one label" in e.value for e in at.sidebar.error)
    at.text_area(key="text.labels").set_value(targets_ui.DEFAULT_LABELS).run()
    # a contrast of two prompts, antisymmetric in the signed gradient
    at.toggle(key="text.prob").set_value(False).run()
    kind_box(at).set_value("text_contrast").run()
    at.text_input(key="text.prompt").set_value("a dog").run()
    b = [s for s in at.sidebar.selectbox if s.key.startswith("text.b.")][0]
    b.set_value("cat").run()
    check_clean(at)
    assert explained(at)[0].startswith("Explained **text: 'a dog' rather than 'cat'** (p(A) − p(B)")
    ref = explainers.explain(model, both_image, method, target=text.TextContrast("a dog", "cat", LABELS, "simple"))
    np.testing.assert_allclose(grid_values(at), ref.patch_map, rtol=1e-3, atol=1e-7)
    b = [s for s in at.sidebar.selectbox if s.key.startswith("text.b.")][0]
    assert "a dog" not in b.options and set(LABELS) <= set(b.options)  # B: any label but A (or a typed prompt)
    # the JSON report records the prompts, the labels and the templates
    from vit_explain_studio import report

    rep = report.report(at.session_state["ctx"], ref)
    choice = rep["target"]["choice"]
    assert choice["kind"] == "text_contrast" and list(choice["prompts"]) == ["a dog", "cat"]
    assert list(choice["labels"]) == list(LABELS) and choice["templates"] == "simple"
    assert rep["target"]["explains"].startswith("text: 'a dog' rather than 'cat'")


PAGES = ["attention", "chefer", "generic_attention", "vit_cx", "similarity_graph", "gradmask", "masks", "compare"]


@pytest.mark.parametrize("page", PAGES)
def test_every_page_runs_with_a_text_target(tiny_clip, page):
    folder, _ = tiny_clip
    at = clip_app(folder, page, **{f"{page}.steps": 5, "cmp.methods": ["attention_rollout", "generic_attention",
                                                                       "saliency"]})
    ctx = at.session_state["ctx"]
    assert isinstance(ctx.target, text.TextSimilarity)
    if page != "compare":
        grid_values(at)
        caps = [c.value for c in at.caption]
        assert any(c.startswith("Explained **text: ") or c.startswith("**Class-agnostic**") for c in caps), caps
    at.text_input(key="text.prompt").set_value("a photo of a cat").run()
    check_clean(at)
    assert at.session_state["ctx"].target.prompts == ("a photo of a cat",)


@pytest.mark.parametrize("page", ["home", "evaluate", "sanity", "attention_browser"])
def test_pages_without_a_text_target_run_on_a_clip_model(tiny_clip, page):
    """The pages that explain classes (or raw attention) say what they need instead of failing on a model
    without classes."""
    from conftest import ROOT

    if not (ROOT / "vit_explain_studio" / "app_pages" / f"{page}.py").exists():
        pytest.skip(f"no {page} page in this checkout")
    folder, _ = tiny_clip
    at = clip_app(folder, page)
    if page in ("home", "sanity"):
        assert any("no classifier" in i.value for i in at.info), [i.value for i in at.info]
