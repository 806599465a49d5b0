"""The masked passes' pass path, old against new (issue 12), timed per image in one run.

For ViT-CX, GradMask and the insertion/deletion metric (``explainers.metrics``, standard preset) on real photos
(DeiT-Tiny, CPU by default), times each task with three pass paths, interleaved (A, B, C, A, B, C, ...) so a busy
machine slows all alike, and prints the medians and the ratios:

* ``own``: the model's own module forward (timm/HF, on ``F.scaled_dot_product_attention``), substituted for
  ``ViTModel.outputs`` inside this benchmark: the pass path when issue 12 was filed;
* ``plain``: ``ViTModel.outputs`` with the fused CPU linears off (``explainers.models.fast.FUSED_CPU = False``):
  the library's own path on the fused attention kernel before this change;
* ``new``: ``ViTModel.outputs`` as shipped (bias, GELU and residual additions fused into oneDNN's matrix
  products on the CPU, :mod:`explainers.models.fast`).

Target: new/own <= 0.8 for each task. Also checks that the results do not move: every map's Spearman
correlation with the ``own`` path's map >= 0.9999, every AUC within 1e-4 of the ``own`` path's. Exit status 1
when a check fails (the ratio target is reported, not enforced: timings on a shared machine are noisy).

    python benchmarks/bench_passes.py [--weights PATH] [--images both.png,coffee.png] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import add_timing_options, setup_threads, sync  # noqa: E402

import explainers  # noqa: E402
from explainers import metrics as M  # noqa: E402
from explainers.models import fast  # noqa: E402

PATHS = ("own", "plain", "new")
SPEARMAN_MIN, AUC_TOL, TARGET = 0.9999, 1e-4, 0.8


def set_path(model, path: str) -> None:
    """Route ``model.outputs`` (every masked pass of the methods and metrics) through ``path``."""
    model.__dict__.pop("outputs", None)
    fast.FUSED_CPU = path != "plain"
    if path == "own":
        model.outputs = lambda x: model.adapter.own_outputs(model.module, x)


def spearman(a, b) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(np.ravel(a), np.ravel(b)).statistic)


def tasks(model, x, image: str):
    """(name, run) pairs; run() returns what must not move: a map, or the two AUCs."""
    ref = explainers.explain(model, x, "attention_rollout")

    def method(name):
        return lambda: explainers.explain(model, x, name).heatmap

    def metric():
        c = M.insertion_deletion(model, x, ref.heatmap, ref.target, preset="standard")
        return np.array([c.insertion_auc, c.deletion_auc])

    return [(f"vit_cx {image}", method("vit_cx")), (f"gradmask {image}", method("gradmask")),
            (f"ins/del {image}", metric)]


def agree(name: str, results: dict) -> tuple[str, bool]:
    base = results["own"]
    if name.startswith("ins/del"):
        worst = max(float(np.abs(results[p] - base).max()) for p in PATHS)
        return f"max |dAUC| {worst:.1e}", worst <= AUC_TOL
    worst = min(spearman(results[p], base) for p in PATHS)
    return f"min Spearman {worst:.6f}", worst >= SPEARMAN_MIN


def time_task(model, run, repeats: int) -> tuple[dict, dict]:
    """Medians (seconds) per path, interleaved, after one run of each (whose results are kept for the checks)."""
    results, times = {}, {p: [] for p in PATHS}
    for p in PATHS:
        set_path(model, p)
        results[p] = run()
    for _ in range(repeats):
        for p in PATHS:
            set_path(model, p)
            sync()
            t0 = time.perf_counter()
            run()
            sync()
            times[p].append(time.perf_counter() - t0)
    return {p: statistics.median(v) for p, v in times.items()}, results


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="deit_tiny_patch16_224")
    ap.add_argument("--weights", default=str(ROOT.parent / "shared" / "weights" / "deit_tiny_patch16_224"))
    ap.add_argument("--images", default="both.png", help="comma-separated names in vit_explain_studio/assets/samples")
    add_timing_options(ap, repeats=3)
    args = ap.parse_args(argv)
    print(setup_threads(args))
    from PIL import Image

    model = explainers.load_model(args.model, weights=args.weights, device=args.device)
    print(f"{model.name} on {model.device}; fused CPU linears available: {fast.fused_available()}")
    print(f"{'task':24s} {'own s':>7s} {'plain s':>7s} {'new s':>7s} {'new/own':>7s} {'new/plain':>9s}  results")
    ok, ratios = True, {}
    try:
        for image in [s.strip() for s in args.images.split(",") if s.strip()]:
            x = model.preprocess(Image.open(ROOT / "vit_explain_studio" / "assets" / "samples" / image))
            for name, run in tasks(model, x, image):
                med, results = time_task(model, run, args.repeats)
                note, good = agree(name, results)
                ok &= good
                r = med["new"] / med["own"]
                ratios.setdefault(name.split()[0], []).append(r)
                print(f"{name:24s} {med['own']:7.2f} {med['plain']:7.2f} {med['new']:7.2f} {r:7.2f} "
                      f"{med['new'] / med['plain']:9.2f}  {note} {'ok' if good else 'FAILED'}", flush=True)
    finally:
        set_path(model, "new")
    for task, rs in ratios.items():
        r = statistics.median(rs)
        print(f"{task:10s} new/own median {r:.2f} (target <= {TARGET}: {'met' if r <= TARGET else 'NOT met'})")
    print("at the end: " + setup_threads(argparse.Namespace(threads=0)))
    print("results unchanged" if ok else "RESULTS CHANGED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
