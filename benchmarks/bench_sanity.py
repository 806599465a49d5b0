"""Cost of the sanity checks and of ROAD.

1. A full cascading randomisation check per method (``explainers.sanity.sanity_check``, random-logit test off)
   against one explanation: the check makes ``steps + 1`` explanations (the original, the head, each block, the
   embeddings: L + 3 for L blocks) on a copy of the model, so the ratio printed is
   check / ((steps + 1) x one explanation). Target: <= 1.2 (copying, re-initialising and the similarities cost
   little). A second ratio divides by the time the check itself spent inside the explanations (on the
   randomised copies): it isolates the check's own overhead from the load on a shared machine.
2. ROAD (MoRF + LeRF, noisy linear imputation) against insertion + deletion at the same preset and steps, on
   the same map. Both push the same number of images through the model; ROAD also solves one sparse system per
   image. Target: <= 1.3x.

Timings are medians of interleaved runs (A, B, A, B, ...), so a busy machine slows both.

    python benchmarks/bench_sanity.py [--methods attention_rollout,chefer_rollout] [--steps 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import add_timing_options, interleaved, setup_threads  # noqa: E402

import explainers  # noqa: E402
from explainers import metrics as M  # noqa: E402
from explainers import sanity  # noqa: E402

DEFAULT_METHODS = "attention_rollout,chefer_rollout,attention_gradcam,transformer_attribution"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="deit_tiny_patch16_224")
    ap.add_argument("--weights", default=str(ROOT.parent / "shared" / "weights" / "deit_tiny_patch16_224"))
    ap.add_argument("--image", default=str(ROOT / "vit_explain_studio" / "assets" / "samples" / "chelsea.png"))
    ap.add_argument("--methods", default=DEFAULT_METHODS, help="comma-separated, or 'all'")
    ap.add_argument("--steps", type=int, default=20, help="insertion/deletion and ROAD steps")
    ap.add_argument("--skip-cascade", action="store_true")
    ap.add_argument("--skip-road", action="store_true")
    add_timing_options(ap, repeats=3)
    args = ap.parse_args(argv)
    print(setup_threads(args))
    model = explainers.load_model(args.model, weights=args.weights, device=args.device)
    x = model.preprocess(explainers.load_image(args.image))
    out: dict = {"cascade": [], "road": None}
    if not args.skip_cascade:
        n_expl = model.num_layers + 3
        print(f"Cascading randomisation on {model.name}: {n_expl} explanations per check (steps + 1 = L + 3)")
        print(f"{'method':26s} {'one map (s)':>12s} {'check (s)':>10s} {'ratio':>7s} {'overhead':>9s}  target <= 1.2")
        for m in sanity.resolve_methods(args.methods):
            inside = []

            def check(m=m, inside=inside):
                inside.append(sanity.sanity_check(model, x, [m], random_logit=False)[0].seconds)

            one, t_check = interleaved(lambda m=m: explainers.explain(model, x, m), check, args.repeats)
            ratio = t_check / (n_expl * one)
            over = t_check / statistics.median(inside[1:] or inside)
            out["cascade"].append({"method": m, "one": one, "check": t_check, "ratio": ratio, "overhead": over})
            print(f"{m:26s} {one:12.3f} {t_check:10.2f} {ratio:7.2f} {over:9.2f}  "
                  f"{'ok' if ratio <= 1.2 else 'OVER'}", flush=True)
    if not args.skip_road:
        exp = explainers.explain(model, x, "transformer_attribution")
        last = {}

        def run_road():
            last["road"] = M.road(model, x, exp.heatmap, exp.target, steps=args.steps)

        def run_id():
            last["id"] = M.insertion_deletion(model, x, exp.heatmap, exp.target, steps=args.steps)

        t_road, t_id = interleaved(run_road, run_id, args.repeats)
        r = last["road"]
        share = r.imputation_seconds / max(r.seconds, 1e-9)
        out["road"] = {"road": t_road, "insertion_deletion": t_id, "ratio": t_road / t_id, "imputation_share": share,
                       "forward_passes": (r.forward_passes, last["id"].forward_passes)}
        print(f"\nROAD vs insertion/deletion, preset standard, {args.steps} steps "
              f"({r.forward_passes} vs {last['id'].forward_passes} images through the model):")
        print(f"  ROAD {t_road:.2f} s, insertion+deletion {t_id:.2f} s, ratio {t_road / t_id:.2f}x (target <= 1.3); "
              f"imputation {share:.0%} of ROAD's time")
    return out


if __name__ == "__main__":
    main()
