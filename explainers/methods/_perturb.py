"""Shared machinery of the mask-based ("perturbation") methods: batch sizes fitted to the device and
batched, inference-mode scoring of many masked inputs without ever materialising them all at once.

The model is never copied or changed: every pass goes through ``model.forward`` (the model's own fast
forward) or ``model.forward_tokens`` (token dropping), under ``torch.inference_mode()``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from ..registry import Param, report_progress

__all__ = ["BATCH_SIZE", "auto_batch_size", "score_batches"]

BATCH_SIZE = Param(
    "batch_size", "int", 0, "Masked inputs per forward pass (0 = automatic: sized to the device's free "
    "memory on a GPU, a few dozen on the CPU). Changes the speed and memory, never the map.",
    min=0, max=1024, step=1)

CPU_BATCH = 32  # per-image throughput of small ViTs on the CPU is flat beyond ~16 images
GPU_MAX_BATCH = 256


def auto_batch_size(model, tokens: int | None = None, requested: int = 0) -> int:
    """The number of inputs per forward pass: ``requested`` when > 0, else a size fitted to the device.

    tokens: sequence length of one input (default: the model's full sequence at its input size).
    On a GPU the size is estimated from the free memory and the activation size of one input (the
    widest activation, the MLP hidden layer, plus attention scores when the kernel materialises them);
    on the CPU a fixed size whose per-image throughput is close to the best (override with the
    ``VIT_EXPLAIN_CPU_BATCH`` environment variable).
    """
    if requested and requested > 0:
        return int(requested)
    if model.device.type != "cuda":
        return max(1, int(os.environ.get("VIT_EXPLAIN_CPU_BATCH", CPU_BATCH)))
    if tokens is None:
        gh, gw = model.grid()
        tokens = gh * gw + model.num_prefix_tokens
    hidden = model.blocks[0].fc1.out_features
    elem = model.patch_conv.weight.element_size()
    per_input = elem * tokens * (4 * model.embed_dim + 2 * hidden) + elem * model.num_heads * tokens * tokens
    per_input += elem * 3 * model.input_size[0] * model.input_size[1] * 2  # the masked image itself
    try:
        free, _ = torch.cuda.mem_get_info(model.device)
    except Exception:  # pragma: no cover - odd CUDA setups
        return 64
    return int(max(1, min(GPU_MAX_BATCH, (0.5 * free) // max(1, per_input))))


def score_batches(model, make: Callable[[int, int], torch.Tensor], count: int, target, batch_size: int,
                  *, tokens: bool = False, run: Callable | None = None, progress=None, done: int = 0,
                  total: int | None = None) -> torch.Tensor:
    """The target's score for ``count`` inputs built on demand, in batches.

    target: a bound target of ONE image (``bound.select(b)``: the class probability for class targets, the value
    for the others) or a class index (its softmax probability).
    make(start, stop) returns inputs ``start..stop-1``: images (b, 3, H, W) for ``model.outputs`` or, with
    ``tokens=True``, token sequences (b, n, D) for ``model.forward_tokens`` (or a pair (tokens, kept patch
    indices), which RoPE models need); with ``run``, whatever ``make`` returns goes through ``run(inputs) ->
    Outputs`` instead (a partial forward from an intermediate block). Progress is reported as ``done + i`` out of
    ``total`` after each batch.
    Returns a (count,) float tensor on the device.
    """
    out = torch.empty(count, device=model.device)
    total = count if total is None else total
    if not hasattr(target, "score"):
        from ..targets import class_bound

        target = class_bound(int(target), model.device)
    with torch.inference_mode():
        for start in range(0, count, batch_size):
            stop = min(count, start + batch_size)
            inp = make(start, stop)
            if run is not None:
                res = run(inp)
            elif tokens:
                t, keep = inp if isinstance(inp, tuple) else (inp, None)
                res = model.forward_tokens(t, keep=keep, full=True)
            else:
                res = model.outputs(inp)
            out[start:stop] = target.score(res).float()
            report_progress(progress, done + stop, total)
    return out
