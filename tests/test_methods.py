"""Issue 2: the attention/gradient/LRP methods on real DeiT-Tiny weights and on random models of other
architectures; rollout against a direct formula; LRP conservation; the model left unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_model, val_images

import explainers
from explainers.methods import _lrp_rules as L

PART1 = ["attention_rollout", "gradient_rollout", "chefer_rollout", "attention_last_layer", "attention_gradcam",
         "generic_attention", "transformer_attribution", "lrp_full", "lrp_last_layer"]


def test_part1_methods_registered_with_metadata():
    for name in PART1:
        m = explainers.METHODS[name]
        assert m.display_name and m.paper and m.cost and m.description
        for p in m.params:
            d = p.describe()
            assert d["help"] and d["type"] in ("int", "float", "bool", "choice")
            assert p.validate(p.default) == p.default


@pytest.mark.parametrize("image_fixture", ["cat_image", "both_image"])
@pytest.mark.parametrize("method", PART1)
def test_real_weights_finite_nonconstant_map(deit_tiny, request, image_fixture, method):
    img = request.getfixturevalue(image_fixture)
    kw = {"relu": False} if method == "attention_gradcam" else {}  # its default ReLU can zero a map
    exp = explainers.explain(deit_tiny, img, method=method, **kw)
    assert exp.patch_map.shape == (14, 14)
    assert exp.heatmap.shape == (224, 224)
    assert np.isfinite(exp.patch_map).all() and np.isfinite(exp.heatmap).all()
    assert exp.patch_map.std() > 0, "constant map"
    assert exp.heatmap.min() == 0.0 and exp.heatmap.max() == pytest.approx(1.0)
    assert 0 <= exp.target < 1000 and 0 < exp.probability <= 1


def test_predictions_on_samples(deit_tiny, cat_image, both_image):
    exp = explainers.explain(deit_tiny, cat_image, "attention_last_layer")
    assert exp.label.split(",")[0] in ("Egyptian cat", "tabby", "tiger cat")
    top = [t[0] for t in explainers.explain(deit_tiny, both_image, "attention_last_layer").top5[:3]]
    assert 243 in top and 282 in top


@pytest.mark.parametrize("method", [m for m in PART1 if explainers.METHODS[m].class_specific])
def test_class_specific_maps_differ(deit_tiny, both_image, method):
    # attention Grad-CAM's default ReLU zeroes the bull-mastiff map on this image (see its docstring)
    kw = {"relu": False} if method == "attention_gradcam" else {}
    a = explainers.explain(deit_tiny, both_image, method, target=243, **kw).patch_map.ravel()
    b = explainers.explain(deit_tiny, both_image, method, target=282, **kw).patch_map.ravel()
    # the last attention layer's LRP relevance is the least class-specific of these (Chefer et al. 2021, Fig. 4):
    # with DeiT's own 256/224 preprocessing its two maps correlate at 0.967 on this image
    assert np.corrcoef(a, b)[0, 1] < (0.99 if method == "lrp_last_layer" else 0.95)
    top_a, top_b = set(np.argsort(-a)[:10]), set(np.argsort(-b)[:10])
    assert len(top_a & top_b) <= (8 if method == "lrp_last_layer" else 7)


def test_dog_and_cat_maps_point_at_their_animal(deit_tiny, both_image):
    """In both.png the dog fills the upper half, the tiger cat the lower right."""
    for method in ("transformer_attribution", "generic_attention"):
        dog = explainers.explain(deit_tiny, both_image, method, target=243).patch_map
        cat = explainers.explain(deit_tiny, both_image, method, target=282).patch_map
        assert dog[:7].sum() / dog.sum() > cat[:7].sum() / cat.sum(), method
        assert cat[7:].sum() / cat.sum() > 0.5, method


# ---------------------------------------------------------------------------------------------------------
# Known answers on a small constructed model
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_vit():
    import timm

    torch.manual_seed(3)
    net = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=24, depth=3, num_heads=2, num_classes=5, dynamic_img_size=True)
    return explainers.models.wrap_timm(net.eval(), "tiny")


def _reference_attentions(model, x):
    """Attention probabilities from timm's own (non-fused) attention, captured with hooks on a copy."""
    import copy

    net = copy.deepcopy(model.module)
    got = []
    for blk in net.blocks:
        blk.attn.fused_attn = False
        blk.attn.attn_drop.register_forward_hook(lambda mod, i, o: got.append(o.detach()))
    with torch.no_grad():
        net(x)
    return got


