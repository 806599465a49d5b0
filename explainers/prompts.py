"""Text prompts and templates, checked before any model pass (used by :mod:`explainers.text`).

A prompt (or zero-shot label) is a non-empty text; a template is text with exactly one ``{}`` where the prompt goes
and no other brace. The prompt is put into a template literally (:func:`fill`), never with ``str.format``: a template
can neither look up attributes of the prompt (``{0.__class__}``) nor ask for a 20-million-character padding
(``{0:>20000000}``), and ``{{}}`` is refused instead of silently dropping the prompt.
"""

from __future__ import annotations

from ._extras import require
from .errors import InvalidParameterError

__all__ = ["TEMPLATES", "MAX_PROMPTS", "MAX_TEMPLATES", "MAX_TEMPLATE_CHARS", "imagenet_classnames",
           "resolve_templates", "check_template", "fill", "clean_prompts"]

MAX_PROMPTS = 2000
MAX_TEMPLATES = 1000
MAX_TEMPLATE_CHARS = 1000


def _openai_templates() -> tuple[str, ...]:
    meta = require("open_clip.zero_shot_metadata", "the 'imagenet' prompt templates (OpenAI's, shipped with open_clip)")
    return tuple(t("{}") for t in meta.OPENAI_IMAGENET_TEMPLATES)


TEMPLATES = {"none": ("{}",), "simple": ("a photo of a {}.",), "imagenet": None}  # imagenet: read from open_clip


def imagenet_classnames() -> list[str]:
    """The 1000 ImageNet class names as written for CLIP's zero-shot evaluation (OpenAI's curated list)."""
    meta = require("open_clip.zero_shot_metadata", "the CLIP ImageNet class names (shipped with open_clip)")
    return list(meta.IMAGENET_CLASSNAMES)


def resolve_templates(templates) -> tuple[str, ...]:
    """None / "none" / "simple" / "imagenet" / a template / a list of templates -> a tuple of templates.

    A template is text with exactly one ``{}``, where the prompt goes, and no other brace: the prompt is put in
    literally (:func:`fill`), never with ``str.format``, so ``{0}``, ``{!r}``, ``{{}}``, ``{0.attr}`` or a format
    spec are refused instead of being interpreted."""
    if templates is None:
        return TEMPLATES["none"]
    if isinstance(templates, str):
        key = templates.strip().lower()
        if key == "imagenet":
            return _openai_templates()
        if key in TEMPLATES:
            return TEMPLATES[key]
        if "{" not in templates and "}" not in templates:
            raise InvalidParameterError(
                f"unknown templates {templates[:80]!r}: use none, simple, imagenet or a text with {{}} where the "
                "prompt goes, e.g. 'a photo of a {}.'")
        return (check_template(templates),)
    if isinstance(templates, (bytes, bytearray)) or not hasattr(templates, "__iter__"):
        raise InvalidParameterError(f"templates must be a name (none, simple, imagenet), a text with {{}} or a list "
                                    f"of such texts; got {type(templates).__name__}")
    out = tuple(check_template(t) for t in templates)
    if not out:
        raise InvalidParameterError("an empty list of templates; give at least one, e.g. ['a photo of a {}.']")
    if len(out) > MAX_TEMPLATES:
        raise InvalidParameterError(f"{len(out)} templates given; at most {MAX_TEMPLATES}")
    return out


def check_template(template) -> str:
    """``template`` when it is a valid template (text with exactly one ``{}`` and no other brace), else an
    :class:`InvalidParameterError` naming what is wrong."""
    if not isinstance(template, str):
        raise InvalidParameterError(f"a template must be text with {{}} where the prompt goes; got "
                                    f"{type(template).__name__}")
    shown = repr(template[:80]) + ("…" if len(template) > 80 else "")
    if len(template) > MAX_TEMPLATE_CHARS:
        raise InvalidParameterError(f"template {shown} has {len(template)} characters; at most {MAX_TEMPLATE_CHARS}")
    n = template.count("{}")
    if n == 0:
        raise InvalidParameterError(f"template {shown} has no {{}}: every template must contain {{}} where the "
                                    "prompt goes, e.g. 'a photo of a {}.'")
    if n > 1:
        raise InvalidParameterError(f"template {shown} has {n} placeholders {{}}; a template has exactly one, "
                                    "where the prompt goes")
    rest = template.replace("{}", "")
    if "{" in rest or "}" in rest:
        raise InvalidParameterError(
            f"template {shown} has braces besides its one {{}}: the prompt is put in literally, never with "
            "str.format, so field names ({0}), conversions ({!r}), format specs and escaped braces ({{ }}) are not "
            "allowed; remove the other braces")
    return template


def fill(template: str, prompt: str) -> str:
    """The text of ``prompt`` in ``template`` (a checked template: its one ``{}`` replaced, literally)."""
    return template.replace("{}", prompt, 1)


def clean_prompts(prompts) -> tuple[str, ...]:
    if isinstance(prompts, str):
        prompts = [prompts]
    if isinstance(prompts, (bytes, bytearray)) or not hasattr(prompts, "__iter__"):
        raise InvalidParameterError(f"text prompts / labels must be a text or a list of texts; got "
                                    f"{type(prompts).__name__}" + (" (decode bytes first)" if isinstance(
                                        prompts, (bytes, bytearray)) else ""))
    prompts = list(prompts)
    if any(isinstance(p, (bytes, bytearray)) for p in prompts):
        raise InvalidParameterError("text prompts / labels must be texts, not bytes: decode them first")
    out = tuple(str(p).strip() for p in prompts)
    if not out or any(not p for p in out):
        raise InvalidParameterError("a text prompt must be a non-empty string")
    if len(out) > MAX_PROMPTS:
        raise InvalidParameterError(f"{len(out)} prompts given; at most {MAX_PROMPTS}")
    return out
