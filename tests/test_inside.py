"""Inside the model, known answers: the logit lens of identity blocks is the output, an irrelevant head's removal
changes nothing and the class-carrying head's flips the prediction, planted high-norm tokens are found exactly;
on real DeiT-Tiny the lens reaches the prediction and head importance equals re-running the ablated model."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from model_zoo import perturb

import explainers
from explainers.errors import InvalidParameterError
from explainers.targets import ClassProbability, Contrast, Similarity


def _x(seed=1, size=(224, 224)):
    return torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(seed))


def _timm(depth=4, dim=32, heads=2, classes=10, seed=0, **kw):
    import timm

    torch.manual_seed(seed)
    m = timm.create_model("deit_tiny_patch16_224", pretrained=False, depth=depth, embed_dim=dim, num_heads=heads,
                          num_classes=classes, **kw)
    return perturb(m, seed)


def _identity(block):
    """Make a timm block an identity: its attention and MLP write nothing to the residual stream."""
    with torch.no_grad():
        for lin in (block.attn.proj, block.mlp.fc2):
            lin.weight.zero_()
            lin.bias.zero_()


def test_lens_of_identity_blocks_is_the_output():
    module = _timm(depth=4)
    for b in module.blocks[2:]:
        _identity(b)
    m = explainers.models.wrap(module, "identity-tail", device="cpu")
    x = _x()
    with torch.inference_mode():
        own = module(x)[0].double()
    c = int(own.argmax())
    r = explainers.logit_lens(m, x)
    assert r.target == c
    np.testing.assert_allclose(r.pooled_values[1:], float(own[c]), rtol=1e-5)  # blocks 2, 3: nothing changes
    np.testing.assert_allclose(r.pooled[-1], float(own.softmax(-1)[c]), rtol=1e-5)
    np.testing.assert_allclose(r.tokens[:, 0], r.pooled_values, rtol=1e-5)  # class token read alone = the pool
    assert (r.top_classes[1:, 0] == c).all() and r.decided_at <= 1
    assert r.patch_maps.shape == (4, 14, 14)
    # block 0 differs from the output: the lens is not a constant
    assert abs(r.pooled_values[0] - float(own[c])) > 1e-3
    # any target: a contrast's and a probability's pooled values end at the model's own
    other = int(own.argsort()[-2])
    rc = explainers.logit_lens(m, x, Contrast(c, other))
    np.testing.assert_allclose(rc.pooled_values[-1], float(own[c] - own[other]), rtol=1e-5)
    rp = explainers.logit_lens(m, x, ClassProbability(other))
    np.testing.assert_allclose(rp.pooled_values[-1], float(own.softmax(-1)[other]), rtol=1e-5)


def _two_head_model():
    """One block, two heads: head 2 writes nothing (its columns of the output projection are zero); the
    classifier separates the output with head 1 from the output without it, so only head 1 carries the class."""
    module = _timm(depth=1, dim=16, heads=2, classes=2, seed=3)
    d = 8
    with torch.no_grad():
        module.blocks[0].attn.proj.weight[:, d:] = 0
        module.blocks[0].mlp.fc2.weight.zero_()  # the MLP adds a constant only
    x = _x(2)
    without = copy.deepcopy(module)
    with torch.no_grad():
        without.blocks[0].attn.proj.weight[:, :d] = 0
        z1 = module.forward_head(module.forward_features(x), pre_logits=True)[0]
        z0 = without.forward_head(without.forward_features(x), pre_logits=True)[0]
        w = z1 - z0
        module.head.weight.copy_(torch.stack([w, -w]))
        module.head.bias.copy_(torch.stack([-w @ (z1 + z0) / 2, w @ (z1 + z0) / 2]))
    return explainers.models.wrap(module, "two-heads", device="cpu"), x


@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_irrelevant_head_changes_nothing_and_the_class_head_flips(ablation):
    m, x = _two_head_model()
    r = explainers.head_importance(m, x, ablation=ablation)
    assert r.prediction == 0
    assert r.scores[0, 1] == pytest.approx(0.0, abs=1e-7) and r.value_drops[0, 1] == pytest.approx(0.0, abs=1e-6)
    assert r.predicted[0, 1] == 0 and not r.flips[0, 1]
    if ablation == "zero":  # without head 1 the output is the constructed "without" point: class 1
        assert r.predicted[0, 0] == 1 and r.flips[0, 0]
        assert r.layer_predicted[0] == 1
        assert r.scores[0, 0] > 0.0 and r.value_drops[0, 0] > 0.0
    assert r.forward_passes == pytest.approx(1 + 3)  # the clean pass, then 2 heads + the whole layer


def test_head_importance_refuses_an_unknown_ablation():
    m, x = _two_head_model()
    with pytest.raises(InvalidParameterError, match="ablation"):
        explainers.head_importance(m, x, ablation="noise")


def test_planted_high_norm_tokens_are_found_exactly():
    module = _timm(depth=2, dim=32, heads=2)
    for b in module.blocks:
        _identity(b)
    planted = [(0, 13), (3, 4), (7, 7), (12, 1)]
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for r, c in planted:
            v = torch.randn(32, generator=g)
            module.pos_embed[0, 1 + r * 14 + c] += 40 * v / v.norm()
    m = explainers.models.wrap(module, "planted", device="cpu")
    res = explainers.token_norms(m, _x(4))
    assert sorted(res.outlier_patches()) == sorted(planted)
    assert res.norms.shape == (2, 197) and res.registers.shape == (2, 0) and res.prefix_names == ["class"]
    assert res.threshold == pytest.approx(3 * np.median(res.patch_norms))
    hits, k = res.brightest_overlap(res.patch_norms)
    assert (hits, k) == (4, 4)
    hits, _ = res.brightest_overlap(-res.patch_norms)
    assert hits == 0


def test_one_image_at_a_time():
    m, _ = _two_head_model()
    with pytest.raises(InvalidParameterError, match="one image at a time"):
        explainers.logit_lens(m, torch.randn(2, 3, 224, 224))


def test_similarity_target_lens_ends_at_the_cosine():
    module = _timm(depth=2, classes=0)
    m = explainers.models.wrap(module, "backbone", device="cpu")
    x = _x(6)
    ref = torch.randn(32, generator=torch.Generator().manual_seed(7))
    r = explainers.logit_lens(m, x, Similarity(reference=ref))
    with torch.inference_mode():
        e = module(x)[0]
    assert r.top_classes.size == 0 and r.decided_at is None
    assert r.pooled[-1] == pytest.approx(float(torch.cosine_similarity(e, ref, dim=0)), abs=1e-5)


# -- real DeiT-Tiny ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cat(deit_tiny):
    from conftest import SHARED

    return deit_tiny.preprocess(explainers.load_image(SHARED / "images" / "samples" / "chelsea.png"))


def test_real_lens_reaches_the_prediction_at_the_last_block(deit_tiny, cat):
    r = explainers.logit_lens(deit_tiny, cat)
    with torch.inference_mode():
        p = deit_tiny.module(cat)[0].double().softmax(-1)
    assert r.target == int(p.argmax()) == int(r.top_classes[-1, 0])
    assert r.pooled[-1] == pytest.approx(float(p.max()), rel=1e-4)
    assert r.pooled[0] < 0.05 < r.pooled[-1]  # the first block does not know the class yet
    assert r.decided_at is not None and r.decided_at > 0


def _rerun(module, x, layer, head, d, mean):
    """The timm model's own forward with one head ablated at the input of its output projection (a hook, removed
    at once)."""
    def pre(mod, args):
        o = args[0].clone()
        sl = slice(head * d, (head + 1) * d)
        o[..., sl] = o[..., sl].mean(1, keepdim=True) if mean else 0
        return (o,)

    handle = module.blocks[layer].attn.proj.register_forward_pre_hook(pre)
    try:
        return module(x)
    finally:
        handle.remove()


@pytest.mark.parametrize("ablation", ["zero", "mean"])
def test_real_head_importance_equals_rerunning_the_ablated_model(deit_tiny, cat, ablation):
    r = explainers.head_importance(deit_tiny, cat, ablation=ablation)
    module, d = deit_tiny.module, deit_tiny.embed_dim // deit_tiny.num_heads
    with torch.inference_mode():
        base = module(cat)[0].double().softmax(-1)[r.target]
        assert r.base_score == pytest.approx(float(base), rel=1e-5)
        L, H = r.scores.shape
        top = np.unravel_index(np.abs(r.scores).argmax(), r.scores.shape)
        for layer, head in {tuple(int(v) for v in top), (L - 1, H - 1)}:
            p = _rerun(module, cat, layer, head, d, ablation == "mean")[0].double().softmax(-1)[r.target]
            assert r.scores[layer, head] == pytest.approx(float(base - p), abs=2e-5), (layer, head)
    assert r.forward_passes <= 1.2 * L * H
