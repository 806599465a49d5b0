"""The methods of Chefer et al. (CVPR 2021) built on layer-wise relevance propagation, read from the model's own
weights: transformer attribution, full LRP, last-layer relevance. The rules are in :mod:`._lrp_rules`."""

from __future__ import annotations

import copy
import threading
import weakref

import torch

from .. import text
from ..models import Outputs
from ..registry import Capture, Maps, Method, Param, register
from ..targets import ClassLogit, Contrast, bind
from ._common import LIBRAGRAD, START_LAYER, cls_row, new_capture, pooling_query, rollout_row
from ._lrp_rules import relprop
from .attention import CHEFER21, CHEFER21_URL

__all__ = ["TransformerAttribution", "FullLRP", "LRPLastLayer", "initial_relevance", "PRECISION"]


def initial_relevance(model, bound, trace):
    """Where the relevance pass starts: a one-hot on the explained class's logit (+1/-1 for a contrast), else
    ``e * dvalue/de`` on the embedding (for a cosine similarity: ``e * r / (|e| |r|)``, which sums to the value)."""
    logits = trace.logits.detach() if trace.logits is not None else None
    if isinstance(bound.target, (ClassLogit, Contrast)):
        R = torch.zeros_like(logits)
        if isinstance(bound.target, Contrast):
            R[:, int(bound.target.a)], R[:, int(bound.target.b)] = 1.0, -1.0
        else:
            R.scatter_(1, bound.classes[:, None], 1.0)
        return ("logits", R)
    e = trace.embedding.detach()
    ref = getattr(bound, "reference", None)
    if ref is not None:  # cosine similarity with the normalisation held constant: sums to the cosine
        r = ref.to(e.dtype).expand_as(e)
        return ("embedding", e * r / (e.norm(dim=-1, keepdim=True) * r.norm(dim=-1, keepdim=True)).clamp_min(1e-12))
    with torch.enable_grad():  # any other function of the embedding: gradient x input
        eg = e.clone().requires_grad_(True)
        out = Outputs(eg, model.pooling.head(eg) if model.pooling.head is not None else None)
        (g,) = torch.autograd.grad(bound.value(out).sum(), eg)
    return ("embedding", e * g)


def precision_param(default: str) -> Param:
    return Param(
        "precision", "choice", default, "Number format of the traced pass and the relevance pass. In float32 the "
        "LRP-0 rule of the attention products and the residual-addition rule cancel badly (100 ImageNet images, "
        "DeiT-Tiny, Spearman to float64: transformer attribution median 0.98, worst 0.57; full LRP median 0.54; "
        "last layer >= 0.9999; benchmarks/lrp_precision.py); float64 runs both on a float64 copy of the model (on "
        "the CPU for Apple's MPS), about 2x slower.", choices=("float32", "float64"))


# float32 where it agrees with float64 or where a speed target binds (transformer attribution: float64 costs
# 4.1x forward+backward against the 3x target, float32 2.0-2.7x); full LRP, whose float32 map is near-arbitrary
# (median Spearman 0.54 to float64), computes in float64 unless asked otherwise.
PRECISION = precision_param("float32")


# One float64 copy per model, reused while the model's weights are unchanged: the copy costs as much as a
# float64 full LRP pass on a small model. Only models up to F64_CACHE_BYTES of float64 weights are kept (DeiT-Tiny:
# 46 MB, ViT-S: 176 MB); larger ones are copied per call, so a server never holds a second copy of a ViT-B.
F64_CACHE_BYTES = 256 * 2**20
_F64_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_F64_LOCK = threading.Lock()


def _weights_fingerprint(model) -> tuple:
    """Changes whenever a parameter or buffer is replaced, moved or edited in place (autograd's version counter)."""
    ts = list(model.module.parameters()) + list(model.module.buffers())
    return (str(model.device),) + tuple((id(t), t.data_ptr(), t._version, t.dtype) for t in ts)


