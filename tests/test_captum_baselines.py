"""Issue 26 (captum half): Gradient x Input, Guided Backprop, DeepLIFT, GradientSHAP, LIME and KernelSHAP.
Closed forms on constructed models (linear, and a one-hidden-layer GELU network where DeepLIFT's Rescale rule and
the guided rule have exact answers); agreement with captum called directly on the same model and input; seeding;
and the deletion floor against a random map on both real models."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from model_zoo import perturb
from test_methods_baselines import LinearModel, deletion_aucs, deletion_setup  # noqa: F401

import explainers
from explainers.methods.captum_sampling import patch_feature_mask, shap_baselines

NEW = ["gradient_x_input", "guided_backprop", "deeplift", "gradient_shap", "lime", "kernel_shap"]
SIGNED = {"gradient_x_input", "deeplift", "gradient_shap", "lime", "kernel_shap"}


def test_registered_with_metadata_signedness_and_page():
    from vit_explain_studio.settings import page_spec

    assert page_spec("attribution").available() == NEW
    for name in NEW:
        m = explainers.METHODS[name]
        assert m.display_name and m.paper and m.paper_url and m.cost and m.description and m.class_specific
        assert m.is_signed({}) == (name in SIGNED)
        if name in SIGNED:
            assert not m.is_signed({"absolute": True})


class GeluNet(LinearModel):
    """logits = W2 · gelu(W1 · x + b1) + b2 on a (3, 8, 8) input, the GELU an ``nn.GELU`` module of ``module``."""

    def __init__(self, act=torch.nn.GELU):
        super().__init__()
        g = torch.Generator().manual_seed(1)
        self.module = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 16), act(), torch.nn.Linear(16, 3))
        with torch.no_grad():
            for p in self.module.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
            self.module[1].weight.mul_(0.1)  # pre-activations of order 1: GELU neither linear nor saturated

    def forward(self, x):
        return self.module(x)

    def outputs(self, x):
        return explainers.models.Outputs(embedding=x.flatten(1), logits=self.forward(x))


@pytest.fixture(scope="module")
def x8():
    return torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(5))


def _patch_sums(pix):
    return pix.reshape(2, 4, 2, 4).sum((1, 3)).numpy()


def test_linear_closed_forms(x8):
    model = LinearModel()
    w = model.W[1].view(3, 8, 8)
    gxi = explainers.capture(model, x8, "gradient_x_input", target=1)
    torch.testing.assert_close(gxi.state["attr"][0], x8[0] * w)
    blur = shap_baselines(model, x8, "blur", 0)[0]
    gs = explainers.capture(model, x8, "gradient_shap", target=1, baselines="blur", samples=5)
    torch.testing.assert_close(gs.state["attr"][0], (x8[0] - blur) * w, atol=1e-5, rtol=1e-5)  # any point, any α
    # patch surrogates of a linear function are exact: coefficient = w · (x - baseline) over the patch
    want = _patch_sums(((x8[0] - blur) * w).sum(0))
    ks = explainers.explain(model, x8, "kernel_shap", target=1, samples=64)
    np.testing.assert_allclose(ks.patch_map, want, rtol=1e-3, atol=1e-4)
    lime = explainers.explain(model, x8, "lime", target=1, samples=64, alpha=0.0)
    np.testing.assert_allclose(lime.patch_map, want, rtol=1e-3, atol=1e-4)
    mask = patch_feature_mask(model, x8)[0, 0]
    assert mask[0, 0] == 0 and mask[0, 4] == 1 and mask[7, 7] == 3


def test_deeplift_rescale_on_gelu_is_exact_and_complete(x8):
    model = GeluNet()
    lin1, lin2 = model.module[1], model.module[3]
    base = torch.zeros_like(x8)  # "zero" baseline
    cap = explainers.capture(model, x8, "deeplift", target=2, baseline="zero")
    with torch.no_grad():
        h, h0 = lin1(x8.flatten(1)), lin1(base.flatten(1))
        slope = (torch.nn.functional.gelu(h) - torch.nn.functional.gelu(h0)) / (h - h0)  # the secant
        want = ((x8 - base).flatten(1) * ((slope * lin2.weight[2]) @ lin1.weight)).view_as(x8)
        change = float(model.forward(x8)[0, 2] - model.forward(base)[0, 2])
    torch.testing.assert_close(cap.state["attr"], want, atol=1e-4, rtol=1e-4)
    assert float(cap.state["attr"].sum()) == pytest.approx(change, rel=1e-4)  # summation-to-delta
    assert not any(explainers.render(cap, model).warnings or [])


@pytest.mark.parametrize("family", ["timm_deit", "timm_siglip_map", "timm_eva02", "hf_vit", "hf_clip_cls",
                                    "timm_beit"])
def test_deeplift_rules_in_the_mlps_equal_captums_hooks(family):
    """The Rescale rule written into the library's MLPs (a reference pass, then a gradient pass of the images)
    gives captum's multipliers: the same map and gap as captum's DeepLift with its hook on every activation
    module (a 2B-row pass), on plain, gated (SwiGLU), probe-pooled, QuickGELU and relative-position models."""
    from model_zoo import build

    from explainers.methods.captum_baselines import _deeplift_hooks, _deeplift_rules

    m = build(family)
    x = torch.randn(2, 3, *m.input_size, generator=torch.Generator().manual_seed(2))
    base = explainers.metrics.baselines.make_baseline(m, x, "blur")
    target = [1, 3] if m.num_classes else None
    rules, hooks = _deeplift_rules(m, x, base, target, {}), _deeplift_hooks(m, x, base, target, {})
    assert rules is not None
    for a, b in zip(rules, hooks):
        _close(a, b, tol=2e-4)
    assert float(rules[0].abs().sum()) > 0


@pytest.mark.parametrize("family", ["timm_deit", "timm_siglip_map", "timm_eva02", "hf_vit", "hf_clip_cls",
                                    "timm_beit"])
def test_guided_rule_in_the_mlps_equals_captums_hooks(family):
    """The guided rule written into the library's MLPs gives the gradient of captum's GuidedBackprop with its
    guided hook on every activation module, and it reaches as many activations as captum hooks, on plain, gated
    (SwiGLU), probe-pooled, QuickGELU and relative-position models; the rule changes the plain gradient."""
    from model_zoo import build

    from explainers.methods.captum_baselines import _guided_hooks, _guided_rules

    m = build(family)
    x = torch.randn(2, 3, *m.input_size, generator=torch.Generator().manual_seed(2))
    target = [1, 3] if m.num_classes else None
    (rules, reached), (hooks, hooked) = _guided_rules(m, x, target, {}), _guided_hooks(m, x, target, {})
    assert reached == hooked > 0
    _close(rules, hooks, tol=2e-4)
    plain = explainers.capture(m, x, "saliency", target=target).state["grad"]
    assert not torch.allclose(rules, plain, atol=1e-3 * float(plain.abs().max()))


def test_guided_backprop_applies_the_guided_rule_to_gelu(x8):
    model = GeluNet()
    lin1, lin2 = model.module[1], model.module[3]
    cap = explainers.capture(model, x8, "guided_backprop", target=0)
    with torch.enable_grad():
        h = lin1(x8.flatten(1)).detach().requires_grad_(True)
        (dgelu,) = torch.autograd.grad(torch.nn.functional.gelu(h).sum(), h)
    want = (torch.relu(dgelu * lin2.weight[0]) @ lin1.weight).view_as(x8)
    torch.testing.assert_close(cap.state["grad"], want, atol=1e-5, rtol=1e-5)
    plain = explainers.capture(model, x8, "gradient_x_input", target=0).state["attr"] / x8
    assert not torch.allclose(cap.state["grad"], plain, atol=1e-3)  # the rule did something


# ---------------------------------------------------------------------------------------------------------
# Against captum called directly on the same ViT and input
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def relu_vit():
    """A small timm ViT with ReLU activations (the activation captum's GuidedBackprop and DeepLift know), so that
    captum called directly on timm's own module and our method apply the same rules."""
    import timm

    torch.manual_seed(0)
    net = perturb(timm.create_model("deit_tiny_patch16_224", pretrained=False, num_classes=10, depth=2,
                                    embed_dim=64, num_heads=2, act_layer=torch.nn.ReLU, img_size=64))
    return net, explainers.models.wrap_timm(net, "relu-vit")


@pytest.fixture(scope="module")
def vit_x():
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(3))


