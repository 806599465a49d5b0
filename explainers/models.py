"""Model backends: one wrapper, :class:`ViTModel`, over timm and Hugging Face ViT classifiers.

The wrapper reads what every method needs from the model itself (prefix tokens, patch size, grid, heads,
layers, the classifier head) and exposes the transformer as a list of :class:`BlockParts`: handles on the
model's *own* sub-modules (norms, q/k/v projections, output projection, MLP, LayerScale).

``ViTModel.trace`` runs the network through those same sub-modules with the attention core written out
(``softmax(q k^T * scale) @ v``), so attention probabilities, pre-softmax scores, q/k/v and every
intermediate activation are ordinary tensors of the autograd graph. Nothing is attached to the model:
no forward or backward hooks, no change of timm's ``fused_attn`` flag, no output_attentions switch. A call
therefore cannot leave the model changed, even when it raises, and many threads can explain with one
shared model at once. At load time the traced logits are checked against the model's own forward, so the
explanations are always of the real network.
"""

from __future__ import annotations

import inspect
import math
import os
import pickle
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .errors import ImageError, ModelLoadError, UnsupportedModelError, WeightsUnavailableError

__all__ = ["BlockParts", "HeadParts", "Trace", "ViTModel", "load_model", "resolve_device", "wrap_hf", "wrap_timm"]


