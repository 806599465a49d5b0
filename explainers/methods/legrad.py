"""LeGrad: explainability for ViTs via feature-formation sensitivity (Bousselham et al., 2024).

For every block l, the block's output tokens are mapped to class scores with the model's own head (final
norm, pooling, classifier): s^l. The gradient of the target's s^l w.r.t. that block's attention
probabilities A^l, clamped at 0 and averaged over heads and query tokens, gives one map over the key tokens;
the prefix tokens are dropped and the maps of the blocks from ``start_layer`` on are summed. The attention
values themselves are not multiplied in: the gradient is the signal.
"""

from __future__ import annotations

import torch

from ..registry import Capture, Maps, Method, Param, register
from ..targets import bind
from ._common import LIBRAGRAD, new_capture

__all__ = ["LeGrad"]


@register
class LeGrad(Method):
    """LeGrad (Bousselham et al. 2024; WalBouss/LeGrad).

    ``pooling="model"`` (default) reads each block's output exactly as the classifier reads the last one
    (the model's own pooling: class token, class/distillation average or patch mean, then its norm and head);
    ``pooling="mean"`` averages all tokens first, as the authors' code does for its CLIP towers (and
    torchcam's ``LeGrad`` by default). Both are checked against torchcam (tests). One traced forward; one
    short backward per block (from s^l through that block only), together about one full backward.
    """

    name = "legrad"
    display_name = "LeGrad"
    paper = ("Bousselham, Boggust, Chaybouti, Strobelt & Kuehne, LeGrad: An Explainability Method for Vision "
             "Transformers via Feature Formation Sensitivity, 2024 (ICCV 2025)")
    paper_url = "https://arxiv.org/abs/2404.03214"
    cost = "1 forward + 1 backward (one short backward per block)"
    family = "attention"
    description = ("The positive gradient of each block's own class score w.r.t. that block's attention, "
                   "summed over the blocks.")
    params = (
        Param("start_layer", "int", 0, "First block whose map is summed (the authors' CLIP code uses the last "
              "two blocks by default, the paper all).", min=0,
              max=lambda m: (m.num_layers - 1) if m is not None else None, cheap=True),
        Param("pooling", "choice", "model", "How a block's tokens become class scores: the model's own pooling "
              "or the mean of all tokens (the authors' CLIP code, torchcam).", choices=("model", "mean")),
        LIBRAGRAD,
    )

    def capture(self, model, x, target, params, progress=None) -> Capture:
        P = model.num_prefix_tokens
        with torch.enable_grad():
            xg = x.detach().clone().requires_grad_(True)
            tr = model.trace(xg)
            bound = bind(model, target, tr.outputs, x)
            L = len(tr.attentions)
            outs = list(tr.block_inputs[1:]) + [tr.final_tokens]
            maps = []
            for layer in range(L):
                z = outs[layer]
                if params["pooling"] == "mean":  # identical tokens: any pooling returns their mean
                    z = z.mean(1, keepdim=True).expand(-1, z.shape[1], -1)
                last = layer == L - 1 and params["pooling"] == "model"
                s = tr.outputs if last else model.forward_tokens(z, start=L, full=True)
                (g,) = torch.autograd.grad(bound.value(s).sum(), tr.attentions[layer],
                                           retain_graph=layer < L - 1)
                maps.append(g.clamp(min=0).mean((1, 2))[:, P:].float())
        cap = new_capture(model, x, tr, bound, x.shape[0])
        cap.state["maps"] = torch.stack(maps)  # (L, B, n)
        return cap

    def reduce(self, cap, params) -> Maps:
        m = cap.state["maps"][params["start_layer"]:].sum(0)
        return Maps(m.reshape(m.shape[0], *cap.grid))