def _close(a, b, tol=1e-4):
    a, b = torch.as_tensor(a).detach().float(), torch.as_tensor(b).detach().float()
    assert float((a - b).abs().max()) <= tol * max(1.0, float(b.abs().max())), float((a - b).abs().max())


def test_gradient_methods_agree_with_captum_directly(relu_vit, vit_x):
    from captum.attr import DeepLift, GuidedBackprop, InputXGradient

    net, m = relu_vit
    t = 4
    ours = explainers.capture(m, vit_x, "gradient_x_input", target=t).state["attr"]
    _close(ours, InputXGradient(net).attribute(vit_x.clone().requires_grad_(True), target=t))
    ours = explainers.capture(m, vit_x, "guided_backprop", target=t).state["grad"]
    _close(ours, GuidedBackprop(net).attribute(vit_x.clone().requires_grad_(True), target=t))
    # a batch of two images with a target each: one DeepLIFT pass of the images and their baselines
    x2 = torch.cat([vit_x, torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))])
    cap = explainers.capture(m, x2, "deeplift", target=[t, 7], baseline="black")
    base = explainers.metrics.baselines.make_baseline(m, x2, "black")
    _close(cap.state["attr"], DeepLift(net).attribute(x2.clone().requires_grad_(True), baselines=base, target=[t, 7]))
    assert cap.targets.tolist() == [t, 7] and cap.forward_passes == 4
    with torch.no_grad():
        change = net(x2)[[0, 1], [t, 7]] - net(base)[[0, 1], [t, 7]]
    gaps = (cap.state["attr"].sum(dim=(1, 2, 3)) - change).abs()
    warned = [bool(w) for w in cap.state["warnings"]]
    assert warned == [bool(g > 0.05 * max(abs(c), 1e-6)) for g, c in zip(gaps.tolist(), change.tolist())]


