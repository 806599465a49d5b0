"""Issue 3: the mask-based methods ViT-CX, Similarity Graph and GradMask.

Real DeiT-Tiny weights (maps, class specificity, deletion against a random map, determinism), each
method's core step against a direct computation on a constructed case, the batched passes against
unbatched / independent computations, and random models of other architectures."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_model, val_images

import explainers
from explainers.errors import Cancelled
from explainers.methods import gradmask as GM
from explainers.methods import similarity_graph as SG
from explainers.methods import vit_cx as CX

METHODS = ["vit_cx", "similarity_graph", "gradmask"]


def test_registered_with_widget_metadata(deit_tiny):
    for name in METHODS:
        m = explainers.METHODS[name]
        assert m.family == "perturbation" and m.display_name and m.paper and m.cost and m.description
        d = m.describe(deit_tiny)
        assert {p["name"] for p in d["parameters"]} >= {"batch_size"}
        for p, desc in zip(m.params, d["parameters"]):
            assert desc["help"] and desc["type"] in ("int", "float", "bool", "choice")
            if desc["type"] in ("int", "float"):  # every number gets a finite slider range
                assert desc["min"] is not None and desc["max"] is not None
                assert desc["min"] <= p.default <= desc["max"]
            assert p.validate(p.default, deit_tiny) == p.default
    assert explainers.METHODS["vit_cx"].describe(deit_tiny)["parameters"][0]["max"] == 11
    with pytest.raises(explainers.InvalidParameterError):
        explainers.METHODS["similarity_graph"].validate({"token_ratio": 1.5})


# ---------------------------------------------------------------------------------------------------------
# Core steps on constructed cases
# ---------------------------------------------------------------------------------------------------------
def _line_distances(points):
    p = np.asarray(points, dtype=np.float64)
    return np.abs(p[:, None] - p[None, :])


def test_cluster_count_for_known_distances():
    # three tight groups far apart -> 3 clusters at threshold 0.1
    labels = CX.cluster_labels(_line_distances([0.0, 0.02, 0.05, 0.5, 0.52, 1.0]), 0.1)
    assert len(set(labels)) == 3
    assert labels[0] == labels[1] == labels[2] and labels[3] == labels[4] != labels[0] != labels[5]
    # a chain with steps 0.08: single linkage would give one cluster, complete linkage gives pairs
    labels = CX.cluster_labels(_line_distances([0.0, 0.08, 0.16, 0.24]), 0.1)
    assert len(set(labels)) == 2 and labels[0] == labels[1] and labels[2] == labels[3]
    assert len(set(CX.cluster_labels(_line_distances([0.0, 0.08, 0.16, 0.24]), 0.3))) == 1


def test_vit_cx_masks_distances_and_saliency_formula():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(4, 3, generator=g)  # 2x2 grid, 3 channels
    feats[:, 2] = 1.5  # a constant channel: no spatial information -> zero mask (reference: NaN)
    masks = CX.feature_masks(feats, (2, 2), (8, 8))
    assert masks.shape == (3, 64)
    for c in range(2):
        up = torch.nn.functional.interpolate(feats[:, c].reshape(1, 1, 2, 2), size=(8, 8), mode="bilinear",
                                             align_corners=False).ravel()
        torch.testing.assert_close(masks[c], (up - up.min()) / (up.max() - up.min()))
    assert float(masks[2].abs().max()) == 0.0
    coef = CX.feature_coefficients(feats, (2, 2), (8, 8))  # the masks before upsampling
    dist = CX.mask_distance(coef, (8, 8))
    a, b = masks[0].double(), masks[1].double()
    assert dist[0, 1] == pytest.approx(1 - float(a @ b / (a.norm() * b.norm())))
    assert dist[0, 2] == pytest.approx(1.0) and dist[2, 2] == 0.0
    # cluster masks: sum of members, min-max; constant sums dropped
    cm = CX.cluster_masks(coef, np.array([0, 0, 1]), (8, 8))
    s = masks[0] + masks[1]
    torch.testing.assert_close(cm, ((s - s.min()) / (s.max() - s.min()))[None])
    # saliency: (1/K) sum_k s_k M_k(u) / sum_j M_j(u), 0 where nothing covers u
    M = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.5, 0.0]])
    sc = torch.tensor([0.2, 0.6])
    torch.testing.assert_close(CX.causal_saliency(M, sc), torch.tensor([0.1, 0.2, 0.0]))


def test_greedy_walk_on_known_similarities():
    S = torch.tensor([[0.0, 0.9, 0.1, 0.3],
                      [0.9, 0.0, 0.2, 0.8],
                      [0.1, 0.2, 0.0, 0.4],
                      [0.3, 0.8, 0.4, 0.0]])
    # from 0: most similar 1; from 1 (0 visited): 3; from 3 (0, 1 visited): 2
    walks = SG.greedy_walks(S[None].repeat(2, 1, 1), torch.tensor([0, 2]), 3)
    assert walks.tolist() == [[0, 1, 3, 2], [2, 3, 1, 0]]
    # negative similarities: the reference re-picks a visited node (similarity set to 0), ours does not
    N = -torch.ones(3, 3) + torch.diag(torch.ones(3))
    N[0, 1] = N[1, 0] = 0.5
    assert SG.greedy_walks(N[None], torch.tensor([0]), 2).tolist() == [[0, 1, 2]]
    assert SG.greedy_walks(N[None], torch.tensor([0]), 2, reference=True).tolist() == [[0, 1, 0]]
    # start nodes: m - m//2 most attended, m//2 least attended
    att = torch.tensor([[0.1, 0.5, 0.3, 0.05, 0.05001]])
    assert SG.start_nodes(att, 3).tolist() == [[1, 2, 3]]
    # coverage-averaged scores
    cov = SG.coverage_average(torch.tensor([[0, 1], [1, 2]]), torch.tensor([0.2, 0.6]), 4)
    torch.testing.assert_close(cov, torch.tensor([0.2, 0.4, 0.6, 0.0]))
    sim = SG.similarity_graphs(torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]]]))
    torch.testing.assert_close(sim[0], torch.tensor([[0.0, 0.5 ** 0.5, 0.0], [0.5 ** 0.5, 0.0, 0.5 ** 0.5],
                                                     [0.0, 0.5 ** 0.5, 0.0]]))


def test_gradmask_threshold_rule_and_chunks():
    rows = torch.tensor([[1.0, 2.0, 3.0, 6.0], [0.0, 0.0, 0.0, 0.0], [5.0, 1.0, 1.0, 1.0]])
    assert GM.threshold_masks(rows).tolist() == [[0, 0, 1, 1], [1, 1, 1, 1], [1, 0, 0, 0]]
    g = torch.tensor([[[1.0, -3.0, 2.0, 2.0, -1.0, 0.5]]])  # (1, N=1, D=6)
    assert GM.chunk_gradients(g, 2).tolist() == [[[0.0], [1.5]]]  # chunks [1,-3,2] -> 0 (clamped), [2,-1,.5]
    assert GM.chunk_gradients(g, 6).flatten().tolist() == [1.0, 0.0, 2.0, 2.0, 0.0, 0.5]


# ---------------------------------------------------------------------------------------------------------
# Real DeiT-Tiny weights
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def both_maps(deit_tiny, both_image):
    out = {}
    for name in METHODS:
        for t in (243, 282):
            cap = explainers.capture(deit_tiny, both_image, name, target=t)
            out[name, t] = (cap, explainers.render(cap, deit_tiny))
    return out


def _check_map(exp):
    assert exp.patch_map.shape == (14, 14) and exp.heatmap.shape == (224, 224)
    assert np.isfinite(exp.patch_map).all() and np.isfinite(exp.heatmap).all()
    assert exp.patch_map.std() > 0, "constant map"


@pytest.mark.parametrize("method", METHODS)
def test_real_weights_maps_and_pass_counts(deit_tiny, cat_image, both_maps, method):
    _check_map(explainers.explain(deit_tiny, cat_image, method))
    cap, exp = both_maps[method, 243]
    _check_map(exp)
    if method == "similarity_graph":
        assert cap.forward_passes == 1 + 11 * 4
    elif method == "gradmask":
        assert cap.forward_passes == 1 + 3 * 11 * 4
    else:
        assert cap.forward_passes == 1 + 2 * cap.state["clusters"][0] and cap.state["clusters"][0] > 5


@pytest.mark.parametrize("method", METHODS)
def test_class_specific_maps_differ(both_maps, method):
    a, b = (both_maps[method, t][1].patch_map.ravel() for t in (243, 282))
    assert np.corrcoef(a, b)[0, 1] < 0.9
    assert len(set(np.argsort(-a)[:10]) & set(np.argsort(-b)[:10])) <= 6


def test_similarity_graph_token_dropping_matches_timm(deit_tiny, deit_tiny_hf, both_image):
    """Scores of the HF backend's short forwards = timm's own modules run on the kept tokens."""
    x = deit_tiny.preprocess(both_image)  # one input for both (their own preprocessing differs)
    cap = explainers.capture(deit_tiny_hf, x, "similarity_graph", target=282)
    walks, scores = cap.state["walks"][0], cap.state["scores"][0]
    mod = deit_tiny.module
    with torch.inference_mode():
        t = mod.norm_pre(mod._pos_embed(mod.patch_embed(x)))
        for i in (0, 17, len(walks) - 1):
            kept = torch.cat([t[:, :1], t[:, 1 + walks[i]]], dim=1)
            p = mod.forward_head(mod.norm(mod.blocks(kept))).softmax(-1)[0, 282]
            assert float(scores[i]) == pytest.approx(float(p), abs=1e-4)
    assert len(set(walks[0].tolist())) == walks.shape[1] == int(196 * 0.5) + 1  # no revisits


def test_gradmask_masks_and_weights_match_hooked_gradients(deit_tiny, both_image):
    """Masks from ∂y/∂(qkv output) captured with hooks on the model's own forward (an independent path)
    and weights from direct forwards of the masked images."""
    x = deit_tiny.preprocess(both_image)
    cap = explainers.capture(deit_tiny, x, "gradmask", target=243, masks_layer=3)
    outs = []

    def keep(mod, inp, out):
        outs.append(out)

    hooks = [b.attn.qkv.register_forward_hook(keep) for b in deit_tiny.module.blocks]
    try:
        xg = x.clone().requires_grad_(True)
        y = deit_tiny.module(xg)[0, 243]
    finally:
        for h in hooks:
            h.remove()
    grads = torch.autograd.grad(y, outs[:-1])
    rows = []
    for g in grads:
        for part in g[0].chunk(3, dim=-1):  # q, k, v: (N, D)
            for c in part.chunk(3, dim=-1):
                rows.append(c.sum(-1).clamp_min(0)[1:])
    expected = GM.threshold_masks(torch.stack(rows))
    masks = cap.state["masks"][0]
    assert masks.shape == (3 * 11 * 3, 196)
    assert (masks != expected).float().mean() < 0.005  # gradient ties at the mean may flip a few entries
    assert cap.forward_passes == 1 + 99
    for r in (0, 50, 98):
        up = torch.nn.functional.interpolate(masks[r].view(1, 1, 14, 14), size=(224, 224), mode="nearest")
        with torch.inference_mode():
            p = deit_tiny.forward(x * up).softmax(-1)[0, 243]
        assert float(cap.state["weights"][0, r]) == pytest.approx(float(p), abs=1e-4)
    exp = explainers.render(cap, deit_tiny)
    direct = (cap.state["weights"][0][:, None] * masks).sum(0).view(14, 14)
    np.testing.assert_allclose(exp.patch_map, direct.numpy(), rtol=1e-5, atol=1e-6)
    cov = explainers.render(cap, deit_tiny, normalize_coverage=True)  # cheap: no new capture
    np.testing.assert_allclose(cov.patch_map, (direct / masks.sum(0).clamp_min(1).view(14, 14)).numpy(),
                               rtol=1e-5, atol=1e-6)


def test_vit_cx_deterministic_and_batch_size_independent(deit_tiny, cat_image):
    a = explainers.explain(deit_tiny, cat_image, "vit_cx", seed=3)
    b = explainers.explain(deit_tiny, cat_image, "vit_cx", seed=3, batch_size=5)
    np.testing.assert_allclose(a.patch_map, b.patch_map, rtol=1e-4, atol=1e-6)
    c = explainers.explain(deit_tiny, cat_image, "vit_cx", seed=4)
    assert not np.allclose(a.patch_map, c.patch_map)
    assert np.corrcoef(a.patch_map.ravel(), c.patch_map.ravel())[0, 1] > 0.8  # noise, not a different map


def test_class_zero_progress_and_cancel(deit_tiny, cat_image):
    calls = []
    exp = explainers.explain(deit_tiny, cat_image, "similarity_graph", target=0, masks_layer=2, batch_size=5,
                             progress=lambda d, t: calls.append((d, t)))
    assert exp.target == 0 and np.isfinite(exp.patch_map).all()
    assert calls[0] == (5, 22) and calls[-1] == (22, 22) and all(a[0] < b[0] for a, b in zip(calls, calls[1:]))
    for name in METHODS:
        with pytest.raises(Cancelled):
            explainers.explain(deit_tiny, cat_image, name, progress=lambda d, t: False)


def test_beat_random_map_on_deletion(deit_tiny):
    """On 20 ImageNet validation images each method's maps delete the evidence faster than random maps."""
    from PIL import Image

    from explainers.metrics import insertion_deletion, random_map

    xs = torch.cat([deit_tiny.preprocess(Image.open(p)) for p in val_images(20)])
    for name in METHODS:
        exps = explainers.explain(deit_tiny, xs, name)
        ours, rand = [], []
        for i, (x, e) in enumerate(zip(xs, exps)):
            ours.append(insertion_deletion(deit_tiny, x[None], e.patch_map, e.target, steps=8).deletion_auc)
            rand.append(insertion_deletion(deit_tiny, x[None], random_map((14, 14), i), e.target,
                                           steps=8).deletion_auc)
        assert np.mean(ours) < np.mean(rand), (name, np.mean(ours), np.mean(rand))


