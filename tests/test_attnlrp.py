"""Issue 12: AttnLRP and CP-LRP. Each rule's relevance (gradient x input) against its closed form and its
conservation; CP-LRP's conservation through whole networks of several families; agreement with the independent
``lxt`` package on torchvision's ViT loaded with the DeiT-Tiny weights; deletion against a random map with both
real models."""

from __future__ import annotations

import os
import sys
import types

import numpy as np
import pytest
import torch
from conftest import SAMPLES, WEIGHTS
from model_zoo import build
from scipy.stats import spearmanr
from test_methods_baselines import deletion_aucs, deletion_setup  # noqa: F401  (the shared 20-image fixture)

import explainers
from explainers.methods.attnlrp import rule_relevance
from explainers.models.rules import identity_rule, norm_rule, uniform_rule

NEW = ["attnlrp", "cp_lrp"]


def test_registered_with_metadata():
    for name in NEW:
        m = explainers.METHODS[name]
        assert m.family == "lrp" and m.display_name and m.paper and m.paper_url and m.cost and m.description
        assert m.param("level").cheap and m.param("level").choices == ("tokens", "pixels")


# ---------------------------------------------------------------------------------------------------------
# The rules, one at a time: relevance R = input * gradient, with the output's relevance R_out = out * g_out
# ---------------------------------------------------------------------------------------------------------
def _relevance(fn, *inputs, g_out=None):
    xs = [t.clone().requires_grad_(True) for t in inputs]
    y = fn(*xs)
    g = torch.randn(y.shape, generator=torch.Generator().manual_seed(3), dtype=y.dtype) if g_out is None else g_out
    grads = torch.autograd.grad(y, xs, g)
    return y.detach() * g, [x.detach() * gx for x, gx in zip(xs, grads)]


def test_identity_rule_passes_relevance_unchanged_elementwise():
    x = torch.randn(4, 7, dtype=torch.float64)
    x[0, 0] = 0.0  # a zero input takes no relevance (and no division by zero)
    r_out, (r_in,) = _relevance(lambda t: identity_rule(torch.nn.functional.gelu, t), x)
    mask = x != 0
    assert torch.allclose(r_in[mask], r_out[mask], rtol=1e-12)
    assert r_in[0, 0] == 0 and torch.isfinite(r_in).all()


@pytest.mark.parametrize("factor_pair", [(2, 2), (4, 2)])
def test_uniform_rule_on_a_product_conserves(factor_pair):
    a, b = torch.randn(3, 5, 6, dtype=torch.float64), torch.randn(3, 6, 4, dtype=torch.float64)
    fa, fb = factor_pair
    r_out, (ra, rb) = _relevance(lambda s, t: uniform_rule(s, fa) @ uniform_rule(t, fb), a, b)
    # a bilinear product: gradient x input gives each operand the whole relevance (Euler); the rule divides it
    assert float(ra.sum()) == pytest.approx(float(r_out.sum()) / fa, rel=1e-10)
    assert float(ra.sum() + rb.sum()) == pytest.approx(float(r_out.sum()) * (1 / fa + 1 / fb), rel=1e-10)


@pytest.mark.parametrize("kind", ["layernorm", "rmsnorm", "other"])
def test_norm_rule_keeps_values_and_conserves(kind):
    torch.manual_seed(0)
    D = 16
    m = {"layernorm": torch.nn.LayerNorm(D), "rmsnorm": torch.nn.RMSNorm(D, eps=1e-6),
         "other": torch.nn.GroupNorm(1, 3)}[kind].double()
    with torch.no_grad():
        m.weight.normal_()
    x = torch.randn(2, 3, D, dtype=torch.float64) * 3 + 1
    assert torch.equal(norm_rule(m, x), m(x))  # exact values of the module itself
    r_out, (r_in,) = _relevance(lambda t: norm_rule(m, t), x)
    if kind == "other":  # unknown normalisation: the element-wise identity rule
        assert torch.allclose(r_in, r_out)
    else:  # scale held constant, no bias: linear in x, so relevance is conserved per token
        assert torch.allclose(r_in.sum(-1), r_out.sum(-1), rtol=1e-9, atol=1e-12)


def test_softmax_gradient_is_attnlrps_softmax_rule():
    x = torch.randn(3, 8, dtype=torch.float64)
    r_out, (r_in,) = _relevance(lambda t: t.softmax(-1), x)
    s = x.softmax(-1)
    assert torch.allclose(r_in, x * (r_out - s * r_out.sum(-1, keepdim=True)))  # Achtibat et al. Prop. 3.1


