"""Model parameter randomisation (Adebayo et al., NeurIPS 2018) and the random-logit test (Sixt et al., ICML 2020):
the model copy, its layer groups, seeded re-initialisation, and the map similarities.

The shared model is never touched: :func:`copy_model` makes a ``copy.deepcopy`` of the wrapper and checks that
nothing reachable from the copy (its blocks, its pooling/head, its adapter, any closure) still holds one of the
original's parameters. Groups, in cascading order: ``head`` (final norm, pooling, classifier), ``block L-1`` ...
``block 0``, ``embeddings`` (everything else: patch projection, class token, position embedding).

:func:`randomise_` replaces every parameter tensor of a group with Gaussian noise of that tensor's own mean and
standard deviation (0.02 when the tensor is constant, timm's init scale), drawn from a generator seeded by
``(seed, group)``: the same group gets the same random weights in cascading and independent mode and on every
run. Keeping each tensor's first two moments keeps the activations at a sane scale (a zero or unit LayerNorm
would not), so what changes is the learnt structure only.

Similarities between the original map and the map after randomisation (both (H, W); Adebayo et al.'s three):
Spearman rank correlation (scipy), SSIM (scikit-image, maps clipped to [0, 1], ``data_range=1``) and the
top-k intersection (share of the top ``k`` fraction of pixels, 10% by default, that both maps share).
Differences from Quantus (on purpose): Quantus's ``MPRT`` re-initialises each *layer* with its own
``reset_parameters`` (so ``model parameters`` of one block are randomised in several steps and LayerNorms become
identity); the steps here are whole blocks. Quantus's ``ssim`` takes the data range from the two maps (the same
as ``data_range=1`` for maps spanning [0, 1]); ``RandomLogit`` flattens the maps before SSIM.
"""

from __future__ import annotations

import copy
import threading
import zlib
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import ExplainerError, InvalidParameterError

__all__ = ["copy_model", "parameter_groups", "randomise_", "Step", "cascading_steps", "independent_steps",
           "MapComparer", "spearman", "ssim", "topk_intersection", "similarities", "random_other_class", "SIMILARITIES"]

SIMILARITIES = ("spearman", "ssim", "topk")


# -- the copy ------------------------------------------------------------------------------------------------
def _param_ids(obj, seen: set, depth: int = 0) -> set[int]:
    """ids of every parameter tensor reachable from ``obj`` (modules, tensors, containers, attributes,
    closures)."""
    if isinstance(obj, nn.Module):
        return {id(p) for p in obj.parameters()}
    if isinstance(obj, torch.Tensor):
        return {id(obj)}
    if depth > 8 or id(obj) in seen or isinstance(obj, (str, bytes, int, float, bool, type(None), np.ndarray)):
        return set()
    seen.add(id(obj))
    items: list = []
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = list(obj)
    elif isinstance(obj, dict):
        items = list(obj.values())
    elif callable(obj) and getattr(obj, "__closure__", None):
        items = [c.cell_contents for c in obj.__closure__ if c.cell_contents is not None]
    elif hasattr(obj, "__self__") and hasattr(obj, "__func__"):  # a bound method
        items = [obj.__self__]
    if hasattr(obj, "__dict__") and not isinstance(obj, type):
        items += list(vars(obj).values())
    for name in getattr(type(obj), "__slots__", ()):
        items.append(getattr(obj, name, None))
    out: set[int] = set()
    for it in items:
        out |= _param_ids(it, seen, depth + 1)
    return out


def copy_model(model):
    """A deep copy of the explainers wrapper ``model`` that shares no parameter with it (checked).

    Raises :class:`ExplainerError` naming the attribute when the wrapper cannot be copied safely."""
    locks = {id(v): threading.RLock() for v in vars(model).values() if type(v) is type(threading.RLock())}
    try:
        twin = copy.deepcopy(model, memo=dict(locks))
    except Exception as e:  # noqa: BLE001 - reported with the reason
        raise ExplainerError(f"the model cannot be copied for randomisation ({type(e).__name__}: {e})") from None
    orig = {id(p) for p in model.module.parameters()}
    for name, value in vars(twin).items():
        shared = _param_ids(value, set()) & orig
        if shared:
            raise ExplainerError(
                f"the model wrapper is not deepcopy-safe: its copy's {name!r} still uses {len(shared)} parameter "
                "tensors of the original model (a closure or cached view); randomising the copy would be wrong")
    return twin


def parameter_groups(model) -> list[tuple[str, list[str]]]:
    """[(group, parameter names of ``model.module``)] in cascading order: head, block L-1 ... block 0,
    embeddings (every parameter in no block and not in the head)."""
    names = {id(p): n for n, p in model.module.named_parameters()}
    head = model.pooling if hasattr(model, "pooling") else model.head
    taken: set[int] = set()
    groups = []
    for gname, obj in [("head", head)] + [(f"block {i}", model.blocks[i]) for i in reversed(range(model.num_layers))]:
        ids = [i for i in _param_ids(obj, set()) if i in names and i not in taken]
        taken |= set(ids)
        groups.append((gname, sorted(names[i] for i in ids)))
    groups.append(("embeddings", sorted(n for i, n in names.items() if i not in taken)))
    return groups


