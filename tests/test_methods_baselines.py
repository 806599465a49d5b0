"""Issue 12: the input-gradient baselines (captum), occlusion, RISE and TIS: known answers on constructed
models, IG completeness on DeiT-Tiny, seeded determinism, an independent re-computation of TIS, other
architectures; and every new method of issue 12 against a random map on deletion with both real models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SHARED, WEIGHTS, val_images

import explainers
from explainers.methods.tis import kmeans, tis_saliency

NEW_METHODS = ["saliency", "integrated_gradients", "smoothgrad", "occlusion", "rise", "tis", "gradcam", "gradcam_pp",
               "layercam", "scorecam", "eigencam", "legrad"]


def test_new_methods_registered_with_metadata():
    for name in NEW_METHODS:
        m = explainers.METHODS[name]
        assert m.display_name and m.paper and m.paper_url and m.cost and m.description and m.family
        for p in m.params:
            assert p.describe()["help"]
            assert p.validate(p.default) == p.default


# ---------------------------------------------------------------------------------------------------------
# Known answers on a constructed linear "model"
# ---------------------------------------------------------------------------------------------------------
class LinearModel:
    """logits = W · x + b on a (3, 8, 8) input: every gradient method has a closed form. With
    ``probability=True`` the softmax of class 0 equals a linear function p(x) = v · x exactly (logits are
    log p and log(1 - p)), for RISE's expectation."""

    def __init__(self, probability: bool = False, size: int = 8, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.input_size, self.patch_size, self.num_prefix_tokens = (size, size), (4, 4), 1
        self.device = torch.device("cpu")
        self.probability = probability
        self.W = torch.randn(3, 3 * size * size, generator=g)
        self.b = torch.randn(3, generator=g)
        self.v = torch.zeros(3, size, size)
        q = size // 4
        self.v[:, :q, :q] = 0.9 / (3 * q * q)  # p(x) = 0.9 x the mean of the top-left region (x in [0, 1])
        self.num_classes = 2 if probability else 3
        self.labels = [str(i) for i in range(self.num_classes)]

    def grid(self, x=None):
        H, W = x.shape[-2:] if isinstance(x, torch.Tensor) else self.input_size
        return H // self.patch_size[0], W // self.patch_size[1]

    def check_input(self, x):
        return x

    def forward(self, x):
        if self.probability:
            p = (x * self.v).flatten(1).sum(1).clamp(1e-6, 1 - 1e-6)
            return torch.stack([p.log(), (1 - p).log()], 1)
        return x.flatten(1) @ self.W.T + self.b

    def outputs(self, x):
        return explainers.models.Outputs(embedding=x.flatten(1), logits=self.forward(x))

    def trace(self, x):  # pragma: no cover - only the native size is used here
        raise AssertionError("the constructed model runs at its native size only")


@pytest.fixture(scope="module")
def linear_input():
    return torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(5))


def test_integrated_gradients_equal_input_times_weight_on_a_linear_model(linear_input):
    model, x = LinearModel(), linear_input
    for t in range(3):
        cap = explainers.capture(model, x, "integrated_gradients", target=t, steps=4)
        want = (x * model.W[t].view(3, 8, 8))[0]  # zero baseline: (x - 0) * w
        torch.testing.assert_close(cap.state["attr"][0], want, atol=1e-5, rtol=1e-5)
        exp = explainers.render(cap, model)
        np.testing.assert_allclose(exp.patch_map, want.sum(0).reshape(2, 4, 2, 4).sum((1, 3)).numpy(), atol=1e-4)
        assert exp.patch_map.sum() == pytest.approx(float((x.flatten() * model.W[t]).sum()), abs=1e-4)


def test_saliency_smoothgrad_and_occlusion_closed_forms_on_a_linear_model(linear_input):
    model, x = LinearModel(), linear_input
    w = model.W[2].view(3, 8, 8)
    sal = explainers.explain(model, x, "saliency", target=2)
    want = w.abs().amax(0).reshape(2, 4, 2, 4).mean((1, 3)).numpy()
    np.testing.assert_allclose(sal.patch_map, want, rtol=1e-5)
    # constant gradient: the noise cannot change it
    sg = explainers.explain(model, x, "smoothgrad", target=2, samples=3, channels="sum")
    np.testing.assert_allclose(sg.patch_map, w.abs().sum(0).reshape(2, 4, 2, 4).mean((1, 3)).numpy(), rtol=1e-5)
    # occluding one patch (window = stride = patch) drops the logit by that patch's w . x
    occ = explainers.explain(model, x, "occlusion", target=2, score="logit")
    want = (w * x[0]).sum(0).reshape(2, 4, 2, 4).sum((1, 3)).numpy()
    np.testing.assert_allclose(occ.patch_map, want, rtol=1e-4, atol=1e-5)


