"""Faithfulness correlation (Bhatt et al., IJCAI 2020) and sparseness (Chalasani et al., ICML 2020).

* :func:`faithfulness_correlation`: over ``runs`` random subsets of ``subset`` pixels, the Pearson correlation
  between the map's sum over the subset and the drop in the target's score when the subset is replaced by a
  baseline. Higher is better (a map whose large values mark the pixels the model needs).
* :func:`sparseness`: the Gini index of the map's absolute values (0: uniform, towards 1: all mass on one
  pixel). Higher means a more concentrated map; it is not by itself better, but the literature reports it
  "higher is better" and so does the metric object.

Both read the map at the model-input resolution (bilinearly upsampled, as every other metric here).

Differences from Quantus (on purpose): Quantus's ``FaithfulnessCorrelation`` draws subsets of *features* of the
map broadcast over the colour channels (a subset may hit one channel of a pixel) from numpy's global random
state, scores logits by default and replaces them with a value of the input array; here a subset is whole pixels
(every channel), drawn from ``numpy.random.default_rng(seed)`` (or given as ``subsets``), the score is the
softmax probability by default (``score="logit"`` for logits) and the baseline is one of
:data:`explainers.metrics.BASELINES`. With one-channel inputs, the same subsets and a zero baseline the two agree
(tests/test_metrics_extra.py). Quantus's ``Sparseness`` adds 1e-7 to every value before the Gini index; the
difference is below 1e-5 for a map in [0, 1].
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InvalidParameterError
from .baselines import make_baseline, resolve_baseline
from .perturbation import pixel_saliency
from .road_metric import _as_batch, _check_target

__all__ = ["faithfulness_correlation", "sparseness", "gini"]


def gini(values) -> float:
    """Gini index of the absolute values (Chalasani et al. 2020's sparseness); 0 for an all-zero array."""
    a = np.sort(np.abs(np.asarray(values, dtype=np.float64)).ravel())
    n, total = a.size, a.sum()
    if n == 0 or not total > 0:
        return 0.0
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * a).sum() / (n * total))


def sparseness(saliency, image_size) -> float:
    """Gini index of the map at ``image_size`` = (H, W) (the model input frame)."""
    return gini(pixel_saliency(saliency, tuple(int(v) for v in image_size)).numpy())


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def faithfulness_correlation(model, x: torch.Tensor, saliency, target: int, runs: int = 50, subset: int = 224,
                             baseline="black", score: str = "probability", seed: int = 0, subsets=None,
                             batch_size: int | None = None, cache: dict | None = None) -> float:
    """Faithfulness correlation of ``saliency`` for class ``target`` on model input ``x`` (1, 3, H, W).

    runs / subset: number of random pixel subsets and pixels per subset (Quantus: 100 x 224; 50 here to halve
    the cost: one forward pass per run). baseline: what the subset's pixels become (a name in ``BASELINES`` or
    a :class:`Baseline`; "black" by default, as Quantus). score: "probability" or "logit" of ``target``.
    subsets: optional (runs, subset) array of flat pixel indices (row-major) instead of random ones.
    cache: a dict kept while one image is scored: the score drops do not depend on the map, so the next map of
    the same model and input (another method) with the same target, subsets, baseline and score reuses them
    instead of ``runs`` more forward passes (the evaluation keeps one per image).
    Returns the Pearson correlation, NaN when the map or the score changes are constant.
    """
    x = _as_batch(model, x)
    target = _check_target(model, target)
    H, W = x.shape[-2:]
    n = H * W
    if score not in ("probability", "logit"):
        raise InvalidParameterError(f"score must be 'probability' or 'logit', got {score!r}")
    if subsets is None:
        if not 1 <= int(subset) <= n or int(runs) < 2:
            raise InvalidParameterError(f"need runs >= 2 and 1 <= subset <= {n} pixels")
        rng = np.random.default_rng(int(seed))
        subsets = np.stack([rng.choice(n, int(subset), replace=False) for _ in range(int(runs))])
    subsets = np.asarray(subsets, dtype=np.int64)
    if subsets.ndim != 2 or subsets.shape[0] < 2 or subsets.min() < 0 or subsets.max() >= n:
        raise InvalidParameterError(f"subsets must be a (runs >= 2, size) array of pixel indices below {n}")
    s = pixel_saliency(saliency, (H, W)).double().numpy().ravel()
    att = s[subsets].sum(1)
    key = None
    if cache is not None:
        import hashlib

        digest = hashlib.sha256(subsets.tobytes())
        digest.update(x.detach().cpu().contiguous().numpy().tobytes())  # the cache is safe if shared by mistake
        key = ("faithfulness_correlation", id(model), target, score, repr(resolve_baseline(baseline)),
               int(batch_size or 32), subsets.shape, tuple(x.shape), digest.hexdigest())
        if key in cache:
            return _pearson(att, cache[key])
    drops = _score_drops(model, x, target, subsets, baseline, score, int(batch_size or 32))
    if key is not None:
        cache[key] = drops
    return _pearson(att, drops)


def _score_drops(model, x, target: int, subsets: np.ndarray, baseline, score: str, bs: int) -> np.ndarray:
    """The drop of the target's score when each subset's pixels become the baseline: (runs,)."""
    H, W = x.shape[-2:]
    n = H * W
    base = make_baseline(model, x, resolve_baseline(baseline))
    masks = torch.zeros((len(subsets), n), dtype=torch.bool)
    masks[torch.arange(len(subsets))[:, None], torch.from_numpy(subsets)] = True
    masks = masks.view(-1, 1, H, W).to(x.device)

    def value(logits):
        v = logits.double().softmax(-1) if score == "probability" else logits.double()
        return v[:, int(target)].cpu().numpy()

    with torch.inference_mode():
        ref = value(model.forward(x))[0]
        drops = []
        for i in range(0, len(subsets), bs):
            xb = torch.where(masks[i:i + bs], base, x)
            drops.append(ref - value(model.forward(xb)))
    return np.concatenate(drops)
