"""Issue 12: the masked passes' path. ``ViTModel.outputs`` on the CPU takes oneDNN's fused linears
(:mod:`explainers.models.fast`) without autograd: its logits equal the model's own forward and the plain path
(relative 1e-4) for every family, the fused kernels are really taken, gradient passes and other devices/dtypes
keep the plain ops, the model is never changed, and a method's map and the metric's AUCs do not move."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_zoo import FAMILIES, build
from scipy.stats import spearmanr

import explainers
from explainers import metrics as M
from explainers.models import fast


def _rel(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture
def plain(monkeypatch):
    """Call ``plain(fn)`` to run ``fn`` with the fused linears off."""

    def run(fn):
        monkeypatch.setattr(fast, "FUSED_CPU", False)
        try:
            return fn()
        finally:
            monkeypatch.setattr(fast, "FUSED_CPU", True)

    return run


@pytest.fixture
def counted(monkeypatch):
    """Counts the fused kernels' calls."""
    calls = {"n": 0}
    real = fast._op

    def op(name):
        f = real(name)

        def call(*a):
            calls["n"] += 1
            return f(*a)

        return call

    monkeypatch.setattr(fast, "_op", op)
    return calls


def test_fused_kernels_work_here():
    assert fast.fused_available()  # the CI image's torch has oneDNN: the fast path must not silently vanish


@pytest.mark.parametrize("name", list(FAMILIES))
def test_new_path_logits_equal_old_path(name, plain, counted):
    m = build(name)
    x = torch.randn(3, 3, *m.input_size, generator=torch.Generator().manual_seed(0))
    state = {k: v.clone() for k, v in m.module.state_dict().items()}
    with torch.inference_mode():
        own = m.adapter.own_outputs(m.module, x)
        new = m.outputs(x)
        assert counted["n"] > 0, "the fused kernels were not taken"
        old = plain(lambda: m.outputs(x))
    for field in ("logits", "embedding"):
        ref = getattr(own, field)
        if ref is not None:
            assert _rel(getattr(new, field), ref) < 1e-4, field
            assert _rel(getattr(new, field), getattr(old, field)) < 1e-4, field
    assert all(torch.equal(v, m.module.state_dict()[k]) for k, v in state.items())  # the model is unchanged


def test_gradient_passes_and_fallbacks_keep_plain_ops(deit_tiny, plain, counted, monkeypatch):
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    xg = x.clone().requires_grad_(True)
    deit_tiny.forward(xg)[:, 3].sum().backward()  # autograd on: differentiable plain ops, a real gradient
    assert counted["n"] == 0 and xg.grad is not None and xg.grad.abs().sum() > 0
    assert not fast.use_fused(x)  # autograd on
    with torch.inference_mode():
        ref = plain(lambda: deit_tiny.forward(x))
        assert counted["n"] == 0
        assert fast.use_fused(x) and not fast.use_fused(x.double()) and not fast.use_fused(x.bfloat16())
        monkeypatch.setitem(fast._state, "ok", False)  # as on a build without oneDNN
        assert torch.equal(deit_tiny.forward(x), ref) and counted["n"] == 0
        monkeypatch.setitem(fast._state, "ok", True)
        assert _rel(deit_tiny.forward(x), ref) < 1e-4 and counted["n"] > 0


def test_method_map_and_metric_unchanged(deit_tiny, plain):
    from conftest import ROOT
    from PIL import Image

    x = deit_tiny.preprocess(Image.open(ROOT / "vit_explain_studio" / "assets" / "samples" / "both.png"))
    new = explainers.explain(deit_tiny, x, "gradmask", masks_layer=2)
    old = plain(lambda: explainers.explain(deit_tiny, x, "gradmask", masks_layer=2))
    assert spearmanr(new.patch_map.ravel(), old.patch_map.ravel()).statistic >= 0.9999
    assert np.allclose(new.patch_map, old.patch_map, rtol=1e-4, atol=1e-6 * np.abs(old.patch_map).max())
    c_new = M.insertion_deletion(deit_tiny, x, new.heatmap, new.target, preset="standard")
    c_old = plain(lambda: M.insertion_deletion(deit_tiny, x, new.heatmap, new.target, preset="standard"))
    assert abs(c_new.insertion_auc - c_old.insertion_auc) <= 1e-4
    assert abs(c_new.deletion_auc - c_old.deletion_auc) <= 1e-4


def test_a_linear_with_hooks_runs_itself():
    m = build("timm_deit")
    x = torch.randn(2, 3, *m.input_size, generator=torch.Generator().manual_seed(2))
    fc1 = m.module.blocks[0].mlp.fc1
    handle = fc1.register_forward_hook(lambda mod, inp, out: out * 0)  # a user's hook that changes the output
    try:
        with torch.inference_mode():
            hooked = m.outputs(x).logits
            own = m.adapter.own_outputs(m.module, x).logits
    finally:
        handle.remove()
    with torch.inference_mode():
        free = m.outputs(x).logits
    assert _rel(hooked, own) < 1e-4 and _rel(hooked, free) > 1e-3