def test_rise_known_answer_on_a_constructed_model():
    """p(x ⊙ M) = v · (x ⊙ M) is linear, so RISE's map is S(u) = Σ_v v_v x_v E[M(v) M(u)] / p1: far from the
    top-left region the masks are independent of it and S = E[M(u)] E[p(x ⊙ M)] / p1 = p1 · p(x); inside it
    the masks are correlated with themselves and S is larger."""
    model = LinearModel(probability=True, size=32)
    x = torch.ones(1, 3, 32, 32)
    p1, p = 0.5, 0.9
    cap = explainers.capture(model, x, "rise", target=0, masks=6000, cells=8, p1=p1, batch_size=500)
    pix = cap.state["pixels"][0]
    assert float(pix[20:, 20:].mean()) == pytest.approx(p1 * p, rel=0.03)
    assert float(pix[:8, :8].mean()) > 1.1 * float(pix[20:, 20:].mean())  # MC noise is ~0.003
    exp = explainers.render(cap, model)
    assert np.unravel_index(exp.patch_map.argmax(), exp.patch_map.shape) in {(0, 0), (0, 1), (1, 0), (1, 1)}


def test_rise_is_seeded_and_independent_of_the_batch_size(deit_tiny, both_image):
    a = explainers.explain(deit_tiny, both_image, "rise", target=282, masks=24, seed=3, batch_size=16)
    b = explainers.explain(deit_tiny, both_image, "rise", target=282, masks=24, seed=3, batch_size=7)
    c = explainers.explain(deit_tiny, both_image, "rise", target=282, masks=24, seed=4, batch_size=16)
    np.testing.assert_allclose(a.patch_map, b.patch_map, rtol=1e-4, atol=1e-6)
    assert not np.allclose(a.patch_map, c.patch_map)


# ---------------------------------------------------------------------------------------------------------
# DeiT-Tiny: IG completeness, SmoothGrad determinism
# ---------------------------------------------------------------------------------------------------------
def test_integrated_gradients_completeness_on_deit_tiny(deit_tiny, both_image):
    x = deit_tiny.preprocess(both_image)
    cap = explainers.capture(deit_tiny, x, "integrated_gradients", target=282, steps=32, batch_size=32)
    with torch.inference_mode():
        f_x = float(deit_tiny.forward(x)[0, 282])
        f_0 = float(deit_tiny.forward(torch.zeros_like(x))[0, 282])
    total = float(cap.state["attr"].double().sum())
    assert total == pytest.approx(f_x - f_0, rel=0.05, abs=0.05)
    exp = explainers.render(cap, deit_tiny)
    assert float(exp.patch_map.sum()) == pytest.approx(total, rel=1e-3)
    assert not exp.warnings


def test_smoothgrad_is_deterministic_for_a_seed(deit_tiny, both_image):
    kw = dict(target=243, samples=4, noise=0.2)
    a = explainers.explain(deit_tiny, both_image, "smoothgrad", seed=7, **kw).patch_map
    b = explainers.explain(deit_tiny, both_image, "smoothgrad", seed=7, batch_size=3, **kw).patch_map
    c = explainers.explain(deit_tiny, both_image, "smoothgrad", seed=8, **kw).patch_map
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-8)
    assert not np.allclose(a, c, rtol=1e-3)
    torch.manual_seed(0)
    first = torch.rand(1)
    torch.manual_seed(0)
    explainers.explain(deit_tiny, both_image, "smoothgrad", seed=7, **kw)
    assert torch.equal(torch.rand(1), first), "the global random state must be left as it was"


def test_saliency_heatmap_is_the_pixel_gradient(deit_tiny, both_image):
    """The heatmap is the pixel map itself (not an upsampled patch map): max over channels of |∂y/∂x|,
    computed here with plain autograd on the model's forward."""
    x = deit_tiny.preprocess(both_image)
    exp = explainers.explain(deit_tiny, x, "saliency", target=282)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(deit_tiny.forward(xg)[0, 282], xg)
    want = g[0].abs().amax(0)
    want = ((want - want.min()) / (want.max() - want.min())).numpy()
    np.testing.assert_allclose(exp.heatmap, want, atol=1e-4)
    assert exp.patch_map.shape == (14, 14)