def test_sampling_methods_agree_with_captum_directly_and_are_seeded(relu_vit, vit_x):
    from captum.attr import GradientShap, KernelShap

    net, m = relu_vit
    t, seed = 7, 11
    torch.manual_seed(0)
    before = torch.rand(1)
    ours = explainers.capture(m, vit_x, "gradient_shap", target=t, samples=6, seed=seed).state["attr"]
    torch.manual_seed(0)
    assert torch.equal(torch.rand(1), before), "the caller's random state is left as it was"
    torch.manual_seed(seed)
    np.random.seed(seed)
    want = GradientShap(net).attribute(vit_x.clone().requires_grad_(True), target=t, n_samples=6,
                                       baselines=shap_baselines(m, vit_x, "references", seed), stdevs=0.0)
    _close(ours, want)
    other = explainers.capture(m, vit_x, "gradient_shap", target=t, samples=6, seed=seed + 1).state["attr"]
    assert not torch.allclose(ours, other)

    ks = explainers.explain(m, vit_x, "kernel_shap", target=t, samples=40, seed=seed, batch_size=7)
    base = explainers.metrics.baselines.make_baseline(m, vit_x, "blur")
    torch.manual_seed(seed)
    np.random.seed(seed)
    want = KernelShap(net).attribute(vit_x, baselines=base, target=t, feature_mask=patch_feature_mask(m, vit_x),
                                     n_samples=40, return_input_shape=False)
    _close(ks.patch_map.ravel(), want.ravel(), 1e-3)


