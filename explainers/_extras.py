"""Optional packages: import one, or say which extra of the distribution installs it.

The core install (``pip install vit-explain-studio``) explains, scores and evaluates; a few features need an
extra of the distribution:

- ``app`` (streamlit): the app (``vit-explain-studio``, ``streamlit run app.py``);
- ``clip`` (open_clip_torch, sentencepiece): open_clip models, OpenAI's prompt templates, SigLIP tokenizers;
- ``ray`` (ray): ``vit-explain evaluate --ray``;
- ``quantus`` (quantus): Quantus metrics on our explanations.

:func:`require` imports a module or raises :class:`~explainers.errors.MissingExtraError` naming the extra, never
a bare ``ModuleNotFoundError``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingExtraError

DISTRIBUTION = "vit-explain-studio"

# top-level module -> (extra, what needs it)
EXTRAS = {
    "streamlit": ("app", "the app"),
    "open_clip": ("clip", "open_clip models and CLIP prompt templates"),
    "sentencepiece": ("clip", "SigLIP tokenizers"),
    "ray": ("ray", "distributed evaluation (--ray)"),
    "quantus": ("quantus", "Quantus metrics"),
}


def install_hint(extra: str) -> str:
    """The command that installs an extra, e.g. ``pip install "vit-explain-studio[clip]"``."""
    return f'pip install "{DISTRIBUTION}[{extra}]"'


def missing_message(module: str, feature: str | None = None) -> str:
    top = module.split(".")[0]
    extra, default_feature = EXTRAS.get(top, (None, None))
    what = feature or default_feature or top
    if extra is None:
        return f"{what} needs the {top} package: pip install {top}"
    return f"{what} needs the optional package {top} (the {extra!r} extra): {install_hint(extra)}"


def require(module: str, feature: str | None = None) -> ModuleType:
    """Import ``module`` (e.g. ``"open_clip"`` or ``"open_clip.zero_shot_metadata"``); if its top-level package
    is not installed, raise :class:`~explainers.errors.MissingExtraError` naming the extra that installs it.
    ``feature`` words the message ("text prompts need ..."); by default the extra's own description is used."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        message = missing_message(module, feature)
        top = module.split(".")[0]
        if e.name and e.name.split(".")[0] != top:  # the package is there, one of its dependencies is not
            message += f" (importing {top} failed: no module named {e.name!r})"
        raise MissingExtraError(message) from None


def available(module: str) -> bool:
    """Whether ``module`` can be imported (without importing it)."""
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False
