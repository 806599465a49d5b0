"""The logit lens: what the model's own final norm, pooling and head would say if the network stopped after block l.

For every block the residual stream is read twice: pooled as the model pools its last block (the target's
``pooled`` score per layer; the last entry is the model's own score) and token by token (each token read alone
by the pooling end, the target's value per token: a patch map per layer). One forward pass on the fused path;
the per-token head computes only the logit columns the target needs (all of them for a class probability).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..models.blocks import pool_outputs
from ._run import needed_classes, stream, token_outputs

__all__ = ["LensResult", "logit_lens"]

TOP = 5


@dataclass
class LensResult:
    """The logit lens of one image.

    pooled: (L,) the target's score (class probability, similarity, text probability...) of the pooled
        representation after each block; ``pooled[-1]`` is the model's own score.
    pooled_values: (L,) the target's value (logit, logit difference, cosine...) after each block.
    tokens: (L, N) the target's value when the pooling end reads one token alone, every token (prefix first).
    top_classes, top_probs: (L, k) the pooled representation's k most probable classes after each block (empty
        for a model without classes); top_labels: their names.
    """

    pooled: np.ndarray
    pooled_values: np.ndarray
    tokens: np.ndarray
    top_classes: np.ndarray
    top_probs: np.ndarray
    top_labels: list
    label: str
    target: int
    prefix: int
    grid: tuple[int, int]
    forward_passes: float = 1.0
    warnings: list = field(default_factory=list)

    @property
    def layers(self) -> int:
        return int(self.pooled.shape[0])

    @property
    def patch_maps(self) -> np.ndarray:
        """(L, gh, gw) the per-token values of the patch tokens, on the patch grid."""
        return self.tokens[:, self.prefix:].reshape(self.layers, *self.grid)

    @property
    def decided_at(self) -> int | None:
        """The first block (0-based) from which the pooled top class is the model's prediction at every later
        block; None without classes."""
        if self.top_classes.size == 0:
            return None
        top = self.top_classes[:, 0]
        layer = self.layers - 1
        while layer > 0 and top[layer - 1] == top[-1]:
            layer -= 1
        return int(layer)

    def rows(self) -> list[dict]:
        """One row per block for a CSV file."""
        out = []
        for l in range(self.layers):  # noqa: E741
            row = {"layer": l + 1, "pooled_score": float(self.pooled[l]), "pooled_value": float(self.pooled_values[l])}
            if self.top_classes.size:
                row.update(top_class=int(self.top_classes[l, 0]), top_label=self.top_labels[l][0],
                           top_probability=float(self.top_probs[l, 0]))
            out.append(row)
        return out


def logit_lens(model, image, target=None) -> LensResult:
    """The logit lens of ``model`` on one ``image`` for ``target`` (anything ``explain`` takes: None for the
    predicted class, a class index, a :mod:`explainers.targets` object, a text target).

    Returns a :class:`LensResult`. Cost: one forward pass, plus the pooling end on every block's tokens."""
    s = stream(model, image, target)
    bound, P = s.bound, model.num_prefix_tokens
    cols = needed_classes(bound)
    with torch.inference_mode():
        stacked = torch.cat(s.outputs, 0)  # (L, N, D)
        pooled_out = pool_outputs(model.pooling, stacked, P)
        pooled = bound.score(pooled_out).double().cpu().numpy()
        values = bound.value(pooled_out).double().cpu().numpy()
        N = stacked.shape[1]
        positions = torch.arange(N, device=stacked.device)
        tokens = np.stack([bound.value(token_outputs(model, t[0], cols, positions)).double().cpu().numpy()
                           for t in s.outputs])
        if pooled_out.logits is not None:
            probs = pooled_out.logits.double().softmax(-1)
            top = probs.topk(min(TOP, probs.shape[-1]), dim=-1)
            top_classes, top_probs = top.indices.cpu().numpy(), top.values.cpu().numpy()
        else:
            top_classes, top_probs = np.zeros((len(s.outputs), 0), np.int64), np.zeros((len(s.outputs), 0))
    labels = model.labels
    top_labels = [[labels[int(c)] for c in row] for row in top_classes]
    warnings = [] if np.isfinite(tokens).all() else ["non-finite per-token values"]
    return LensResult(pooled=pooled, pooled_values=values, tokens=tokens, top_classes=top_classes,
                      top_probs=top_probs, top_labels=top_labels, label=bound.labels[0],
                      target=int(bound.classes[0]), prefix=P, grid=tuple(model.grid(s.x)), warnings=warnings)
