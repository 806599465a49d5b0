"""Throughput of ``evaluate`` in (image, method) pairs per second: serial, and sharded on Ray.

Configurations at equal total threads T (default 2): the serial run with T torch threads; Ray with 1 worker of
T CPUs; Ray with T workers of 1 CPU each; and, for the scaling ratio, Ray with 1 worker of 1 CPU and the serial
run with 1 thread. Each configuration first does a warm-up run (not timed); model loading and Ray start-up are
not timed either. Runs are interleaved over ``--repeats`` rounds and the medians compared, so a busy machine
slows every configuration alike.

Targets: Ray with 1 worker within 10% of the serial run (ratio >= 0.9); T single-thread workers >= 0.8 T x one
single-thread worker (1.6x for T = 2).

    python benchmarks/bench_evaluate_scale.py [--images 6] [--methods attention_rollout,random] [--steps N]
        [--threads 2] [--repeats 1] [--weights PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("VIT_EXPLAIN_SHARED", ROOT.parent / "shared"))

import torch  # noqa: E402

import explainers  # noqa: E402
from explainers.evaluation import run_evaluation  # noqa: E402
from explainers.evaluation.inputs import list_images  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=6, help="number of ImageNet validation images")
    ap.add_argument("--methods", default="attention_rollout,random")
    ap.add_argument("--steps", type=int, default=None, help="insertion/deletion steps (default: the preset's 20)")
    ap.add_argument("--threads", type=int, default=2, help="total threads T of every configuration")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--weights", default=str(SHARED / "weights" / "deit_tiny_patch16_224"))
    ap.add_argument("--model", default="deit_tiny_patch16_224")
    a = ap.parse_args(argv)
    import ray

    from explainers.evaluation.distributed import RayWorkers

    T = a.threads
    val = SHARED / "images" / "imagenet-val100"
    files = list_images(val)
    warm, timed = files[:T], files[T:T + a.images]
    work = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    lists = {}
    for key, fs in (("warm", warm), ("timed", timed)):
        lists[key] = work / f"{key}.txt"
        lists[key].write_text("\n".join(str(f) for f in fs) + "\n")
    pairs = len(timed) * len(a.methods.split(","))

    serial_model = explainers.load_model(a.model, weights=a.weights, device="cpu")
    # logical CPUs: every pool is created up front and idle actors cost no CPU; one configuration runs at a time
    ray.init(address="local", num_cpus=4 * T + 1, include_dashboard=False, log_to_driver=False)
    pools = {f"ray 1 worker x {T} CPU": RayWorkers(a.model, a.weights, workers=1, cpus_per_worker=T),
             f"ray {T} workers x 1 CPU": RayWorkers(a.model, a.weights, workers=T, cpus_per_worker=1),
             "ray 1 worker x 1 CPU": RayWorkers(a.model, a.weights, workers=1, cpus_per_worker=1)}
    configs = {f"serial, {T} threads": (serial_model, T), **{k: (p, None) for k, p in pools.items()},
               "serial, 1 thread": (serial_model, 1)}
    times: dict[str, list[float]] = {k: [] for k in configs}
    run = 0

    def once(model, threads, images) -> float:
        nonlocal run
        if threads is not None:
            torch.set_num_threads(threads)
        run += 1
        t0 = time.perf_counter()
        info = run_evaluation(model, images, work / f"out{run}", methods=a.methods, steps=a.steps,
                              boxes_path=val / "boxes.json", show_progress=False)
        dt = time.perf_counter() - t0
        assert info["failed"] == 0 and info["errors"] == 0, info
        return dt

    try:
        for model, threads in configs.values():
            once(model, threads, lists["warm"])
        for _ in range(a.repeats):
            for name, (model, threads) in configs.items():
                times[name].append(once(model, threads, lists["timed"]))
    finally:
        for p in pools.values():
            p.close()
        ray.shutdown()

    rate = {k: pairs / statistics.median(v) for k, v in times.items()}
    print(f"{a.model}, {len(timed)} images x {len(a.methods.split(','))} methods = {pairs} pairs, "
          f"steps {a.steps or 'preset default'}, {os.cpu_count()} CPUs, medians of {a.repeats} interleaved runs")
    for k, r in rate.items():
        print(f"  {k:28s} {r:6.3f} pairs/s  ({statistics.median(times[k]):6.1f} s)")
    s, r1, rT, r11 = (rate[f"serial, {T} threads"], rate[f"ray 1 worker x {T} CPU"], rate[f"ray {T} workers x 1 CPU"],
                      rate["ray 1 worker x 1 CPU"])
    print(f"ray 1 worker / serial ({T} threads):       {r1 / s:5.2f}  (target >= 0.90)")
    print(f"ray {T} workers / serial ({T} threads):      {rT / s:5.2f}")
    print(f"ray {T} x 1-CPU workers / 1 x 1-CPU worker: {rT / r11:5.2f}  (target >= {0.8 * T:.1f})")
    print(f"ray 1 x 1-CPU worker / serial (1 thread):  {r11 / rate['serial, 1 thread']:5.2f}  (target >= 0.90)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