def _direct_rollout(attns, fusion, discard, start, reference_norm=False, protect=True):
    """Matrix-product formula, written independently with numpy, one image."""
    n = attns[0].shape[-1]
    R = np.eye(n)
    for a in attns[start:]:
        a = a[0].numpy().astype(np.float64)
        f = {"mean": a.mean(0), "max": a.max(0), "min": a.min(0)}[fusion]
        flat = f.flatten()
        k = int(n * n * discard)
        if k:
            idx = np.argsort(flat, kind="stable")[:k]
            if protect:
                idx = idx[idx != 0]
            flat[idx] = 0
        f = flat.reshape(n, n)
        m = (f + np.eye(n)) / 2
        m = m / (m.sum(-1)[None, :] if reference_norm else m.sum(-1, keepdims=True))
        R = m @ R
    return R[0, 1:]


def test_discard_lowest_known_answer_with_ties():
    from explainers.methods._common import discard_lowest

    f = torch.tensor([[[0.5, 0.1, 0.1], [0.1, 0.3, 0.2], [0.4, 0.1, 0.9]]])
    # 9 entries, ratio 0.5 -> the 4 smallest go: the four 0.1 entries (ties in index order)
    out = discard_lowest(f, 0.5, protect_cls=False)
    assert torch.equal(out, torch.tensor([[[0.5, 0.0, 0.0], [0.0, 0.3, 0.2], [0.4, 0.0, 0.9]]]))
    # ratio 0.34 -> int(3.06) = 3 entries: the first three 0.1s in index order; the (0, 0) entry is protected
    out = discard_lowest(f, 0.34, protect_cls=True)
    assert torch.equal(out, torch.tensor([[[0.5, 0.0, 0.0], [0.0, 0.3, 0.2], [0.4, 0.1, 0.9]]]))
    g = torch.tensor([[[0.05, 0.5], [0.2, 0.25]]])
    assert torch.equal(discard_lowest(g, 0.25, protect_cls=True), g)  # the smallest is (0, 0): kept
    assert discard_lowest(g, 0.25, protect_cls=False)[0, 0, 0] == 0
    # a (layers, images, N, N) stack at once equals matrix by matrix, and a stable sort's choice
    stack = torch.rand(3, 2, 9, 9, generator=torch.Generator().manual_seed(0)).round(decimals=1)  # many ties
    once = discard_lowest(stack, 0.6, protect_cls=True)
    for layer in range(3):
        assert torch.equal(once[layer], discard_lowest(stack[layer], 0.6, protect_cls=True))
        for b in range(2):
            flat = stack[layer, b].flatten()
            gone = torch.sort(flat, stable=True).indices[:int(81 * 0.6)]
            want = flat.clone()
            want[gone[gone != 0]] = 0.0
            assert torch.equal(once[layer, b].flatten(), want)


@pytest.mark.parametrize("fusion,discard,start,ref", [("mean", 0.0, 0, False), ("max", 0.0, 1, False),
                                                       ("min", 0.0, 0, True), ("mean", 0.5, 0, False)])
def test_rollout_equals_direct_matrix_product(tiny_vit, fusion, discard, start, ref):
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    attns = _reference_attentions(tiny_vit, x)
    with torch.inference_mode():
        ours = tiny_vit.trace(x).attentions
    for a, b in zip(attns, ours):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    exp = explainers.explain(tiny_vit, x, "attention_rollout", head_fusion=fusion, discard_ratio=discard,
                             start_layer=start, reference_normalization=ref)
    want = _direct_rollout(attns, fusion, discard, start, ref).reshape(4, 4)
    np.testing.assert_allclose(exp.patch_map, want, rtol=1e-4, atol=1e-6)


def test_generic_attention_equals_formula(tiny_vit):
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    exp = explainers.explain(tiny_vit, x, "generic_attention", target=3)
    with torch.enable_grad():
        xg = x.clone().requires_grad_(True)
        tr = tiny_vit.trace(xg)
        grads = torch.autograd.grad(tr.logits[0, 3], tr.attentions)
    R = torch.eye(17, dtype=torch.float64)
    for a, g in zip(tr.attentions, grads):
        abar = (g * a.detach()).clamp(min=0).mean(1)[0].double()
        R = R + abar @ R
    np.testing.assert_allclose(exp.patch_map, R[0, 1:].reshape(4, 4).numpy(), rtol=1e-4, atol=1e-7)