def test_lime_agrees_with_captum_directly(relu_vit, vit_x):
    from captum._utils.models.linear_model import SkLearnRidge
    from captum.attr import Lime

    from explainers.methods.captum_sampling import lime_kernel

    net, m = relu_vit
    t, seed = 2, 5
    ours = explainers.explain(m, vit_x, "lime", target=t, samples=40, seed=seed)
    again = explainers.explain(m, vit_x, "lime", target=t, samples=40, seed=seed, batch_size=3)
    np.testing.assert_allclose(ours.patch_map, again.patch_map, rtol=1e-4, atol=1e-6)
    torch.manual_seed(seed)
    np.random.seed(seed)
    want = Lime(net, SkLearnRidge(alpha=1.0), lime_kernel(0.25)).attribute(
        vit_x, baselines=explainers.metrics.baselines.make_baseline(m, vit_x, "blur"), target=t,
        feature_mask=patch_feature_mask(m, vit_x), n_samples=40, return_input_shape=False)
    _close(ours.patch_map.ravel(), want.ravel(), 1e-3)


# ---------------------------------------------------------------------------------------------------------
# Faithfulness floor on both real models (the shared 20-image fixture of test_methods_baselines, first 8 images)
# ---------------------------------------------------------------------------------------------------------
DELETION = {"gradient_shap": {"samples": 16}, "lime": {"samples": 128}, "kernel_shap": {"samples": 128}}


@pytest.mark.slow
@pytest.mark.parametrize("method", NEW)
def test_beats_random_map_on_deletion(deletion_setup, method):  # noqa: F811
    from explainers.metrics.reference import random_map

    model, xs, targets, ends, _ = deletion_setup
    n = 8
    xs, targets, ends = xs[:n], targets[:n], ends[:n]
    floor = np.mean([deletion_aucs(model, xs, [random_map(model.grid(), 100 * b + s) for b in range(n)], targets,
                                   ends) for s in range(3)])
    exps = explainers.explain(model, xs, method, **DELETION.get(method, {}))
    ours = float(np.mean(deletion_aucs(model, xs, [e.heatmap for e in exps], targets, ends)))
    print(model.name, method, round(ours, 4), round(float(floor), 4))
    assert ours < floor, (model.name, ours, floor)


class _Pause(torch.nn.Module):
    """The identity; in a pass of thread ``owner`` while ``hooked`` carries forward hooks (captum's, during its
    attribution), it signals ``inside`` and waits for ``go``."""

    def __init__(self, hooked):
        super().__init__()
        self.hooked, self.owner = hooked, None
        self.inside, self.go = threading.Event(), threading.Event()

    def forward(self, t):
        if threading.get_ident() == self.owner and self.hooked._forward_pre_hooks:
            self.inside.set()
            assert self.go.wait(timeout=60)
        return t


def test_captums_hooks_leave_another_threads_passes_alone(x8):
    """While one thread's guided backprop holds captum's hooks on a shared model's activation module, another
    thread's passes through that module (no-grad and gradient) are untouched (captum's own closures would register
    tensor hooks there: an error in a no-grad pass), and the first thread's map is the one it gets alone."""
    model = GeluNet()
    alone = explainers.capture(model, x8, "guided_backprop", target=0).state["grad"]
    pause = _Pause(model.module[2])
    model.module = torch.nn.Sequential(*list(model.module)[:3], pause, model.module[3])
    with torch.no_grad():
        want = model.module(x8)
    xg = x8.clone().requires_grad_(True)
    (plain,) = torch.autograd.grad(model.module(xg)[0, 0], xg)
    box = {}

    def attribute():
        pause.owner = threading.get_ident()
        box["grad"] = explainers.capture(model, x8, "guided_backprop", target=0).state["grad"]

    worker = threading.Thread(target=attribute)
    worker.start()
    try:
        assert pause.inside.wait(timeout=60)
        with torch.no_grad():
            got = model.module(x8)
        xg = x8.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(model.module(xg)[0, 0], xg)
    finally:
        pause.go.set()
        worker.join(timeout=60)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(grad, plain)
    torch.testing.assert_close(box["grad"], alone)
