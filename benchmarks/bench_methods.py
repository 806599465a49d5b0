"""Time every registered method on DeiT-Tiny (CPU by default) against the model's own passes.

Prints, per method: median seconds per image (single image, and batch of 16 divided by 16), the ratio to
one forward pass and to one forward+backward pass of the same batch size, the number of images pushed
through the model (``passes``), and time ÷ (passes × one batched forward per image): how close a
mask-based method is to pure model work.

Targets (issue 2/3): rollout ≤ 1.5× forward; gradient methods ≤ 1.5× forward+backward; transformer
attribution ≤ 3× forward+backward; mask methods: time ÷ (passes × batched forward) ≤ 1.3.

    python benchmarks/bench_methods.py [--weights PATH] [--device cpu] [--repeats 5] [--methods a,b]
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

import explainers  # noqa: E402


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="deit_tiny_patch16_224")
    ap.add_argument("--weights", default=str(ROOT.parent / "shared" / "weights" / "deit_tiny_patch16_224"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--methods", default="all")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    model = explainers.load_model(args.model, weights=args.weights, device=args.device)
    from PIL import Image

    img = Image.open(ROOT / "assets" / "samples" / "both.png")
    x1 = model.preprocess(img)
    xb = x1.repeat(args.batch, 1, 1, 1) + 0.01 * torch.randn(args.batch, *x1.shape[1:], device=x1.device)

    def fwd(x):
        with torch.inference_mode():
            model.forward(x)

    def fwd_bwd(x):
        xg = x.detach().clone().requires_grad_(True)
        logits = model.forward(xg)
        torch.autograd.grad(logits[:, 243].sum(), xg)

    f1 = median_time(lambda: fwd(x1), args.repeats * 4)
    fb1 = median_time(lambda: fwd_bwd(x1), args.repeats * 4)
    fB = median_time(lambda: fwd(xb), args.repeats)
    fbB = median_time(lambda: fwd_bwd(xb), args.repeats)
    x32 = x1.repeat(32, 1, 1, 1)
    per_img_batched = median_time(lambda: fwd(x32), args.repeats) / 32

    print(f"model {args.model} on {model.device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"forward: {f1 * 1e3:.1f} ms (1 image), {fB / args.batch * 1e3:.1f} ms/image (batch {args.batch}), "
          f"{per_img_batched * 1e3:.1f} ms/image (batch 32)")
    print(f"forward+backward: {fb1 * 1e3:.1f} ms (1 image), {fbB / args.batch * 1e3:.1f} ms/image (batch {args.batch})")
    print()
    hdr = (f"{'method':26s} {'1 img ms':>9s} {'÷fwd':>6s} {'÷f+b':>6s} | {'batch ms/img':>12s} {'÷fwd':>6s} "
           f"{'÷f+b':>6s} | {'passes':>6s} {'÷(passes×fwd)':>13s}")
    print(hdr)
    print("-" * len(hdr))
    names = list(explainers.METHODS) if args.methods == "all" else args.methods.split(",")
    for name in names:
        method = explainers.METHODS[name]
        heavy = method.family == "perturbation"
        reps = max(1, args.repeats // 2) if heavy else args.repeats
        cap_box = {}

        def run(x, name=name, box=cap_box):
            box["cap"] = explainers.capture(model, x, name)
            explainers.render(box["cap"], model)

        t1 = median_time(lambda: run(x1), reps)
        passes = cap_box["cap"].forward_passes
        if heavy:  # batching images does not change a mask method's per-image work
            tB = t1
        else:
            tB = median_time(lambda: run(xb), reps) / args.batch
        ratio = t1 / (passes * per_img_batched) if passes else float("nan")
        print(f"{name:26s} {t1 * 1e3:9.1f} {t1 / f1:6.2f} {t1 / fb1:6.2f} | {tB * 1e3:12.1f} "
              f"{tB / (fB / args.batch):6.2f} {tB / (fbB / args.batch):6.2f} | {passes:6d} {ratio:13.2f}")


if __name__ == "__main__":
    main()
