"""Regression tests of issue 24, causes 9-14 (the library): each failed before its fix.

9. text templates: exactly one plain ``{}``, substituted literally (never ``str.format``);
10. ``zero_shot``: ``top`` a whole number >= 1, labels never bytes;
11. numpy array, ``Decimal`` and ``Fraction`` class targets;
12. a capture renders only with the model that made it;
13. finite but huge input values are refused (they gave NaN logits and target 0 with probability NaN);
14. class-agnostic methods on a headless backbone need no target (and ``target=None`` does what docs/targets.md says).
Small randomly initialised models, no network."""

from __future__ import annotations

import copy
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
import timm
import torch
from model_zoo import perturb

import explainers
from explainers import ImageError, InvalidParameterError, text
from explainers.targets import NoTarget, Similarity

SIZE = 64  # 4x4 patches: cheap passes
HOSTILE_TEMPLATES = {"{}{}": "2 placeholders", "{0}{}": "braces besides", "{!r}{}": "braces besides",
                     "{}}": "braces besides", "{{}}": "braces besides", "{0.__class__.__mro__}": "no {}",
                     "{0:>20000000}{{}}": "braces besides", "{ }": "no {}"}


def _vit(num_classes=10, seed=0, name="deit_tiny_patch16_224", img_size=SIZE, **kw):
    torch.manual_seed(seed)
    module = timm.create_model(name, pretrained=False, num_classes=num_classes, depth=2, img_size=img_size, **kw)
    return explainers.models.wrap_timm(perturb(module, seed), f"{name}-{num_classes}-{seed}")


@pytest.fixture(scope="module")
def vit():
    return _vit()


def _x(n=1, seed=1, size=SIZE):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# -- 9. templates ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("template", sorted(HOSTILE_TEMPLATES))
def test_templates_other_than_one_plain_placeholder_are_refused(template):
    words = HOSTILE_TEMPLATES[template]
    for given in (template, [template], ["a photo of a {}.", template]):
        with pytest.raises(InvalidParameterError, match=words.replace("{", r"\{").replace("}", r"\}")):
            text.resolve_templates(given)
    with pytest.raises(InvalidParameterError):
        text.TextSimilarity("a cat", templates=[template])


def test_templates_are_filled_literally():
    assert text.resolve_templates("a {} b") == ("a {} b",)
    assert text.resolve_templates(["a photo of a {}.", "{}"]) == ("a photo of a {}.", "{}")
    assert text.fill("a photo of a {}.", "{0.__class__} {}") == "a photo of a {0.__class__} {}."
    for bad in (b"a {}", [b"a {}"], 5, []):
        with pytest.raises(InvalidParameterError):
            text.resolve_templates(bad)


@pytest.fixture(scope="module")
def clip():
    from test_text import _clip_tokenizer, _module

    m = explainers.models.wrap(_module("clip"), "tiny-clip", device="cpu")
    text.text_tower(m, tokenizer=_clip_tokenizer())
    return m


def test_a_template_gives_the_embedding_of_the_filled_text(clip):
    """The template ensemble embeds ``fill(template, prompt)``: a prompt in a template equals the filled text typed
    as a prompt, also when the prompt itself holds braces (which str.format would have interpreted)."""
    for prompt in ("dog", "a {0} dog {}"):
        a = text.text_embeddings(clip, [prompt], ["a photo of a {}."])
        b = text.text_embeddings(clip, [f"a photo of a {prompt}."], None)
        torch.testing.assert_close(a, b)


# -- 10. zero_shot arguments ---------------------------------------------------------------------------------------
def test_zero_shot_top_and_labels_are_checked(clip):
    labels = ["a dog", "a cat", "a car"]
    for top in (-1, 0, 1.5, True, "2", np.array([2])):
        with pytest.raises(InvalidParameterError, match="top must be a whole number"):
            text.zero_shot(clip, _x(), labels, templates=None, top=top)
    for bad in (b"dog", bytearray(b"dog"), [b"dog", "cat"], 5):
        with pytest.raises(InvalidParameterError, match="text"):
            text.zero_shot(clip, _x(), bad, templates=None)
    assert len(text.zero_shot(clip, _x(), labels, templates=None, top=np.int64(2))) == 2
    assert len(text.zero_shot(clip, _x(), labels, templates=None, top=10)) == 3  # at most the number of labels


# -- 11. numpy, Decimal and Fraction targets ---------------------------------------------------------------------
@pytest.mark.parametrize("target", [np.array([5]), np.array(5), np.int64(5), torch.tensor([5]), 5.0, Decimal(5),
                                    Fraction(5, 1), [Decimal(5)]])
def test_integral_targets_of_any_type_mean_that_class(vit, target):
    want = explainers.explain(vit, _x(), "gradcam", target=5)
    got = explainers.explain(vit, _x(), "gradcam", target=target)
    assert got.target == 5
    np.testing.assert_array_equal(got.patch_map, want.patch_map)


