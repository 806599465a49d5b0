"""Cost of the inside views in forward passes: each timed against one plain forward pass of the same image
(``ViTModel.outputs`` under inference mode), interleaved medians (benchmarks/timing.py).

Targets (issue 27): logit lens <= 1.2 forwards, head importance <= 1.2 x (layers x heads) forwards. Head importance
starts each layer's ablations from that block's input, so its count of block runs is (heads + 1) (L + 1) / 2
forwards (plus the clean pass), below L x heads.

    python benchmarks/bench_inside.py                      # DeiT-Tiny from ../shared/weights (random without them)
    python benchmarks/bench_inside.py --model timm_eva02   # a random test model of that family (tests/model_zoo.py)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

from timing import add_timing_options, interleaved, setup_threads  # noqa: E402

import explainers  # noqa: E402

WEIGHTS = ROOT.parent / "shared" / "weights" / "deit_tiny_patch16_224"


def load(name: str | None, device: str):
    if name:
        from model_zoo import build

        return build(name)  # built on the CPU
    weights = str(WEIGHTS) if WEIGHTS.exists() else "random"
    return explainers.load_model("deit_tiny_patch16_224", weights=weights, device=device)


def model_and_input(description: str, repeats: int):
    """The command line of a benchmark on one model and one random image (``--model`` a family of
    tests/model_zoo.py, default DeiT-Tiny; the timing options): (args, threads line, model, image)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--model", default=None, help="a family of tests/model_zoo.py (default: DeiT-Tiny)")
    add_timing_options(ap, repeats=repeats)
    args = ap.parse_args()
    threads = setup_threads(args)
    m = load(args.model, args.device)
    x = torch.randn(1, 3, *m.input_size, generator=torch.Generator().manual_seed(0)).to(m.device)
    return args, threads, m, x


def main() -> None:
    args, threads, m, x = model_and_input(__doc__.splitlines()[0], repeats=3)
    L, H = m.num_layers, m.num_heads
    print(f"{m.name}: {L} layers x {H} heads, {args.device}, {threads}")

    def forward():
        with torch.inference_mode():
            m.outputs(x)

    rows = [("logit lens", lambda: explainers.logit_lens(m, x), 1.2),
            ("token norms", lambda: explainers.token_norms(m, x), 1.2),
            ("head importance (zero)", lambda: explainers.head_importance(m, x), 1.2 * L * H),
            ("head importance (mean)", lambda: explainers.head_importance(m, x, ablation="mean"), 1.2 * L * H)]
    print(f"{'view':26s} {'seconds':>8s} {'forwards (time)':>16s} {'forwards (count)':>17s} {'target':>8s}")
    for name, fn, target in rows:
        t_fwd, t = interleaved(forward, fn, args.repeats)
        count = fn().forward_passes
        ok = "ok" if t / t_fwd <= target else "OVER"
        print(f"{name:26s} {t:8.3f} {t / t_fwd:16.2f} {count:17.1f} {target:8.1f} {ok}")
    print(f"one forward: {t_fwd * 1000:.1f} ms")


if __name__ == "__main__":
    main()
