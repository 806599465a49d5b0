"""The wrapper every method reads: :class:`ViTModel`, built by a family adapter over the model's own modules.

``ViTModel.trace`` runs the network through the model's own sub-modules with the attention core written out
(``softmax(q k^T * scale + bias) @ v``), so attention probabilities, pre-softmax scores, q/k/v and every
intermediate activation are ordinary tensors of the autograd graph. Nothing is attached to the model: no hooks,
no flags switched, so a call cannot leave the model changed, and many threads can explain with one shared model.
``ViTModel.outputs`` runs the same path on the fused attention kernel, for the masked passes of the perturbation
methods and metrics: both work at any input size the model's position embedding can be resampled to. At load time
the traced outputs are checked against the model's own forward.

The wrapper holds no closures: ``copy.deepcopy(model)`` is an independent, consistent model (sanity checks
randomise such copies).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..errors import ImageError, ModelLoadError, UnsupportedModelError
from .blocks import Context, Outputs, Trace, block_fast, block_traced, pool_outputs
from .rules import balanced_pass

__all__ = ["Adapter", "Preprocessing", "ViTModel", "resolve_device"]

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
        from ..images import prepare_image

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



class Adapter:
    """How one model family is read. Subclasses (one file per family) implement the hooks below; instances hold
    no state, so the wrapper stays deep-copyable."""

    family = ""  # shown in messages and the README's support table
    source = ""  # "timm", "hf", "torchvision"
    any_size = True  # the position embedding resamples to other input sizes

    @classmethod
    def matches(cls, module) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def parts(self, module):
        """-> (blocks, pooling, num_prefix_tokens, patch_size); raise UnsupportedModelError with the reason."""
        raise NotImplementedError

    def embed(self, module, x) -> tuple[torch.Tensor, Context]:
        raise NotImplementedError

    def patch_conv(self, module):
        raise NotImplementedError

    def own_outputs(self, module, x) -> Outputs:
        """The model's own forward (its own attention kernel), for the load-time check."""
        raise NotImplementedError

    def preprocessing(self, module, proc=None) -> Preprocessing:
        raise NotImplementedError

    def labels(self, module, n: int) -> list[str]:
        return [f"class {i}" for i in range(n)]

    def supports_any_size(self, module) -> bool:
        return self.any_size

    def patch_embed(self, module, x) -> torch.Tensor:
        conv = self.patch_conv(module)
        return conv(x).flatten(2).transpose(1, 2)


