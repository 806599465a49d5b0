"""The timing block the benchmarks share: interleaved medians and the common options.

Each benchmark compares two timings (A against B). Running them alternately (A, B, A, B, ...) after one warm-up
each and taking the medians means a busy machine slows both alike; the ratio is what the benchmarks report.

    from timing import add_timing_options, interleaved, setup_threads
"""

from __future__ import annotations

import os
import statistics
import time

import torch


def sync() -> None:
    """Wait for queued GPU work, so a timing covers it."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def interleaved_times(fa, fb, repeats: int) -> tuple[list[float], list[float]]:
    """The seconds of each run of ``fa`` and of ``fb``, run alternately after one warm-up each."""
    fa(), fb()
    ta, tb = [], []
    for _ in range(repeats):
        for fn, acc in ((fa, ta), (fb, tb)):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            acc.append(time.perf_counter() - t0)
    return ta, tb


def interleaved(fa, fb, repeats: int) -> tuple[float, float]:
    """Median seconds of ``fa`` and ``fb``, run alternately after one warm-up each."""
    ta, tb = interleaved_times(fa, fb, repeats)
    return statistics.median(ta), statistics.median(tb)


def add_timing_options(ap, repeats: int) -> None:
    """--device, --repeats and --threads, as every benchmark takes them."""
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=repeats)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")


def setup_threads(args) -> str:
    """Apply --threads; returns a line naming the threads and the machine's load (timings on a shared machine
    are only indicative next to it)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return f"{torch.get_num_threads()} torch threads, load average {load}"
