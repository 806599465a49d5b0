"""LRP numerics: each LRP method's map computed in float32 (default) and with ``precision="float64"`` (the traced
pass and the relevance pass on a float64 copy of the model), on the 100 ImageNet validation images of
../shared/images/imagenet-val100, explained class = the model's top class.

Prints per method: the median and worst Spearman correlation of the two patch maps, and the worst maximum relative
difference max|m32 - m64| / max|m64|, with the worst image's name.

    python benchmarks/lrp_precision.py [--model deit_tiny_patch16_224] [--images 100] [--methods ...] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import explainers  # noqa: E402

SHARED = ROOT.parent / "shared"
WEIGHTS = {"deit_tiny_patch16_224": SHARED / "weights" / "deit_tiny_patch16_224",
           "vit_tiny_patch16_224": SHARED / "weights" / "vit_tiny_patch16_224.augreg_in21k_ft_in1k"}


def compare(model, x, method: str) -> tuple[float, float]:
    """(Spearman, max relative difference) of the float32 and float64 maps of one image."""
    a = explainers.explain(model, x, method).patch_map.astype(np.float64).ravel()
    b = explainers.explain(model, x, method, precision="float64").patch_map.astype(np.float64).ravel()
    return float(spearmanr(a, b).correlation), float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="deit_tiny_patch16_224", choices=sorted(WEIGHTS))
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--methods", default="transformer_attribution,lrp_full,lrp_last_layer")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: steady on a shared machine)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = explainers.load_model(args.model, weights=WEIGHTS[args.model], device="cpu")
    paths = sorted((SHARED / "images" / "imagenet-val100").glob("*.JPEG"))[:args.images]
    out = {}
    for method in args.methods.split(","):
        rows = [(p.stem, *compare(model, model.preprocess(Image.open(p).convert("RGB")), method)) for p in paths]
        rho = np.array([r[1] for r in rows])
        rel = np.array([r[2] for r in rows])
        w_rho, w_rel = rows[int(rho.argmin())][0], rows[int(rel.argmax())][0]
        out[method] = dict(median_spearman=float(np.median(rho)), worst_spearman=float(rho.min()),
                           worst_spearman_image=w_rho, median_max_rel=float(np.median(rel)),
                           worst_max_rel=float(rel.max()), worst_max_rel_image=w_rel)
        print(f"{method:26s} Spearman median {np.median(rho):.4f}, worst {rho.min():.4f} ({w_rho}); max rel. diff "
              f"median {np.median(rel):.2e}, worst {rel.max():.3f} ({w_rel})  [{len(rows)} images]", flush=True)
    return out


if __name__ == "__main__":
    main()
