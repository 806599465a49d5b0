"""Artefact tokens: the L2 norms of the tokens in the residual stream after every block, with the high-norm
outliers of the model's output flagged.

Darcet et al. ("Vision Transformers Need Registers", ICLR 2024) found that large ViTs recycle a few low-information
patch tokens as global stores: at the model's output their norms form a second mode far above the others (they cut
at norm 150 for DINOv2 ViT-g, about 2% of the tokens); those tokens are the bright background patches of attention
maps, and registers (extra prefix tokens) absorb them. Jiang et al. ("Vision Transformers Don't Need Trained
Registers", NeurIPS 2025) trace them to a few MLP neurons, in CLIP and DINOv2 too. A fixed cut does not transfer
across models (the norms' scale differs), so the cut here is relative to the image's own median patch-token norm:

    high-norm token:  ||x_i|| > RATIO x median_j ||x_j||   (patch tokens j of the same image, last block)

with RATIO = 3. Measured on 20 ImageNet validation images (docs/inside.md): ViT-Tiny AugReg has 3-4 such tokens
per image at 27-32x the median, a clear second mode (its largest other token: 1.5x); DeiT-Tiny has none, the upper
tail of its single mode ends at 1.5-2.4x. The median is unmoved by a few percent of outliers, and 3x sits in the gap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ._run import num_registers, stream

__all__ = ["NormResult", "token_norms", "RATIO", "high_norm"]

RATIO = 3.0


def high_norm(patch_norms: np.ndarray, ratio: float = RATIO) -> tuple[np.ndarray, float]:
    """(…) patch-token norms of one image -> (the same shape of booleans: high-norm tokens, the threshold)."""
    thr = float(ratio * np.median(patch_norms))
    return patch_norms > thr, thr


@dataclass
class NormResult:
    """Token norms of one image.

    norms: (L, N) the L2 norm of every token (prefix first) in the residual stream after each block; the last
        row is the model's output tokens (before the final norm).
    threshold: the high-norm cut at the output (``RATIO`` x the median patch-token norm); outliers: (gh, gw)
        booleans, the output's high-norm patch tokens.
    registers: (L, R) the registers' norms (R = 0 for a model without registers); prefix_names: the prefix
        tokens' names ("class", "distillation", "register 1", ...).
    """

    norms: np.ndarray
    threshold: float
    outliers: np.ndarray
    prefix: int
    num_registers: int
    grid: tuple[int, int]
    prefix_names: list
    ratio: float = RATIO
    forward_passes: float = 1.0

    @property
    def layers(self) -> int:
        return int(self.norms.shape[0])

    @property
    def patch_maps(self) -> np.ndarray:
        """(L, gh, gw) the patch tokens' norms on the patch grid."""
        return self.norms[:, self.prefix:].reshape(self.layers, *self.grid)

    @property
    def patch_norms(self) -> np.ndarray:
        """(gh, gw) the output patch tokens' norms."""
        return self.patch_maps[-1]

    @property
    def registers(self) -> np.ndarray:
        return self.norms[:, self.prefix - self.num_registers:self.prefix]

    def outlier_patches(self) -> list[tuple[int, int]]:
        """(row, column) of each high-norm patch, highest norm first."""
        rows, cols = np.nonzero(self.outliers)
        order = np.argsort(-self.patch_norms[rows, cols])
        return [(int(rows[i]), int(cols[i])) for i in order]

    def brightest_overlap(self, patch_map: np.ndarray, k: int | None = None) -> tuple[int, int]:
        """How many of a map's ``k`` brightest patches are high-norm tokens (k: the number of high-norm tokens,
        at least 1). Returns (hits, k)."""
        k = max(1, int(self.outliers.sum())) if k is None else int(k)
        flat = np.asarray(patch_map, dtype=np.float64).reshape(-1)
        top = np.argpartition(-flat, min(k, flat.size) - 1)[:k]
        return int(self.outliers.reshape(-1)[top].sum()), k

    def rows(self) -> list[dict]:
        """One row per token (output norms) for a CSV file."""
        gh, gw = self.grid
        out = [{"token": name, "row": "", "column": "", "norm": float(self.norms[-1, i]), "high_norm": ""}
               for i, name in enumerate(self.prefix_names)]
        pn = self.patch_norms
        out += [{"token": "patch", "row": r, "column": c, "norm": float(pn[r, c]),
                 "high_norm": bool(self.outliers[r, c])} for r in range(gh) for c in range(gw)]
        return out


def _prefix_names(model, R: int) -> list[str]:
    P = model.num_prefix_tokens
    first = ["class", "distillation"][:P - R] if model.pooling.kind == "dist" or P - R <= 1 else \
        [f"prefix {i + 1}" for i in range(P - R)]
    return first + [f"register {i + 1}" for i in range(R)]


def token_norms(model, image) -> NormResult:
    """The token norms of ``model`` on one ``image`` after every block, output high-norm tokens flagged.
    Cost: one forward pass."""
    s = stream(model, image, _NO_TARGET)
    with torch.inference_mode():
        norms = torch.stack([t[0].double().norm(dim=-1) for t in s.outputs]).cpu().numpy()
    P = model.num_prefix_tokens
    R = min(num_registers(model), P)
    grid = tuple(model.grid(s.x))
    out_patches = norms[-1, P:].reshape(grid)
    outliers, thr = high_norm(out_patches)
    return NormResult(norms=norms, threshold=thr, outliers=outliers, prefix=P, num_registers=R, grid=grid,
                      prefix_names=_prefix_names(model, R))


def _no_target(outputs):
    return outputs.embedding[:, 0]


_NO_TARGET = _no_target  # token norms need no target: a trivial one keeps models without classes working
