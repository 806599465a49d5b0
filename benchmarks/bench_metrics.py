"""Cost of one insertion+deletion evaluation per image against the model's own forward passes.

For each preset, times ``explainers.metrics.insertion_deletion`` on real photos (DeiT-Tiny, CPU by default)
and divides by (number of perturbed images it pushes through the model) x (one forward per image, measured
on the same batches of the same size). A ratio near 1 means the model's work dominates: ranking the pixels,
building the baseline and the perturbed images cost little. Target: <= 1.2x.

The two timings are interleaved (A, B, A, B, ...) and the medians compared, so a busy machine slows both.

    python benchmarks/bench_metrics.py [--weights PATH] [--device cpu] [--repeats 5] [--presets standard,notebook]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import add_timing_options, interleaved, setup_threads  # noqa: E402

import explainers  # noqa: E402
from explainers import metrics as M  # noqa: E402


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="deit_tiny_patch16_224")
    ap.add_argument("--weights", default=str(ROOT.parent / "shared" / "weights" / "deit_tiny_patch16_224"))
    ap.add_argument("--presets", default="standard,notebook,chefer")
    ap.add_argument("--batch-size", type=int, default=32)
    add_timing_options(ap, repeats=5)
    args = ap.parse_args(argv)
    print(setup_threads(args))

    from PIL import Image

    model = explainers.load_model(args.model, weights=args.weights, device=args.device)
    x = model.preprocess(Image.open(ROOT / "assets" / "samples" / "both.png"))
    exp = explainers.explain(model, x, "attention_rollout")
    print(f"{model.name} on {model.device}, {torch.get_num_threads()} threads, batch size {args.batch_size}")
    print(f"{'preset':10s} {'passes':>6s} {'metric s':>9s} {'forward s':>9s} {'ratio':>6s}")
    out = []
    for name in [p.strip() for p in args.presets.split(",") if p.strip()]:
        curves = M.insertion_deletion(model, x, exp.heatmap, exp.target, preset=name, batch_size=args.batch_size)
        n = curves.forward_passes
        sizes = [min(args.batch_size, n - s) for s in range(0, n, args.batch_size)]
        batches = [x.repeat(b, 1, 1, 1) + 0.01 * torch.randn(b, *x.shape[1:], device=x.device) for b in sizes]

        def metric(name=name):
            M.insertion_deletion(model, x, exp.heatmap, exp.target, preset=name, batch_size=args.batch_size)

        def forwards(batches=batches):
            with torch.inference_mode():
                for b in batches:
                    model.forward(b)

        t_metric, t_fwd = interleaved(metric, forwards, args.repeats)
        ratio = t_metric / t_fwd
        print(f"{name:10s} {n:6d} {t_metric:9.3f} {t_fwd:9.3f} {ratio:5.2f}x")
        out.append({"preset": name, "passes": n, "metric_s": t_metric, "forward_s": t_fwd, "ratio": ratio})
    worst = max(r["ratio"] for r in out)
    print(f"worst ratio {worst:.2f}x (target <= 1.2x: {'met' if worst <= 1.2 else 'NOT met'})")
    return out


if __name__ == "__main__":
    main()
