"""Command-line options for text prompts (CLIP and SigLIP): ``explain --text/--labels/--templates`` and
``evaluate --zero-shot``. The library side is :mod:`explainers.text`."""

from __future__ import annotations

from .errors import InvalidParameterError
from .text import TextContrast, TextProbability, TextSimilarity, imagenet_classnames, zero_shot, zero_shot_classifier

__all__ = ["add_cli_options", "cli_text_target", "add_evaluate_options", "evaluate_model"]

# -- command line --------------------------------------------------------------------------------------------------
def add_cli_options(p) -> None:
    """``--text``, ``--labels``, ``--templates``, ``--text-contrast``, ``--text-prob`` for ``explain``."""
    p.add_argument("--text", default=None, metavar="PROMPT",
                   help="CLIP/SigLIP: explain where the image matches this text prompt (its zero-shot logit)")
    p.add_argument("--labels", default=None, metavar="A,B,C",
                   help="comma-separated prompts scored against --text (zero-shot probability; mask methods and "
                        "metrics); alone: explain the top zero-shot label. 'imagenet': the 1000 ImageNet classes")
    p.add_argument("--templates", default=None, choices=["none", "simple", "imagenet"],
                   help="prompt templates: none (as typed), simple ('a photo of a {}.'), imagenet (80-template "
                        "ensemble)")
    p.add_argument("--text-contrast", default=None, metavar="PROMPT", help="explain --text rather than this prompt")
    p.add_argument("--text-prob", action="store_true", help="explain the zero-shot probability of --text")


def cli_text_target(model, args):
    """The text target the options ask for, or None when no text option was given."""
    text, labels = getattr(args, "text", None), getattr(args, "labels", None)
    if text is None and labels is None and getattr(args, "text_contrast", None) is None:
        return None
    if labels is not None:
        labels = imagenet_classnames() if labels.strip().lower() == "imagenet" else \
            [v.strip() for v in labels.split(",") if v.strip()]
    if text is None:
        if not labels:
            raise InvalidParameterError("--text-contrast needs --text (explain --text rather than the other prompt)")
        from .images import load_image

        text = zero_shot(model, load_image(args.image), labels, args.templates, top=1)[0][0]
    if getattr(args, "text_contrast", None):
        return TextContrast(text, args.text_contrast, labels, args.templates)
    if getattr(args, "text_prob", False):
        return TextProbability(text, labels, args.templates)
    return TextSimilarity(text, labels, args.templates)


def add_evaluate_options(p) -> None:
    """``--zero-shot LABELS`` and ``--zero-shot-templates`` for ``evaluate``."""
    p.add_argument("--zero-shot", default=None, metavar="imagenet|A,B,C",
                   help="CLIP/SigLIP: classify zero-shot over these labels (imagenet: the 1000 classes, in the order "
                        "of boxes.json's labels) and explain the zero-shot prediction")
    p.add_argument("--zero-shot-templates", default="simple", choices=["none", "simple", "imagenet"],
                   help="prompt templates for --zero-shot (default simple: 'a photo of a {}.')")


def evaluate_model(model, args):
    """The model ``evaluate`` scores: ``model`` itself, or its zero-shot classifier with ``--zero-shot``."""
    spec = getattr(args, "zero_shot", None)
    if spec is None:
        return model
    labels = "imagenet" if spec.strip().lower() == "imagenet" else [v.strip() for v in spec.split(",") if v.strip()]
    if not labels:
        raise InvalidParameterError("--zero-shot needs imagenet or comma-separated labels")
    return zero_shot_classifier(model, labels, args.zero_shot_templates)

