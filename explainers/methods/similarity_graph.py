"""Explaining ViTs through similarity-based graphs (lucav48/ViT-Similarity-Graph).

Spec and the reference code's quirks: ``shared/docs/METHODS.md`` section 4.
"""

from __future__ import annotations

import numpy as np
import torch

from ..registry import Capture, Maps, Method, Param, register
from ..targets import bind
from ._common import new_capture, pooling_query
from ._perturb import BATCH_SIZE, auto_batch_size, score_batches

__all__ = ["SimilarityGraph", "start_nodes", "similarity_graphs", "greedy_walks", "coverage_average"]


def start_nodes(cls_attention: torch.Tensor, masks_layer: int) -> torch.Tensor:
    """(L', n) class-token attention per layer -> (L', m) start patches: the ``m - m//2`` most and the
    ``m//2`` least attended patches of each layer."""
    hi = masks_layer - masks_layer // 2
    lo = masks_layer // 2
    top = cls_attention.topk(hi, dim=-1).indices
    if lo == 0:
        return top
    bottom = cls_attention.topk(lo, dim=-1, largest=False).indices
    return torch.cat([top, bottom], dim=-1)


def similarity_graphs(emb: torch.Tensor) -> torch.Tensor:
    """(L', n, F) token embeddings -> (L', n, n) cosine similarities with a zero diagonal."""
    e = emb.float()
    e = e / e.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    sim = e @ e.transpose(-1, -2)
    sim.diagonal(dim1=-2, dim2=-1).zero_()
    return sim


def greedy_walks(graphs: torch.Tensor, starts: torch.Tensor, length: int, reference: bool = False) -> torch.Tensor:
    """Greedy walks on similarity graphs, all at once.

    graphs: (M, n, n) one graph per walk; starts: (M,) start nodes. From the current node, step to the
    most similar node not yet visited; a walk visits ``length + 1`` nodes (start included).
    reference=True reproduces the reference: visited nodes are set to 0 rather than excluded, so when all
    unvisited nodes have negative similarity a visited one is picked again (duplicates).
    Returns (M, length + 1) node indices.
    """
    # Many tiny sequential steps: numpy on the CPU is far quicker here than torch ops.
    g = graphs.detach().float().cpu().numpy()
    M, n, _ = g.shape
    rows = np.arange(M)
    visited = np.zeros((M, n), dtype=bool)
    cur = starts.detach().cpu().numpy().astype(np.int64)
    path = np.empty((M, length + 1), dtype=np.int64)
    path[:, 0] = cur
    fill = 0.0 if reference else -np.inf
    for step in range(1, length + 1):
        visited[rows, cur] = True
        sim = np.where(visited, fill, g[rows, cur])
        cur = sim.argmax(-1)
        path[:, step] = cur
    return torch.from_numpy(path).to(graphs.device)


def coverage_average(walks: torch.Tensor, scores: torch.Tensor, n: int) -> torch.Tensor:
    """H(j) = Σ_m s_m 1[j ∈ walk_m] / max(1, Σ_m 1[j ∈ walk_m]). walks (M, T), scores (M,) -> (n,)."""
    member = torch.zeros(walks.shape[0], n, device=walks.device, dtype=torch.float32)
    member.scatter_(1, walks, 1.0)
    return (scores.float() @ member) / member.sum(0).clamp_min(1.0)