# ---------------------------------------------------------------------------------------------------------
# Whole networks: CP-LRP conserves the start relevance once nothing (bias, position bias) absorbs any
# ---------------------------------------------------------------------------------------------------------
CONSERVE = ["timm_deit", "timm_deit_distilled", "timm_qknorm", "timm_eva02", "timm_siglip_map", "timm_beit",
            "hf_dinov2_reg", "hf_clip_vision"]


def _zero_biases(model):
    with torch.no_grad():
        for name, p in model.module.named_parameters():
            if "bias" in name or name.endswith("pos_embed") and "attn_pool" in name:
                p.zero_()


@pytest.mark.parametrize("family", CONSERVE)
def test_cp_lrp_conserves_through_the_network(family):
    m = build(family)
    _zero_biases(m)
    x = torch.randn(2, 3, *m.input_size, generator=torch.Generator().manual_seed(0))
    target = None if m.num_classes else explainers.targets.Similarity.to_region((0, 0, 3, 3))
    _, out, tok, pix, start = rule_relevance(m, x, target, cp=True)
    assert (start != 0).all()
    assert torch.allclose(tok.sum(1), start, rtol=2e-3, atol=0), (tok.sum(1), start)
    # AttnLRP: same values and start; relevance also flows through q and k (the softmax's rule absorbs some)
    bound, out2, tok2, _, start2 = rule_relevance(m, x, target, cp=False)
    assert torch.allclose(start2, start) and torch.isfinite(tok2).all()
    assert not torch.allclose(tok2, tok, rtol=1e-3, atol=0)


