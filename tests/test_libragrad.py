"""LibraGrad (Mehri et al., CVPR 2025) as a wrapper of the gradient methods: the forward values are unchanged, the
balanced backward makes the network complete (gradient x input at the first block's input plus bias x gradient
adds up to the explained score exactly, on every family, which the plain gradient does not), the switch is per
thread, and the wrapped methods match the authors' code on DeiT-Tiny."""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from model_zoo import FAMILIES, build

import explainers
from explainers.models.blocks import Trace, block_traced, pool_outputs
from explainers.models.rules import libragrad, libragrad_on

WRAPPED = ("gradient_rollout", "attention_gradcam", "generic_attention", "transformer_attribution", "gradcam",
           "gradcam_pp", "layercam", "legrad", "saliency", "integrated_gradients", "smoothgrad", "gradient_x_input",
           "gradient_shap")
REFERENCE = Path(__file__).parent / "data" / "libragrad_reference.pt"


def _norm_like(module) -> bool:
    return "norm" in type(module).__name__.lower()


def _decomposition(m, x, balanced: bool) -> tuple[float, float]:
    """(score, tokens x gradient + biases x gradient) of the first four embedding values and logits (torchvision
    starts its classifier at zero), from the input of
    block 0, in float64, with the normalisations' biases set to zero (LibraGrad's rule holds their output constant
    for the backward: they are biases that autograd cannot see)."""
    m = copy.deepcopy(m)
    m.module.double()
    with torch.no_grad():
        for mod in m.module.modules():
            if _norm_like(mod) and isinstance(getattr(mod, "bias", None), torch.Tensor):
                mod.bias.zero_()
    biases = [p for n, p in m.module.named_parameters() if n.endswith("bias") and p.dim() == 1]
    with torch.enable_grad(), libragrad(balanced):
        t, ctx = m.adapter.embed(m.module, x.double())
        t0 = t.detach().requires_grad_(True)
        h, tr = t0, Trace(logits=None)
        for i, bp in enumerate(m.blocks):
            h = block_traced(bp, h, tr, ctx, i, False, False)
        out = pool_outputs(m.pooling, h, m.num_prefix_tokens, tr)
        y = out.embedding[0, :4].sum() + (out.logits[0, :4].sum() if out.logits is not None else 0)
        grads = torch.autograd.grad(y, [t0, *biases], allow_unused=True)
    total = float((t0 * grads[0]).sum().detach())
    total += sum(float((b * g).sum().detach()) for b, g in zip(biases, grads[1:]) if g is not None)
    return float(y.detach()), total


@pytest.mark.parametrize("name", list(FAMILIES))
def test_balanced_backward_is_complete_on_every_family(name):
    m = build(name)
    x = torch.randn(1, 3, *m.input_size, generator=torch.Generator().manual_seed(2))
    y, total = _decomposition(m, x, balanced=True)
    assert total == pytest.approx(y, rel=1e-7, abs=1e-9)
    y0, plain = _decomposition(m, x, balanced=False)
    assert y0 == y
    assert abs(plain - y) > 1e-3 * abs(y)  # the plain gradient is not complete: the test can fail


def test_forward_values_unchanged_and_gradients_balanced(deit_tiny, cat_image):
    x = deit_tiny.preprocess(cat_image)
    with torch.no_grad():
        ref = deit_tiny.forward(x)
    grads = {}
    for on in (False, True):
        with libragrad(on), torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            out = deit_tiny.outputs(xg).logits
            (grads[on],) = torch.autograd.grad(out[0, ref.argmax()], xg)
        assert torch.allclose(out.detach(), ref, atol=1e-4)
    assert not torch.allclose(grads[True], grads[False], rtol=0.1)
    assert not libragrad_on()  # the switch is off again after the block


def test_switch_is_per_thread(deit_tiny, cat_image):
    """A balanced pass in one thread leaves another thread's plain gradient exactly as without it."""
    x = deit_tiny.preprocess(cat_image)

    def grad():
        with torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(deit_tiny.outputs(xg).logits[0, 285], xg)
        return g

    plain = grad()
    inside, seen = threading.Event(), {}

    def other():
        inside.wait()
        seen["on"], seen["g"] = libragrad_on(), grad()

    t = threading.Thread(target=other)
    t.start()
    with libragrad():
        inside.set()
        t.join()
        balanced = grad()
    assert seen["on"] is False
    assert torch.equal(seen["g"], plain)
    assert not torch.allclose(balanced, plain, rtol=0.1)


@pytest.mark.parametrize("method", WRAPPED)
def test_wrapped_methods_change_with_the_option_and_keep_their_clean_pass(deit_tiny, cat_image, method):
    from model_zoo import fast_params

    kw = fast_params(method)
    plain = explainers.explain(deit_tiny, cat_image, method, **kw)
    balanced = explainers.explain(deit_tiny, cat_image, method, libragrad=True, **kw)
    assert balanced.params["libragrad"] is True
    assert np.isfinite(balanced.patch_map).all()
    assert not np.allclose(plain.patch_map, balanced.patch_map)
    assert balanced.target == plain.target and balanced.probability == pytest.approx(plain.probability, abs=1e-5)


def test_methods_without_the_option_refuse_it(deit_tiny, cat_image):
    offering = set(explainers.METHODS.with_param("libragrad"))
    assert offering == set(WRAPPED)
    with pytest.raises(explainers.errors.InvalidParameterError, match="has no parameter 'libragrad'"):
        explainers.explain(deit_tiny, cat_image, "attention_rollout", libragrad=True)


def test_gradients_match_the_authors_code(deit_tiny):
    """The authors' timm fork (NightMachinery/pytorch-image-models-libragrad-v1; gradient mode LX1 with DU, the logit
    as target, no patch-embedding change) on the shared DeiT-Tiny weights, 8 sample photos and 10 validation images:
    the first block's token gradient x input and the class-token rows of every block's attention gradient (head
    mean), recorded by ``benchmarks/compare_libragrad.py --record``; the plain gradient's as the control."""
    from conftest import SAMPLES, val_images
    from PIL import Image

    ref = torch.load(REFERENCE)
    paths = sorted(SAMPLES.glob("*.png")) + val_images(10)
    assert [p.name for p in paths] == ref["names"]
    x = torch.cat([deit_tiny.preprocess(Image.open(p).convert("RGB")) for p in paths])
    for mode in ("ng", "libra"):
        with torch.enable_grad(), libragrad(mode == "libra"):
            tr = deit_tiny.trace(x.clone().requires_grad_(True))
            g = torch.autograd.grad(tr.logits.gather(1, ref["target"][:, None]).sum(), [tr.embedded, *tr.attentions])
        gxi, rows = (tr.embedded * g[0]).sum(-1).detach(), torch.stack(g[1:])[:, :, :, 0, :].mean(2)
        for mine, theirs in ((gxi, ref[f"tok_gxi_{mode}"]), (rows, ref[f"attn_grad_cls_{mode}"])):
            assert float((mine - theirs).norm() / theirs.norm()) < 1e-4
    assert float((ref["tok_gxi_libra"] - ref["tok_gxi_ng"]).norm() / ref["tok_gxi_ng"].norm()) > 0.5

