"""Command line: ``python -m explainers explain|list|evaluate|sanity|lens|heads|norms ...``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def _parse_params(items: list[str]) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"--param expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def cmd_list(args) -> int:
    from . import METHODS

    if args.json:
        print(json.dumps([METHODS[n].describe() for n in METHODS], indent=2))
        return 0
    for name in METHODS:
        m = METHODS[name]
        print(f"{name:24s} {m.display_name}  [{m.cost}]")
        for p in m.params:
            d = p.describe()
            rng = f" in [{d['min']}, {d['max'] if d['max'] is not None else 'L-1'}]" if d["min"] is not None else ""
            ch = f" one of {'/'.join(p.choices)}" if p.choices else ""
            print(f"    {p.name}={p.default!r} ({p.kind}{rng}{ch}): {p.help}")
    return 0


def save_heatmap_png(positions: np.ndarray, path: Path, image=None, alpha: float = 0.5, cmap: str = "jet") -> None:
    """Write colour positions (H, W) in [0, 1] (``Explanation.display()``) as a colour-mapped PNG, overlaid on
    ``image`` (PIL) if given."""
    from PIL import Image

    from .viz import colorize, overlay

    out = overlay(image, positions, alpha=alpha, cmap=cmap) if image is not None else \
        Image.fromarray(colorize(positions, cmap))
    out.save(path)


def _size(text):
    if text is None:
        return None
    parts = [p for p in str(text).lower().replace("x", ",").split(",") if p.strip()]
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise SystemExit(f"--img-size expects N or H,W (e.g. 224 or 224,320); got {text!r}") from None
    if len(vals) not in (1, 2) or min(vals) < 1:
        raise SystemExit(f"--img-size expects N or H,W (e.g. 224 or 224,320); got {text!r}")
    return vals[0] if len(vals) == 1 else tuple(vals)


def cli_target(model, args):
    """--target / --contrast / --prob / --region / --similar-to -> a target for ``explain``."""
    from .targets import ClassProbability, Contrast, Similarity
    from .text_cli import cli_text_target

    text = cli_text_target(model, args)  # --text / --labels (CLIP and SigLIP)
    if text is not None:
        return text
    chosen = [n for n in ("contrast", "region", "similar_to") if getattr(args, n, None) is not None]
    if len(chosen) > 1:
        raise SystemExit("choose one of --contrast, --region and --similar-to")
    if args.contrast is not None:
        if args.target is None:
            raise SystemExit("--contrast B needs --target A (explain A rather than B)")
        return Contrast(args.target, args.contrast)
    if args.region is not None:
        try:
            box = tuple(int(v) for v in args.region.split(","))
        except ValueError:
            box = ()
        if len(box) != 4:
            raise SystemExit(f"--region expects top,left,bottom,right in patches (e.g. 2,2,6,6); got {args.region!r}")
        return Similarity.to_region(box)
    if args.similar_to is not None:
        from .images import load_image

        return Similarity.to_image(model, load_image(args.similar_to), name=Path(args.similar_to).name)
    if args.prob:
        return ClassProbability(args.target)
    return args.target


def cmd_explain(args) -> int:
    from . import explain, load_image

    model = load_cli_model(args)
    image = load_image(args.image)
    exp = explain(model, image, method=args.method, target=cli_target(model, args), **_parse_params(args.param))
    exp = exp.with_display(args.scale, args.clip, args.cmap)
    x = model.preprocess(image)
    shown = model.to_pixels(x)[0].permute(1, 2, 0).cpu().numpy()
    from PIL import Image

    base = Image.fromarray((shown * 255).round().astype(np.uint8))
    save_heatmap_png(exp.display(), Path(args.out), image=None if args.no_overlay else base, cmap=exp.cmap)
    if args.npy:
        np.save(args.npy, exp.patch_map)
    print(json.dumps({**exp.to_dict(), "out": args.out, "npy": args.npy}, indent=2))
    for w in exp.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def program_name(argv0: str | None = None) -> str:
    """``vit-explain`` when run as the installed console script, else ``python -m explainers``."""
    name = Path(sys.argv[0] if argv0 is None else argv0).name
    return "vit-explain" if name.startswith("vit-explain") else "python -m explainers"


def add_model_args(p) -> None:
    """--model, --weights, --device, --image, --num-classes, --img-size (every subcommand explaining one image)."""
    p.add_argument("--model", required=True, help="timm name, Hugging Face id or local HF folder")
    p.add_argument("--weights", default=None, help="local weights file/folder (offline use)")
    p.add_argument("--device", default="auto")
    p.add_argument("--image", required=True)
    p.add_argument("--num-classes", type=int, default=None,
                   help="a new classifier of N classes (0: no classifier, explain a similarity target)")
    p.add_argument("--img-size", default=None, help="build the model for this input size: N or H,W (timm models)")


def add_target_args(p) -> None:
    """The target options read by :func:`cli_target`."""
    p.add_argument("--target", type=int, default=None, help="class index (default: the predicted class)")
    p.add_argument("--prob", action="store_true", help="explain the class probability instead of its logit")
    p.add_argument("--contrast", type=int, default=None, metavar="B",
                   help="explain --target rather than class B (logit difference)")
    p.add_argument("--region", default=None, metavar="T,L,B,R",
                   help="explain the similarity of the image's embedding to this patch region's (rows T..B-1, "
                        "cols L..R-1 of the patch grid); works for models without a classifier")
    p.add_argument("--similar-to", default=None, metavar="IMAGE",
                   help="explain the similarity of the image's embedding to another image's")
    from .text_cli import add_cli_options

    add_cli_options(p)  # --text, --labels, --templates, --text-contrast, --text-prob


def load_cli_model(args):
    from . import load_model

    return load_model(args.model, weights=args.weights, device=args.device, num_classes=args.num_classes,
                      img_size=_size(args.img_size))


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=program_name(), description="Explain ViT image classifiers.")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list the methods and their parameters")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("explain", help="explain one image")
    add_model_args(p)
    p.add_argument("--method", default="attention_rollout")
    add_target_args(p)
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE", help="method parameter")
    p.add_argument("--out", required=True, help="output PNG (heatmap overlaid on the model input)")
    p.add_argument("--no-overlay", action="store_true", help="write the bare colour-mapped heatmap")
    from .viz import COLORMAPS, SCALES

    p.add_argument("--scale", default=None, choices=SCALES,
                   help="how the raw map is drawn (default: symmetric for a signed map, so 0 is the diverging "
                        "map's centre colour; minmax for an unsigned one); metrics never depend on it")
    p.add_argument("--clip", type=float, default=0.0, metavar="PERCENT",
                   help="clip outliers: the top PERCENT %% of |values| get the end colour (captum's outlier_perc)")
    p.add_argument("--cmap", default=None, choices=COLORMAPS,
                   help="colour map (matplotlib's; default: bwr for --scale symmetric, else jet)")
    p.add_argument("--npy", default=None, help="also save the raw patch map as .npy")
    p.set_defaults(func=cmd_explain)

    try:  # the batch evaluation lives with the metrics
        from .evaluate import add_cli as _add_evaluate
    except ImportError:  # pragma: no cover
        _add_evaluate = None
    if _add_evaluate is not None:
        _add_evaluate(sub)
    from .sanity_run import add_cli as _add_sanity

    _add_sanity(sub)
    from .inside.cli import add_cli as _add_inside

    _add_inside(sub)  # lens, heads, norms
    return ap


def main(argv=None) -> int:
    from .errors import ExplainerError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ExplainerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
