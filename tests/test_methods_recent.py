"""ViT-ReciproCAM and Beyond Intuition (BT-T, BT-H), issue 26: each formula recomputed independently from timm's
own modules (forward hooks on the model itself, never our traced pass) on a small random model, and each method
beating a random map on deletion on both real models. Agreement with the authors' code:
``benchmarks/compare_references.py`` (docs/methods/recent.md)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import val_images
from model_zoo import perturb

import explainers
from explainers.methods.beyond_intuition import accumulate
from explainers.methods.reciprocam import token_masks
from explainers.metrics import insertion_deletion, random_map


@pytest.fixture(scope="module")
def tiny():
    """A 3-block, 2-head timm ViT on a 4 x 4 grid (64-pixel input), 1-D parameters perturbed."""
    import timm

    torch.manual_seed(0)
    module = perturb(timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=3, embed_dim=32,
                                       num_heads=2, img_size=64, num_classes=10))
    model = explainers.models.wrap(module, "tiny", device="cpu")
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    return module, model, x


def test_gaussian_token_masks_are_the_truncated_kernel():
    m = token_masks((4, 5), gaussian=True)
    assert m.shape == (20, 4, 5)
    k = 1 * 5 + 2  # an inner patch: the whole kernel, centred on it
    assert m[k, 1, 2] == 0.25 and m[k, 0, 2] == 0.125 and m[k, 0, 1] == 0.0625 and m[k, 3, 2] == 0
    assert torch.isclose(m[k].sum(), torch.tensor(1.0))
    assert torch.isclose(m[0].sum(), torch.tensor(9 / 16))  # a corner: cut, not renormalised
    assert torch.equal(token_masks((4, 5), gaussian=False), torch.eye(20).reshape(20, 4, 5))


@pytest.mark.parametrize("gaussian,keep_prefix", [(True, True), (False, False)])
def test_reciprocam_is_the_class_probability_with_a_masked_norm1(tiny, gaussian, keep_prefix):
    """Patch k's value = softmax probability of the class when block L-2's norm1 output keeps only patch k (and its
    neighbours), set by a forward hook on timm's own norm1 (the residual stream untouched)."""
    module, model, x = tiny
    cls = 3
    masks = token_masks((4, 4), gaussian).reshape(16, 16, 1)
    expected = []
    for k in range(16):
        def hook(_, __, out, k=k):
            keep = torch.cat([torch.full((1, 1), float(keep_prefix)), masks[k]], 0)
            return out * keep

        handle = module.blocks[1].norm1.register_forward_hook(hook)
        try:
            with torch.no_grad():
                expected.append(float(module(x).softmax(-1)[0, cls]))
        finally:
            handle.remove()
    ours = explainers.explain(model, x, "vit_reciprocam", target=cls, gaussian=gaussian, keep_prefix=keep_prefix,
                              batch_size=5).patch_map
    np.testing.assert_allclose(ours.ravel(), expected, rtol=1e-4, atol=1e-6)


def test_accumulation_is_the_product_of_identity_plus_layer_matrices():
    g = torch.Generator().manual_seed(0)
    M = torch.rand(3, 2, 5, 5, generator=g)
    eye = torch.eye(5)
    want = (eye + M[2]) @ (eye + M[1]) @ (eye + M[0])
    torch.testing.assert_close(accumulate(M), want)


def _timm_record(module, x, cls):
    """Per block of timm's own forward (non-fused attention on a copy): input z, attention A, value v, and
    ∂logit_cls/∂A, read with forward hooks."""
    m = copy.deepcopy(module)
    rec = {"z": [], "A": [], "v": []}
    for blk in m.blocks:
        blk.attn.fused_attn = False
        blk.register_forward_pre_hook(lambda _, inp: rec["z"].append(inp[0]))
        blk.attn.attn_drop.register_forward_hook(lambda _, __, out: rec["A"].append(out))
        blk.attn.qkv.register_forward_hook(lambda _, __, out: rec["v"].append(out.chunk(3, dim=-1)[2]))
    x = x.clone().requires_grad_(True)
    y = m(x)[:, cls].sum()
    rec["G"] = list(torch.autograd.grad(y, rec["A"]))
    rec["proj"] = [b.attn.proj.weight for b in m.blocks]
    return rec


def _reference_bt(module, x, cls, which, start, steps):
    """BT-T / BT-H written out from the paper's formulas over the records of timm's own forward."""
    rec = _timm_record(module, x, cls)
    R = torch.eye(x.shape[-1] // 16 * (x.shape[-1] // 16) + 1)
    for i in range(start, len(module.blocks)):
        A, G = rec["A"][i][0].detach(), rec["G"][i][0]
        if which == "bt_token":
            order = (rec["v"][i][0] @ rec["proj"][i].T).norm(dim=-1) / rec["z"][i][0].norm(dim=-1)
            M = A.mean(0) @ torch.diag(order.detach())
        else:
            ih = (A.transpose(-1, -2) @ G).abs().mean((-1, -2))
            M = torch.einsum("h,hij->ij", ih / ih.sum(), A)
        R = R + M @ R
    Gs = sum(_timm_record(module, x * a, cls)["G"][-1][0] for a in np.linspace(0, 1, steps)) / steps
    W = Gs.clamp(min=0).mean(0)
    R = R.abs() if which == "bt_token" else R
    return (W * R)[0, 1:].numpy()


@pytest.mark.parametrize("which", ["bt_token", "bt_head"])
def test_beyond_intuition_matches_its_formula_on_timm_modules(tiny, which):
    module, model, x = tiny
    want = _reference_bt(module, x, 3, which, start=1, steps=4)
    ours = explainers.explain(model, x, which, target=3, start_layer=1, steps=4, batch_size=3).patch_map
    np.testing.assert_allclose(ours.ravel(), want, rtol=1e-4, atol=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["deit_tiny", "vit_tiny"])
def test_recent_methods_beat_a_random_map_on_deletion(request, fixture):
    model = request.getfixturevalue(fixture)
    xs = torch.cat([model.preprocess(explainers.load_image(p)) for p in val_images(4)])
    with torch.inference_mode():
        targets = model.forward(xs).argmax(-1).tolist()
    floor = np.mean([insertion_deletion(model, x[None], random_map((14, 14), 100 * i + k), t, steps=10).deletion_auc
                     for i, (x, t) in enumerate(zip(xs, targets)) for k in range(3)])
    for method, params in (("vit_reciprocam", {}), ("bt_token", {"steps": 8}), ("bt_head", {"steps": 8})):
        exps = explainers.explain(model, xs, method, **params)
        ours = np.mean([insertion_deletion(model, x[None], e.heatmap, e.target, steps=10).deletion_auc
                        for x, e in zip(xs, exps)])
        assert ours < floor, (method, ours, floor)
