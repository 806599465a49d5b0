"""Inside the model on every family: the pooled logit lens ends at the model's own score for each target kind,
head importance covers every (layer, head) with finite drops and equals a direct ablated pass, token norms find
the registers where the model has them; a text prompt target on a CLIP tower."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_zoo import FAMILIES, build

import explainers
from explainers.inside._run import num_registers
from explainers.models.blocks import block_ablated, block_fast, pool_outputs
from explainers.targets import ClassProbability, Contrast, Similarity, bind

pytestmark = pytest.mark.slow  # 30 families x 3 views: about a minute on one free core

REGISTERS = {"timm_reg_gap": 4, "timm_dinov2_reg": 4, "hf_dinov2_reg": 4, "timm_rope": 1}


def _x(m, seed=1):
    ph, pw = m.patch_size
    size = (ph * 6, pw * 7) if m.any_size else tuple(m.input_size)
    return torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(seed))


def _similar(m):
    """Similarity to another image (a region target needs token dropping, which relative-bias models refuse)."""
    return Similarity.to_image(m, _x(m, 2))


def _targets(m, x):
    if not m.num_classes:
        return [_similar(m)]
    return [None, ClassProbability(1), Contrast(0, 1), _similar(m)]


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request):
    return request.param, build(request.param)


def test_lens_ends_at_the_models_own_score_for_every_target(family):
    name, m = family
    x = _x(m)
    with torch.inference_mode():
        own = m.outputs(x)
    for target in _targets(m, x):
        r = explainers.logit_lens(m, x, target)
        b = bind(m, target, own, x)
        assert r.pooled.shape == (m.num_layers,) and r.tokens.shape == (m.num_layers, x.shape[-2] * x.shape[-1] //
                                                                          (m.patch_size[0] * m.patch_size[1])
                                                                          + m.num_prefix_tokens)
        np.testing.assert_allclose(r.pooled[-1], float(b.score(own)[0]), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(r.pooled_values[-1], float(b.value(own)[0]), rtol=1e-4, atol=1e-6)
        assert np.isfinite(r.tokens).all() and r.patch_maps.shape[1:] == m.grid(x), (name, target)
        if m.pooling.kind == "token":  # the class token read alone is the pooled representation
            np.testing.assert_allclose(r.tokens[:, 0], r.pooled_values, rtol=1e-4, atol=1e-5)


def test_head_importance_equals_a_direct_ablated_pass(family):
    name, m = family
    x = _x(m)
    target = None if m.num_classes else _similar(m)
    r = explainers.head_importance(m, x, target)
    L, H = m.num_layers, m.num_heads
    assert r.scores.shape == (L, H) and np.isfinite(r.scores).all() and np.isfinite(r.layer_scores).all()
    layer, head = L - 1, H - 1  # recompute one cell: the last block with one head zeroed, then the pooling end
    with torch.inference_mode():
        t, ctx = m.adapter.embed(m.module, x)
        for i in range(layer):
            t = block_fast(m.blocks[i], t, ctx, i)
        keep = torch.ones(1, H)
        keep[0, head] = 0
        out = pool_outputs(m.pooling, block_ablated(m.blocks[layer], t, ctx, layer, keep), m.num_prefix_tokens)
        b = bind(m, target, m.outputs(x), x)
        expected = float(b.score(m.outputs(x))[0] - b.score(out)[0])
    assert r.scores[layer, head] == pytest.approx(expected, abs=1e-5)


def test_token_norms_and_registers(family):
    name, m = family
    x = _x(m)
    res = explainers.token_norms(m, x)
    assert num_registers(m) == REGISTERS.get(name, 0)
    assert res.registers.shape == (m.num_layers, REGISTERS.get(name, 0))
    assert len(res.prefix_names) == m.num_prefix_tokens
    with torch.inference_mode():
        final = m.trace(x).final_tokens[0]
    np.testing.assert_allclose(res.norms[-1], final.double().norm(dim=-1).numpy(), rtol=1e-4)
    assert res.outliers.shape == m.grid(x)


def test_text_prompt_target_on_a_clip_tower():
    from test_text import _clip_tokenizer, _module

    from explainers import text

    m = explainers.models.wrap(_module("clip"), "tiny-clip", device="cpu")
    text.text_tower(m, tokenizer=_clip_tokenizer())
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    target = text.TextSimilarity("a photo of a dog", labels=["a photo of a cat"])
    r = explainers.logit_lens(m, x, target)
    with torch.inference_mode():
        own = m.outputs(x)
    expected = float(text.zero_shot_logits(m, own.embedding, ["a photo of a dog"])[0, 0])
    assert r.pooled_values[-1] == pytest.approx(expected, rel=1e-4)
    assert r.label.startswith("text:")
    h = explainers.head_importance(m, x, target)
    assert np.isfinite(h.scores).all()