def randomise_(module: nn.Module, param_names, seed: int, group: str) -> None:
    """Re-initialise the named parameters of ``module`` in place: Gaussian noise with each tensor's own mean and
    std, from a generator seeded by ``(seed, group)``."""
    g = torch.Generator().manual_seed(zlib.crc32(f"{int(seed)}:{group}".encode()))
    params = dict(module.named_parameters())
    with torch.no_grad():
        for name in param_names:
            p = params[name]
            v = p.detach().float()
            mean = float(v.mean())
            std = float(v.std()) if v.numel() > 1 else 0.0
            if not std > 0:
                std = 0.02
            if p.device.type == "cpu" and p.dtype == torch.float32 and p.is_contiguous():
                p.normal_(generator=g).mul_(std).add_(mean)  # the same draws as randn below, without a copy
            else:
                noise = torch.randn(p.shape, generator=g).mul_(std).add_(mean)
                p.copy_(noise.to(device=p.device, dtype=p.dtype))


@dataclass(frozen=True)
class Step:
    """One randomisation step: which groups are random, and how many blocks (counted from the top)."""

    index: int
    label: str
    groups: tuple[str, ...]
    blocks: int  # blocks randomised (0..L)


def cascading_steps(num_layers: int) -> list[Step]:
    """original, head, head + block L-1, ..., head + all blocks, everything (+ embeddings)."""
    L = int(num_layers)
    steps = [Step(0, "original", (), 0), Step(1, "head", ("head",), 0)]
    for d in range(1, L + 1):
        groups = ("head",) + tuple(f"block {i}" for i in range(L - 1, L - 1 - d, -1))
        label = f"head + block {L - 1}" if d == 1 else f"head + blocks {L - 1}-{L - d}"
        steps.append(Step(len(steps), label, groups, d))
    steps.append(Step(len(steps), "all (+ embeddings)", steps[-1].groups + ("embeddings",), L))
    return steps


def independent_steps(num_layers: int) -> list[Step]:
    """original, then each group alone: head, block L-1, ..., block 0, embeddings."""
    L = int(num_layers)
    steps = [Step(0, "original", (), 0), Step(1, "head", ("head",), 0)]
    for i in range(L - 1, -1, -1):
        steps.append(Step(len(steps), f"block {i}", (f"block {i}",), 1))
    steps.append(Step(len(steps), "embeddings", ("embeddings",), 0))
    return steps


# -- similarities --------------------------------------------------------------------------------------------
def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise InvalidParameterError(f"maps must be two (H, W) arrays of the same shape, got {a.shape} and {b.shape}")
    return a, b