# ---------------------------------------------------------------------------------------------------------
# Other architectures and batches
# ---------------------------------------------------------------------------------------------------------
FAST = {"vit_cx": {"distance_threshold": 0.5}, "similarity_graph": {"masks_layer": 2}, "gradmask": {"masks_layer": 1}}


@pytest.mark.parametrize("kind,grid,prefix", [("deit_distilled", (14, 14), 2), ("dinov2_reg", (16, 16), 5),
                                              ("hf_vit", (14, 14), 1)])
def test_random_architectures_run_all_three(kind, grid, prefix):
    model = random_model(kind)
    assert model.num_prefix_tokens == prefix
    x = torch.randn(1, 3, *model.input_size, generator=torch.Generator().manual_seed(0))
    for name in METHODS:
        cap = explainers.capture(model, x, name, **FAST[name])
        exp = explainers.render(cap, model)
        assert exp.patch_map.shape == grid, name
        assert np.isfinite(exp.patch_map).all(), name
        if name == "similarity_graph":
            assert cap.forward_passes == 1 + (model.num_layers - 1) * 2
            assert int(cap.state["walks"][0].max()) < grid[0] * grid[1]


def test_batch_equals_single_images():
    model = random_model("hf_vit")
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    for name in METHODS:
        both = explainers.explain(model, x, name, target=[3, 0], **FAST[name])
        for b, t in enumerate((3, 0)):
            one = explainers.explain(model, x[b:b + 1], name, target=t, **FAST[name])
            np.testing.assert_allclose(both[b].patch_map, one.patch_map, rtol=1e-4, atol=1e-6, err_msg=name)