# ---------------------------------------------------------------------------------------------------------
# TIS
# ---------------------------------------------------------------------------------------------------------
def test_kmeans_recovers_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    pts = torch.cat([c + 0.1 * torch.randn(30, 2, generator=g) for c in centres])
    got = kmeans(pts, 3, seed=1, iterations=50)
    order = got[:, 0].argsort()
    got = got[order]
    want = torch.stack([pts[i * 30:(i + 1) * 30].mean(0) for i in range(3)])[torch.tensor([0, 2, 1])]
    want = want[want[:, 0].argsort()]
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(kmeans(pts, 3, seed=1, iterations=50), kmeans(pts, 3, seed=1, iterations=50))


def test_tis_saliency_formula():
    masks = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]])
    s = torch.tensor([0.2, 0.6])
    torch.testing.assert_close(tis_saliency(masks, s), torch.tensor([0.2, 0.4, 0.6, 0.0]))


def test_tis_agrees_with_an_independent_token_dropping_pass(deit_tiny, both_image):
    """Re-score TIS's masks through timm's own modules (patch embedding, position embedding, blocks, norm,
    head) and rebuild the map with numpy."""
    x = deit_tiny.preprocess(both_image)
    cap = explainers.capture(deit_tiny, x, "tis", target=282, masks=24, seed=2)
    exp = explainers.render(cap, deit_tiny)
    net = deit_tiny.module
    masks = cap.state["masks"][0].numpy()
    with torch.no_grad():
        tokens = net._pos_embed(net.patch_embed(x))
        scores = []
        for m in masks:
            keep = torch.from_numpy(np.flatnonzero(m)) + 1
            t = torch.cat([tokens[:, :1], tokens[:, keep]], 1)
            out = net.forward_head(net.norm(net.blocks(t)))
            scores.append(float(out.softmax(-1)[0, 282]))
    scores = np.array(scores)
    np.testing.assert_allclose(cap.state["scores"][0].numpy(), scores, rtol=1e-4, atol=1e-6)
    want = (scores @ masks) / np.maximum(masks.sum(0), 1)
    np.testing.assert_allclose(exp.patch_map.ravel(), want, rtol=1e-4, atol=1e-6)
    again = explainers.explain(deit_tiny, x, "tis", target=282, masks=24, seed=2, batch_size=5)
    np.testing.assert_allclose(again.patch_map, exp.patch_map, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# Other architectures: prefix tokens (class, distillation, registers) and non-square grids
# ---------------------------------------------------------------------------------------------------------
CHEAP = {"integrated_gradients": {"steps": 2}, "smoothgrad": {"samples": 2}, "rise": {"masks": 8},
         "tis": {"masks": 8}, "occlusion": {"window": 16}}


def tiny_models():
    import timm

    torch.manual_seed(0)
    reg = timm.models.vision_transformer.VisionTransformer(
        img_size=64, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=7, reg_tokens=4,
        dynamic_img_size=True)
    dist = timm.models.deit.VisionTransformerDistilled(
        img_size=32, patch_size=8, embed_dim=24, depth=2, num_heads=2, num_classes=5, dynamic_img_size=True)
    from transformers import ViTConfig, ViTForImageClassification

    cfg = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
                    patch_size=8, num_labels=4)
    return [(explainers.models.wrap_timm(reg.eval(), "tiny-reg"), (64, 48), 5),
            (explainers.models.wrap_timm(dist.eval(), "tiny-dist"), (32, 32), 2),
            (explainers.models.wrap_hf(ViTForImageClassification(cfg).eval(), "tiny-hf"), (32, 32), 1)]


@pytest.mark.parametrize("method", NEW_METHODS)
def test_prefix_tokens_and_grids(method):
    for model, size, prefix in tiny_models():
        assert model.num_prefix_tokens == prefix
        if size != tuple(model.input_size) and not getattr(model, "any_size", True):
            continue
        x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
        exps = explainers.explain(model, x, method, target=[1, 3], **CHEAP.get(method, {}))
        gh, gw = size[0] // model.patch_size[0], size[1] // model.patch_size[1]
        for e, t in zip(exps, [1, 3]):
            assert e.patch_map.shape == (gh, gw), (model.name, method)
            assert e.heatmap.shape == size
            assert np.isfinite(e.patch_map).all() and e.target == t
        single = explainers.explain(model, x[1:], method, target=3, **CHEAP.get(method, {}))
        np.testing.assert_allclose(exps[1].patch_map, single.patch_map, rtol=2e-3,
                                   atol=1e-5 * max(1e-6, float(np.abs(single.patch_map).max())))


