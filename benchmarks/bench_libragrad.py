"""What the LibraGrad wrapper costs: each method that offers it, timed with ``libragrad=True`` against the same
method and parameters without it, run alternately on the same model and image (issue 26: at most 1.2x).

    python benchmarks/bench_libragrad.py [--model FAMILY] [--device cpu] [--repeats 5] [--threads N]

Prints median seconds per capture of each and their ratio. The balanced pass runs the traced path (attention
written out, rules as autograd functions) where the plain one may use the fused attention kernel, and skips the
backward into the queries and keys.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).resolve().parent)]

from bench_inside import model_and_input  # noqa: E402
from timing import interleaved  # noqa: E402

import explainers  # noqa: E402

# the many-pass methods at a budget that keeps a row to seconds (their cost scales with it on both sides)
PARAMS = {"integrated_gradients": {"steps": 16}, "smoothgrad": {"samples": 16}, "gradient_shap": {"samples": 16}}
TARGET = 1.2


def main() -> None:
    args, threads, m, x = model_and_input(__doc__.splitlines()[0], repeats=5)
    offering = explainers.METHODS.with_param("libragrad")
    print(f"{m.name}, {args.device}, {threads}, median of {args.repeats}")
    print(f"{'method':26s} {'plain s':>9s} {'LibraGrad s':>12s} {'ratio':>7s} {'target':>7s}")
    worst = 0.0
    for name in offering:
        kw = PARAMS.get(name, {})
        t_plain, t_libra = interleaved(lambda n=name, k=kw: explainers.capture(m, x, n, **k),
                                       lambda n=name, k=kw: explainers.capture(m, x, n, libragrad=True, **k),
                                       args.repeats)
        ratio = t_libra / t_plain
        worst = max(worst, ratio)
        verdict = "ok" if ratio <= TARGET else "OVER"
        print(f"{name:26s} {t_plain:9.3f} {t_libra:12.3f} {ratio:7.2f} {TARGET:7.1f} {verdict}", flush=True)
    print(f"worst ratio {worst:.2f}")


if __name__ == "__main__":
    main()
