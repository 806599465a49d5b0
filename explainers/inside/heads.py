"""Head importance: the drop of the target's score when one attention head is removed, for every (layer, head).

A head is removed by zeroing its output (its slice of the merged attention output, before the output projection),
or by mean ablation: replacing its output at every token by its mean over the image's tokens. Also the drop
when a whole layer's attention is removed (every head at once). The clean pass keeps the residual stream, so the
ablations of layer l start from block l's input: layer l costs (heads + 1) x (L - l) blocks, batched, on the fused
path (``F.scaled_dot_product_attention``, and oneDNN's fused linear layers on the CPU), in all
``(heads + 1) (L + 1) / 2`` forward passes' worth of blocks (26 for DeiT-Tiny against 36 = L x heads).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import Cancelled, InvalidParameterError
from ..models.blocks import block_ablated, block_fast, pool_outputs
from ._run import stream

__all__ = ["HeadResult", "head_importance", "ABLATIONS"]

ABLATIONS = {"zero": "the head's output zeroed", "mean": "the head's output replaced by its mean over the tokens"}
BATCH = 32  # ablated copies per batch


@dataclass
class HeadResult:
    """Head importance of one image.

    scores: (L, heads) the target's score on the clean image minus its score with that head removed (positive:
        the head supports the target). value_drops: the same for the target's value (logit, cosine...).
    layer_scores, layer_value_drops: (L,) the drops when a whole layer's attention is removed.
    predicted: (L, heads) the predicted class with the head removed (-1 without classes); layer_predicted (L,).
    base_score, base_value: the target on the clean image; prediction: its predicted class (-1 without classes).
    """

    scores: np.ndarray
    value_drops: np.ndarray
    layer_scores: np.ndarray
    layer_value_drops: np.ndarray
    predicted: np.ndarray
    layer_predicted: np.ndarray
    base_score: float
    base_value: float
    prediction: int
    ablation: str
    label: str
    target: int
    forward_passes: float

    @property
    def flips(self) -> np.ndarray:
        """(L, heads) whether removing the head changes the predicted class."""
        return (self.predicted != self.prediction) & (self.prediction >= 0)

    def rows(self) -> list[dict]:
        """One row per (layer, head), then one per whole layer (head 'all'), for a CSV file."""
        L, H = self.scores.shape
        out = [{"layer": l + 1, "head": h + 1, "score_drop": float(self.scores[l, h]),
                "value_drop": float(self.value_drops[l, h]), "predicted": int(self.predicted[l, h])}
               for l in range(L) for h in range(H)]  # noqa: E741
        out += [{"layer": l + 1, "head": "all", "score_drop": float(self.layer_scores[l]),
                 "value_drop": float(self.layer_value_drops[l]), "predicted": int(self.layer_predicted[l])}
                for l in range(L)]  # noqa: E741
        return out


def _masks(heads: int, device) -> torch.Tensor:
    """(heads + 1, heads) keep-masks: one head removed per row, then every head removed."""
    keep = 1 - torch.eye(heads, device=device)
    return torch.cat([keep, torch.zeros(1, heads, device=device)], 0)


def head_importance(model, image, target=None, ablation: str = "zero", progress=None) -> HeadResult:
    """Head importance of ``model`` on one ``image`` for ``target`` (anything ``explain`` takes).

    ablation: "zero" (the head's output zeroed) or "mean" (replaced by its mean over the image's tokens).
    progress: optional ``callback(done, total)`` per layer; return False to cancel."""
    if ablation not in ABLATIONS:
        raise InvalidParameterError(f"ablation must be one of {', '.join(ABLATIONS)}; got {ablation!r}")
    s = stream(model, image, target)
    bound, P, L, H = s.bound, model.num_prefix_tokens, model.num_layers, model.num_heads
    with torch.inference_mode():
        base_score = float(bound.score(s.final)[0])
        base_value = float(bound.value(s.final)[0])
        has_classes = s.final.logits is not None
        prediction = int(s.final.logits[0].argmax()) if has_classes else -1
        masks = _masks(H, s.x.device)
        score = np.zeros((L, H + 1))
        value = np.zeros((L, H + 1))
        pred = np.full((L, H + 1), -1, dtype=np.int64)
        blocks = 0
        for layer, bp in enumerate(model.blocks):
            start = s.block_input(layer)
            for lo in range(0, H + 1, BATCH):
                keep = masks[lo:lo + BATCH]
                t = block_ablated(bp, start.expand(keep.shape[0], -1, -1), s.context, layer, keep, ablation == "mean")
                for j in range(layer + 1, L):
                    t = block_fast(model.blocks[j], t, s.context, j)
                out = pool_outputs(model.pooling, t, P)
                score[layer, lo:lo + BATCH] = bound.score(out).double().cpu().numpy()
                value[layer, lo:lo + BATCH] = bound.value(out).double().cpu().numpy()
                if has_classes:
                    pred[layer, lo:lo + BATCH] = out.logits.argmax(-1).cpu().numpy()
            blocks += (H + 1) * (L - layer)
            if progress is not None and progress(layer + 1, L) is False:
                raise Cancelled("head importance cancelled")
    return HeadResult(scores=base_score - score[:, :H], value_drops=base_value - value[:, :H],
                      layer_scores=base_score - score[:, H], layer_value_drops=base_value - value[:, H],
                      predicted=pred[:, :H], layer_predicted=pred[:, H], base_score=base_score, base_value=base_value,
                      prediction=prediction, ablation=ablation, label=bound.labels[0],
                      target=int(bound.classes[0]), forward_passes=1.0 + blocks / L)