def test_maps_follow_targets_and_levels(deit_tiny):
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    for name in NEW:
        a = explainers.explain(deit_tiny, x, name, target=3)
        b = explainers.explain(deit_tiny, x, name, target=7)
        assert a[0].patch_map.shape == (14, 14) and a[0].target == 3
        assert not np.allclose(a[0].patch_map, b[0].patch_map)
        p = explainers.explain(deit_tiny, x[:1], name, target=3, level="pixels")
        pix = rule_relevance(deit_tiny, x[:1], 3, cp=name == "cp_lrp")[3][0]
        assert np.allclose(p.patch_map, pix.reshape(14, 16, 14, 16).sum((1, 3)).numpy(), rtol=1e-4, atol=1e-6)
        assert not np.allclose(p.patch_map, a[0].patch_map, rtol=0.1)
        # one image of a batch is explained as if alone
        assert np.allclose(explainers.explain(deit_tiny, x[1:], name, target=7).patch_map, b[1].patch_map,
                           rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# Against lxt (Achtibat et al.'s package) on torchvision's ViT with the DeiT-Tiny weights
# ---------------------------------------------------------------------------------------------------------
def _torchvision_deit():
    from safetensors.torch import load_file
    from torchvision.models.vision_transformer import VisionTransformer

    sd = load_file(str(WEIGHTS / "timm" / "model.safetensors"))
    m = VisionTransformer(image_size=224, patch_size=16, num_layers=12, num_heads=3, hidden_dim=192, mlp_dim=768)
    new = {"class_token": sd["cls_token"], "encoder.pos_embedding": sd["pos_embed"],
           "conv_proj.weight": sd["patch_embed.proj.weight"], "conv_proj.bias": sd["patch_embed.proj.bias"],
           "encoder.ln.weight": sd["norm.weight"], "encoder.ln.bias": sd["norm.bias"],
           "heads.head.weight": sd["head.weight"], "heads.head.bias": sd["head.bias"]}
    for i in range(12):
        a, b = f"blocks.{i}.", f"encoder.layers.encoder_layer_{i}."
        for s, d in [("norm1", "ln_1"), ("norm2", "ln_2"), ("attn.proj", "self_attention.out_proj"),
                     ("mlp.fc1", "mlp.0"), ("mlp.fc2", "mlp.3"), ("attn.qkv", "self_attention.in_proj")]:
            for p in ("weight", "bias"):
                new[b + d + ("_" if d.endswith("in_proj") else ".") + p] = sd[a + s + "." + p]
    m.load_state_dict(new, strict=True)
    for mod in m.modules():
        if isinstance(mod, torch.nn.LayerNorm):
            mod.eps = 1e-6  # timm's
    return m.eval()


def _lxt_relevance(module, x, cls, attnlrp: bool):
    """lxt's rules patched into torch.nn's classes (as lxt does), one backward, then the classes restored.
    ``lxt.efficient``'s package __init__ imports its BERT support, which fails with the installed transformers,
    so its rule modules are imported without it."""
    import lxt

    if "lxt.efficient" not in sys.modules:
        pkg = types.ModuleType("lxt.efficient")
        pkg.__path__ = [os.path.join(os.path.dirname(lxt.__file__), "efficient")]
        sys.modules["lxt.efficient"] = pkg
    from lxt.efficient.patches import (
        cp_multi_head_attention_forward,
        layer_norm_forward,
        non_linear_forward,
        patch_method,
    )
    from lxt.efficient.rules import divide_gradient

    nn = torch.nn
    saved = {c: c.forward for c in (nn.GELU, nn.LayerNorm, nn.MultiheadAttention)}

    def attnlrp_mha(self, query, key, value, *args, **kwargs):  # lxt's wrap_attention_forward, on torch's MHA
        return self.original_forward(divide_gradient(query, 4), divide_gradient(key, 4), divide_gradient(value, 2),
                                     *args, **kwargs)

    try:
        patch_method(non_linear_forward, nn.GELU, keep_original=True)
        patch_method(layer_norm_forward, nn.LayerNorm)
        patch_method(attnlrp_mha if attnlrp else cp_multi_head_attention_forward, nn.MultiheadAttention,
                     keep_original=True)
        tokens = {}
        hook = module.encoder.dropout.register_forward_hook(lambda mod, i, o: tokens.setdefault("t", o))
        xg = x.clone().requires_grad_(True)
        y = module(xg)
        hook.remove()
        gx, gt = torch.autograd.grad(y[torch.arange(len(x)), cls].sum(), [xg, tokens["t"]])
    finally:
        for c, f in saved.items():
            c.forward = f
            if hasattr(c, "original_forward"):
                del c.original_forward
    return (tokens["t"].detach() * gt).sum(-1), (xg.detach() * gx).sum(1)


@pytest.fixture(scope="module")
def tv_deit():
    from PIL import Image

    module = _torchvision_deit()
    model = explainers.models.wrap(module, "torchvision-deit", device="cpu")
    ref = explainers.load_model("deit_tiny_patch16_224", weights=WEIGHTS, device="cpu")
    xs = torch.cat([ref.preprocess(Image.open(p).convert("RGB")) for p in sorted(SAMPLES.glob("*.png"))])
    with torch.inference_mode():
        assert (model.forward(xs) - ref.forward(xs)).abs().max() < 1e-4  # the weights mapped correctly
    return module, model, xs


@pytest.mark.parametrize("name", NEW)
def test_agrees_with_lxt_on_torchvision_vit(tv_deit, name):
    module, model, xs = tv_deit
    cp = name == "cp_lrp"
    _, out, tok, pix, _ = rule_relevance(model, xs, None, cp=cp)
    cls = out.logits.argmax(-1)
    ref_tok, ref_pix = _lxt_relevance(module, xs, cls, attnlrp=not cp)
    rho_tok = [spearmanr(a[1:], b[1:]).correlation for a, b in zip(tok.numpy(), ref_tok.numpy())]
    rho_pix = [spearmanr(a.ravel(), b.ravel()).correlation for a, b in zip(pix.numpy(), ref_pix.numpy())]
    assert np.median(rho_tok) >= 0.99 and min(rho_tok) >= 0.99, rho_tok
    assert np.median(rho_pix) >= 0.99 and min(rho_pix) >= 0.99, rho_pix
    assert torch.allclose(tok, ref_tok, rtol=1e-3, atol=1e-3 * float(ref_tok.abs().max()))
    # and the registered method returns the same token map
    e = explainers.explain(model, xs[:1], name, target=int(cls[0]))
    assert np.allclose(e.patch_map.ravel(), tok[0, 1:].numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", NEW)
def test_beats_random_map_on_deletion(deletion_setup, name):  # noqa: F811
    model, xs, targets, ends, floor = deletion_setup
    exps = explainers.explain(model, xs, name)
    assert [e.target for e in exps] == targets
    ours = float(np.mean(deletion_aucs(model, xs, [e.heatmap for e in exps], targets, ends)))
    assert ours < floor, (model.name, ours, floor)
