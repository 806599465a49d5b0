"""Issue 12: the Grad-CAM family on the token map against the ``grad-cam`` package (pytorch_grad_cam) and LeGrad
against ``torchcam`` on the same DeiT-Tiny weights; their formulas on a small model; the model left unchanged."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from conftest import SAMPLES, val_images
from scipy.stats import spearmanr

import explainers

CAMS = ["gradcam", "gradcam_pp", "layercam", "scorecam", "eigencam"]


def _photos(n_val: int = 3):
    """The bundled sample photos and a few ImageNet validation images."""
    return sorted(SAMPLES.glob("*.png")) + val_images(n_val)


def _reference_cam(name):
    from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM

    return {"gradcam": GradCAM, "gradcam_pp": GradCAMPlusPlus, "layercam": LayerCAM, "scorecam": ScoreCAM,
            "eigencam": EigenCAM}[name]


@pytest.mark.parametrize("method", CAMS)
def test_cam_family_matches_pytorch_grad_cam(deit_tiny, method):
    """pytorch-grad-cam's ViT recipe (target layer blocks[-1].norm1, class token dropped, tokens reshaped to the
    14x14 grid) on a copy of the same timm model, hooks and all: median Spearman >= 0.99 over the photos."""
    from PIL import Image
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    net = copy.deepcopy(deit_tiny.module)  # the package attaches hooks: never to the shared model
    P = deit_tiny.num_prefix_tokens

    def reshape(t):
        return t[:, P:].reshape(t.shape[0], 14, 14, t.shape[-1]).permute(0, 3, 1, 2)

    photos = _photos(3) if method != "scorecam" else [SAMPLES / "both.png"]  # D=192 masked passes each
    kw = {"sign_correction": False} if method == "eigencam" else {}  # the package keeps the SVD's sign
    rhos = []
    for path in photos:
        x = deit_tiny.preprocess(Image.open(path))
        ours = explainers.explain(deit_tiny, x, method, **kw)
        with _reference_cam(method)(model=net, target_layers=[net.blocks[-1].norm1], reshape_transform=reshape) as cam:
            cam.batch_size = 64
            ref = cam(input_tensor=x, targets=[ClassifierOutputTarget(ours.target)])[0]
        rhos.append(spearmanr(ref.ravel(), ours.heatmap.ravel()).statistic)
    assert np.median(rhos) >= 0.99, rhos


def test_eigencam_sign_correction(deit_tiny, both_image):
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection_with_sign_correction

    from explainers.methods.cam import token_activations

    x = deit_tiny.preprocess(both_image)
    A, _, _, _ = token_activations(deit_tiny, x, None, gradients=False)
    ref = get_2d_projection_with_sign_correction(A.permute(0, 2, 1).reshape(1, -1, 14, 14).numpy())[0]
    ours = explainers.explain(deit_tiny, x, "eigencam", relu=False).patch_map
    np.testing.assert_allclose(ours, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())


# ---------------------------------------------------------------------------------------------------------
# LeGrad against torchcam (on torchvision's ViT carrying the same DeiT-Tiny weights)
# ---------------------------------------------------------------------------------------------------------
def torchvision_copy(model):
    """torchvision's VisionTransformer with the tensors of a timm DeiT-Tiny: the same function (checked)."""
    from torchvision.models.vision_transformer import VisionTransformer

    tm = model.module
    blk = tm.blocks[0]
    tv = VisionTransformer(image_size=224, patch_size=16, num_layers=len(tm.blocks), num_heads=blk.attn.num_heads,
                           hidden_dim=tm.embed_dim, mlp_dim=blk.mlp.fc1.out_features, num_classes=1000)
    sd = {"class_token": tm.cls_token, "conv_proj.weight": tm.patch_embed.proj.weight,
          "conv_proj.bias": tm.patch_embed.proj.bias, "encoder.pos_embedding": tm.pos_embed,
          "encoder.ln.weight": tm.norm.weight, "encoder.ln.bias": tm.norm.bias, "heads.head.weight": tm.head.weight,
          "heads.head.bias": tm.head.bias}
    for i, b in enumerate(tm.blocks):
        p = f"encoder.layers.encoder_layer_{i}."
        for ours, theirs in ((b.norm1, "ln_1"), (b.norm2, "ln_2"), (b.mlp.fc1, "mlp.0"), (b.mlp.fc2, "mlp.3"),
                             (b.attn.proj, "self_attention.out_proj")):
            sd[p + theirs + ".weight"], sd[p + theirs + ".bias"] = ours.weight, ours.bias
        sd[p + "self_attention.in_proj_weight"] = b.attn.qkv.weight  # both stack q, k, v in this order
        sd[p + "self_attention.in_proj_bias"] = b.attn.qkv.bias
    tv.load_state_dict({k: v.detach().clone() for k, v in sd.items()})
    return tv.eval()


