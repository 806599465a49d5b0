"""ViT-CX: causal explanations from clustered patch-embedding masks (Xie et al., IJCAI 2023).

Spec and the reference code's quirks: ``shared/docs/METHODS.md`` section 3.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import Capture, Maps, Method, Param, register
from ..targets import bind
from ._common import new_capture
from ._perturb import BATCH_SIZE, auto_batch_size, score_batches

__all__ = ["ViTCX", "feature_masks", "cluster_masks", "cluster_labels", "causal_saliency"]


def _rowwise_minmax(m: torch.Tensor) -> torch.Tensor:
    """Per-row min-max to [0, 1]; a constant row becomes all zeros (the reference divides 0 by 0)."""
    lo = m.amin(-1, keepdim=True)
    rng = m.amax(-1, keepdim=True) - lo
    return torch.where(rng > 0, (m - lo) / rng.clamp_min(torch.finfo(m.dtype).tiny), torch.zeros_like(m))


def feature_masks(features: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """(n_patches, D) patch features -> (D, H*W) raw masks: each feature channel as a (gh, gw) map,
    bilinearly upsampled to the input size, min-max scaled per channel."""
    D = features.shape[-1]
    maps = features.T.reshape(1, D, *grid).float()
    up = F.interpolate(maps, size=size, mode="bilinear", align_corners=False)[0]
    return _rowwise_minmax(up.reshape(D, -1))


def cosine_distance(masks: torch.Tensor) -> np.ndarray:
    """1 - cosine similarity of the rows of ``masks`` (zero rows: similarity 0), as float64 numpy.

    The Gram matrix is computed in float32 (rows are in [0, 1], so the sums carry no cancellation); the
    clustering threshold is far coarser than its rounding."""
    m = masks.float()
    norms = m.norm(dim=1).double()
    sim = (m @ m.T).double() / (norms[:, None] * norms[None, :])
    sim = torch.nan_to_num(sim, nan=0.0, posinf=0.0, neginf=0.0)
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


def cluster_masks(masks: torch.Tensor, labels: np.ndarray) -> torch.Tensor:
    """Sum the masks of each cluster and min-max each sum: (K, H*W). Clusters whose sum is constant
    (they carry no spatial information) are dropped."""
    lab = torch.as_tensor(labels, device=masks.device, dtype=torch.long)
    K = int(lab.max()) + 1
    sums = torch.zeros(K, masks.shape[1], device=masks.device, dtype=masks.dtype).index_add_(0, lab, masks)
    out = _rowwise_minmax(sums)
    return out[out.amax(-1) > 0]


def causal_saliency(masks: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """S(u) = (1/K) Σ_k s_k M_k(u) / Σ_j M_j(u) (0 where no mask covers u). masks (K, P), scores (K,)."""
    K = masks.shape[0]
    if K == 0:
        return torch.zeros(masks.shape[1], device=masks.device, dtype=masks.dtype)
    coverage = masks.sum(0)
    sal = scores.to(masks.dtype) @ masks
    return torch.where(coverage > 0, sal / coverage.clamp_min(1e-12), torch.zeros_like(sal)) / K


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
    call); the features and logits come from one forward (the reference runs a forward and a backward
    whose gradient it never uses); clusters whose mask is constant, which add nothing to the map, are
    not scored (the reference scores a NaN mask). Prefix tokens (class, distillation, registers) are
    dropped and the grid is read from the model.
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
        P = model.num_prefix_tokens
        with torch.inference_mode():
            tr = model.trace(x)
            bound = bind(model, target, tr.outputs, x)
            feats = model.blocks[layer].norm1(tr.block_inputs[layer])[:, P:]
            p_full = bound.score(tr.outputs).float()
        per_image = []
        for b in range(x.shape[0]):
            masks = feature_masks(feats[b], grid, size)
            labels = cluster_labels(cosine_distance(masks), params["distance_threshold"])
            per_image.append(cluster_masks(masks, labels))
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
        cap = new_capture(model, x, tr, bound, x.shape[0] + total)
        cap.state.update(saliency=torch.stack(saliency), clusters=ks, scores=scores_out)
        return cap

    def reduce(self, cap, params) -> Maps:
        px = cap.state["saliency"]
        gh, gw = cap.grid
        patch = F.adaptive_avg_pool2d(px[:, None], (gh, gw))[:, 0]
        warns = [[] if k > 1 else [f"only {k} usable cluster(s) of masks: lower distance_threshold for a finer map"]
                 for k in cap.state["clusters"]]
        return Maps(patch_maps=patch, pixel_maps=px, warnings=warns)