def test_gradient_rollout_reference_options_change_the_map(deit_tiny, both_image):
    base = explainers.explain(deit_tiny, both_image, "gradient_rollout", target=282).patch_map
    pair = explainers.explain(deit_tiny, both_image, "gradient_rollout", target=282, reference_pairing=True).patch_map
    norm = explainers.explain(deit_tiny, both_image, "gradient_rollout", target=282,
                              reference_normalization=True).patch_map
    assert not np.allclose(base, pair) and not np.allclose(base, norm)


def test_attention_gradcam_never_nan(deit_tiny):
    from PIL import Image

    for path in val_images(5):
        exp = explainers.explain(deit_tiny, Image.open(path), "attention_gradcam")
        assert np.isfinite(exp.patch_map).all() and np.isfinite(exp.heatmap).all()
        if exp.patch_map.max() == 0:
            assert exp.warnings


# ---------------------------------------------------------------------------------------------------------
# LRP rules: conservation
# ---------------------------------------------------------------------------------------------------------
def test_lrp_linear_conserves():
    g = torch.Generator().manual_seed(0)
    x, w, R = torch.randn(4, 7, 16, generator=g), torch.randn(9, 16, generator=g), torch.randn(4, 7, 9, generator=g)
    r = L.lrp_linear(x, w, R)
    torch.testing.assert_close(r.sum((1, 2)), R.sum((1, 2)), atol=1e-4, rtol=1e-4)
    # alpha-1/beta-0 on non-negative inputs and weights is plain LRP-0 (z-rule): R_i = x_i w_ji R_j / z_j
    xp, wp, Rp = x.abs(), w.abs(), R.abs()
    want = xp * ((Rp / (xp @ wp.T)) @ wp)
    torch.testing.assert_close(L.lrp_linear(xp, wp, Rp), want)


def test_lrp_add_conserves_and_splits_by_share():
    g = torch.Generator().manual_seed(1)
    a, b, R = torch.randn(3, 5, 8, generator=g), torch.randn(3, 5, 8, generator=g), torch.randn(3, 5, 8, generator=g)
    ra, rb = L.lrp_add(a, b, R)
    torch.testing.assert_close((ra + rb).sum((1, 2)), R.sum((1, 2)), atol=1e-4, rtol=1e-4)
    # one branch zero: all relevance goes to the other
    ra, rb = L.lrp_add(a, torch.zeros_like(a), R)
    torch.testing.assert_close(ra.sum((1, 2)), R.sum((1, 2)), atol=1e-4, rtol=1e-4)
    assert float(rb.abs().max()) == 0.0


def test_lrp_matmul_halves_and_conserves():
    g = torch.Generator().manual_seed(2)
    a, b = torch.rand(2, 3, 6, 5, generator=g) + 0.1, torch.rand(2, 3, 5, 4, generator=g) + 0.1
    R = torch.rand(2, 3, 6, 4, generator=g)
    ra, rb = L.lrp_matmul(a, b, R)
    torch.testing.assert_close(ra.sum((1, 2, 3)), R.sum((1, 2, 3)) / 2)
    torch.testing.assert_close(rb.sum((1, 2, 3)), R.sum((1, 2, 3)) / 2)


def test_lrp_zb_conserves():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 10, 12, generator=g) * 2 - 1
    w, R = torch.randn(6, 12, generator=g), torch.rand(2, 10, 6, generator=g)
    low, high = x.amin((1, 2), keepdim=True), x.amax((1, 2), keepdim=True)
    r = L.lrp_zb(x, w, R, low, high)
    torch.testing.assert_close(r.sum((1, 2)), R.sum((1, 2)), atol=1e-4, rtol=1e-4)


def test_lrp_conserves_through_the_whole_network(deit_tiny, cat_image):
    x = deit_tiny.preprocess(cat_image)
    with torch.inference_mode():
        tr = deit_tiny.trace(x, keep_activations=True)
        one_hot = torch.zeros_like(tr.logits).scatter_(1, tr.logits.argmax(-1, keepdim=True), 1.0)
        res = L.relprop(deit_tiny, tr, one_hot)
    assert float(res.tokens.sum()) == pytest.approx(1.0, abs=1e-3)
    for i, ra in res.attn.items():
        assert torch.isfinite(ra).all(), i