# ---------------------------------------------------------------------------------------------------------
# Faithfulness floor: each new method beats a random map on deletion (20 ImageNet validation images, both
# real models). The deletion curve of the standard preset (blur baseline, bilinear ranking, trapezoid AUC) at
# 10 steps, as ``explainers.metrics.insertion_deletion`` computes it; only the deletion points are run, and
# the two end points (the image, the fully blurred image) once per image.
# ---------------------------------------------------------------------------------------------------------
DELETION_PARAMS = {"integrated_gradients": {"steps": 8}, "smoothgrad": {"samples": 8}, "rise": {"masks": 150},
                   "tis": {"masks": 64}, "occlusion": {"window": 56}}
REAL = {"deit_tiny_patch16_224": WEIGHTS,
        "vit_tiny_patch16_224": SHARED / "weights" / "vit_tiny_patch16_224.augreg_in21k_ft_in1k"}
STEPS = 10


def deletion_aucs(model, xs, maps, targets, ends):
    """Deletion AUC per image: maps (pixel or patch maps) ranked as the metric ranks them; ends (B, 2) the
    scores of the image and of the baseline."""
    from explainers.metrics.baselines import make_baseline
    from explainers.metrics.perturbation import get_preset, rank_pixels

    p = get_preset(None)
    H, W = xs.shape[-2:]
    fr = p.grid(STEPS)
    ks = p.pixel_counts(H * W, fr)[1:-1]
    inputs, owner = [], []
    for b, (x, m) in enumerate(zip(xs, maps)):
        rank = rank_pixels(m, (H, W), p.upsample).view(1, 1, H, W)
        base = make_baseline(model, x[None], p.baseline)
        inputs += [torch.where(rank < int(k), base, x[None]) for k in ks]
        owner += [b] * len(ks)
    scores = []
    with torch.inference_mode():
        for i in range(0, len(inputs), 32):
            probs = model.forward(torch.cat(inputs[i:i + 32])).float().softmax(-1)
            scores += [float(probs[j, targets[owner[i + j]]]) for j in range(probs.shape[0])]
    inner = np.array(scores).reshape(len(xs), len(ks))
    curves = np.concatenate([ends[:, :1], inner, ends[:, 1:]], axis=1)
    return np.array([p.area(fr, c, "deletion") for c in curves])


@pytest.fixture(scope="module", params=sorted(REAL))
def deletion_setup(request):
    from PIL import Image

    from explainers.metrics import insertion_deletion
    from explainers.metrics.baselines import make_baseline
    from explainers.metrics.perturbation import get_preset
    from explainers.metrics.reference import random_map

    model = explainers.load_model(request.param, weights=REAL[request.param], device="cpu")
    xs = torch.cat([model.preprocess(Image.open(p)) for p in val_images(20)])
    with torch.inference_mode():
        targets = model.forward(xs).argmax(-1).tolist()
        blurred = make_baseline(model, xs, get_preset(None).baseline)
        p_img = model.forward(xs).float().softmax(-1)[torch.arange(20), targets]
        p_base = model.forward(blurred).float().softmax(-1)[torch.arange(20), targets]
    ends = torch.stack([p_img, p_base], 1).double().numpy()
    grid = model.grid()
    # the helper is the metric: same AUC as insertion_deletion on one image
    want = insertion_deletion(model, xs[:1], random_map(grid, 0), targets[0], steps=STEPS).deletion_auc
    assert deletion_aucs(model, xs[:1], [random_map(grid, 0)], targets[:1], ends[:1])[0] == pytest.approx(want,
                                                                                                        abs=1e-5)
    floor = np.mean([deletion_aucs(model, xs, [random_map(grid, 100 * b + s) for b in range(20)], targets, ends)
                     for s in range(3)])
    return model, xs, targets, ends, float(floor)


@pytest.mark.parametrize("method", NEW_METHODS)
def test_beats_random_map_on_deletion(deletion_setup, method):
    model, xs, targets, ends, floor = deletion_setup
    exps = explainers.explain(model, xs, method, **DELETION_PARAMS.get(method, {}))
    assert [e.target for e in exps] == targets
    ours = float(np.mean(deletion_aucs(model, xs, [e.heatmap for e in exps], targets, ends)))
    assert ours < floor, (model.name, ours, floor)
