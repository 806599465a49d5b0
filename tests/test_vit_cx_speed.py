"""Issue 10: ViT-CX builds its masks at the grid's resolution (min-max, cosine distances, cluster sums) and upsamples
only the cluster masks; the clean pass runs on the fused kernel. The masks, clusters and maps must be those of the
straightforward computation (every feature map upsampled to the input size, distances over all its pixels, the
traced clean pass), which this file keeps as the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from model_zoo import build
from scipy.stats import spearmanr

import explainers
from explainers.methods import vit_cx as CX
from explainers.targets import Similarity


# ---------------------------------------------------------------------------------------------------------
# The reference: ViT-CX's masks computed at full resolution (the code before issue 10)
# ---------------------------------------------------------------------------------------------------------
def ref_masks(feats, grid, size, dtype=torch.float32):
    D = feats.shape[-1]
    maps = feats.T.reshape(1, D, *grid).to(dtype)
    up = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)[0].reshape(D, -1)
    lo, hi = up.amin(1, keepdim=True), up.amax(1, keepdim=True)
    return torch.where(hi > lo, (up - lo) / (hi - lo), torch.zeros_like(up))


def ref_distance(masks):
    n = masks.norm(dim=1).double()
    sim = torch.nan_to_num((masks @ masks.T).double() / (n[:, None] * n[None, :]), nan=0.0)
    dist = (1.0 - sim).clamp_min(0.0)
    dist.fill_diagonal_(0.0)
    return dist.numpy()


def ref_cluster_masks(masks, labels):
    lab = torch.as_tensor(labels, dtype=torch.long)
    sums = torch.zeros(int(lab.max()) + 1, masks.shape[1], dtype=masks.dtype).index_add_(0, lab, masks)
    lo, hi = sums.amin(1, keepdim=True), sums.amax(1, keepdim=True)
    out = torch.where(hi > lo, (sums - lo) / (hi - lo), torch.zeros_like(sums))
    return out[out.amax(-1) > 0].float()


def ref_clean_pass(model, x, layer):
    tr = model.trace(x)
    return tr.outputs, model.blocks[layer].norm1(tr.block_inputs[layer])[:, model.num_prefix_tokens:]


def use_reference(monkeypatch, dtype=torch.float32):
    """Make ViT-CX's capture run the reference computation (the method's scoring itself is unchanged)."""
    monkeypatch.setattr(CX, "clean_pass", ref_clean_pass)
    monkeypatch.setattr(CX, "feature_coefficients", lambda f, grid, size: ref_masks(f, grid, size, dtype))
    monkeypatch.setattr(CX, "mask_distance", lambda masks, size: ref_distance(masks))
    monkeypatch.setattr(CX, "cluster_masks", lambda masks, labels, size: ref_cluster_masks(masks, labels))


# ---------------------------------------------------------------------------------------------------------
# Each step against the reference
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("grid,size", [((14, 14), (224, 224)), ((16, 12), (256, 180)), ((5, 7), (33, 50)),
                                       ((7, 5), (13, 11)), ((3, 3), (3, 3)), ((1, 4), (16, 64))])
def test_masks_and_distances_equal_full_resolution(grid, size):
    """Integer and fractional scales, non-square grids, no upsampling at all: the same masks and distances."""
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(grid[0] * grid[1], 40, generator=g) * torch.rand(40, generator=g) * 3
    feats[:, 0] = 2.0  # constant over the grid: a zero mask, distance 1 to every other mask
    ref = ref_masks(feats, grid, size, torch.float64)
    ref[0] = 0.0  # at fractional scales the upsampled constant varies by rounding, which min-max blew up to [0, 1]
    coef = CX.feature_coefficients(feats, grid, size)
    assert coef.shape == (40, *grid)
    torch.testing.assert_close(CX.feature_masks(feats, grid, size)[1:], ref[1:].float(), rtol=0, atol=1e-6)
    assert float(CX.feature_masks(feats, grid, size)[0].abs().max()) == 0.0
    for row in ref[1:]:  # each mask spans [0, 1] exactly, as after the full-resolution min-max
        assert float(row.min()) == pytest.approx(0.0, abs=1e-12) and float(row.max()) == pytest.approx(1.0)
    dist = CX.mask_distance(coef, size)
    np.testing.assert_allclose(dist[1:, 1:], ref_distance(ref[1:]), rtol=0, atol=1e-10)
    assert (dist[0, 1:] == 1.0).all() and dist[0, 0] == 0.0
    labels = np.array([i % 3 for i in range(40)])
    torch.testing.assert_close(CX.cluster_masks(coef, labels, size), ref_cluster_masks(ref, labels), rtol=0,
                               atol=1e-6)


FAMILIES = ["timm_deit_distilled", "timm_gap", "timm_reg_gap", "timm_eva02", "timm_siglip_map", "hf_dinov2_reg",
            "timm_backbone"]


@pytest.fixture(scope="module", params=FAMILIES)
def family(request):
    return request.param, build(request.param)


def test_clusters_and_maps_equal_the_reference_on_every_pooling(family, monkeypatch):
    """Class, distillation, average, registers, attention-probe and token+average pools, RoPE, a headless
    backbone: the fast clean pass gives the traced features, the clusters are the reference's at several
    thresholds, and the maps are the reference's."""
    name, model = family
    x = torch.randn(1, 3, *model.input_size, generator=torch.Generator().manual_seed(1))
    target = None if model.num_classes else Similarity.to_region((0, 0, 3, 3))
    grid, size = model.grid(x), tuple(x.shape[-2:])
    for layer in (model.num_layers - 1, 0):
        with torch.inference_mode():
            out, feats = CX.clean_pass(model, x, layer)
            ref_out, ref_feats = ref_clean_pass(model, x, layer)
        torch.testing.assert_close(feats, ref_feats, rtol=1e-4, atol=1e-4)
        for field in ("logits", "embedding"):
            if getattr(ref_out, field) is not None:
                torch.testing.assert_close(getattr(out, field), getattr(ref_out, field), rtol=1e-4, atol=1e-4)
        masks = ref_masks(ref_feats[0], grid, size, torch.float64)
        coef = CX.feature_coefficients(ref_feats[0], grid, size)
        dist, ref_dist = CX.mask_distance(coef, size), ref_distance(masks)
        np.testing.assert_allclose(dist, ref_dist, rtol=0, atol=1e-10)
        for thr in (0.3, 0.1, 0.05):
            labels = CX.cluster_labels(dist, thr)
            assert (labels == CX.cluster_labels(ref_dist, thr)).all(), (name, layer, thr)
            torch.testing.assert_close(CX.cluster_masks(coef, labels, size), ref_cluster_masks(masks, labels),
                                       rtol=0, atol=1e-6)
    params = {"distance_threshold": 0.1}
    ours = explainers.capture(model, x, "vit_cx", target=target, **params)
    use_reference(monkeypatch, torch.float64)
    ref = explainers.capture(model, x, "vit_cx", target=target, **params)
    assert ours.forward_passes == ref.forward_passes and ours.state["clusters"] == ref.state["clusters"]
    a, b = ours.state["saliency"].numpy(), ref.state["saliency"].numpy()
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())