@pytest.mark.parametrize("pooling", ["model", "mean"])
def test_legrad_matches_torchcam(deit_tiny, pooling):
    from PIL import Image
    from torchcam.methods import LeGrad

    tv = torchvision_copy(deit_tiny)
    kw = {} if pooling == "mean" else {"score_projection": lambda t: tv.heads(tv.encoder.ln(t[:, 0]))}
    rhos = []
    for path in _photos(3):
        x = deit_tiny.preprocess(Image.open(path))
        ours = explainers.explain(deit_tiny, x, "legrad", pooling=pooling)
        with LeGrad(tv, list(tv.encoder.layers), **kw) as extractor:
            out = tv(x)
            torch.testing.assert_close(out, deit_tiny.forward(x).detach(), atol=1e-3, rtol=1e-3)
            ref = extractor(ours.target, out)[0][0].detach().numpy()
        rhos.append(spearmanr(ref.ravel(), ours.patch_map.ravel()).statistic)
    assert np.median(rhos) >= 0.99, rhos


def test_legrad_equals_its_formula_on_a_small_model():
    """Per block: ReLU(∂s^l/∂A^l) averaged over heads and queries, s^l = the head on block l's output, computed
    here with one full backward per block (no graph tricks); summed from start_layer."""
    import timm

    torch.manual_seed(4)
    net = timm.models.vision_transformer.VisionTransformer(
        img_size=32, patch_size=8, embed_dim=24, depth=3, num_heads=2, num_classes=5, reg_tokens=2,
        dynamic_img_size=True)
    model = explainers.models.wrap_timm(net.eval(), "tiny-reg")
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    want = []
    for layer in range(3):
        xg = x.clone().requires_grad_(True)
        tr = model.trace(xg)
        z = tr.final_tokens if layer == 2 else tr.block_inputs[layer + 1]
        s = net.forward_head(net.norm(z))[0, 4]
        (g,) = torch.autograd.grad(s, tr.attentions[layer])
        want.append(g.clamp(min=0).mean((1, 2))[0, 3:])
    for start in (0, 2):
        got = explainers.explain(model, x, "legrad", target=4, start_layer=start).patch_map
        np.testing.assert_allclose(got.ravel(), sum(want[start:]).numpy(), rtol=1e-4, atol=1e-7)


def test_gradcam_equals_its_formula_on_a_small_model():
    import timm

    torch.manual_seed(5)
    net = timm.models.deit.VisionTransformerDistilled(
        img_size=32, patch_size=8, embed_dim=24, depth=2, num_heads=2, num_classes=5, dynamic_img_size=True)
    model = explainers.models.wrap_timm(net.eval(), "tiny-dist")
    x = torch.randn(1, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    feats = {}
    h = net.blocks[-1].norm1.register_forward_hook(lambda m, i, o: feats.update(a=o))
    try:
        xg = x.clone().requires_grad_(True)
        y = net(xg)[0, 2]
        (g,) = torch.autograd.grad(y, feats["a"])
    finally:
        h.remove()
    A, G = feats["a"][0, 2:].detach(), g[0, 2:]  # two prefix tokens: class and distillation
    want = (A * G.mean(0)).sum(-1).clamp(min=0).reshape(4, 6)
    got = explainers.explain(model, x, "gradcam", target=2).patch_map
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-6)
    signed = explainers.explain(model, x, "layercam", target=2, relu=False).patch_map
    np.testing.assert_allclose(signed, (A * G.clamp(min=0)).sum(-1).reshape(4, 6).numpy(), rtol=1e-4, atol=1e-6)


def test_class_specific_and_model_unchanged(deit_tiny, both_image):
    hooks = sum(len(m._forward_hooks) + len(m._backward_hooks) for m in deit_tiny.module.modules())
    for method in ("gradcam", "layercam", "legrad"):
        a = explainers.explain(deit_tiny, both_image, method, target=243).patch_map.ravel()
        b = explainers.explain(deit_tiny, both_image, method, target=282).patch_map.ravel()
        assert np.corrcoef(a, b)[0, 1] < 0.95, method
    assert sum(len(m._forward_hooks) + len(m._backward_hooks) for m in deit_tiny.module.modules()) == hooks
    assert all(p.grad is None for p in deit_tiny.module.parameters())
