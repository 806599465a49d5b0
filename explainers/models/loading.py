"""Loading by name: timm names, Hugging Face ids or folders, torchvision names, with local weights or the hub.

Every name is checked before anything is built or downloaded: what is not a supported Vision Transformer family
(ConvNets, Swin's and SAM's windowed attention, hybrid CNN stems, text models) is refused with its reason."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch

from ..errors import ModelLoadError, UnsupportedModelError
from .adapters import wrap
from .core import ViTModel, resolve_device
from .guards import cached, check_size, hub_error, hub_reachable, max_params_limit, need_hub

__all__ = ["load_model", "model_summary", "hub_reachable", "max_params_limit", "TIMM_FAMILIES", "HF_TYPES",
           "TORCHVISION_NAMES"]

TIMM_FAMILIES = {"vision_transformer": "ViT", "deit": "DeiT", "eva": "EVA / RoPE ViT", "beit": "BEiT",
                 "vision_transformer_relpos": "relative-position ViT"}
TIMM_REFUSED = {
    "swin_transformer": "Swin attends within shifted local windows, not globally over the patch tokens",
    "swin_transformer_v2": "Swin attends within shifted local windows, not globally over the patch tokens",
    "vision_transformer_sam": "SAM's image encoder uses windowed attention",
    "vision_transformer_hybrid": "its patch tokens come from a CNN stem, not from image patches",
}
HF_TYPES = {"vit", "deit", "dinov2", "dinov2_with_registers", "ijepa", "beit", "data2vec-vision", "clip",
            "clip_vision_model", "siglip", "siglip_vision_model"}
TORCHVISION_NAMES = {"vit_b_16", "vit_b_32", "vit_l_16", "vit_l_32", "vit_h_14"}
MAX_NAME = 200


def _find_weights_file(p: Path, backend: str) -> Path:
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
            f"{path.name!r} holds pickled Python objects besides tensors; refused, because weights files are loaded "
            "with torch.load(weights_only=True) and never run as code. Save a plain state dict "
            "(torch.save(model.state_dict(), ...)) or, better, a .safetensors file.") from None
    except Exception as e:
        raise ModelLoadError(f"could not read weights file {path.name!r} ({type(e).__name__}: {str(e)[:200]}); "
                             "it may be truncated or not a weights file: download it again") from None
    for key in ("state_dict", "model", "model_ema"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ModelLoadError(f"{path.name!r} does not hold a state dict")
    return state


def _timm_family(name: str) -> str:
    import timm

    base = name.split(".")[0].removeprefix("timm/")
    if not (timm.is_model(name) or timm.is_model(base)):
        raise ModelLoadError(
            f"unknown model {name!r}: not a timm model name, a torchvision ViT name, a Hugging Face id (owner/name) "
            "or a local folder. Try e.g. 'deit_tiny_patch16_224' or 'facebook/deit-tiny-patch16-224'.")
    module = timm.models.model_entrypoint(base).__module__
    mod = module.rsplit(".", 1)[-1]
    if mod in TIMM_REFUSED:
        raise UnsupportedModelError(f"{name!r} is not supported: {TIMM_REFUSED[mod]}.")
    if mod not in TIMM_FAMILIES:
        raise UnsupportedModelError(
            f"{name!r} ({mod}) is not a Vision Transformer with global attention over patch tokens (supported timm "
            f"families: {', '.join(sorted(set(TIMM_FAMILIES.values())))}).")
    return mod


def _fit_timm_state(model, state: dict, new_head: bool, new_size: bool) -> dict:
    """Local weights for a model built with another ``num_classes`` (a head of another size keeps its fresh
    initialisation; the weights' own number of classes keeps their head)
    or ``img_size`` (the position embedding is resampled, as timm does for its own pretrained weights)."""
    own = model.state_dict()
    if new_size:
        from timm.models.vision_transformer import checkpoint_filter_fn

        try:
            state = checkpoint_filter_fn(dict(state), model)
        except Exception:  # noqa: BLE001 - another family's layout: the strict load below says what does not fit
            pass
    if new_head:  # a head of another size (or none: num_classes=0) replaces the weights' own
        fits = all(k in own and tuple(v.shape) == tuple(own[k].shape)
                   for k, v in state.items() if k.startswith("head."))
        if not fits:
            state = {k: v for k, v in state.items() if not k.startswith("head.")}
            state.update({k: v for k, v in own.items() if k.startswith("head.")})
    return state


def _load_timm(name, weights, device, num_classes, img_size, pretrained, limit=None):
    import timm

    kwargs = {}
    if num_classes is not None:
        kwargs["num_classes"] = int(num_classes)
    if img_size is not None:
        kwargs["img_size"] = img_size
    state = weights_path = None
    if weights is not None:
        weights_path = _find_weights_file(Path(weights), "timm")
        state = _read_state_dict(weights_path)
        if num_classes is None:
            head_w = state.get("head.weight")
            kwargs["num_classes"] = head_w.shape[0] if head_w is not None else 0
        pretrained = False
    def meta_build():
        try:
            return timm.create_model(name, pretrained=False, dynamic_img_size=True, **kwargs)
        except TypeError:
            return timm.create_model(name, pretrained=False, **kwargs)

    check_size(name, meta_build, limit)
    if pretrained:
        need_hub(name)
    model = None
    for dyn in (True, False):  # BEiT and relpos models take no dynamic_img_size
        try:
            model = timm.create_model(name, pretrained=pretrained, **({"dynamic_img_size": True} if dyn else {}),
                                      **kwargs)
            break
        except TypeError as e:
            if not dyn:
                raise ModelLoadError(f"could not build {name!r} with {kwargs}: {e}") from None
        except RuntimeError as e:
            if "Unknown model" in str(e):
                raise ModelLoadError(f"unknown timm model {name!r}") from None
            raise hub_error(name, e) from None
        except Exception as e:  # hub download failures: OSError, HTTP errors, LocalEntryNotFoundError, ...
            raise hub_error(name, e) from None
    if state is not None:
        state = _fit_timm_state(model, state, num_classes is not None, img_size is not None)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ModelLoadError(
                f"the weights in {weights_path.name} do not fit the timm architecture {name!r} "
                f"({str(e).splitlines()[0][:200]} ...). Pass weights made for this model, or the name of the model "
                "they were made for.") from None
    return wrap(model, name, device, weights_path=weights_path)


def _load_hf(name, weights, device, num_classes, pretrained, limit=None):
    source, weights_path = name, None
    if weights is not None:
        wp = Path(weights)
        if wp.is_dir() and (wp / "hf").is_dir() and not (wp / "config.json").exists():
            wp = wp / "hf"
        if not (wp.is_dir() and (wp / "config.json").exists()):
            raise ModelLoadError(
                f"weights={Path(weights).name!r} is not a Hugging Face model folder (a folder with config.json and "
                "model.safetensors); for a Hugging Face model pass such a folder")
        source, weights_path = str(wp), wp
    local = weights is not None
    if not local and not cached(name):
        need_hub(name)
    import transformers
    from transformers import AutoConfig, AutoImageProcessor

    try:
        config = AutoConfig.from_pretrained(source, local_files_only=local, trust_remote_code=False)
    except Exception as e:
        if local:
            raise ModelLoadError(f"could not read config.json in {Path(source).name!r}: {str(e)[:200]}") from None
        raise hub_error(name, e) from None
    mtype = getattr(config, "model_type", "")
    if mtype not in HF_TYPES:
        raise UnsupportedModelError(
            f"{name!r} is a {mtype or 'unknown'} model, not a supported Vision Transformer (Hugging Face types: "
            f"{', '.join(sorted(HF_TYPES))}).")
    arch = (getattr(config, "architectures", None) or [""])[0]
    cls = getattr(transformers, arch, None) if arch else None
    if cls is None or num_classes:
        cls = transformers.AutoModelForImageClassification if (num_classes or getattr(config, "id2label", None)) \
            and mtype not in ("clip", "siglip", "clip_vision_model", "siglip_vision_model") else transformers.AutoModel
    check_size(name, lambda: cls.from_config(config), limit)
    kw = {"attn_implementation": "eager", "trust_remote_code": False}
    if num_classes:
        kw.update(num_labels=int(num_classes), ignore_mismatched_sizes=True)
    try:
        if not local and not pretrained:
            model = cls.from_config(config, attn_implementation="eager")
        else:
            model = cls.from_pretrained(source, local_files_only=local, **kw)
    except Exception as e:
        if local:
            raise ModelLoadError(
                f"could not load the Hugging Face model in {Path(source).name!r} ({type(e).__name__}: "
                f"{str(e)[:200]}); its weights file may be truncated, pickled or of another model") from None
        raise hub_error(name, e) from None
    try:
        proc = AutoImageProcessor.from_pretrained(source, local_files_only=local, trust_remote_code=False)
    except Exception:
        proc = None
    return wrap(model, name, device, proc=proc, weights_path=weights_path)


def _load_torchvision(name, weights, device, num_classes, pretrained, limit=None):
    import torchvision

    base = name.removeprefix("torchvision:")
    kw = {"num_classes": int(num_classes)} if num_classes else {}
    state = weights_path = None
    if weights is not None:
        weights_path = _find_weights_file(Path(weights), "torchvision")
        state = _read_state_dict(weights_path)
        head = state.get("heads.head.weight")
        if head is not None and not num_classes:
            kw["num_classes"] = head.shape[0]
    check_size(name, lambda: getattr(torchvision.models, base)(weights=None, **kw), limit)
    if pretrained and state is None:
        need_hub(name)
    try:
        model = getattr(torchvision.models, base)(weights="DEFAULT" if (pretrained and state is None) else None, **kw)
    except Exception as e:
        raise hub_error(name, e) from None
    if state is not None:
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise ModelLoadError(f"the weights in {weights_path.name} do not fit {base!r}: "
                                 f"{str(e).splitlines()[0][:200]}") from None
    return wrap(model, name, device, weights_path=weights_path)


def _kind_of(name: str) -> str:
    p = Path(name)
    if p.is_dir() and (p / "config.json").exists():
        return "hf"
    if name.startswith("torchvision:") or name in TORCHVISION_NAMES:
        return "torchvision"
    if "/" in name and not name.startswith("timm/"):
        return "hf"
    return "timm"


def load_model(name: str, weights: str | os.PathLike | None = None, device: str = "auto", *,
               num_classes: int | None = None, img_size: int | tuple[int, int] | None = None,
               verify: bool = True, max_params: int | str | None = None) -> ViTModel:
    """Load a Vision Transformer from timm, Hugging Face or torchvision and wrap it for the explainers.

    name: a timm name (``deit_tiny_patch16_224``, ``eva02_small_patch14_224.mim_in22k``, ...), a Hugging Face id
        (``facebook/deit-tiny-patch16-224``, ``openai/clip-vit-base-patch16``) or local folder, or a torchvision
        name (``vit_b_16``, or ``torchvision:vit_b_16``).
    weights: None -> the hub; a path -> a local ``.safetensors``/``.pth`` file or a folder (a timm folder with
        ``model.safetensors``, an HF folder with ``config.json``, or a folder holding ``timm/`` and ``hf/``);
        ``"random"`` -> untrained weights (tests, architecture checks).
    num_classes: a new classifier of that size (0 = no classifier: a backbone, explained with a similarity target).
    img_size: build the model for another input size (timm models; the position embedding is resampled).
    device: "auto" (CUDA when present), "cpu", "cuda", "cuda:1", ...
    max_params: refuse architectures with more parameters (default: ``VIT_EXPLAIN_MAX_PARAMS``, else no limit),
        counted on the meta device before anything is allocated or downloaded.
    """
    dev = resolve_device(device)
    limit = max_params_limit(max_params)
    if not isinstance(name, str) or not name.strip():
        raise ModelLoadError("model name must be a non-empty string")
    name = name.strip()
    if len(name) > MAX_NAME:
        raise ModelLoadError(f"model name is {len(name)} characters long (at most {MAX_NAME}); check what was typed")
    if num_classes is not None and (isinstance(num_classes, bool) or int(num_classes) != num_classes
                                    or num_classes < 0):
        raise ModelLoadError(f"num_classes must be an integer >= 0, got {num_classes!r}")
    pretrained = True
    if isinstance(weights, str) and weights == "random":
        weights, pretrained = None, False
    try:
        missing = weights is not None and not Path(weights).exists()
    except (OSError, ValueError):  # too long for the file system, a NUL byte: no such file either
        missing = True
    if missing:
        raise ModelLoadError(f"weights path {Path(str(weights)[:200]).name!r} does not exist")
    kind = _kind_of(name)
    with torch.no_grad():
        if name.startswith(("open_clip:", "hf-hub:")):  # open_clip models (explainers.models.open_clip_vit)
            from .open_clip_vit import load_open_clip

            model = load_open_clip(name, "random" if not pretrained else weights, dev, limit)
        elif kind == "hf":
            if weights is None and Path(name).is_dir():
                weights = name
            model = _load_hf(name, weights, dev, num_classes, pretrained, limit)
        elif kind == "torchvision":
            model = _load_torchvision(name, weights, dev, num_classes, pretrained, limit)
        else:
            _timm_family(name)
            model = _load_timm(name, weights, dev, num_classes, img_size, pretrained, limit)
    if verify:
        model.verify()
    return model


def model_summary(model: ViTModel) -> dict:
    """Plain-data description of a loaded model (for reports; the weights are named, never given as a path)."""
    return {
        "name": model.name, "source": model.source, "family": model.family, "layers": model.num_layers,
        "heads": model.num_heads, "embed_dim": model.embed_dim, "prefix_tokens": model.num_prefix_tokens,
        "pooling": model.pooling.kind, "patch_size": list(model.patch_size), "input_size": list(model.input_size),
        "num_classes": model.num_classes, "parameters": int(sum(p.numel() for p in model.module.parameters())),
        "weights": Path(model.weights_path).name if model.weights_path else None,
    }