# ---------------------------------------------------------------------------------------------------------
# Faithfulness floor: every method beats a random map on deletion (20 ImageNet validation images)
# ---------------------------------------------------------------------------------------------------------
def _deletion_auc(model, x, patch_map, target, steps=10):
    """Simple patch deletion: remove the top k/steps of patches (set to 0 in normalised space, i.e. the
    dataset-mean colour), score the target probability, trapezoid AUC on [0, 1]."""
    gh, gw = patch_map.shape
    order = np.argsort(-patch_map.ravel(), kind="stable")
    n = gh * gw
    batch = []
    for s in range(steps + 1):
        keep = torch.ones(n)
        keep[torch.from_numpy(order[: round(n * s / steps)].copy())] = 0
        mask = keep.view(1, 1, gh, gw)
        mask = torch.nn.functional.interpolate(mask, size=x.shape[-2:], mode="nearest")
        batch.append(x * mask)
    with torch.inference_mode():
        p = model.forward(torch.cat(batch)).softmax(-1)[:, target].numpy()
    return float(np.trapezoid(p, dx=1.0 / steps))


@pytest.fixture(scope="module")
def deletion_setup(deit_tiny):
    """20 validation images, their predicted classes, and the random-map floor: the mean deletion AUC of
    four random maps per image (one random map is too noisy a yardstick)."""
    from PIL import Image

    xs = torch.cat([deit_tiny.preprocess(Image.open(p)) for p in val_images(20)])
    with torch.inference_mode():
        targets = deit_tiny.forward(xs).argmax(-1).tolist()
    rng = np.random.default_rng(0)
    floor = [np.mean([_deletion_auc(deit_tiny, x[None], rng.random((14, 14)), t) for _ in range(4)])
             for x, t in zip(xs, targets)]
    return xs, targets, float(np.mean(floor))


@pytest.mark.parametrize("method", PART1)
def test_beats_random_map_on_deletion(deit_tiny, deletion_setup, method):
    xs, targets, floor = deletion_setup
    exps = explainers.explain(deit_tiny, xs, method)
    assert [e.target for e in exps] == targets
    ours = np.mean([_deletion_auc(deit_tiny, x[None], e.patch_map, e.target) for x, e in zip(xs, exps)])
    assert ours < floor, (ours, floor)


# ---------------------------------------------------------------------------------------------------------
# Other architectures, backends, batches, resolutions
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,grid,prefix", [("deit_distilled", (14, 14), 2), ("dinov2_reg", (16, 16), 5),
                                              ("hf_vit", (14, 14), 1), ("hf_dinov2_reg", (16, 16), 5),
                                              ("hf_deit_distilled", (14, 14), 2)])
def test_random_architectures_run_every_method(kind, grid, prefix):
    model = random_model(kind)
    assert model.num_prefix_tokens == prefix
    assert model.verify() < 1e-3
    x = torch.randn(1, 3, *model.input_size, generator=torch.Generator().manual_seed(0))
    for method in PART1:
        exp = explainers.explain(model, x, method)
        assert exp.patch_map.shape == grid, method
        assert np.isfinite(exp.patch_map).all(), method


def test_timm_and_hf_backends_agree(deit_tiny, deit_tiny_hf, both_image):
    x = deit_tiny.preprocess(both_image)
    with torch.inference_mode():
        torch.testing.assert_close(deit_tiny.forward(x), deit_tiny_hf.forward(x), atol=1e-3, rtol=1e-3)
    for method in ("attention_rollout", "transformer_attribution", "generic_attention"):
        a = explainers.explain(deit_tiny, x, method, target=282).patch_map
        b = explainers.explain(deit_tiny_hf, x, method, target=282).patch_map
        np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-3 * float(np.abs(a).max()))


@pytest.mark.parametrize("method", ["attention_rollout", "gradient_rollout", "transformer_attribution", "lrp_full"])
def test_batch_equals_single(deit_tiny, cat_image, both_image, method):
    xs = torch.cat([deit_tiny.preprocess(cat_image), deit_tiny.preprocess(both_image)])
    batch = explainers.explain(deit_tiny, xs, method, target=[281, 243])
    assert len(batch) == 2
    for i, t in enumerate([281, 243]):
        single = explainers.explain(deit_tiny, xs[i:i + 1], method, target=t)
        np.testing.assert_allclose(batch[i].patch_map, single.patch_map, rtol=1e-3,
                                   atol=1e-5 * float(np.abs(single.patch_map).max()))
        assert batch[i].target == t