def _float64_copy(model):
    """A float64 copy of ``model`` (a new one, or the cached one while ``model``'s weights are unchanged)."""
    size = 8 * sum(p.numel() for p in model.module.parameters())
    key = _weights_fingerprint(model) if size <= F64_CACHE_BYTES else None
    if key is not None:
        with _F64_LOCK:
            hit = _F64_CACHE.get(model)
        if hit is not None and hit[0] == key:
            return hit[1]
    m = copy.deepcopy(model)
    if m.device.type == "mps":  # no float64 there
        m.device = torch.device("cpu")
    m.module.to(device=m.device, dtype=torch.float64)
    text.share_tokenizer(model, m)  # a CLIP/SigLIP model's tokenizer, given or loaded once
    if key is not None:
        with _F64_LOCK:
            _F64_CACHE[model] = (key, m)
    return m


def lrp_capture(model, x, target, *, grads: bool, to_pixels: bool = False, stop_layer: int = 0,
                precision: str = "float32") -> Capture:
    """Traced forward (+ backward for attention gradients) and one relevance pass (``precision="float64"``: on a
    float64 copy of the model; the capture's logits and scores are returned in float32)."""
    if precision == "float64" and x.dtype != torch.float64:
        m64 = _float64_copy(model)
        cap = lrp_capture(m64, x.to(m64.device, torch.float64), target, grads=grads, to_pixels=to_pixels,
                          stop_layer=stop_layer)
        cap.logits = cap.logits.float() if cap.logits is not None else None
        return cap
    with torch.enable_grad() if grads else torch.no_grad():
        xin = x.detach().clone().requires_grad_(True) if grads else x
        tr = model.trace(xin, keep_activations=True, keep_patch_tokens=to_pixels)
        bound = bind(model, target, tr.outputs, x)
        G = Gp = None
        if grads:
            y = bound.value(tr.outputs).sum()
            probe = tr.probe_attention is not None
            gs = torch.autograd.grad(y, list(tr.attentions) + ([tr.probe_attention] if probe else []),
                                     allow_unused=True)
            gs = [torch.zeros_like(a) if g is None else g for g, a in
                  zip(gs, list(tr.attentions) + ([tr.probe_attention] if probe else []))]
            G = torch.stack(gs[:model.num_layers])
            Gp = gs[-1] if probe else None
    with torch.no_grad():  # not inference mode: RoPE's rule differentiates through the rotation
        tr.acts = [{k: v.detach() for k, v in a.items() if v is not None} for a in tr.acts]
        if tr.probe_acts is not None:
            tr.probe_acts = {k: v.detach() for k, v in tr.probe_acts.items() if isinstance(v, torch.Tensor)}
        for name in ("final_tokens", "embedding", "pre_projection", "patch_tokens", "embedded", "logits"):
            v = getattr(tr, name)
            if isinstance(v, torch.Tensor):
                setattr(tr, name, v.detach())
        res = relprop(model, tr, initial_relevance(model, bound, tr), stop_layer=stop_layer, to_pixels=to_pixels,
                      x=x, tokens=False)
    cap = new_capture(model, x, tr, bound, x.shape[0])
    cap.state["RA"] = torch.stack([res.attn[i] for i in range(stop_layer, model.num_layers)])
    cap.state["first"] = stop_layer
    cap.state["query"] = pooling_query(model, tr)
    if res.probe is not None:  # the probe's row: its relevance (times its gradient), as for every attention layer
        w = res.probe * Gp if Gp is not None else res.probe
        cap.state["rquery"] = w.clamp(min=0).mean(dim=(1, 2)).float()
    if G is not None:
        cap.state["G"] = G
    if to_pixels:
        cap.state["pixels"] = res.pixels
    return cap


def _query(cap):
    return cap.state.get("rquery", cap.state["query"])