def _ranks_top(a: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks of the values (descending; ties share their mean rank, as scipy's ``rankdata``) and the
    mask of the ``n`` highest (ties in raster order), from one sort. The sort need not be stable (average ranks
    do not depend on the order within ties; the top-n ties are taken in raster order explicitly), so numpy's
    SIMD quicksort serves: ~10x faster than a stable sort of a 224 x 224 map."""
    flat = -a.ravel()
    order = np.argsort(flat, kind="quicksort")
    srt = flat[order]
    new = np.empty(flat.size, dtype=bool)
    new[:1] = True
    np.not_equal(srt[1:], srt[:-1], out=new[1:])
    ranks = np.empty(flat.size, dtype=np.float64)
    if new.all():  # no ties: the ranks are the inverse permutation
        ranks[order] = np.arange(1, flat.size + 1, dtype=np.float64)
    else:
        dense = np.empty(flat.size, dtype=np.int64)
        dense[order] = np.cumsum(new)
        count = np.r_[np.flatnonzero(new), flat.size]
        ranks = 0.5 * (count[dense] + count[dense - 1] + 1)
    cut = srt[n - 1]
    if np.isnan(cut):  # NaNs sort last: fall back to the stable order
        top = np.zeros(flat.size, dtype=bool)
        top[np.argsort(flat, kind="stable")[:n]] = True
        return ranks, top
    top = flat < cut
    ties = np.flatnonzero(flat == cut)
    top[ties[:n - int(top.sum())]] = True
    return ranks, top


_SSIM_WIN, _SSIM_C1, _SSIM_C2 = 7, 0.01 ** 2, 0.03 ** 2


def _ssim_stats(a: np.ndarray):
    """scikit-image's SSIM window statistics of one [0, 1] map (uniform 7 x 7 window, sample covariance):
    (map, local mean, local variance); ``None`` when the map is smaller than the window."""
    from scipy.ndimage import uniform_filter

    if min(a.shape) < _SSIM_WIN:
        return None
    a = np.clip(a, 0, 1)
    u = uniform_filter(a, size=_SSIM_WIN)
    cov_norm = _SSIM_WIN ** 2 / (_SSIM_WIN ** 2 - 1)
    return a, u, cov_norm * (uniform_filter(a * a, size=_SSIM_WIN) - u * u)


def _ssim_from(sa, sb) -> float:
    """``structural_similarity(a, b, data_range=1)`` from the two maps' window statistics (the same arithmetic
    as scikit-image 0.2x, so the same value; each map's own statistics are computed once)."""
    from scipy.ndimage import uniform_filter

    (a, ux, vx), (b, uy, vy) = sa, sb
    cov_norm = _SSIM_WIN ** 2 / (_SSIM_WIN ** 2 - 1)
    vxy = cov_norm * (uniform_filter(a * b, size=_SSIM_WIN) - ux * uy)
    s = ((2 * ux * uy + _SSIM_C1) * (2 * vxy + _SSIM_C2)) / ((ux ** 2 + uy ** 2 + _SSIM_C1) * (vx + vy + _SSIM_C2))
    pad = (_SSIM_WIN - 1) // 2
    return float(s[pad:-pad, pad:-pad].mean(dtype=np.float64))


class MapComparer:
    """Similarities of maps to one reference map (its ranks are computed once): ``MapComparer(original)(m)``
    -> {"spearman", "ssim", "topk"}."""

    def __init__(self, reference, k: float = 0.1):
        if not 0 < k <= 1:
            raise InvalidParameterError(f"k must be a fraction in (0, 1], got {k}")
        self.ref = np.asarray(reference, dtype=np.float64)
        if self.ref.ndim != 2:
            raise InvalidParameterError(f"maps must be (H, W) arrays, got shape {self.ref.shape}")
        self.n = max(1, int(round(k * self.ref.size)))
        self.flat = np.ptp(self.ref) == 0
        ranks, self.top = _ranks_top(self.ref, self.n)
        self.centred = ranks - ranks.mean()
        self._ssim_ref = _ssim_stats(self.ref)

    def ssim(self, m: np.ndarray) -> float:
        m = _pair(self.ref, m)[1]
        if self._ssim_ref is None:
            return ssim(self.ref, m)
        return _ssim_from(self._ssim_ref, _ssim_stats(m))

    def spearman(self, m: np.ndarray, ranks: np.ndarray | None = None) -> float:
        m = _pair(self.ref, m)[1]
        if self.flat or np.ptp(m) == 0:
            return 1.0 if np.array_equal(self.ref, m) else 0.0
        r = _ranks_top(m, self.n)[0] if ranks is None else ranks
        r = r - r.mean()
        return float((self.centred * r).sum() / np.sqrt((self.centred ** 2).sum() * (r ** 2).sum()))

    def __call__(self, m) -> dict[str, float]:
        m = _pair(self.ref, m)[1]
        ranks, top = _ranks_top(m, self.n)
        return {"spearman": self.spearman(m, ranks), "ssim": self.ssim(m),
                "topk": float((self.top & top).sum() / self.n)}


def spearman(a, b) -> float:
    """Spearman rank correlation of two maps (the Pearson correlation of their average ranks, as scipy).
    Undefined when a map is constant (scipy and Quantus give NaN); here 1.0 when both are constant and equal,
    else 0.0 when either is constant: a map that became flat after randomisation has changed, and the check
    must say so rather than drop the image."""
    a, b = _pair(a, b)
    return MapComparer(a).spearman(b)


def ssim(a, b) -> float:
    """Structural similarity of two [0, 1] maps (values clipped to [0, 1], ``data_range=1``)."""
    from skimage.metrics import structural_similarity

    a, b = _pair(a, b)
    return float(structural_similarity(np.clip(a, 0, 1), np.clip(b, 0, 1), data_range=1.0))


def topk_intersection(a, b, k: float = 0.1) -> float:
    """Share of the top ``k`` fraction of pixels of map ``a`` that are also in the top ``k`` of ``b`` (ties in
    raster order, as :func:`explainers.metrics.rank_pixels`)."""
    a, b = _pair(a, b)
    return MapComparer(a, k)(b)["topk"]


def similarities(a, b, k: float = 0.1) -> dict[str, float]:
    return MapComparer(a, k)(b)


def random_other_class(num_classes: int, target: int, seed: int = 0) -> int:
    """A class other than ``target``, uniformly at random from ``numpy.random.default_rng(seed)``."""
    if num_classes < 2:
        raise InvalidParameterError("the random-logit test needs a model with at least two classes")
    c = int(np.random.default_rng(int(seed)).integers(num_classes - 1))
    return c + int(c >= int(target))
