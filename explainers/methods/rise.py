"""RISE: Randomized Input Sampling for Explanation (Petsiuk, Das & Saenko, BMVC 2018).

N random binary grids of ``cells`` × ``cells`` (each cell kept with probability ``p1``) are upsampled
bilinearly to ``(cells + 1)`` cell sizes and cropped at a random shift of less than one cell, giving smooth
masks; each masked image (the normalised input times the mask, so masked pixels go to the dataset-mean
colour, as in the authors' code) is scored by the class probability, and the map is the score-weighted sum
of the masks divided by N·p1. Masks and shifts come from ``seed``: the same input and seed give the same
map, whatever the batch size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..registry import Capture, Maps, Method, Param, register
from ..targets import bind
from ._common import new_capture
from ._perturb import BATCH_SIZE, auto_batch_size, score_batches
from .gradients import per_patch

__all__ = ["RISE", "RiseMasks"]


class RiseMasks:
    """The seeded masks of one RISE run, made on demand: ``masks(start, stop)`` -> (stop-start, 1, H, W)."""

    def __init__(self, count: int, cells: int, p1: float, size: tuple[int, int], seed: int, device=None):
        H, W = int(size[0]), int(size[1])
        g = torch.Generator().manual_seed(int(seed))
        self.size = (H, W)
        self.cell = (math.ceil(H / cells), math.ceil(W / cells))
        self.up = ((cells + 1) * self.cell[0], (cells + 1) * self.cell[1])
        self.grids = (torch.rand(count, cells, cells, generator=g) < p1).float()
        self.dy = torch.randint(0, self.cell[0], (count,), generator=g).tolist()
        self.dx = torch.randint(0, self.cell[1], (count,), generator=g).tolist()
        self.device = device

    def __call__(self, start: int, stop: int) -> torch.Tensor:
        g = self.grids[start:stop, None].to(self.device)
        up = F.interpolate(g, size=self.up, mode="bilinear", align_corners=False)
        H, W = self.size
        return torch.stack([up[i, :, dy:dy + H, dx:dx + W]
                            for i, (dy, dx) in enumerate(zip(self.dy[start:stop], self.dx[start:stop]))])


@register
class RISE(Method):
    """RISE (Petsiuk et al. 2018; the baseline of the ViT-CX paper). Differences from the authors' code:
    masks are made batch by batch (never all N held in memory) and upsampled with torch's bilinear
    interpolation (edge-clamped) instead of skimage's reflect mode; only the explained class is scored."""

    name = "rise"
    display_name = "RISE"
    paper = "Petsiuk, Das & Saenko, RISE: Randomized Input Sampling for Explanation of Black-box Models, BMVC 2018"
    paper_url = "https://arxiv.org/abs/1806.07421"
    cost = "masks batched masked forwards"
    family = "perturbation"
    description = ("Scores the image under thousands of random smooth masks and credits each pixel with the "
                   "mean score of the masks that keep it.")
    params = (
        Param("masks", "int", 4000, "Random masks (masked forward passes) per image.", min=1, max=50000),
        Param("cells", "int", 7, "Grid cells per side of the random masks (the paper's s).", min=1, max=64),
        Param("p1", "float", 0.5, "Probability of keeping a cell.", min=0.01, max=1.0, step=0.01),
        Param("seed", "int", 0, "Seed of the masks and shifts.", min=0, max=2**31 - 1),
        BATCH_SIZE,
    )

    def capture(self, model, x, target, params, progress=None) -> Capture:
        with torch.inference_mode():
            out = model.outputs(x)
        bound = bind(model, target, out, x)
        B, N = x.shape[0], params["masks"]
        H, W = x.shape[-2:]
        masks = RiseMasks(N, params["cells"], params["p1"], (H, W), params["seed"], device=x.device)
        bs = auto_batch_size(model, requested=params["batch_size"])
        sal = torch.zeros(B, H * W, device=x.device)
        with torch.inference_mode():
            for start in range(0, N, bs):
                stop = min(N, start + bs)
                mc = masks(start, stop).to(x.dtype)
                for b in range(B):
                    xb = x[b:b + 1]
                    scores = score_batches(model, lambda s, e, xb=xb, mc=mc: xb * mc[s:e], stop - start,
                                           bound.select(b), bs, progress=progress, done=start * B + b * (stop - start),
                                           total=B * N)
                    sal[b] += scores.float() @ mc.reshape(stop - start, -1).float()
        sal = sal / (N * params["p1"])
        cap = new_capture(model, x, out, bound, B * (N + 1))
        cap.state["pixels"] = sal.reshape(B, H, W)
        return cap

    def reduce(self, cap, params) -> Maps:
        pix = cap.state["pixels"].float()
        return Maps(per_patch(pix, cap.grid), pixel_maps=pix)
