"""Transformer Input Sampling (Englebert, Stassin, Nanfack, Mahmoudi, Siebert, Cornu & De Vleeschouwer,
"Explaining through Transformer Input Sampling", ICCV workshops 2023; aenglebert/Transformer_Input_Sampling).

The outputs of all blocks are concatenated per patch token, giving L·D feature vectors over the n patch
tokens; k-means groups them into ``masks`` clusters whose centroids (each a value per patch token) are the
raw masks. Each mask keeps its ``token_ratio``·n highest tokens: the image is classified from the prefix
tokens and these embedded patch tokens alone (token dropping after the position embedding, no pixel
masking), and a token's value is the mean class probability over the masks that keep it.
"""

from __future__ import annotations

import torch

from ..registry import Capture, Maps, Method, Param, register
from ..targets import bind
from ._common import new_capture
from ._perturb import BATCH_SIZE, auto_batch_size, score_batches

__all__ = ["TIS", "kmeans", "tis_saliency"]


def kmeans(points: torch.Tensor, k: int, seed: int, iterations: int, tol: float = 1e-4) -> torch.Tensor:
    """Euclidean k-means (Lloyd) of (m, d) points into k <= m clusters, seeded: the initial centroids are k
    distinct points drawn with ``seed``; an empty cluster keeps its centroid. Returns (k, d) centroids."""
    pts = points.float()
    m = pts.shape[0]
    g = torch.Generator().manual_seed(int(seed))
    cent = pts[torch.randperm(m, generator=g)[:k].to(pts.device)].clone()
    sq = (pts * pts).sum(1, keepdim=True)
    for _ in range(iterations):
        d = sq - 2 * pts @ cent.T + (cent * cent).sum(1)[None]
        lab = d.argmin(1)
        sums = torch.zeros_like(cent).index_add_(0, lab, pts)
        count = torch.zeros(k, device=pts.device).index_add_(0, lab, torch.ones(m, device=pts.device))
        new = torch.where(count[:, None] > 0, sums / count.clamp_min(1)[:, None], cent)
        shift = float((new - cent).pow(2).sum())
        cent = new
        if shift <= tol:
            break
    return cent


def tis_saliency(masks: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Σ_k s_k M_k / Σ_k M_k per token (0 where no mask keeps the token). masks (K, n) binary, scores (K,)."""
    cover = masks.sum(0)
    return torch.where(cover > 0, (scores.float() @ masks) / cover.clamp_min(1), torch.zeros_like(cover))


@register
class TIS(Method):
    """TIS (aenglebert/Transformer_Input_Sampling). Differences from the authors' code, which was read and
    not copied: the k-means is seeded (their ``fast_pytorch_kmeans`` draws its start from numpy's global
    random state) and an empty cluster keeps its centroid (theirs becomes a zero mask); every prefix token
    (class, distillation, registers) is kept in each sampled input (theirs keeps only the first token); the
    map is not min-max scaled (rendering does that)."""

    name = "tis"
    display_name = "Transformer Input Sampling"
    paper = "Englebert et al., Explaining through Transformer Input Sampling, ICCV workshops 2023"
    paper_url = "https://openaccess.thecvf.com/content/ICCV2023W/NIVT/html/Englebert_Explaining_Through_Transformer_Input_Sampling_ICCVW_2023_paper.html"  # noqa: E501
    cost = "1 forward + masks forwards on token_ratio of the tokens, batched"
    family = "perturbation"
    description = ("Builds token masks by clustering the network's own features, classifies the image from each "
                   "subset of tokens, and credits each token with the mean score of its subsets.")
    params = (
        Param("masks", "int", 1024, "Token masks (k-means clusters, short forward passes) per image; at most "
              "L·D (layers × width) are used.", min=1, max=8192),
        Param("token_ratio", "float", 0.5, "Fraction of the patch tokens each mask keeps.", min=0.05, max=0.95,
              step=0.05),
        Param("seed", "int", 0, "Seed of the k-means initialisation.", min=0, max=2**31 - 1),
        Param("iterations", "int", 100, "Maximum k-means iterations.", min=1, max=1000),
        BATCH_SIZE,
    )

    def capture(self, model, x, target, params, progress=None) -> Capture:
        P = model.num_prefix_tokens
        with torch.inference_mode():
            tr = model.trace(x)
            bound = bind(model, target, tr.outputs, x)
            clean = tr.outputs
            tokens = tr.embedded
            feats = torch.cat(list(tr.block_inputs[1:]) + [tr.final_tokens], dim=-1)[:, P:]  # (B, n, L·D)
            del tr
        B, n = feats.shape[:2]
        keep = max(1, int(params["token_ratio"] * n))
        K = min(params["masks"], feats.shape[-1])
        bs = auto_batch_size(model, tokens=P + keep, requested=params["batch_size"])
        maps, all_masks, all_scores = [], [], []
        for b in range(B):
            with torch.inference_mode():
                cent = kmeans(feats[b].T, K, params["seed"], params["iterations"])  # (K, n)
                idx = cent.topk(keep, dim=-1).indices.sort(-1).values + P
                prefix = tokens[b:b + 1, :P]

            def make(start, stop, idx=idx, prefix=prefix, b=b):  # (tokens, kept patch indices): RoPE needs both
                picked = torch.cat([prefix.expand(stop - start, -1, -1), tokens[b][idx[start:stop]]], dim=1)
                return picked, idx[start:stop] - P

            scores = score_batches(model, make, K, bound.select(b), bs, tokens=True, progress=progress,
                                   done=b * K, total=B * K)
            masks = torch.zeros(K, n, device=scores.device).scatter_(1, idx - P, 1.0)
            maps.append(tis_saliency(masks, scores))
            all_masks.append(masks.bool().cpu())
            all_scores.append(scores.float().cpu())
        cap = new_capture(model, x, clean, bound, B * (1 + K))
        cap.state.update(map=torch.stack(maps), masks=all_masks, scores=all_scores)
        return cap

    def reduce(self, cap, params) -> Maps:
        m = cap.state["map"]
        return Maps(m.reshape(m.shape[0], *cap.grid))
