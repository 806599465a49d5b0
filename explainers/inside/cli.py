"""Command line: ``python -m explainers lens|heads|norms --model M --image I --out-dir D``, each writing a CSV
table and a PNG picture (Pillow only) and printing a short JSON summary."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["add_cli", "write_csv", "strip_png", "grid_png", "norms_png", "norms_overlay"]

TILE = 112  # pixels per layer tile in the lens strip


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _scaled(a: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    lo = float(np.min(a)) if lo is None else lo
    hi = float(np.max(a)) if hi is None else hi
    return np.zeros_like(a, dtype=np.float64) if hi - lo <= 1e-12 else (a - lo) / (hi - lo)


def strip_png(maps: np.ndarray, image: Image.Image, path: Path, cmap: str = "jet") -> None:
    """(L, gh, gw) maps -> one row of L tiles over the image, all on one colour range (layer 1 on the left)."""
    from ..viz import overlay

    lo, hi = float(maps.min()), float(maps.max())
    L = maps.shape[0]
    out = Image.new("RGB", (L * TILE, TILE), "white")
    base = image.convert("RGB").resize((TILE, TILE))
    for i, m in enumerate(maps):
        tile = np.asarray(Image.fromarray((_scaled(m, lo, hi) * 255).astype(np.uint8)).resize((TILE, TILE),
                                                                                             Image.BILINEAR)) / 255.0
        out.paste(overlay(base, tile, alpha=0.55, cmap=cmap), (i * TILE, 0))
        ImageDraw.Draw(out).text((i * TILE + 4, 2), str(i + 1), fill="white")
    out.save(path)


def grid_png(scores: np.ndarray, path: Path, cell: int = 24) -> None:
    """(L, H) signed scores -> a layers x heads grid drawn symmetric in bwr: red positive, blue negative,
    white is 0 (layer 1 on top)."""
    from ..viz import colorize, scale_map

    rgb = colorize(scale_map(scores, "symmetric"), "bwr")
    Image.fromarray(rgb).resize((scores.shape[1] * cell, scores.shape[0] * cell), Image.NEAREST).save(path)


def norms_png(norms: np.ndarray, outliers: np.ndarray, image: Image.Image, path: Path, size: int = 448) -> None:
    norms_overlay(norms, outliers, image, size).save(path)


def norms_overlay(norms: np.ndarray, outliers: np.ndarray, image: Image.Image, size: int = 448) -> Image.Image:
    """(gh, gw) norms over the image (inferno), the high-norm patches outlined in white."""
    from ..viz import overlay

    gh, gw = norms.shape
    heat = np.asarray(Image.fromarray((_scaled(norms) * 255).astype(np.uint8)).resize((size, size),
                                                                                   Image.NEAREST)) / 255.0
    out = overlay(image.convert("RGB").resize((size, size)), heat, alpha=0.55, cmap="inferno")
    draw = ImageDraw.Draw(out)
    ch, cw = size / gh, size / gw
    for r, c in zip(*np.nonzero(outliers)):
        draw.rectangle([c * cw, r * ch, (c + 1) * cw - 1, (r + 1) * ch - 1], outline="white", width=2)
    return out


def _setup(args):
    from ..cli import cli_target, load_cli_model
    from ..images import load_image

    model = load_cli_model(args)
    image = load_image(args.image)
    x = model.preprocess(image)
    shown = Image.fromarray((model.to_pixels(x)[0].permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8))
    target = cli_target(model, args) if hasattr(args, "target") else None
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return model, x, shown, target, out


def cmd_lens(args) -> int:
    from .lens import logit_lens

    model, x, shown, target, out = _setup(args)
    r = logit_lens(model, x, target)
    write_csv(r.rows(), out / "lens.csv")
    strip_png(r.patch_maps, shown, out / "lens.png")
    print(json.dumps({"target": r.label, "pooled": [round(float(v), 6) for v in r.pooled],
                      "decided_at_block": None if r.decided_at is None else r.decided_at + 1,
                      "csv": str(out / "lens.csv"), "png": str(out / "lens.png")}, indent=2))
    return 0


def cmd_heads(args) -> int:
    from .heads import head_importance

    model, x, _, target, out = _setup(args)
    r = head_importance(model, x, target, ablation=args.ablation)
    write_csv(r.rows(), out / "heads.csv")
    grid_png(r.scores, out / "heads.png")
    L, H = r.scores.shape
    top = np.unravel_index(np.abs(r.scores).argmax(), r.scores.shape)
    print(json.dumps({"target": r.label, "ablation": r.ablation, "base_score": r.base_score,
                      "most_important": {"layer": int(top[0]) + 1, "head": int(top[1]) + 1,
                                         "score_drop": float(r.scores[top])},
                      "layers_x_heads": [L, H], "forward_passes": round(r.forward_passes, 1),
                      "csv": str(out / "heads.csv"), "png": str(out / "heads.png")}, indent=2))
    return 0


def cmd_norms(args) -> int:
    from .norms import token_norms

    model, x, shown, _, out = _setup(args)
    r = token_norms(model, x)
    write_csv(r.rows(), out / "norms.csv")
    norms_png(r.patch_norms, r.outliers, shown, out / "norms.png")
    print(json.dumps({"threshold": r.threshold, "rule": f"norm > {r.ratio:g} x median patch norm",
                      "high_norm_patches": [list(p) for p in r.outlier_patches()],
                      "registers": [round(float(v), 3) for v in r.registers[-1]],
                      "csv": str(out / "norms.csv"), "png": str(out / "norms.png")}, indent=2))
    return 0


def add_cli(sub) -> None:
    from ..cli import add_model_args, add_target_args

    for name, func, text in (
            ("lens", cmd_lens, "logit lens: the target's score after every block (CSV) and per-layer patch maps (PNG)"),
            ("heads", cmd_heads, "head importance: the target's drop with each attention head removed"),
            ("norms", cmd_norms, "token norms: the output tokens' L2 norms, high-norm artefact tokens flagged")):
        p = sub.add_parser(name, help=text, description=text)
        add_model_args(p)
        if name != "norms":
            add_target_args(p)
        if name == "heads":
            p.add_argument("--ablation", choices=["zero", "mean"], default="zero",
                           help="zero the head's output, or replace it by its mean over the tokens")
        p.add_argument("--out-dir", required=True, help=f"folder for {name}.csv and {name}.png")
        p.set_defaults(func=func)