@register
class SimilarityGraph(Method):
    """Similarity-graph explanations (lucav48/ViT-Similarity-Graph).

    Per layer, the ``masks_layer`` patches the class token attends to most and least (max over heads)
    start greedy walks on the cosine-similarity graph of the next layer's MLP hidden embeddings (fc1
    output, before the activation): each walk keeps ``int(n·token_ratio)+1`` patches. Every walk is
    scored by the class probability of a forward pass that keeps only the prefix tokens and the walk's
    patch tokens (token dropping after the position embedding); a patch's value is the mean score of the
    walks that contain it.

    Differences from the reference: walks never revisit a node (``reference_walk=True`` restores the
    reference's duplicates); the short forwards run in batches; class 0 can be explained. The pairing of
    layer l's start nodes with layer l+1's graph is the reference's and is kept.
    """

    name = "similarity_graph"
    display_name = "Similarity Graph"
    paper = "Explaining Vision Transformers Through Similarity-based Graphs (lucav48/ViT-Similarity-Graph)"
    paper_url = "https://github.com/lucav48/ViT-Similarity-Graph"
    cost = "1 forward + (L-1-starting_layer)·masks_layer forwards on about token_ratio of the tokens"
    family = "perturbation"
    description = ("Grows groups of similar patches from the most and least attended ones, classifies the "
                   "image from each group alone, and credits each patch with the scores of its groups.")
    params = (
        Param("token_ratio", "float", 0.5, "Fraction of the patch tokens each walk keeps.",
              min=0.05, max=0.95, step=0.05),
        Param("starting_layer", "int", 0, "First layer whose attention picks start nodes.",
              min=0, max=lambda m: (m.num_layers - 2) if m is not None else None),
        Param("masks_layer", "int", 4, "Walks per layer (half from the most, half from the least attended "
              "patches).", min=1, max=64),
        Param("reference_walk", "bool", False, "Reproduce the reference walk, which can revisit a node "
              "(visited nodes get similarity 0 instead of being excluded)."),
        BATCH_SIZE,
    )

    def capture(self, model, x, target, params, progress=None) -> Capture:
        P = model.num_prefix_tokens
        s, m = params["starting_layer"], params["masks_layer"]
        L = model.num_layers
        with torch.inference_mode():
            tr = model.trace(x, keep_activations=True)
            bound = bind(model, target, tr.outputs, x)
            tokens = tr.embedded
            clean = tr.outputs
            q = pooling_query(model, tr)[:, None, None, :]  # the row(s) the pooling reads
            n = tokens.shape[1] - P
            length = int(n * params["token_ratio"])
            # start nodes of attention layers s..L-2, graphs of MLP embeddings of layers s+1..L-1
            cls_att = torch.stack([(q @ a.float())[:, :, 0, P:].amax(1) for a in tr.attentions[s:L - 1]], 1)
            emb = torch.stack([tr.acts[li]["f1"][:, P:] for li in range(s + 1, L)], 1)  # (B, L', n, F)
            del tr
            walks = []
            for b in range(x.shape[0]):
                starts = start_nodes(cls_att[b], m)  # (L', m)
                graphs = similarity_graphs(emb[b])  # (L', n, n)
                g = graphs.repeat_interleave(starts.shape[1], dim=0)
                walks.append(greedy_walks(g, starts.reshape(-1), length, params["reference_walk"]))
            del emb
        M = walks[0].shape[0]
        total = M * x.shape[0]
        bs = auto_batch_size(model, tokens=P + length + 1, requested=params["batch_size"])
        maps, all_scores = [], []
        for b in range(x.shape[0]):
            keep = walks[b] + P
            prefix = tokens[b:b + 1, :P]

            def make(start, stop, keep=keep, prefix=prefix, b=b):
                picked = tokens[b][keep[start:stop]]  # (k, T, D)
                return torch.cat([prefix.expand(stop - start, -1, -1), picked], dim=1), keep[start:stop] - P

            scores = score_batches(model, make, M, bound.select(b), bs, tokens=True, progress=progress,
                                   done=b * M, total=total)
            maps.append(coverage_average(walks[b], scores, n))
            all_scores.append(scores.cpu())
        cap = new_capture(model, x, clean, bound, x.shape[0] + total)
        cap.state.update(map=torch.stack(maps), walks=[w.cpu() for w in walks], scores=all_scores)
        return cap

    def reduce(self, cap, params) -> Maps:
        B = cap.state["map"].shape[0]
        return Maps(cap.state["map"].reshape(B, *cap.grid))
