"""Cost of one insertion+deletion evaluation per image against the model's own forward passes.

For each preset, times ``explainers.metrics.insertion_deletion`` on real photos (DeiT-Tiny, CPU by default)
and divides by (number of perturbed images it pushes through the model) x (one forward per image, measured
on the same batches of the same size). A ratio near 1 means the model's work dominates: ranking the pixels,
building the baseline and the perturbed images cost little. Target: <= 1.2x.

The two timings are interleaved (A, B, A, B, ...) and the medians compared, so a busy machine slows both.

With ``--road-steps N`` (default 20; 0 skips it) it also times ROAD (MoRF + LeRF, noisy linear imputation) against
insertion + deletion at the ``standard`` preset with N steps on the same map: both push the same images through
the model, ROAD also solves one sparse system per mask. Target: <= 1.3x, in wall-clock and in CPU time (process
time counts every thread, so it is the steadier figure on a shared machine). ``--model vit_base_patch16_224
--weights random`` measures a larger model (the imputation's cost does not grow with the model).

    python benchmarks/bench_metrics.py [--model NAME] [--weights PATH|random] [--device cpu] [--repeats 5]
        [--presets standard,notebook] [--image PNG] [--method NAME] [--road-steps 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import add_timing_options, interleaved, setup_threads, sync  # noqa: E402

import explainers  # noqa: E402
from explainers import metrics as M  # noqa: E402


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="deit_tiny_patch16_224")
    ap.add_argument("--weights", default=str(ROOT.parent / "shared" / "weights" / "deit_tiny_patch16_224"))
    ap.add_argument("--presets", default="standard,notebook,chefer")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--image", default=str(ROOT / "vit_explain_studio" / "assets" / "samples" / "both.png"))
    ap.add_argument("--method", default="attention_rollout", help="the explanation whose map is scored")
    ap.add_argument("--road-steps", type=int, default=20, help="ROAD vs insertion+deletion at these steps (0: skip)")
    add_timing_options(ap, repeats=5)
    args = ap.parse_args(argv)
    print(setup_threads(args))

    from PIL import Image

    model = explainers.load_model(args.model, weights=args.weights, device=args.device)
    x = model.preprocess(Image.open(args.image))
    exp = explainers.explain(model, x, args.method)
    print(f"{model.name} on {model.device}, {torch.get_num_threads()} threads, batch size {args.batch_size}")
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    if presets:
        print(f"{'preset':10s} {'passes':>6s} {'metric s':>9s} {'forward s':>9s} {'ratio':>6s}")
    out = []
    for name in presets:
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
    if out:
        worst = max(r["ratio"] for r in out)
        print(f"worst ratio {worst:.2f}x (target <= 1.2x: {'met' if worst <= 1.2 else 'NOT met'})")
    if args.road_steps > 0:
        out.append(road_vs_insertion_deletion(model, x, exp, args.road_steps, args.batch_size, args.repeats))
    return out


def wall_and_cpu(fns: dict, repeats: int) -> dict:
    """Median wall-clock and CPU (process) seconds of each function, run alternately after one warm-up each."""
    for fn in fns.values():
        fn()
    acc = {k: ([], []) for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            sync()
            w, c = time.perf_counter(), time.process_time()
            fn()
            sync()
            acc[k][0].append(time.perf_counter() - w)
            acc[k][1].append(time.process_time() - c)
    return {k: (statistics.median(w), statistics.median(c)) for k, (w, c) in acc.items()}


def road_vs_insertion_deletion(model, x, exp, steps: int, batch_size: int, repeats: int) -> dict:
    """ROAD (``standard`` preset, ``steps`` steps) over insertion + deletion on the same map: wall and CPU."""
    last: dict = {}

    def road():
        last["road"] = M.road(model, x, exp.heatmap, exp.target, steps=steps, batch_size=batch_size)

    def ins_del():
        last["id"] = M.insertion_deletion(model, x, exp.heatmap, exp.target, steps=steps, batch_size=batch_size)

    t = wall_and_cpu({"road": road, "id": ins_del}, repeats)
    r = last["road"]
    res = {"preset": "road", "steps": steps, "passes": (r.forward_passes, last["id"].forward_passes),
           "wall": (t["road"][0], t["id"][0]), "cpu": (t["road"][1], t["id"][1]),
           "wall_ratio": t["road"][0] / t["id"][0], "cpu_ratio": t["road"][1] / t["id"][1],
           "imputation_share": r.imputation_seconds / max(r.seconds, 1e-9)}
    print(f"\nROAD vs insertion+deletion, preset standard, {steps} steps ({r.forward_passes} vs "
          f"{last['id'].forward_passes} images through the model), medians of {repeats} interleaved rounds:")
    for what, i in (("wall", 0), ("CPU", 1)):
        a, b = t["road"][i], t["id"][i]
        print(f"  {what:4s} ROAD {a:7.2f} s, insertion+deletion {b:7.2f} s, ratio {a / b:.2f}x "
              f"({'met' if a / b <= 1.3 else 'NOT met'}: target <= 1.3x)")
    print(f"  imputation {res['imputation_share']:.0%} of ROAD's wall time (last run)")
    return res


if __name__ == "__main__":
    main()
