"""Every model family: traced outputs equal the model's own forward (native and another input size), every method
gives a finite, non-constant map of the right grid or refuses with its reason; pooling, targets and refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from model_zoo import DESCRIPTIONS, FAMILIES, build, fast_params

import explainers
from explainers.errors import ExplainerError, InvalidParameterError, UnsupportedModelError
from explainers.targets import ClassProbability, Contrast, Similarity


@pytest.fixture
def no_network(monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network access is disabled in the tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _other_size(m):
    ph, pw = m.patch_size
    return (ph * 14, pw * 18) if m.any_size else tuple(m.input_size)


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request):
    return request.param, build(request.param)


def test_traced_equals_own_forward_at_two_sizes(family):
    name, m = family
    assert m.pooling.kind == FAMILIES[name][1]
    assert m.verify() < 1e-4
    if m.any_size and m.source != "torchvision":  # torchvision's own forward runs at its built size only
        assert m.verify(size=_other_size(m)) < 1e-4


def test_last_norm1_on_the_fused_path_equals_the_trace(family):
    """The CAMs' no-gradient tokens (the last block's first-norm output, on the fused path) and outputs equal the
    traced pass's."""
    _, m = family
    x = torch.randn(2, 3, *m.input_size, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        out, h1 = m.outputs_and_last_norm1(x)
        tr = m.trace(x, keep_activations=True)
    scale = float(tr.acts[-1]["h1"].abs().max())
    assert float((h1 - tr.acts[-1]["h1"]).abs().max()) <= 1e-4 * scale
    for name in ("logits", "embedding"):
        a, b = getattr(out, name), getattr(tr.outputs, name)
        assert (a is None) == (b is None)
        if a is not None:
            assert float((a - b).abs().max()) <= 1e-4 * max(1.0, float(b.abs().max()))


def test_every_method_maps_or_refuses(family):
    name, m = family
    x = torch.randn(1, 3, *_other_size(m), generator=torch.Generator().manual_seed(1))
    target = None if m.num_classes else Similarity.to_region((0, 0, 3, 3))
    refused = {}
    for method in explainers.METHODS:
        try:
            e = explainers.explain(m, x, method, target=target, **fast_params(method))
        except UnsupportedModelError as err:
            refused[method] = str(err)
            continue
        assert e.patch_map.shape == m.grid(x), method
        assert np.isfinite(e.patch_map).all(), method
        if e.patch_map.std() == 0:  # allowed only with the method's explanation (e.g. Grad-CAM's ReLU)
            assert e.warnings, (method, "constant map without a warning")
    for method, why in refused.items():  # a refusal names the reason
        assert "relative position bias" in why or "token dropping" in why, (method, why)
    if not any(bp.rel_bias is not None for bp in m.blocks):
        assert not refused


def test_average_pool_rollout_is_the_matrix_formula():
    m = build("timm_reg_gap")
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    e = explainers.explain(m, x, "attention_rollout", discard_ratio=0.0)
    with torch.inference_mode():
        A = torch.stack(m.trace(x).attentions)[:, 0].mean(1).double()  # (L, N, N)
    N, P = A.shape[-1], m.num_prefix_tokens
    R = torch.eye(N, dtype=torch.float64)
    for a in A:
        a = (a + torch.eye(N, dtype=torch.float64)) / 2
        R = (a / a.sum(-1, keepdim=True)) @ R
    q = torch.zeros(N, dtype=torch.float64)
    q[P:] = 1.0 / (N - P)  # the mean of the patch rows: registers and prefix excluded
    expected = (q @ R)[P:].reshape(m.grid(x)).numpy()
    np.testing.assert_allclose(e.patch_map, expected, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("fam", ["timm_deit", "timm_gap"])
def test_contrast_is_the_difference_of_class_maps_for_gradient_linear_methods(fam):
    m = build(fam)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    a, b = 2, 7
    kw = {"relu": False}
    ma = explainers.explain(m, x, "attention_gradcam", target=a, **kw).patch_map
    mb = explainers.explain(m, x, "attention_gradcam", target=b, **kw).patch_map
    mc = explainers.explain(m, x, "attention_gradcam", target=Contrast(a, b), **kw).patch_map
    np.testing.assert_allclose(mc, ma - mb, rtol=1e-4, atol=1e-6 * float(np.abs(ma).max()))
    swapped = explainers.explain(m, x, "attention_gradcam", target=Contrast(b, a), **kw).patch_map
    np.testing.assert_allclose(swapped, -mc, rtol=1e-4, atol=1e-7)


def test_targets_are_validated_and_reported(deit_tiny, cat_image):
    e = explainers.explain(deit_tiny, cat_image, "generic_attention", target=ClassProbability(281))
    assert e.target == 281 and "tabby" in e.label and 0 < e.probability < 1
    c = explainers.explain(deit_tiny, cat_image, "generic_attention", target=Contrast(281, 285))
    assert "rather than" in c.label
    with pytest.raises(InvalidParameterError, match="two different"):
        explainers.explain(deit_tiny, cat_image, "generic_attention", target=Contrast(281, 281))
    with pytest.raises(InvalidParameterError, match="outside"):
        explainers.explain(deit_tiny, cat_image, "generic_attention", target=Contrast(281, 5000))
    backbone = build("timm_backbone")
    with pytest.raises(InvalidParameterError, match="no classifier"):
        explainers.explain(backbone, cat_image, "generic_attention")


def test_similarity_to_a_region_peaks_in_the_region(deit_tiny, both_image):
    """both.png: a dog on the left, a cat on the right. The map of 'similar to this patch region of the dog' puts
    more of its mass on the dog's side than on the cat's."""
    x = deit_tiny.preprocess(both_image)
    region = (4, 1, 10, 6)  # rows 4..9, cols 1..5 of the 14x14 grid: the dog's head
    e = explainers.explain(deit_tiny, x, "generic_attention", target=Similarity.to_region(region))
    assert e.target == -1 and "similarity" in e.label
    m = e.patch_map
    assert m[:, :7].sum() > 1.5 * m[:, 7:].sum()


def test_model_left_unchanged_and_deepcopy_is_independent(deit_tiny, cat_image):
    import copy

    x = deit_tiny.preprocess(cat_image)
    with torch.inference_mode():
        before = deit_tiny.forward(x).clone()
    clone = copy.deepcopy(deit_tiny)
    with torch.no_grad():
        for p in clone.module.parameters():
            p.mul_(0)
    assert clone.blocks[0].qkv.fused.weight.abs().max() == 0  # the copy's parts are the copy's modules
    assert clone.adapter.patch_conv(clone.module).weight.abs().max() == 0
    with torch.inference_mode():
        assert torch.equal(deit_tiny.forward(x), before)
        assert float(clone.forward(x).abs().max()) == 0.0


@pytest.mark.parametrize("name,reason", [
    ("resnet50", "not a Vision Transformer"),
    ("swin_tiny_patch4_window7_224", "windows"),
    ("vit_base_r50_s16_224", "CNN stem"),
    ("no_such_model_anywhere_123", "unknown model"),
    ("x" * 300, "characters long"),
])
def test_refusals_before_any_download(name, reason, no_network):
    with pytest.raises(ExplainerError, match=reason):
        explainers.load_model(name, weights="random")


def test_text_only_hugging_face_folder_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(UnsupportedModelError, match="bert model"):
        explainers.load_model(str(tmp_path))


@pytest.mark.parametrize("img_size", [256, (224, 288)])
def test_load_with_another_input_size_and_num_classes(img_size):
    m = explainers.load_model("deit_tiny_patch16_224", weights="random", num_classes=7, img_size=img_size)
    assert m.num_classes == 7
    size = (img_size, img_size) if isinstance(img_size, int) else img_size
    assert tuple(m.input_size) == size and m.verify() < 1e-4


# ---------------------------------------------------------------------------------------------------------------
# LRP rules for the new block pieces: conservation per rule and through whole networks
# ---------------------------------------------------------------------------------------------------------------
def test_lrp_through_a_rotation_conserves_and_is_lrp0():
    from explainers.methods._lrp_rules import lrp_through

    g = torch.Generator().manual_seed(4)
    x, R = torch.randn(2, 3, 5, 8, generator=g), torch.randn(2, 3, 5, 8, generator=g)
    theta = torch.rand(4, generator=g)
    cos, sin = theta.cos().repeat_interleave(2), theta.sin().repeat_interleave(2)

    def rotate(t):  # pairwise rotation, RoPE's interleaved form
        t2 = torch.stack([-t[..., 1::2], t[..., 0::2]], -1).flatten(-2)
        return t * cos + t2 * sin

    r = lrp_through(rotate, x, R)
    torch.testing.assert_close(r.sum(), R.sum(), atol=1e-4, rtol=1e-4)
    z = rotate(x)  # LRP-0 by hand for the linear map z = J x: R_i = x_i sum_j J_ji R_j / z_j
    J = torch.autograd.functional.jacobian(rotate, torch.zeros(8))
    want = x * ((R / z) @ J)
    torch.testing.assert_close(r, want, atol=1e-4, rtol=1e-4)


def test_gated_mlp_rule_gives_half_to_each_factor():
    from explainers.methods._lrp_rules import _mlp_relprop
    from explainers.models.parts import Mlp

    torch.manual_seed(5)
    lin = lambda i, o: torch.nn.Linear(i, o, bias=False)  # noqa: E731
    mlp = Mlp(fc1=None, act=torch.nn.SiLU(), fc2=lin(6, 4), fc1_g=lin(4, 6), fc1_x=lin(4, 6))
    with torch.no_grad():  # positive first-layer weights and inputs: no row with a zero denominator
        mlp.fc1_g.weight.abs_()
        mlp.fc1_x.weight.abs_()
    h = torch.rand(2, 3, 4) + 0.1
    g = mlp.act(mlp.fc1_g(h)) * mlp.fc1_x(h)
    R = torch.rand(2, 3, 4)
    r = _mlp_relprop(mlp, {"g": g}, h, R)
    torch.testing.assert_close(r.sum((1, 2)), R.sum((1, 2)), atol=1e-4, rtol=1e-4)
    # each factor's projection gets exactly half of the product's relevance
    from explainers.methods._lrp_rules import lrp_linear

    r_g = lrp_linear(g, mlp.fc2.weight, R)
    torch.testing.assert_close(lrp_linear(h, mlp.fc1_g.weight, r_g / 2).sum((1, 2)), R.sum((1, 2)) / 2,
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("fam", ["timm_eva02", "timm_siglip_map", "hf_siglip_cls", "timm_gap", "timm_deit_distilled",
                                 "hf_dinov2_reg"])
def test_lrp_conserves_through_every_pooling_and_block_variant(fam):
    from explainers.methods import _lrp_rules as L
    from explainers.methods.lrp import initial_relevance
    from explainers.targets import bind

    m = build(fam)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        tr = m.trace(x, keep_activations=True)
        target = None if m.num_classes else Similarity.to_region((0, 0, 4, 4))
        start = initial_relevance(m, bind(m, target, tr.outputs, x), tr)
        res = L.relprop(m, tr, start)
    total = start[1].reshape(2, -1).sum(1)
    got = res.tokens.reshape(2, -1).sum(1) + (res.dropped if res.dropped is not None else 0)
    torch.testing.assert_close(got, total, atol=2e-3 * float(total.abs().max()), rtol=2e-3)


def test_docs_support_table_has_every_family():
    """The support table of docs/models.md is written by benchmarks/support_table.py from these same models."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text()
    block = readme.split("<!-- SUPPORT-TABLE -->")[1]
    for name, (_, pooling) in FAMILIES.items():
        row = next((line for line in block.splitlines() if line.startswith(f"| {DESCRIPTIONS[name]} |")), None)
        assert row is not None, name
        assert f"| {pooling} |" in row, (name, row)


def test_parameter_limit_refuses_before_building(monkeypatch):
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(explainers.ModelLoadError, match="1845 M parameters, above this server's limit of 400 M"):
        explainers.load_model("vit_gigantic_patch14_clip_224", weights="random", max_params="400M")
    monkeypatch.setenv("VIT_EXPLAIN_MAX_PARAMS", "5M")
    with pytest.raises(explainers.ModelLoadError, match="6 M parameters, above this server's limit of 5 M"):
        explainers.load_model("deit_tiny_patch16_224", weights="random")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, grown_mb  # the 7 GB model was counted on the meta device, never allocated


def test_unreachable_hub_fails_fast(monkeypatch):
    import time

    from explainers.models import guards

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(guards, "_HUB_STATE", {})
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")  # a name that never resolves
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "https://hub.invalid")
    t0 = time.perf_counter()
    with pytest.raises(explainers.WeightsUnavailableError, match="not reachable"):
        explainers.load_model("someone/some-vit")
    assert time.perf_counter() - t0 < 10
