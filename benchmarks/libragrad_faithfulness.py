"""Does LibraGrad make the wrapped methods more faithful? Deletion and insertion AUC (the evaluation's default
preset) of each method that offers the wrapper, with and without it, on the first N ImageNet validation images,
each image's predicted class as the target, beside the random map.

    python benchmarks/libragrad_faithfulness.py [--images 20] [--methods a,b] [--model deit_tiny_patch16_224]

Prints per method the mean AUCs of both variants and the paired mean difference (LibraGrad - plain) with its 95 %
t-interval: for deletion lower is better, for insertion higher. The many-pass methods run at a reduced budget
(``PARAMS``), the same on both sides.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from results_data import paired  # noqa: E402

import explainers  # noqa: E402
from explainers.evaluation.core import evaluate_image  # noqa: E402

VAL = ROOT.parent / "shared" / "images" / "imagenet-val100"
PARAMS = {"integrated_gradients": {"steps": 16}, "smoothgrad": {"samples": 16}, "gradient_shap": {"samples": 16}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="deit_tiny_patch16_224")
    ap.add_argument("--weights", default=None, help="default: ../shared/weights/<model> (its timm folder)")
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--methods", default="")
    args = ap.parse_args(argv)
    weights = args.weights or next(str(p) for p in sorted((ROOT.parent / "shared" / "weights").glob(args.model + "*")))
    model = explainers.load_model(args.model, weights=weights, device="cpu")
    offering = explainers.METHODS.with_param("libragrad")
    methods = args.methods.split(",") if args.methods else offering
    auc: dict = {}  # (method, libragrad, metric) -> {image: AUC}
    for path in sorted(VAL.glob("*.JPEG"))[:args.images]:
        for on in (False, True):
            params = {m: {**PARAMS.get(m, {}), "libragrad": on} for m in methods}
            rows = evaluate_image(model, path.name, path, methods + ([] if on else ["random"]), method_params=params)
            for r in rows:
                for what in ("deletion", "insertion"):
                    auc.setdefault((r["method"], on, what), {})[path.name] = r[f"{what}_auc"]
        print(f"  {path.name} done", flush=True)
    print(f"{model.name}, {args.images} images; random map: deletion "
          f"{statistics.fmean(auc[('random', False, 'deletion')].values()):.4f}, insertion "
          f"{statistics.fmean(auc[('random', False, 'insertion')].values()):.4f}")
    print(f"{'method':26s} {'del plain':>9s} {'del Libra':>9s} {'difference (95% CI)':>22s} "
          f"{'ins plain':>9s} {'ins Libra':>9s} {'difference (95% CI)':>22s}")
    out = {}
    for m in methods:
        res = {}
        for what in ("deletion", "insertion"):
            a, b = auc[(m, False, what)], auc[(m, True, what)]
            d = paired(b, a, higher_is_better=True)  # LibraGrad - plain, per image, with its 95 % t-interval
            res[what] = dict(plain=statistics.fmean(a.values()), libragrad=statistics.fmean(b.values()),
                             difference=d["mean"], half_width=math.nan if d["ci95"] is None else d["ci95"])
        out[m] = res
        d, i = res["deletion"], res["insertion"]
        print(f"{m:26s} {d['plain']:9.4f} {d['libragrad']:9.4f} {d['difference']:+13.4f} ± {d['half_width']:.4f} "
              f"{i['plain']:9.4f} {i['libragrad']:9.4f} {i['difference']:+13.4f} ± {i['half_width']:.4f}", flush=True)
    return out


if __name__ == "__main__":
    main()