@register
class TransformerAttribution(Method):
    """Chefer et al. CVPR 2021, "Transformer Interpretability Beyond Attention Visualization".

    One forward, one backward (attention gradients ∇A_l of the target logit), one LRP pass from a one-hot
    relevance at the target class (relevance R^{A_l} of each attention map at the A·V product). Per layer
    ``Ā_l = mean_h((∇A_l ⊙ R^{A_l})^+)`` (clamp, then head mean, as in Chefer's ViT_LRP.py), ``Ā_l + I``
    without row normalisation, product over blocks ``start_layer..L-1``, CLS row.

    ``head_reduction="mean_then_clamp"`` and ``normalize_rows=True`` reproduce the mxz2013 adaptation.
    Chefer's evaluation scripts used ``start_layer=1``; notebooks and this default use 0.
    """

    name = "transformer_attribution"
    display_name = "Transformer Attribution (LRP)"
    paper, paper_url = CHEFER21, CHEFER21_URL
    cost = "1 forward + 1 backward + 1 relevance pass"
    family = "lrp"
    description = ("Combines layer-wise relevance of each attention map with its gradient for the target "
                   "class and rolls the result out through the layers.")
    params = (
        START_LAYER,
        Param("head_reduction", "choice", "clamp_then_mean",
              "Order of ReLU and head mean: Chefer's ViT_LRP.py clamps first; the mxz2013 adaptation "
              "averages heads first.", choices=("clamp_then_mean", "mean_then_clamp"), cheap=True),
        Param("normalize_rows", "bool", False,
              "Row-normalise Ā+I before multiplying (mxz2013); Chefer's code has this commented out.", cheap=True),
        PRECISION,
        LIBRAGRAD,
    )

    def capture(self, model, x, target, params, progress=None) -> Capture:
        return lrp_capture(model, x, target, grads=True, precision=params["precision"])

    def reduce(self, cap, params) -> Maps:
        s = params["start_layer"]
        first = cap.state["first"]
        prod = cap.state["G"][s:] * cap.state["RA"][s - first:]
        if params["head_reduction"] == "clamp_then_mean":
            w = prod.clamp(min=0).mean(2)
        else:
            w = prod.mean(2).clamp(min=0)
        row = rollout_row(w, identity="add", normalize="row" if params["normalize_rows"] else None, row=_query(cap))
        return Maps(cls_row(row, cap.state["prefix"], cap.grid))


@register
class FullLRP(Method):
    """Full LRP (Chefer et al.'s "full" baseline): relevance propagated through every block and the patch
    embedding (z^B rule) down to the pixels, summed over colour channels. ``patch_map`` is the pixel
    relevance summed per patch; the heatmap is the pixel map itself."""

    name = "lrp_full"
    display_name = "Full LRP (pixels)"
    paper, paper_url = CHEFER21 + " (baseline, after Bach et al. 2015)", CHEFER21_URL
    cost = "1 forward + 1 relevance pass"
    family = "lrp"
    description = "Layer-wise relevance propagation from the class score all the way down to the input pixels."
    params = (precision_param("float64"),)
    signed = True  # pixel relevance: positive for the target, negative against it

    def capture(self, model, x, target, params, progress=None) -> Capture:
        return lrp_capture(model, x, target, grads=False, to_pixels=True, precision=params["precision"])

    def reduce(self, cap, params) -> Maps:
        pix = cap.state["pixels"].sum(1)  # (B, H, W)
        B = pix.shape[0]
        gh, gw = cap.grid
        ph, pw = pix.shape[1] // gh, pix.shape[2] // gw
        patch = pix.reshape(B, gh, ph, gw, pw).sum((2, 4))
        return Maps(patch, pixel_maps=pix)


@register
class LRPLastLayer(Method):
    """Relevance of the last block's attention map (R^{A_L}, clamped at 0, head mean), CLS row
    (Chefer et al.'s "last layer" LRP baseline). ``multiply_gradient`` multiplies by ∇A_L first (their
    ``is_ablation`` variant)."""

    name = "lrp_last_layer"
    display_name = "LRP of the last attention layer"
    paper, paper_url = CHEFER21 + " (baseline)", CHEFER21_URL
    cost = "1 forward + 1 backward + 1 relevance pass through the last block"
    family = "lrp"
    description = "The relevance that layer-wise relevance propagation assigns to the last attention map."
    params = (Param("multiply_gradient", "bool", False,
                    "Multiply the relevance by the attention gradient (Chefer's ablation).", cheap=True), PRECISION)

    def capture(self, model, x, target, params, progress=None) -> Capture:
        return lrp_capture(model, x, target, grads=True, stop_layer=model.num_layers - 1,
                           precision=params["precision"])

    def reduce(self, cap, params) -> Maps:
        r = cap.state["RA"][-1]
        if params["multiply_gradient"]:
            r = r * cap.state["G"][-1]
        if "rquery" in cap.state:  # an attention-pooling probe: its relevance row is the last attention's
            row = cap.state["rquery"]
        else:
            row = (_query(cap)[:, None, None, :] @ r.clamp(min=0).float()).mean(1)[:, 0]
        return Maps(cls_row(row, cap.state["prefix"], cap.grid))
