"""ViT-CX: causal explanations from clustered patch-embedding masks (Xie et al., IJCAI 2023).

Spec and the reference code's quirks: ``shared/docs/METHODS.md`` section 3.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from ..models.blocks import block_fast, pool_outputs
from ..registry import Capture, Maps, Method, Param, register
from ..targets import bind
from ._common import new_capture
from ._perturb import BATCH_SIZE, auto_batch_size, score_batches

__all__ = ["ViTCX", "feature_coefficients", "feature_masks", "mask_distance", "cluster_masks", "cluster_labels",
           "causal_saliency"]


def _rowwise_minmax(m: torch.Tensor) -> torch.Tensor:
    """Per-row min-max to [0, 1]; a constant row becomes all zeros (the reference divides 0 by 0)."""
    lo = m.amin(-1, keepdim=True)
    rng = m.amax(-1, keepdim=True) - lo
    return torch.where(rng > 0, (m - lo) / rng.clamp_min(torch.finfo(m.dtype).tiny), torch.zeros_like(m))


@functools.lru_cache(maxsize=32)
def _interp_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_out, n_in) float64 matrix of 1-D linear upsampling (``align_corners=False``, as ``F.interpolate``):
    PyTorch's bilinear upsampling of a (gh, gw) map is ``Uh @ map @ Uw.T``."""
    eye = torch.eye(n_in, dtype=torch.float64)[:, None]  # (n_in, 1, n_in): one basis vector per row
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=False)[:, 0].T.contiguous()


@functools.lru_cache(maxsize=32)
def _extreme_rows(n_in: int, n_out: int) -> torch.Tensor:
    """Indices of the output rows at which a 1-D linear upsampling can reach its extremes.

    Output rows interpolating between the same two inputs form runs along which the weight moves
    monotonically, so an upsampled map is monotone along each run (bilinear on each pair of runs) and takes
    its minimum and maximum at the runs' first or last rows: about 2 per input instead of n_out/n_in."""
    first = (_interp_matrix(n_in, n_out) != 0).to(torch.int8).argmax(1)  # the run: first input with weight
    edge = torch.ones(n_out, dtype=torch.bool)
    edge[1:-1] = (first[1:-1] != first[:-2]) | (first[1:-1] != first[2:])
    return edge.nonzero()[:, 0]


def _upsampling(grid, size, device) -> tuple[torch.Tensor, torch.Tensor]:
    return (_interp_matrix(grid[0], size[0]).to(device), _interp_matrix(grid[1], size[1]).to(device))