# ----------------------------------------------------------------------------------------------------------
# Uniform views of a transformer block and of the classifier head
# ----------------------------------------------------------------------------------------------------------
@dataclass
class BlockParts:
    """Handles on one pre-norm transformer block's sub-modules (timm ``Block`` or HF ``*Layer``)."""

    norm1: nn.Module
    q: nn.Linear | None  # separate projections (HF) ...
    k: nn.Linear | None
    v: nn.Linear | None
    qkv: nn.Linear | None  # ... or one fused projection (timm), output laid out as (3, heads, head_dim)
    proj: nn.Linear
    ls1: nn.Module | None
    norm2: nn.Module
    fc1: nn.Linear
    act: nn.Module
    mid_norm: nn.Module | None
    fc2: nn.Linear
    ls2: nn.Module | None
    num_heads: int
    head_dim: int
    scale: float

    def qkv_weight(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The (3*H*d, D) weight and bias of the q/k/v projection, fused layout, whichever the model uses."""
        if self.qkv is not None:
            return self.qkv.weight, self.qkv.bias
        w = torch.cat([self.q.weight, self.k.weight, self.v.weight], 0)
        biases = [m.bias for m in (self.q, self.k, self.v)]
        b = None if all(b is None for b in biases) else torch.cat(
            [b if b is not None else torch.zeros_like(m.weight[:, 0]) for b, m in zip(biases, (self.q, self.k, self.v))]
        )
        return w, b

    def project_qkv(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, N, _ = h.shape
        if self.qkv is not None:
            qkv = self.qkv(h).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
            return qkv[0], qkv[1], qkv[2]
        shape = (B, N, self.num_heads, self.head_dim)
        return tuple(m(h).view(shape).transpose(1, 2) for m in (self.q, self.k, self.v))  # type: ignore[return-value]

    def mlp(self, h: torch.Tensor) -> torch.Tensor:
        g = self.act(self.fc1(h))
        if self.mid_norm is not None:
            g = self.mid_norm(g)
        return self.fc2(g)


@dataclass
class HeadParts:
    """The classifier: final norm, pooling and linear layer(s).

    pool: ``"token"`` (token 0), ``"dist"`` (mean of the heads on tokens 0 and 1, DeiT-distilled),
    ``"avg"`` (mean of patch tokens), ``"token_avg"`` (concat of token 0 and the patch mean, HF DINOv2).
    """

    norm: nn.Module | None
    pool: str
    fc_norm: nn.Module | None
    head: nn.Module
    head_dist: nn.Module | None = None

    def __call__(self, x: torch.Tensor, num_prefix: int) -> torch.Tensor:
        if self.norm is not None:
            x = self.norm(x)
        if self.pool == "dist":
            return (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2
        pooled = self.pool_tokens(x, num_prefix)
        if self.fc_norm is not None:
            pooled = self.fc_norm(pooled)
        return self.head(pooled)

    def pool_tokens(self, x: torch.Tensor, num_prefix: int) -> torch.Tensor:
        if self.pool == "token":
            return x[:, 0]
        if self.pool == "avg":
            return x[:, num_prefix:].mean(1)
        if self.pool == "token_avg":
            return torch.cat([x[:, 0], x[:, num_prefix:].mean(1)], dim=-1)
        raise UnsupportedModelError(f"pooling {self.pool!r} is not supported")


@dataclass
class Trace:
    """Everything one traced forward pass recorded. Lists are indexed by block (0 = first block)."""

    logits: torch.Tensor
    attentions: list[torch.Tensor] = field(default_factory=list)  # (B, H, N, N) softmax probabilities
    scores: list[torch.Tensor] = field(default_factory=list)  # (B, H, N, N) pre-softmax q k^T * scale
    block_inputs: list[torch.Tensor] = field(default_factory=list)  # (B, N, D)
    acts: list[dict] = field(default_factory=list)  # per block intermediates, when keep_activations
    final_tokens: torch.Tensor | None = None  # (B, N, D) output of the last block (before the final norm)
    patch_tokens: torch.Tensor | None = None  # (B, n_patches, D) patch-embedding output, before positions
    embedded: torch.Tensor | None = None  # (B, N, D) tokens after position embedding (input of block 0)


# ----------------------------------------------------------------------------------------------------------
# Devices and preprocessing
# ----------------------------------------------------------------------------------------------------------
def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} was asked for but CUDA is not available here; use device='cpu'")
    return dev


@dataclass
class Preprocessing:
    """The model's own input pipeline: resize (shorter side), centre crop, scale to [0, 1], normalise."""

    input_size: tuple[int, int]
    resize: int | tuple[int, int]  # int: shorter side; tuple: exact (h, w)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"

    def __call__(self, image: Image.Image) -> torch.Tensor:
        from .images import prepare_image

        image = prepare_image(image)
        resample = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}.get(
            self.interpolation, Image.BICUBIC
        )
        H, W = self.input_size
        w, h = image.size
        if isinstance(self.resize, tuple):
            rw, rh = self.resize[1], self.resize[0]
        else:
            s = self.resize / min(w, h)
            rw, rh = max(W, round(w * s)), max(H, round(h * s))
        left, top = (rw - W) // 2, (rh - H) // 2
        if rw * rh <= 16 * H * W:  # resize, then centre crop (as timm and transformers do)
            image = image.resize((rw, rh), resample).crop((left, top, left + W, top + H))
        else:  # extreme aspect ratio (e.g. 20000x1): resample only the cropped region, memory stays bounded
            sx, sy = w / rw, h / rh
            image = image.resize((W, H), resample, box=(left * sx, top * sy, (left + W) * sx, (top + H) * sy))
        arr = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return ((arr - mean) / std).unsqueeze(0)

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Undo the normalisation: (…, 3, H, W) model input -> [0, 1] RGB."""
        mean = torch.tensor(self.mean, device=x.device).view(3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(3, 1, 1)
        return (x * std + mean).clamp(0, 1)


# ----------------------------------------------------------------------------------------------------------
# The wrapper
# ----------------------------------------------------------------------------------------------------------
class ViTModel:
    """A loaded ViT classifier plus everything the explainers need to read from it.

    Attributes: ``name``, ``source`` ("timm" or "hf"), ``module`` (the torch model, eval mode),
    ``device``, ``num_prefix_tokens``, ``patch_size`` (ph, pw), ``input_size`` (H, W), ``num_layers``,
    ``num_heads``, ``embed_dim``, ``num_classes``, ``labels``, ``blocks`` (list of :class:`BlockParts`),
    ``head`` (:class:`HeadParts`), ``preprocessing``.
    """

    def __init__(self, name, source, module, device, num_prefix_tokens, patch_size, blocks, head,
                 preprocessing, labels, embed_fn, patch_embed_fn, patch_conv, weights_path=None):
        self.name = name
        self.source = source
        self.module = module
        self.device = device
        self.num_prefix_tokens = int(num_prefix_tokens)
        self.patch_size = tuple(patch_size)
        self.blocks: list[BlockParts] = blocks
        self.head: HeadParts = head
        self.preprocessing: Preprocessing = preprocessing
        self.input_size = tuple(preprocessing.input_size)
        self.labels: list[str] = labels
        self.num_classes = len(labels)
        self.num_layers = len(blocks)
        self.num_heads = blocks[0].num_heads
        self.embed_dim = blocks[0].proj.out_features
        self.weights_path = weights_path
        self._embed_fn = embed_fn
        self._patch_embed_fn = patch_embed_fn
        self.patch_conv: nn.Conv2d = patch_conv
        # Not needed by trace() (which never mutates the model); offered to code that must mutate it.
        self.lock = threading.RLock()

    def __repr__(self) -> str:
        return (f"ViTModel({self.name!r}, source={self.source}, layers={self.num_layers}, heads={self.num_heads}, "
                f"prefix_tokens={self.num_prefix_tokens}, patch={self.patch_size}, device={self.device})")

    # -- input ---------------------------------------------------------------------------------------------
    def preprocess(self, image) -> torch.Tensor:
        """PIL image (any mode) or path -> (1, 3, H, W) float tensor with the model's own normalisation."""
        return self.preprocessing(image).to(self.device)

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        return self.preprocessing.to_pixels(x)

    def grid(self, x: torch.Tensor | tuple[int, int] | None = None) -> tuple[int, int]:
        """Patch grid (rows, cols) for an input tensor, an (H, W) size, or the default input size."""
        if x is None:
            H, W = self.input_size
        elif isinstance(x, torch.Tensor):
            H, W = x.shape[-2:]
        else:
            H, W = x
        return H // self.patch_size[0], W // self.patch_size[1]

    def check_input(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ImageError(f"expected an image tensor of shape (B, 3, H, W), got {shape}")
        ph, pw = self.patch_size
        if x.shape[-2] < ph or x.shape[-1] < pw:
            raise ImageError(f"input {tuple(x.shape[-2:])} is smaller than one {ph}x{pw} patch")
        if x.shape[-2] % ph or x.shape[-1] % pw:
            raise ImageError(
                f"input size {tuple(x.shape[-2:])} is not a multiple of the patch size {self.patch_size}; "
                "use model.preprocess() or crop to a multiple of the patch size"
            )
        return x.to(self.device, dtype=self.patch_conv.weight.dtype)

    # -- forward passes ------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's own forward (fused attention and all): (B, 3, H, W) -> logits (B, C)."""
        out = self.module(x)
        return out.logits if hasattr(out, "logits") else out

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens after patch embedding, prefix tokens and position embedding: the input of block 0."""
        return self._embed_fn(x)

    def patch_embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch-embedding output (B, n_patches, D), before prefix tokens and positions."""
        return self._patch_embed_fn(x)

    def forward_tokens(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Run blocks ``start..L-1`` and the head on a token sequence (any length: token dropping works)."""
        for bp in self.blocks[start:]:
            tokens = _block_fast(bp, tokens)
        return self.head(tokens, self.num_prefix_tokens)

    def trace(self, x: torch.Tensor, *, keep_scores: bool = False, keep_activations: bool = False,
              keep_patch_tokens: bool = False, stop_after: int | None = None) -> Trace:
        """Forward pass through the model's own sub-modules with the attention core written out.

        Records attention probabilities of every block (and, on request, pre-softmax scores, all block
        intermediates for LRP, and the patch-embedding output). Runs under whatever grad mode the caller
        chose: wrap it in ``torch.inference_mode()`` for attention-only methods, or differentiate
        ``trace.logits`` with ``torch.autograd.grad`` w.r.t. ``trace.attentions`` for gradient methods.
        ``stop_after=l`` stops after block ``l`` (logits are then None).
        """
        tr = Trace(logits=None)  # type: ignore[arg-type]
        if keep_patch_tokens:
            tr.patch_tokens = self.patch_embed(x)
        t = self.embed(x)
        tr.embedded = t
        for i, bp in enumerate(self.blocks):
            tr.block_inputs.append(t)
            t = _block_traced(bp, t, tr, keep_scores, keep_activations)
            if stop_after is not None and i >= stop_after:
                return tr
        tr.final_tokens = t
        tr.logits = self.head(t, self.num_prefix_tokens)
        return tr

    # -- self check ----------------------------------------------------------------------------------------
    def verify(self, atol: float = 1e-3) -> float:
        """Compare traced logits with the model's own forward on a random input; raise if they differ."""
        g = torch.Generator().manual_seed(0)
        H, W = self.input_size
        x = torch.randn(1, 3, H, W, generator=g).to(self.device, self.patch_conv.weight.dtype)
        with torch.inference_mode():
            ref = self.forward(x)
            ours = self.trace(x).logits
        err = float((ref - ours).abs().max())
        scale = float(ref.abs().max()) + 1e-6
        if not math.isfinite(err) or err > atol * max(1.0, scale):
            raise UnsupportedModelError(
                f"{self.name}: the explainers' traced forward differs from the model's own forward "
                f"(max |Δlogit| = {err:.3g}); this architecture variant is not supported"
            )
        return err


def _attention_core(bp: BlockParts, q, k, v):
    s = (q * bp.scale) @ k.transpose(-2, -1)
    a = s.softmax(dim=-1)
    return s, a, a @ v


def _merge_heads(o: torch.Tensor) -> torch.Tensor:
    B, H, N, d = o.shape
    return o.transpose(1, 2).reshape(B, N, H * d)


def _block_traced(bp: BlockParts, x: torch.Tensor, tr: Trace, keep_scores: bool, keep_acts: bool):
    h1 = bp.norm1(x)
    q, k, v = bp.project_qkv(h1)
    s, a, o = _attention_core(bp, q, k, v)
    tr.attentions.append(a)
    if keep_scores:
        tr.scores.append(s)
    o = _merge_heads(o)
    attn_out = bp.proj(o)
    branch1 = bp.ls1(attn_out) if bp.ls1 is not None else attn_out
    x_mid = x + branch1
    h2 = bp.norm2(x_mid)
    f1 = bp.fc1(h2)
    g = bp.act(f1)
    gn = bp.mid_norm(g) if bp.mid_norm is not None else g
    f2 = bp.fc2(gn)
    branch2 = bp.ls2(f2) if bp.ls2 is not None else f2
    out = x_mid + branch2
    if keep_acts:
        tr.acts.append(dict(x=x, h1=h1, q=q, k=k, v=v, a=a, o=o, branch1=branch1, x_mid=x_mid, h2=h2,
                            f1=f1, g=gn, branch2=branch2))
    return out


def _block_fast(bp: BlockParts, x: torch.Tensor) -> torch.Tensor:
    h = bp.norm1(x)
    q, k, v = bp.project_qkv(h)
    o = _merge_heads(F.scaled_dot_product_attention(q, k, v, scale=bp.scale))
    o = bp.proj(o)
    x = x + (bp.ls1(o) if bp.ls1 is not None else o)
    m = bp.mlp(bp.norm2(x))
    return x + (bp.ls2(m) if bp.ls2 is not None else m)


def _identity_or_none(m):
    return None if m is None or isinstance(m, nn.Identity) else m


# ----------------------------------------------------------------------------------------------------------
# timm
# ----------------------------------------------------------------------------------------------------------
def _timm_parts(model) -> tuple[list[BlockParts], HeadParts]:
    blocks = []
    for i, blk in enumerate(model.blocks):
        attn, mlp = getattr(blk, "attn", None), getattr(blk, "mlp", None)
        needed = ("norm1", "norm2", "ls1", "ls2")
        if attn is None or mlp is None or not all(hasattr(blk, n) for n in needed):
            raise UnsupportedModelError(f"block {i} ({type(blk).__name__}) is not a standard pre-norm ViT block")
        if not hasattr(attn, "qkv") or not isinstance(attn.qkv, nn.Linear):
            raise UnsupportedModelError(f"block {i}: attention without a fused qkv Linear is not supported")
        for opt in ("q_norm", "k_norm", "norm"):
            if _identity_or_none(getattr(attn, opt, None)) is not None:
                raise UnsupportedModelError(f"block {i}: attention with {opt} is not supported")
        if getattr(attn, "gate", None) is not None:
            raise UnsupportedModelError(f"block {i}: gated attention is not supported")
        if not (hasattr(mlp, "fc1") and hasattr(mlp, "fc2") and hasattr(mlp, "act")):
            raise UnsupportedModelError(f"block {i}: MLP type {type(mlp).__name__} (e.g. SwiGLU) is not supported")
        if type(blk).__name__ != "Block":
            raise UnsupportedModelError(f"block type {type(blk).__name__} is not supported")
        blocks.append(BlockParts(
            norm1=blk.norm1, q=None, k=None, v=None, qkv=attn.qkv, proj=attn.proj,
            ls1=_identity_or_none(blk.ls1), norm2=blk.norm2, fc1=mlp.fc1, act=mlp.act,
            mid_norm=_identity_or_none(getattr(mlp, "norm", None)), fc2=mlp.fc2, ls2=_identity_or_none(blk.ls2),
            num_heads=attn.num_heads, head_dim=attn.head_dim, scale=float(attn.scale),
        ))
    if getattr(model, "attn_pool", None) is not None:
        raise UnsupportedModelError("attention-pool ('map') heads are not supported")
    if hasattr(model, "head_dist") and model.head_dist is not None:
        head = HeadParts(norm=_identity_or_none(model.norm), pool="dist", fc_norm=None,
                         head=model.head, head_dist=model.head_dist)
    else:
        pool = model.global_pool
        if pool not in ("token", "avg"):
            raise UnsupportedModelError(f"global_pool={pool!r} is not supported (use 'token' or 'avg')")
        if pool == "avg" and getattr(model, "pool_include_prefix", False):
            raise UnsupportedModelError("average pooling that includes prefix tokens is not supported")
        head = HeadParts(norm=_identity_or_none(model.norm), pool=pool,
                         fc_norm=_identity_or_none(model.fc_norm), head=model.head)
    if isinstance(model.head, nn.Identity):
        raise UnsupportedModelError("the model has no classifier head (num_classes=0); load it with a classifier")
    return blocks, head


def _timm_embed_fns(model):
    def patch_embed(x):
        p = model.patch_embed(x)
        return p.reshape(p.shape[0], -1, p.shape[-1])

    def embed(x):
        t = model._pos_embed(model.patch_embed(x))
        t = model.patch_drop(t)
        return model.norm_pre(t)

    return embed, patch_embed


def _load_timm(name: str, weights, device, num_classes, pretrained: bool):
    import timm

    kwargs = {"dynamic_img_size": True}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    state = None
    weights_path = None
    if weights is not None:
        weights_path = _find_weights_file(Path(weights), backend="timm")
        state = _read_state_dict(weights_path)
        if num_classes is None:
            head_w = state.get("head.weight")
            if head_w is not None:
                kwargs["num_classes"] = head_w.shape[0]
        pretrained = False
    try:
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except RuntimeError as e:  # unknown model name
        if "Unknown model" in str(e):
            raise ModelLoadError(f"unknown timm model {name!r}: {e}") from None
        raise _hub_error(name, e) from e
    except TypeError:
        kwargs.pop("dynamic_img_size")
        model = timm.create_model(name, pretrained=pretrained, **kwargs)
    except Exception as e:  # hub download failures: OSError, HTTP errors, LocalEntryNotFoundError, ...
        raise _hub_error(name, e) from e
    if state is not None:
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ModelLoadError(
                f"the weights in {weights_path} do not fit the timm architecture {name!r} "
                f"({str(e).splitlines()[0]} ...). Pass weights made for this model, or the name of the model "
                "they were made for."
            ) from None
    return wrap_timm(model, name, device, weights_path)


def wrap_timm(model: nn.Module, name: str | None = None, device=None, weights_path=None) -> ViTModel:
    """Wrap an already built timm VisionTransformer (any weights) for the explainers."""
    import timm

    if not all(hasattr(model, a) for a in ("blocks", "patch_embed", "_pos_embed", "head")):
        raise UnsupportedModelError(
            f"{name or type(model).__name__}: {type(model).__name__} is not a plain Vision Transformer (no "
            "global attention blocks over patch tokens); use a ViT/DeiT/DINOv2-style model")
    device = next(model.parameters()).device if device is None else resolve_device(device)
    model.eval().to(device)
    cfg = timm.data.resolve_model_data_config(model)
    H, W = model.patch_embed.img_size  # the size the position embeddings were made for
    if tuple(cfg["input_size"][1:]) != (H, W):
        cfg["crop_pct"] = 1.0
    crop_pct = cfg.get("crop_pct", 1.0) or 1.0
    if cfg.get("crop_mode", "center") == "squash":
        resize = (int(H / crop_pct), int(W / crop_pct))
    else:
        resize = int(math.floor(min(H, W) / crop_pct))
    pre = Preprocessing(input_size=(H, W), resize=resize, mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
                        interpolation=cfg.get("interpolation", "bicubic"))
    labels = _imagenet_labels(model.num_classes)
    blocks, head = _timm_parts(model)
    embed, patch_embed = _timm_embed_fns(model)
    ps = model.patch_embed.patch_size
    name = name or getattr(model, "default_cfg", {}).get("architecture", type(model).__name__)
    return ViTModel(name, "timm", model, device, model.num_prefix_tokens, ps, blocks, head, pre, labels,
                    embed, patch_embed, model.patch_embed.proj, weights_path)


def _imagenet_labels(n: int) -> list[str]:
    if n in (1000, 11821, 21841, 21843, 11221):
        try:
            from timm.data import ImageNetInfo, infer_imagenet_subset

            subset = infer_imagenet_subset(n) if n != 1000 else "imagenet-1k"
            info = ImageNetInfo(subset)
            return [info.index_to_description(i) for i in range(n)]
        except Exception:  # pragma: no cover - label files missing
            pass
    return [f"class {i}" for i in range(n)]


# ----------------------------------------------------------------------------------------------------------
# Hugging Face transformers
# ----------------------------------------------------------------------------------------------------------
def _first_attr(obj, *names):
    for n in names:
        cur = obj
        ok = True
        for part in n.split("."):
            if not hasattr(cur, part):
                ok = False
                break
            cur = getattr(cur, part)
        if ok:
            return cur
    return None


def _hf_layers(base) -> nn.ModuleList:
    layers = _first_attr(base, "layers", "encoder.layer", "encoder.layers")
    if layers is None:
        raise UnsupportedModelError(f"{type(base).__name__}: could not find the transformer layers")
    return layers


def _hf_parts(model, base) -> tuple[list[BlockParts], HeadParts, int]:
    cfg = model.config
    blocks = []
    for i, layer in enumerate(_hf_layers(base)):
        attn = _first_attr(layer, "attention", "self_attn")
        q = _first_attr(attn, "q_proj", "attention.query")
        k = _first_attr(attn, "k_proj", "attention.key")
        v = _first_attr(attn, "v_proj", "attention.value")
        proj = _first_attr(attn, "o_proj", "out_proj", "output.dense")
        norm1 = _first_attr(layer, "layernorm_before", "norm1", "layer_norm1")
        norm2 = _first_attr(layer, "layernorm_after", "norm2", "layer_norm2")
        fc1 = _first_attr(layer, "mlp.fc1", "intermediate.dense")
        fc2 = _first_attr(layer, "mlp.fc2", "output.dense")
        act = _first_attr(layer, "mlp.activation_fn", "mlp.activation", "intermediate.intermediate_act_fn")
        if any(m is None for m in (q, k, v, proj, norm1, norm2, fc1, fc2, act)):
            raise UnsupportedModelError(
                f"layer {i} ({type(layer).__name__}): not a standard ViT layer (SwiGLU MLPs are not supported)")
        heads = int(cfg.num_attention_heads)
        head_dim = q.out_features // heads
        blocks.append(BlockParts(
            norm1=norm1, q=q, k=k, v=v, qkv=None, proj=proj,
            ls1=_first_attr(layer, "layer_scale1"), norm2=norm2, fc1=fc1, act=act, mid_norm=None, fc2=fc2,
            ls2=_first_attr(layer, "layer_scale2"), num_heads=heads, head_dim=head_dim,
            scale=float(getattr(attn, "scaling", head_dim ** -0.5)),
        ))
    norm = _first_attr(base, "layernorm", "post_layernorm")
    n_reg = int(getattr(cfg, "num_register_tokens", 0) or 0)
    emb = base.embeddings
    n_prefix = 1 + (1 if hasattr(emb, "distillation_token") else 0) + n_reg
    cls_name = type(model).__name__
    if hasattr(model, "distillation_classifier"):
        head = HeadParts(norm=norm, pool="dist", fc_norm=None, head=model.cls_classifier,
                         head_dist=model.distillation_classifier)
    elif cls_name.startswith("Dinov2"):
        head = HeadParts(norm=norm, pool="token_avg", fc_norm=None, head=model.classifier)
    elif hasattr(model, "classifier"):
        head = HeadParts(norm=norm, pool="token", fc_norm=None, head=model.classifier)
    else:
        raise UnsupportedModelError(f"{cls_name}: not an image classifier with a linear head")
    if isinstance(head.head, nn.Identity):
        raise UnsupportedModelError(f"{cls_name}: the model has no classifier head (num_labels=0)")
    return blocks, head, n_prefix


def _load_hf(name: str, weights, device, num_classes, pretrained: bool):
    from transformers import AutoConfig, AutoImageProcessor, AutoModelForImageClassification

    source = name
    weights_path = None
    if weights is not None:
        wp = Path(weights)
        if wp.is_dir() and (wp / "hf").is_dir() and not (wp / "config.json").exists():
            wp = wp / "hf"
        if not (wp.is_dir() and (wp / "config.json").exists()):
            raise ModelLoadError(
                f"weights={str(weights)!r} is not a Hugging Face model folder (a folder with config.json and "
                "model.safetensors); for an HF model pass such a folder")
        source = str(wp)
        weights_path = wp
    kw = {"attn_implementation": "eager"}
    try:
        if weights is None and not pretrained:
            config = AutoConfig.from_pretrained(source, **({"num_labels": num_classes} if num_classes else {}))
            model = AutoModelForImageClassification.from_config(config, attn_implementation="eager")
        else:
            if num_classes is not None:
                kw.update(num_labels=num_classes, ignore_mismatched_sizes=True)
            model = AutoModelForImageClassification.from_pretrained(
                source, local_files_only=weights is not None, **kw)
    except (OSError, ValueError) as e:
        if weights is not None:
            raise ModelLoadError(f"could not load the Hugging Face model in {source}: {e}") from None
        raise _hub_error(name, e) from e
    try:
        proc = AutoImageProcessor.from_pretrained(source, local_files_only=weights is not None)
    except Exception:
        proc = None
    return wrap_hf(model, name, device, proc, weights_path)


def wrap_hf(model: nn.Module, name: str | None = None, device=None, proc=None, weights_path=None) -> ViTModel:
    """Wrap an already built Hugging Face image classifier (ViT, DeiT, DINOv2 ...) for the explainers.
    ``proc`` is its image processor (defaults: resize to the config's image size, mean = std = 0.5)."""
    device = next(model.parameters()).device if device is None else resolve_device(device)
    name = name or getattr(model.config, "_name_or_path", "") or type(model).__name__
    model.eval().to(device)
    base = getattr(model, model.base_model_prefix)
    blocks, head, n_prefix = _hf_parts(model, base)
    emb = base.embeddings
    takes_interp = "interpolate_pos_encoding" in inspect.signature(emb.forward).parameters

    def embed(x):
        return emb(x, interpolate_pos_encoding=True) if takes_interp else emb(x)

    patch_mod = emb.patch_embeddings
    conv = patch_mod.projection

    def patch_embed(x):
        return conv(x).flatten(2).transpose(1, 2)

    cfg = model.config
    ps = cfg.patch_size if isinstance(cfg.patch_size, (tuple, list)) else (cfg.patch_size, cfg.patch_size)
    size = cfg.image_size if isinstance(cfg.image_size, (tuple, list)) else (cfg.image_size, cfg.image_size)
    pre = _hf_preprocessing(proc, tuple(size))
    id2label = getattr(cfg, "id2label", None) or {}
    n = head.head.out_features
    labels = [str(id2label.get(i, id2label.get(str(i), f"class {i}"))) for i in range(n)]
    if all(lab.startswith("LABEL_") for lab in labels):
        labels = _imagenet_labels(n)
    return ViTModel(name, "hf", model, device, n_prefix, ps, blocks, head, pre, labels, embed, patch_embed,
                    conv, weights_path)


def _hf_preprocessing(proc, size) -> Preprocessing:
    mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    resize: int | tuple[int, int] = size
    crop = size
    interp = "bilinear"
    if proc is not None:
        mean = tuple(getattr(proc, "image_mean", mean))
        std = tuple(getattr(proc, "image_std", std))
        s = getattr(proc, "size", None) or {}
        s = dict(s) if not isinstance(s, int) else {"shortest_edge": s}
        cs = getattr(proc, "crop_size", None)
        do_crop = bool(getattr(proc, "do_center_crop", False)) and cs
        if "height" in s and "width" in s:
            resize = (int(s["height"]), int(s["width"]))
        elif "shortest_edge" in s:
            resize = int(s["shortest_edge"])
        if do_crop:
            cs = dict(cs)
            crop = (int(cs["height"]), int(cs["width"]))
        elif isinstance(resize, tuple):
            crop = resize
        resample = getattr(proc, "resample", None)
        interp = {3: "bicubic", 2: "bilinear", 0: "nearest"}.get(int(resample) if resample is not None else 2,
                                                                "bilinear")
    return Preprocessing(input_size=crop, resize=resize, mean=mean, std=std, interpolation=interp)


# ----------------------------------------------------------------------------------------------------------
# Loading entry point
# ----------------------------------------------------------------------------------------------------------
def _find_weights_file(p: Path, backend: str) -> Path:
    if not p.exists():
        raise ModelLoadError(f"weights path {str(p)!r} does not exist")
    if p.is_dir():
        for sub in (p / backend, p):
            for fname in ("model.safetensors", "pytorch_model.bin", "model.pth", "model.pt"):
                if (sub / fname).is_file():
                    return sub / fname
            files = sorted(list(sub.glob("*.safetensors")) + list(sub.glob("*.pth")) + list(sub.glob("*.pt")))
            if len(files) == 1:
                return files[0]
        raise ModelLoadError(f"no weights file (.safetensors or .pth) found in folder {str(p)!r}")
    return p


def _read_state_dict(path: Path) -> dict:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)  # never unpickles code
    except pickle.UnpicklingError:
        raise ModelLoadError(
            f"{str(path)!r} holds pickled Python objects besides tensors; refused, because weights files are "
            "loaded with torch.load(weights_only=True) and never run as code. Save a plain state dict "
            "(torch.save(model.state_dict(), ...)) or, better, a .safetensors file.") from None
    except Exception as e:
        raise ModelLoadError(f"could not read weights file {str(path)!r}: {str(e)[:300]}") from None
    for key in ("state_dict", "model", "model_ema"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ModelLoadError(f"{str(path)!r} does not hold a state dict")
    return state


def _hub_error(name: str, e: Exception) -> WeightsUnavailableError:
    env = "VIT_EXPLAIN_WEIGHTS"
    return WeightsUnavailableError(
        f"could not download the weights of {name!r} from the hub ({type(e).__name__}: {str(e)[:200]}). "
        f"If this machine is offline, pass weights=<path to a .safetensors/.pth file or a Hugging Face model "
        f"folder> (command line: --weights PATH; app: set {env}), or weights='random' for an untrained model."
    )


def _is_hf_name(name: str) -> bool:
    p = Path(name)
    if p.is_dir() and (p / "config.json").exists():
        return True
    return "/" in name and not name.startswith("timm/") and not p.exists()


def load_model(name: str, weights: str | os.PathLike | None = None, device: str = "auto", *,
               num_classes: int | None = None, verify: bool = True) -> ViTModel:
    """Load a ViT classifier from timm or Hugging Face and wrap it for the explainers.

    name: a timm model name (``deit_tiny_patch16_224``, ``vit_small_patch14_reg4_dinov2.lvd142m``, ...), a
        Hugging Face id (``facebook/deit-tiny-patch16-224``) or a local Hugging Face model folder.
    weights: None -> download from the hub; a path -> a local ``.safetensors``/``.pth`` file or a folder
        (a timm folder with ``model.safetensors``, an HF folder with ``config.json``, or a folder holding
        ``timm/`` and ``hf/`` subfolders, picked by the kind of ``name``); ``"random"`` -> untrained weights
        (for tests and architecture checks).
    device: "auto" (CUDA when present), "cpu", "cuda", "cuda:1", ...
    """
    dev = resolve_device(device)
    if not isinstance(name, str) or not name.strip():
        raise ModelLoadError("model name must be a non-empty string")
    name = name.strip()
    pretrained = True
    if isinstance(weights, str) and weights == "random":
        weights, pretrained = None, False
    if weights is not None and not Path(weights).exists():
        raise ModelLoadError(f"weights path {str(weights)!r} does not exist")
    with torch.no_grad():
        if _is_hf_name(name):
            if weights is None and Path(name).is_dir():
                weights = name
            model = _load_hf(name, weights, dev, num_classes, pretrained)
        else:
            import timm

            base_name = name.split(".")[0].removeprefix("timm/")
            if not timm.is_model(name) and not timm.is_model(base_name):
                raise ModelLoadError(
                    f"unknown model {name!r}: not a timm model name and not a Hugging Face id "
                    "(owner/name) or local folder. Try e.g. 'deit_tiny_patch16_224' or "
                    "'facebook/deit-tiny-patch16-224'.")
            model = _load_timm(name, weights, dev, num_classes, pretrained)
    if verify:
        model.verify()
    return model


def model_summary(model: ViTModel) -> dict:
    """Plain-data description of a loaded model (for reports)."""
    return {
        "name": model.name, "source": model.source, "layers": model.num_layers, "heads": model.num_heads,
        "embed_dim": model.embed_dim, "prefix_tokens": model.num_prefix_tokens,
        "patch_size": list(model.patch_size), "input_size": list(model.input_size),
        "num_classes": model.num_classes,
        "parameters": int(sum(p.numel() for p in model.module.parameters())),
        "weights": str(model.weights_path) if model.weights_path else None,
    }