class ViTModel:
    """A loaded Vision Transformer plus everything the explainers read from it.

    Attributes: ``name``, ``source``, ``family``, ``module`` (the torch model, eval mode), ``device``,
    ``num_prefix_tokens``, ``patch_size``, ``input_size``, ``num_layers``, ``num_heads``, ``embed_dim``,
    ``num_classes`` (0 for a backbone / embedding model), ``labels``, ``blocks`` (:class:`BlockParts`),
    ``pooling`` (:class:`Pooling`; ``head`` is the same object), ``preprocessing``.
    """

    def __init__(self, module, adapter: Adapter, name: str, device, proc=None, weights_path=None, labels=None):
        self.module = module
        self.adapter = adapter
        self.name = name
        self.device = device
        self.source = adapter.source
        self.family = adapter.family
        blocks, pooling, n_prefix, patch = adapter.parts(module)
        self.blocks = blocks
        self.pooling = self.head = pooling
        self.num_prefix_tokens = int(n_prefix)
        self.patch_size = tuple(int(p) for p in patch)
        self.preprocessing = adapter.preprocessing(module, proc)
        self.input_size = tuple(self.preprocessing.input_size)
        self.patch_conv = adapter.patch_conv(module)
        head = pooling.head
        self.num_classes = int(head.out_features) if head is not None else 0
        self.labels = labels if labels is not None else adapter.labels(module, self.num_classes)
        self.num_layers = len(blocks)
        self.num_heads = blocks[0].num_heads
        self.embed_dim = blocks[0].proj.out_features
        self.weights_path = weights_path
        self.any_size = bool(adapter.supports_any_size(module))
        self.lock = threading.RLock()  # trace() never mutates the model; offered to code that must

    def __deepcopy__(self, memo):
        """An independent model: the module and every part copied together (parts keep pointing into the copy)."""
        import copy

        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            setattr(new, k, threading.RLock() if k == "lock" else copy.deepcopy(v, memo))
        return new

    def __repr__(self) -> str:
        return (f"ViTModel({self.name!r}, family={self.family}, layers={self.num_layers}, heads={self.num_heads}, "
                f"prefix_tokens={self.num_prefix_tokens}, pooling={self.pooling.kind}, classes={self.num_classes}, "
                f"device={self.device})")

    # -- input ---------------------------------------------------------------------------------------------
    def preprocess(self, image) -> torch.Tensor:
        """PIL image (any mode) or path -> (1, 3, H, W) float tensor with the model's own normalisation."""
        return self.preprocessing(image).to(self.device)

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        return self.preprocessing.to_pixels(x)

    def grid(self, x=None) -> tuple[int, int]:
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
                "use model.preprocess() or crop to a multiple of the patch size")
        if not self.any_size and tuple(x.shape[-2:]) != tuple(self.input_size):
            raise ImageError(
                f"this {self.family} model only runs at the input size it was built for, {self.input_size} (its "
                f"position embedding is fixed to that grid); got {tuple(x.shape[-2:])}. Use model.preprocess(), or "
                "load the model with img_size=... (command line: --img-size)")
        return x.to(self.device, dtype=self.patch_conv.weight.dtype)

    # -- passes --------------------------------------------------------------------------------------------
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens after patch embedding, prefix tokens and position embedding: the input of block 0."""
        return self.adapter.embed(self.module, x)[0]

    def patch_embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch-embedding output (B, n_patches, D), before prefix tokens and positions."""
        return self.adapter.patch_embed(self.module, x)

    def outputs(self, x: torch.Tensor) -> Outputs:
        """Embedding and logits through the library's own path on the fused attention kernel (any input size).
        A gradient pass under :func:`~explainers.models.rules.libragrad` runs the traced path with its rules."""
        if balanced_pass():
            return self.trace(x).outputs
        t, ctx = self.adapter.embed(self.module, x)
        for i, bp in enumerate(self.blocks):
            t = block_fast(bp, t, ctx, i)
        return pool_outputs(self.pooling, t, self.num_prefix_tokens)

    def outputs_and_last_norm1(self, x: torch.Tensor) -> tuple[Outputs, torch.Tensor]:
        """:meth:`outputs` and the last block's first-norm output (B, N, D), on the same fused path (the CAMs that
        need no gradient read these tokens without tracing every block)."""
        t, ctx = self.adapter.embed(self.module, x)
        last = len(self.blocks) - 1
        for i, bp in enumerate(self.blocks[:last]):
            t = block_fast(bp, t, ctx, i)
        h1 = self.blocks[last].norm1(t)
        t = block_fast(self.blocks[last], t, ctx, last, h=h1)
        return pool_outputs(self.pooling, t, self.num_prefix_tokens), h1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> logits (B, C), or the embedding (B, E) for a model without classes."""
        out = self.outputs(x)
        return out.logits if out.logits is not None else out.embedding

    def forward_tokens(self, tokens: torch.Tensor, keep: torch.Tensor | None = None, start: int = 0,
                       full: bool = False):
        """Run blocks ``start..L-1`` and the pooling on a token sequence (token dropping works).

        keep: (B, n) indices of the patch tokens kept (after the prefix tokens), needed by RoPE models to rotate
        each kept token by its own position. Returns logits (or the embedding), or :class:`Outputs` with full."""
        ctx = self._token_context(tokens, keep) if start < self.num_layers else None
        for i, bp in enumerate(self.blocks[start:], start):
            tokens = block_fast(bp, tokens, ctx, i)
        out = pool_outputs(self.pooling, tokens, self.num_prefix_tokens)
        if full:
            return out
        return out.logits if out.logits is not None else out.embedding

    def _token_context(self, tokens, keep) -> Context:
        if any(bp.rel_bias is not None for bp in self.blocks):
            raise UnsupportedModelError(
                f"{self.family}: token dropping is not available for models with a relative position bias; "
                "choose a method that masks pixels instead")
        if not any(bp.rope >= 0 for bp in self.blocks):
            return Context(grid=self.grid())
        if keep is None:
            raise UnsupportedModelError(f"{self.family}: token dropping on a RoPE model needs the kept positions")
        gh, gw = self.grid()
        _, ctx = self.adapter.embed(self.module, torch.zeros(1, 3, gh * self.patch_size[0], gw * self.patch_size[1],
                                                                device=self.device, dtype=tokens.dtype))

        def pick(r):
            return r[keep].unsqueeze(1)  # (B, 1, n, dim): one rotation per kept token and image

        rope = [pick(r) for r in ctx.rope] if ctx.rope_per_block else pick(ctx.rope)
        return Context(grid=ctx.grid, rope=rope, rope_per_block=ctx.rope_per_block)

    def trace(self, x: torch.Tensor, *, keep_scores: bool = False, keep_activations: bool = False,
              keep_patch_tokens: bool = False, stop_after: int | None = None) -> Trace:
        """Forward pass through the model's own sub-modules with the attention core written out.

        Records attention probabilities of every block (and of a pooling probe), and on request pre-softmax
        scores, all block intermediates (for LRP) and the patch-embedding output. Runs under the caller's grad
        mode. ``stop_after=l`` stops after block ``l`` (logits are then None)."""
        tr = Trace(logits=None)
        if keep_patch_tokens:
            tr.patch_tokens = self.patch_embed(x)
        t, ctx = self.adapter.embed(self.module, x)
        tr.embedded, tr.context = t, ctx
        for i, bp in enumerate(self.blocks):
            tr.block_inputs.append(t)
            t = block_traced(bp, t, tr, ctx, i, keep_scores, keep_activations)
            if stop_after is not None and i >= stop_after:
                return tr
        tr.final_tokens = t
        out = pool_outputs(self.pooling, t, self.num_prefix_tokens, tr, keep_activations)
        tr.logits, tr.embedding = out.logits, out.embedding
        return tr

    # -- self check ----------------------------------------------------------------------------------------
    def verify(self, atol: float = 1e-4, size: tuple[int, int] | None = None) -> float:
        """Compare traced outputs with the model's own forward on a random input; raise if they differ.
        Returns the largest difference relative to the largest output."""
        g = torch.Generator().manual_seed(0)
        H, W = size or self.input_size
        x = torch.randn(1, 3, H, W, generator=g).to(self.device, self.patch_conv.weight.dtype)
        with torch.inference_mode():
            ref = self.adapter.own_outputs(self.module, x)
            tr = self.trace(x)
            fast = self.outputs(x)
        worst = 0.0
        for name in ("logits", "embedding"):
            r = getattr(ref, name)
            if r is None:
                continue
            for ours in (getattr(tr, name), getattr(fast, name)):
                err = float((r - ours).abs().max())
                rel = err / (float(r.abs().max()) + 1e-6)
                worst = max(worst, rel if math.isfinite(err) else math.inf)
        if not worst <= atol * 10:  # fused kernels reorder sums; 1e-3 relative is far below any explanation effect
            raise UnsupportedModelError(
                f"{self.name}: the explainers' traced forward differs from the model's own forward (largest "
                f"relative difference {worst:.3g}); this {self.family} variant is not supported")
        return worst