def test_one_numpy_target_per_image_of_a_batch(vit):
    got = explainers.explain(vit, _x(2), "gradcam", target=np.array([1, 7]))
    want = explainers.explain(vit, _x(2), "gradcam", target=[1, 7])
    assert [e.target for e in got] == [1, 7]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g.patch_map, w.patch_map)
    with pytest.raises(InvalidParameterError, match="3 targets for 2 images"):
        explainers.explain(vit, _x(2), "gradcam", target=np.array([1, 2, 3]))


@pytest.mark.parametrize("target", [Fraction(3, 2), Decimal("5.5"), Decimal("Infinity"), Decimal("NaN"), True,
                                    np.array([1.5]), np.array([True]), "5"])
def test_non_integral_targets_are_refused(vit, target):
    with pytest.raises(InvalidParameterError, match="target class must be an integer"):
        explainers.explain(vit, _x(), "gradcam", target=target)


def test_metrics_take_a_numpy_target(vit):
    from explainers.metrics import insertion_deletion

    sal = np.random.default_rng(0).random((4, 4))
    a = insertion_deletion(vit, _x(), sal, np.array([5]), steps=4)
    b = insertion_deletion(vit, _x(), sal, 5, steps=4)
    assert a.insertion_auc == b.insertion_auc and a.deletion_auc == b.deletion_auc


# -- 12. a capture carries its model ----------------------------------------------------------------------------
def test_render_refuses_a_capture_of_another_model(vit):
    cap = explainers.capture(vit, _x(), "gradcam")
    for other in (_vit(num_classes=1000), _vit(seed=3)):  # more classes; same architecture, other weights
        with pytest.raises(InvalidParameterError, match="another model"):
            explainers.render(cap, other)
    with pytest.raises(InvalidParameterError, match="another model"):
        explainers.render(explainers.capture(_vit(num_classes=1000), _x(), "gradcam"), vit)
    same = explainers.models.wrap_timm(copy.deepcopy(vit.module), vit.name)  # the same weights loaded again
    np.testing.assert_array_equal(explainers.render(cap, same).patch_map, explainers.render(cap, vit).patch_map)
    assert explainers.render(cap).target == explainers.render(cap, vit).target  # no model: no check


# -- 13. huge values ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [1e30, -1e30, 1e7])
def test_finite_but_huge_inputs_are_refused(vit, value):
    with pytest.raises(ImageError, match="magnitude"):
        explainers.explain(vit, torch.full((1, 3, SIZE, SIZE), value), "attention_rollout")
    assert np.isfinite(explainers.explain(vit, _x() * 100, "attention_rollout").probability)


def test_non_finite_outputs_are_refused():
    broken = _vit(seed=5)
    with torch.no_grad():
        broken.module.head.bias[3] = float("inf")
    with pytest.raises(ImageError, match="not finite"):
        explainers.explain(broken, _x(), "attention_rollout")


# -- 14. no target on a headless backbone ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def headless():
    # EVA-02 as a DINO-style backbone: no classifier (56 pixels: 4x4 patches of 14)
    return _vit(num_classes=0, name="eva02_tiny_patch14_224", img_size=56)


AGNOSTIC = [m for m, spec in explainers.METHODS.items() if not spec.class_specific]


def test_the_class_agnostic_methods_are_the_expected_ones():
    assert {"attention_rollout", "attention_last_layer", "chefer_rollout", "eigencam"} <= set(AGNOSTIC)


@pytest.mark.parametrize("method", AGNOSTIC)
def test_class_agnostic_methods_need_no_target_on_a_headless_backbone(headless, method):
    assert headless.num_classes == 0
    e = explainers.explain(headless, _x(size=56), method)
    assert e.target == -1 and e.label == NoTarget.LABEL and np.isnan(e.probability)
    assert np.isfinite(e.patch_map).all() and e.patch_map.std() > 0
    # what it explains is the model's attention / features: the same map as with any explicit target
    ref = explainers.explain(headless, _x(size=56), method, target=Similarity.to_region((0, 0, 2, 2)))
    np.testing.assert_allclose(e.patch_map, ref.patch_map, rtol=1e-5, atol=1e-7)


def test_class_specific_methods_still_ask_for_a_target_and_no_target_is_not_scored(headless, vit):
    with pytest.raises(InvalidParameterError, match="no classifier"):
        explainers.explain(headless, _x(size=56), "gradcam")
    from explainers.metrics import insertion_deletion

    with pytest.raises(InvalidParameterError, match="cannot be scored"):
        insertion_deletion(headless, _x(size=56), np.ones((4, 4)), NoTarget(), steps=4)
    e = explainers.explain(vit, _x(), "attention_rollout")  # a model with classes: the predicted class
    assert e.target == int(vit.forward(_x()).argmax())