def test_deit_tiny_map_equals_the_previous_computation(deit_tiny, both_image, monkeypatch):
    """Real weights, default parameters, against the float32 code that upsampled every feature map."""
    x = deit_tiny.preprocess(both_image)
    ours = explainers.capture(deit_tiny, x, "vit_cx")
    use_reference(monkeypatch)
    ref = explainers.capture(deit_tiny, x, "vit_cx")
    assert ours.state["clusters"] == ref.state["clusters"] and ours.state["clusters"][0] > 5
    a, b = ours.state["saliency"].numpy().ravel(), ref.state["saliency"].numpy().ravel()
    assert spearmanr(a, b).statistic >= 0.9999
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * np.abs(b).max())


def test_only_the_cluster_masks_are_upsampled(deit_tiny, both_image, monkeypatch):
    """The cost of building the masks scales with the clusters, not with the feature channels (192 here)."""
    x = deit_tiny.preprocess(both_image)
    real, maps_upsampled = F.interpolate, []

    def counting(inp, *args, **kw):
        if inp.dim() == 4 and kw.get("size") == tuple(x.shape[-2:]):
            maps_upsampled.append(inp.shape[0] * inp.shape[1])
        return real(inp, *args, **kw)

    monkeypatch.setattr(F, "interpolate", counting)
    cap = explainers.capture(deit_tiny, x, "vit_cx")
    K = cap.state["clusters"][0]
    assert K > 5 and K <= sum(maps_upsampled) <= 2 * K < deit_tiny.embed_dim