def test_other_input_resolution(deit_tiny, deit_tiny_hf):
    x = torch.randn(1, 3, 288, 256, generator=torch.Generator().manual_seed(0))
    for model in (deit_tiny, deit_tiny_hf):
        for method in ("attention_rollout", "transformer_attribution", "lrp_full"):
            exp = explainers.explain(model, x, method)
            assert exp.patch_map.shape == (18, 16) and exp.heatmap.shape == (288, 256)


def test_cheap_parameters_render_without_model(deit_tiny, both_image):
    cap = explainers.capture(deit_tiny, both_image, "attention_rollout")
    a = explainers.render(cap, deit_tiny, discard_ratio=0.0)
    b = explainers.render(cap, deit_tiny, discard_ratio=0.9, head_fusion="max")
    direct = explainers.explain(deit_tiny, both_image, "attention_rollout", discard_ratio=0.9, head_fusion="max")
    assert not np.allclose(a.patch_map, b.patch_map)
    np.testing.assert_allclose(b.patch_map, direct.patch_map, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# The model is left as it was: no hooks, fused attention unchanged, also after a failing call
# ---------------------------------------------------------------------------------------------------------
def _model_state(model):
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
                + len(getattr(m, "_backward_pre_hooks", {})) for m in model.module.modules())
    fused = [getattr(m, "fused_attn", None) for m in model.module.modules() if hasattr(m, "fused_attn")]
    grads = [p.grad for p in model.module.parameters()]
    return hooks, fused, all(g is None for g in grads), model.module.training


def test_model_unchanged_after_calls_and_failures(deit_tiny, both_image):
    before = _model_state(deit_tiny)
    assert before[0] == 0 and before[1] and all(before[1])  # timm default: fused attention on
    for method in PART1:
        explainers.explain(deit_tiny, both_image, method)
    assert _model_state(deit_tiny) == before

    original = deit_tiny.pooling.head  # the classifier the traced pass ends with

    class Boom:
        def __getattr__(self, name):
            return getattr(original, name)

        def __call__(self, *a, **k):
            raise RuntimeError("boom")

    deit_tiny.pooling.head = Boom()  # fails in the middle of the traced pass
    try:
        for method in ("gradient_rollout", "transformer_attribution"):
            with pytest.raises(RuntimeError, match="boom"):
                explainers.explain(deit_tiny, both_image, method)
    finally:
        deit_tiny.pooling.head = original
    assert _model_state(deit_tiny) == before
    with pytest.raises(explainers.InvalidParameterError):
        explainers.explain(deit_tiny, both_image, "attention_rollout", discard_ratio=1.5)
    with pytest.raises(explainers.InvalidParameterError):
        explainers.explain(deit_tiny, both_image, "transformer_attribution", target=1000)
    assert _model_state(deit_tiny) == before


# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------
def test_cli_explain_and_list(tmp_path):
    import json
    import subprocess
    import sys

    from conftest import ROOT, SAMPLES, WEIGHTS
    from PIL import Image

    out, npy = tmp_path / "h.png", tmp_path / "m.npy"
    cmd = [sys.executable, "-m", "explainers", "explain", "--model", "deit_tiny_patch16_224", "--weights",
           str(WEIGHTS), "--method", "gradient_rollout", "--image", str(SAMPLES / "both.png"), "--target", "282",
           "--param", "discard_ratio=0.5", "--out", str(out), "--npy", str(npy), "--device", "cpu"]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["target"] == 282 and info["label"] == "tiger cat" and info["params"]["discard_ratio"] == 0.5
    assert Image.open(out).size == (224, 224) and np.load(npy).shape == (14, 14)
    bad = subprocess.run(cmd[:-8] + ["--param", "discard_ratio=2", "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "discard_ratio" in bad.stderr and "Traceback" not in bad.stderr
    r = subprocess.run([sys.executable, "-m", "explainers", "list"], cwd=ROOT, capture_output=True, text=True)
    assert all(name in r.stdout for name in PART1)