def feature_coefficients(features: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """(n_patches, D) patch features -> (D, gh, gw) float64 maps whose bilinear upsampling to ``size`` is each
    channel's raw mask (the channel upsampled and min-max scaled over the image), computed without upsampling.

    Upsampling keeps constants (its weights sum to 1), so min-max scaling the upsampled map equals
    upsampling the map shifted by the upsampled minimum and divided by the upsampled range; both are read
    off the few rows and columns where the extremes can lie (:func:`_extreme_rows`). A channel constant
    over the grid gives a zero map."""
    D = features.shape[-1]
    a = features.T.reshape(D, *grid).double()
    uh, uw = _upsampling(grid, size, a.device)
    rows, cols = _extreme_rows(grid[0], size[0]).to(a.device), _extreme_rows(grid[1], size[1]).to(a.device)
    corners = (uh[rows] @ a @ uw[cols].T).flatten(1)  # the upsampled map on the candidate rows and columns
    lo, hi = corners.amin(1), corners.amax(1)
    flat = a.flatten(1)
    varies = (flat.amax(1) > flat.amin(1)) & (hi > lo)
    scale = torch.where(varies, 1.0 / (hi - lo).clamp_min(torch.finfo(a.dtype).tiny), torch.zeros_like(hi))
    return (a - lo[:, None, None]) * scale[:, None, None]


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(K, gh, gw) maps -> (K, H*W), bilinearly upsampled to ``size`` (``align_corners=False``)."""
    up = F.interpolate(maps[None], size=size, mode="bilinear", align_corners=False)[0]
    return up.reshape(maps.shape[0], -1)


def feature_masks(features: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """(n_patches, D) patch features -> (D, H*W) raw masks: each feature channel as a (gh, gw) map,
    bilinearly upsampled to the input size, min-max scaled per channel (ViT-CX's masks; the method itself
    only upsamples the cluster sums, see :func:`feature_coefficients`)."""
    return upsample(feature_coefficients(features, grid, size), size).float()


def mask_distance(coef: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """1 - cosine similarity of the upsampled masks of ``coef`` (D, gh, gw) (zero masks: similarity 0), as
    float64 numpy, computed exactly at the grid's resolution.

    Upsampling is the linear map ``U = Uh ⊗ Uw``, so ``<U a, U b> = a·(Uh^T Uh ⊗ Uw^T Uw) b``: a (gh·gw)²
    Gram product instead of one over every pixel of every mask."""
    grid = tuple(coef.shape[-2:])
    uh, uw = _upsampling(grid, size, coef.device)
    c = coef.double()
    kc = (uh.T @ uh) @ c @ (uw.T @ uw)  # (Uh^T Uh) C (Uw^T Uw), per channel
    gram = c.flatten(1) @ kc.flatten(1).T
    norms = gram.diagonal().clamp_min(0).sqrt()
    sim = torch.nan_to_num(gram / (norms[:, None] * norms[None, :]), nan=0.0, posinf=0.0, neginf=0.0)
    dist = (1.0 - sim).clamp_min(0.0)
    dist.fill_diagonal_(0.0)
    return dist.cpu().numpy()


def cluster_labels(distance: np.ndarray, threshold: float) -> np.ndarray:
    """Agglomerative clustering (complete linkage) of a precomputed distance matrix, cut at ``threshold``."""
    from sklearn.cluster import AgglomerativeClustering

    if distance.shape[0] == 1:
        return np.zeros(1, dtype=np.int64)
    ac = AgglomerativeClustering(n_clusters=None, distance_threshold=threshold, metric="precomputed",
                                 linkage="complete")
    return ac.fit_predict(distance)


def cluster_masks(coef: torch.Tensor, labels: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Sum the masks of each cluster (at the grid's resolution, then upsampled: upsampling is linear) and
    min-max each sum: (K, H*W) float32. Clusters whose sum is constant (they carry no spatial information)
    are dropped."""
    lab = torch.as_tensor(labels, device=coef.device, dtype=torch.long)
    K = int(lab.max()) + 1
    sums = torch.zeros(K, *coef.shape[1:], device=coef.device, dtype=torch.float64).index_add_(0, lab, coef.double())
    out = _rowwise_minmax(upsample(sums, size))
    return out[out.amax(-1) > 0].float()


def causal_saliency(masks: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """S(u) = (1/K) Σ_k s_k M_k(u) / Σ_j M_j(u) (0 where no mask covers u). masks (K, P), scores (K,)."""
    K = masks.shape[0]
    if K == 0:
        return torch.zeros(masks.shape[1], device=masks.device, dtype=masks.dtype)
    coverage = masks.sum(0)
    sal = scores.to(masks.dtype) @ masks
    return torch.where(coverage > 0, sal / coverage.clamp_min(1e-12), torch.zeros_like(sal)) / K


def clean_pass(model, x: torch.Tensor, layer: int):
    """The model's outputs on ``x`` and the patch tokens after block ``layer``'s first LayerNorm (the masks'
    features), in one pass on the fused attention kernel (no attention matrices written out). Call under
    ``torch.inference_mode()``."""
    t, ctx = model.adapter.embed(model.module, x)
    feats = None
    for i, bp in enumerate(model.blocks):
        if i == layer:
            feats = bp.norm1(t)[:, model.num_prefix_tokens:]
        t = block_fast(bp, t, ctx, i)
    return pool_outputs(model.pooling, t, model.num_prefix_tokens), feats


@register
class ViTCX(Method):
    """ViT-CX (vaynexie/CausalX-ViT).

    Each channel of the target layer's patch embeddings, upsampled to the image and min-max scaled, is a
    soft mask. The masks are clustered (complete linkage on cosine distance, cut at
    ``distance_threshold``); each cluster's summed, rescaled mask ``M_k`` is scored by its causal impact
    with noise debiasing, ``s_k = p_c(x⊙M_k + ε_k⊙(1−M_k)) − p_c(x + ε_k⊙(1−M_k)) + p_c(x)``, and the map is
    the coverage-corrected mean ``(1/K) Σ_k s_k M_k / Σ_j M_j``.

    Differences from the reference: the noise comes from a seeded generator (same input, same map); the
    masked images are scored in batches under inference mode (the reference deep-copies the model per
    call); the features and logits come from one forward on the fused attention kernel (the reference runs a
    forward and a backward whose gradient it never uses); the masks' min-max, cosine distances and cluster
    sums are computed exactly at the patch grid's resolution (upsampling is linear) and only the cluster
    masks are upsampled (the reference upsamples every channel); clusters whose mask is constant, which add
    nothing to the map, are not scored (the reference scores a NaN mask). Prefix tokens (class, distillation,
    registers) are dropped and the grid is read from the model.
    """

    name = "vit_cx"
    display_name = "ViT-CX"
    paper = "Xie et al., ViT-CX: Causal Explanation of Vision Transformers, IJCAI 2023"
    paper_url = "https://arxiv.org/abs/2211.03064"
    cost = "1 forward + 2K masked forwards (K = number of clusters, typically 10-100)"
    family = "perturbation"
    description = ("Clusters the feature maps of one layer into masks and measures how much keeping each "
                   "masked region (with the rest replaced by noise) raises the class probability.")
    params = (
        Param("target_layer", "int", -1, "Block whose first LayerNorm output gives the patch embeddings "
              "used as masks (-1 = the last block, as in the reference).",
              min=-1, max=lambda m: (m.num_layers - 1) if m is not None else None),
        Param("distance_threshold", "float", 0.1, "Cosine distance at which the agglomerative clustering "
              "of the masks stops merging: lower = more, finer clusters and more forward passes.",
              min=0.01, max=1.0, step=0.01),
        Param("noise_sigma", "float", 0.1, "Standard deviation of the Gaussian noise (in normalised input "
              "units) that replaces the masked-out pixels.", min=0.0, max=1.0, step=0.01),
        Param("seed", "int", 0, "Seed of the noise: the same seed gives the same map.", min=0, max=2**31 - 1),
        BATCH_SIZE,
    )

    def capture(self, model, x, target, params, progress=None) -> Capture:
        layer = params["target_layer"] % model.num_layers
        grid = model.grid(x)
        size = tuple(x.shape[-2:])
        with torch.inference_mode():
            out, feats = clean_pass(model, x, layer)
            bound = bind(model, target, out, x)
            p_full = bound.score(out).float()
        per_image = []
        for b in range(x.shape[0]):
            coef = feature_coefficients(feats[b], grid, size)
            labels = cluster_labels(mask_distance(coef, size), params["distance_threshold"])
            per_image.append(cluster_masks(coef, labels, size))
        total = 2 * sum(m.shape[0] for m in per_image)
        done = 0
        saliency, scores_out, ks = [], [], []
        H, W = size
        for b, cmasks in enumerate(per_image):
            K = cmasks.shape[0]
            gen = torch.Generator().manual_seed(int(params["seed"]))
            noise = torch.empty(K, 3, H, W)
            for k in range(K):  # one draw per cluster: the noise does not depend on the batch size
                noise[k] = torch.randn(3, H, W, generator=gen) * params["noise_sigma"]
            m4 = cmasks.view(K, 1, H, W).to(x.dtype)
            outside = noise.to(x.device, x.dtype).mul_(1 - m4)  # ε_k ⊙ (1 − M_k)
            del noise
            xb = x[b:b + 1]

            def make(start, stop, m4=m4, outside=outside, xb=xb):
                # input 2k is the masked image x⊙M_k + ε_k⊙(1−M_k), input 2k+1 its reference x + ε_k⊙(1−M_k)
                k0, k1 = start // 2, (stop + 1) // 2
                o = outside[k0:k1]
                pair = torch.stack([xb * m4[k0:k1] + o, xb + o], dim=1).flatten(0, 1)
                return pair[start - 2 * k0:stop - 2 * k0]

            bs = auto_batch_size(model, requested=params["batch_size"])
            probs = score_batches(model, make, 2 * K, bound.select(b), bs, progress=progress, done=done,
                                  total=total)
            done += 2 * K
            s = probs[0::2] - probs[1::2] + p_full[b]
            saliency.append(causal_saliency(cmasks, s).view(H, W))
            scores_out.append(s.cpu())
            ks.append(K)
        cap = new_capture(model, x, out, bound, x.shape[0] + total)
        cap.state.update(saliency=torch.stack(saliency), clusters=ks, scores=scores_out)
        return cap

    def reduce(self, cap, params) -> Maps:
        px = cap.state["saliency"]
        gh, gw = cap.grid
        patch = F.adaptive_avg_pool2d(px[:, None], (gh, gw))[:, 0]
        warns = [[] if k > 1 else [f"only {k} usable cluster(s) of masks: lower distance_threshold for a finer map"]
                 for k in cap.state["clusters"]]
        return Maps(patch_maps=patch, pixel_maps=px, warnings=warns)
