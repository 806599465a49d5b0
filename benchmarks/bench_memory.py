"""Memory over many explanations: does a long-running app (one model, many users) grow?

Runs N explanations (default 200) in a loop over every registered method and the sample photos (as
PIL images, encoded bytes and paths, so decoding is included) on DeiT-Tiny, and prints the resident
memory (RSS) after loading the model, after two warm-up explanations per method (lazy imports, torch's
thread pools, and the allocator's pools growing to each method's peak, e.g. ~100 MB for ViT-CX's masked
batches: one-off growth; this is the "start"), every 25 explanations, and at the end. The warm-up is printed
too, and so is the memory live objects hold (after ``malloc_trim``), to tell a leak from allocator pools.

Target (issue 6): growth from start to end under 50 MB. Exit status 1 when it is not.

    python benchmarks/bench_memory.py [--n 200] [--weights PATH] [--device cpu] [--params default|light]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import io
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import explainers  # noqa: E402

WEIGHTS = Path(os.environ.get("VIT_EXPLAIN_SHARED", ROOT.parent / "shared")) / "weights" / "deit_tiny_patch16_224"
SAMPLES = ROOT / "vit_explain_studio" / "assets" / "samples"


def rss_mb() -> float:
    """Current resident set size in MB (Linux /proc; elsewhere the peak, from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # pragma: no cover - not Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def trimmed_rss_mb() -> float:
    """RSS after glibc returns its free heap pages to the system (what live objects hold); else RSS."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass
    return rss_mb()


def light_params(method: str) -> dict:
    names = {p.name for p in explainers.METHODS[method].params}
    out = {}
    if "masks_layer" in names:
        out["masks_layer"] = 1
    if "distance_threshold" in names:
        out["distance_threshold"] = 0.5
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="explanations in the measured loop")
    ap.add_argument("--weights", default=str(WEIGHTS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--params", choices=("default", "light"), default="default",
                    help="light: fewest masks for the many-pass methods (quicker, same code paths)")
    ap.add_argument("--warmup", type=int, default=2,
                    help="explanations per method before the start is measured (allocator pools fill up to "
                         "each method's peak: one-off growth, not a leak)")
    ap.add_argument("--limit-mb", type=float, default=50.0)
    args = ap.parse_args(argv)

    print(f"RSS at import: {rss_mb():.1f} MB")
    model = explainers.load_model("deit_tiny_patch16_224", weights=args.weights, device=args.device)
    methods = list(explainers.METHODS)
    paths = sorted(SAMPLES.glob("*.png"))
    encoded = [p.read_bytes() for p in paths]
    pils = [explainers.load_image(p) for p in paths]
    sources = [lambda i: pils[i], lambda i: encoded[i], lambda i: io.BytesIO(encoded[i]), lambda i: paths[i]]

    def one(k: int) -> None:
        method = methods[k % len(methods)]
        i = (k // len(methods)) % len(paths)
        params = light_params(method) if args.params == "light" else {}
        exp = explainers.explain(model, sources[k % len(sources)](i), method, **params)
        assert exp.heatmap.shape == tuple(model.input_size)

    gc.collect()
    print(f"RSS after loading the model: {rss_mb():.1f} MB")
    t0 = time.perf_counter()
    warm = args.warmup * len(methods)
    for k in range(warm):  # warm-up: every method, on `warmup` different images and input kinds
        one(k)
    gc.collect()
    start, start_live = rss_mb(), trimmed_rss_mb()
    print(f"RSS at start (after {warm} warm-up explanations, {args.warmup} per method): {start:.1f} MB "
          f"(live, after malloc_trim: {start_live:.1f} MB) [{time.perf_counter() - t0:.0f} s]")
    t0 = time.perf_counter()
    for k in range(args.n):
        one(k)
        if (k + 1) % 25 == 0:
            print(f"  after {k + 1:4d} explanations: RSS {rss_mb():.1f} MB  [{time.perf_counter() - t0:.0f} s]",
                  flush=True)
    gc.collect()
    end, end_live = rss_mb(), trimmed_rss_mb()
    growth = end - start
    print(f"RSS at end ({args.n} explanations over {len(methods)} methods, params={args.params}): {end:.1f} MB "
          f"(live, after malloc_trim: {end_live:.1f} MB, {end_live - start_live:+.1f} MB)")
    verdict = "ok" if growth < args.limit_mb else "TOO MUCH"
    print(f"growth: {growth:+.1f} MB (limit {args.limit_mb:.0f} MB): {verdict}")
    return 0 if growth < args.limit_mb else 1


if __name__ == "__main__":
    sys.exit(main())
