"""ROAD: RemOve And Debias (Rong, Leemann et al., ICML 2022) with noisy linear imputation.

Insertion/deletion replace pixels with a baseline (blur, black), and the model may read the *shape* of the removed
region rather than the loss of its content. ROAD instead fills the removed pixels with the solution of a sparse
linear system: each removed pixel equals the weighted mean of its 8 neighbours (weight 1/6 for the 4 direct
neighbours, 1/12 for the diagonals, renormalised at the image border), known pixels fixed; a little Gaussian
noise (``noise``, default 0.01 as the paper and Quantus) is added to the imputed values. The fill carries no
information about which pixels were removed, so both orders can be compared fairly:

* MoRF (most relevant first removed): the score should fall fast (lower area is better);
* LeRF (least relevant first removed): the score should stay high (higher area is better);
* the gap ``lerf_auc - morf_auc`` summarises the pair (higher is better).

The fractions are those of the insertion/deletion preset (:data:`explainers.metrics.PRESETS`, default
``standard``: 0, 0.05, ..., 1), ranked with the same deterministic pixel ranking; at fraction 1 every pixel is
removed and the system has no known value: the image's mean colour (plus noise) is used. Areas are plain
trapezoids on [0, 1]. The imputation is done in the model-input (normalised) space, channel by channel: since
the normalisation is affine per channel and the weights sum to 1, this equals imputing in pixel space (only
the noise's scale differs). The sparse solve lives in :mod:`explainers.metrics.imputation`.

Differences from Quantus's ``ROAD`` (on purpose): Quantus scores top-1 accuracy (we score the preset's score,
softmax probability by default; ``score="accuracy"`` reproduces Quantus) and ranks a map broadcast over the
colour channels (so it only runs on one-channel inputs); with one channel, ``noise=0`` and
``score="accuracy"`` the curves are identical (tests/test_metrics_extra.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import InvalidParameterError
from .imputation import NEIGHBOURS, _dissection_keys, noisy_linear_imputation  # noqa: F401 (re-exported)
from .perturbation import get_preset, rank_pixels, trapezoid

__all__ = ["RoadCurves", "road", "noisy_linear_imputation", "NEIGHBOURS"]


def _as_batch(model, x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise InvalidParameterError("x must be the model input tensor (model.preprocess(image))")
    x = x.unsqueeze(0) if x.dim() == 3 else x
    if x.dim() != 4 or x.shape[0] != 1:
        raise InvalidParameterError(f"x must be one model input (1, C, H, W), got {tuple(x.shape)}")
    return x.detach().to(getattr(model, "device", x.device))


def _check_target(model, target) -> int:
    from ..targets import class_index, class_values

    values = class_values(target)
    index = class_index(values[0]) if len(values) == 1 else None
    if index is None:
        raise InvalidParameterError(f"target must be a class index, got {target!r}")
    n_cls = getattr(model, "num_classes", None)
    if index < 0 or (n_cls is not None and index >= n_cls):
        raise InvalidParameterError(f"target {index} is outside the model's classes")
    return index


def _score(logits: torch.Tensor, score: str, target: int, label: int) -> list[float]:
    if score == "accuracy":
        return (logits.argmax(-1) == label).double().cpu().tolist()
    return logits.double().softmax(-1)[:, target].cpu().tolist()


@dataclass
class RoadCurves:
    """ROAD scores at each removed fraction, most relevant first (``morf``) and least relevant first
    (``lerf``), and their areas on [0, 1]."""

    fractions: np.ndarray
    morf: np.ndarray
    lerf: np.ndarray
    morf_auc: float
    lerf_auc: float
    preset: str
    score: str
    noise: float
    seed: int
    forward_passes: int = 0
    seconds: float = 0.0
    imputation_seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def gap(self) -> float:
        """``lerf_auc - morf_auc``: higher is better."""
        return self.lerf_auc - self.morf_auc

    def to_dict(self) -> dict:
        return {"fractions": self.fractions.tolist(), "morf": self.morf.tolist(), "lerf": self.lerf.tolist(),
                "morf_auc": self.morf_auc, "lerf_auc": self.lerf_auc, "gap": self.gap, "preset": self.preset,
                "score": self.score, "noise": self.noise, "seed": self.seed, "forward_passes": self.forward_passes,
                "seconds": self.seconds, "imputation_seconds": self.imputation_seconds}


def road(model, x: torch.Tensor, saliency, target: int, preset=None, steps: int | None = None, noise: float = 0.01,
         seed: int = 0, score: str | None = None, label: int | None = None, batch_size: int | None = None,
         ) -> RoadCurves:
    """ROAD curves of ``saliency`` for class ``target`` on model input ``x`` (1, 3, H, W).

    preset / steps: the fractions and pixel counts of an insertion/deletion preset (default ``standard``).
    noise: std of the imputation noise (model-input space); seed: its seed (each step gets ``seed + step``).
    score: "probability" (softmax of ``target``) or "accuracy" (1 when the prediction is ``label``, default
    ``target``); default: the preset's. batch_size: imputed images per forward pass (default 32).
    """
    t0 = time.perf_counter()
    p = get_preset(preset)
    score = p.score if score is None else str(score)
    if score not in ("probability", "accuracy"):
        raise InvalidParameterError(f"score must be 'probability' or 'accuracy', got {score!r}")
    x = _as_batch(model, x)
    target = _check_target(model, target)
    label = target if label is None else int(label)
    bs = int(batch_size or 32)
    if bs < 1:
        raise InvalidParameterError("batch_size must be >= 1")
    H, W = x.shape[-2:]
    n = H * W
    fr = p.grid(steps)
    ks = [int(k) for k in p.pixel_counts(n, fr)]
    rank = rank_pixels(saliency, (H, W), p.upsample).numpy()

    def key(order: str, k: int):
        return "img" if k <= 0 else ("all" if k >= n else (order, k))

    morf_keys = [key("morf", k) for k in ks]
    lerf_keys = [key("lerf", k) for k in ks]
    unique = list(dict.fromkeys(morf_keys + lerf_keys))
    img = x[0].detach().cpu().double().numpy()
    t_imp = 0.0
    scores: dict = {}
    with torch.inference_mode():
        for start in range(0, len(unique), bs):
            chunk = unique[start:start + bs]
            t1 = time.perf_counter()
            batch = []
            for j, kk in enumerate(chunk, start):
                if kk == "img":
                    batch.append(img)
                    continue
                removed = np.ones((H, W), bool) if kk == "all" else (
                    rank < kk[1] if kk[0] == "morf" else rank >= n - kk[1])
                batch.append(noisy_linear_imputation(img, removed, noise, seed + j))
            xb = torch.from_numpy(np.stack(batch)).to(device=x.device, dtype=x.dtype)
            t_imp += time.perf_counter() - t1
            logits = model.forward(xb)
            for kk, s in zip(chunk, _score(logits, score, target, label)):
                scores[kk] = s
    morf = np.array([scores[k] for k in morf_keys], dtype=np.float64)
    lerf = np.array([scores[k] for k in lerf_keys], dtype=np.float64)
    return RoadCurves(fractions=fr, morf=morf, lerf=lerf, morf_auc=trapezoid(morf, fr), lerf_auc=trapezoid(lerf, fr),
                      preset=p.name, score=score, noise=float(noise), seed=int(seed), forward_passes=len(unique),
                      seconds=time.perf_counter() - t0, imputation_seconds=t_imp)
