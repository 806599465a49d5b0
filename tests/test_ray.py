"""`evaluate` sharded on Ray: a local cluster of 2 single-CPU workers gives the serial run's rows and numbers,
survives a killed worker, and resumes an interrupted run with only the missing pairs."""

from __future__ import annotations

import csv
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import VAL100, WEIGHTS, val_images

from explainers.evaluation import run_evaluation

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow

METHODS = "attention_rollout,chefer_rollout,random"
STEPS = 4
EXACT = ("target", "target_label", "label", "correct", "pointing_game", "error")
CLOSE = ("probability", "insertion_auc", "deletion_auc", "energy_pointing_game")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """A list file: 6 ImageNet validation images and one file that does not decode (error rows)."""
    d = tmp_path_factory.mktemp("inputs")
    (d / "broken.jpg").write_bytes(b"this is not a JPEG")
    lst = d / "images.txt"
    lst.write_text("\n".join([str(p) for p in val_images(6)] + ["broken.jpg"]) + "\n")
    return lst


def _run(model, images, out, **kw):
    return run_evaluation(model, images, out, methods=METHODS, boxes_path=VAL100 / "boxes.json", steps=STEPS,
                          show_progress=False, **kw)


@pytest.fixture(scope="module")
def serial(tmp_path_factory, deit_tiny, images) -> Path:
    out = tmp_path_factory.mktemp("serial")
    _run(deit_tiny, images, out)
    return out


@pytest.fixture(scope="module")
def cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def workers(cluster):
    from explainers.evaluation.distributed import RayWorkers

    with RayWorkers("deit_tiny_patch16_224", WEIGHTS, workers=2, cpus_per_worker=1) as pool:
        yield pool


def _read(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _num(s):
    return math.nan if s == "" else float(s)


def assert_same_results(out: Path, ref: Path):
    rows, want = _read(out / "results.csv"), _read(ref / "results.csv")
    got = {(r["image"], r["method"]): r for r in rows}
    assert len(got) == len(rows) == len(want) == 21  # no pair twice
    for w in want:
        r = got[(w["image"], w["method"])]
        for c in EXACT:
            assert r[c] == w[c], (w["image"], w["method"], c)
        for c in CLOSE:
            a, b = _num(r[c]), _num(w[c])
            assert (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-6, (w["image"], w["method"], c, a, b)
    curves = {(r["image"], r["method"], r["curve"]): r["values"] for r in _read(out / "curves.csv")}
    ref_curves = {(r["image"], r["method"], r["curve"]): r["values"] for r in _read(ref / "curves.csv")}
    assert curves.keys() == ref_curves.keys() and len(curves) == 18 * 3
    for k, v in ref_curves.items():
        a, b = [float(x) for x in curves[k].split()], [float(x) for x in v.split()]
        assert len(a) == len(b) == STEPS + 1 and max(abs(x - y) for x, y in zip(a, b)) <= 1e-6, k
    assert (out / "run.json").read_text() == (ref / "run.json").read_text()


def test_cli_on_a_local_ray_instance(tmp_path):
    """The command as a user runs it, from another folder: Ray starts, its workers import this checkout
    (not installed) and load the weights, the files are written, and Ray is shut down."""
    root = Path(__file__).resolve().parents[1]
    args = ["evaluate", "--images", str(VAL100), "--model", "deit_tiny_patch16_224", "--weights", str(WEIGHTS),
            "--methods", "random,gaussian", "--limit", "2", "--steps", "2", "--quiet", "--out", "out",
            "--ray", "local:1", "--cpus-per-worker", "1"]
    code = f"import sys\nsys.path.insert(0, {str(root)!r})\nfrom explainers.cli import main\nsys.exit(main({args!r}))"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = _read(tmp_path / "out" / "results.csv")
    assert sorted((r["image"], r["method"]) for r in rows) == sorted(
        (p.name, m) for p in val_images(2) for m in ("random", "gaussian"))
    assert all(not r["error"] and 0 <= float(r["insertion_auc"]) <= 1 for r in rows)
    assert (tmp_path / "out" / "summary.md").read_text().count("| random |") == 1


def test_a_worker_that_cannot_load_the_model_gives_the_library_error(cluster):
    """(Runs before the module's pool takes both CPUs.)"""
    from explainers.errors import ModelLoadError
    from explainers.evaluation.distributed import RayWorkers

    with pytest.raises(ModelLoadError, match="does not exist"):
        RayWorkers("deit_tiny_patch16_224", WEIGHTS / "nowhere", workers=1)
    assert ray.is_initialized()


def test_ray_run_equals_the_serial_run(workers, serial, images, tmp_path):
    out = tmp_path / "ray"
    info = _run(workers, images, out, chunk_size=2)  # chunks of 2 pairs: an image's methods split over workers
    assert info["computed"] == 21 and info["failed"] == 0 and info["errors"] == 3
    assert_same_results(out, serial)
    broken = [r for r in _read(out / "results.csv") if r["image"] == "broken.jpg"]
    assert len(broken) == 3 and all(r["error"].startswith("ImageError") for r in broken)
    # the same summary (timings aside)
    summ = [r for r in _read(out / "summary.csv") if r["metric"] != "seconds"]
    ref = [r for r in _read(serial / "summary.csv") if r["metric"] != "seconds"]
    assert [(r["metric"], r["method"], r["n"]) for r in summ] == [(r["metric"], r["method"], r["n"]) for r in ref]
    for a, b in zip(summ, ref):
        assert abs(_num(a["mean"]) - _num(b["mean"])) <= 1e-6
    assert all(w["pid"] for w in workers.infos) and len({w["pid"] for w in workers.infos}) == 2


def test_method_parameters_reach_the_workers(workers, serial, images, deit_tiny, tmp_path):
    """``--param``: the Ray run explains with the given parameters, as the serial run does (not the defaults)."""
    half = {"attention_rollout": {"discard_ratio": 0.5}}
    kw = dict(methods="attention_rollout", boxes_path=VAL100 / "boxes.json", steps=STEPS, show_progress=False,
              params=half)
    run_evaluation(deit_tiny, images, tmp_path / "serial", **kw)
    run_evaluation(workers, images, tmp_path / "ray", **kw)

    def aucs(folder):
        return {r["image"]: _num(r["insertion_auc"]) for r in _read(folder / "results.csv")
                if r["method"] == "attention_rollout" and not r["error"]}

    ray_run, serial_run, default = aucs(tmp_path / "ray"), aucs(tmp_path / "serial"), aucs(serial)
    assert len(ray_run) == 6 and ray_run == pytest.approx(serial_run, abs=1e-6)
    assert ray_run != pytest.approx(default, abs=1e-4)


def test_a_killed_worker_is_replaced_and_its_items_run_again(workers, serial, images, tmp_path):
    pids = ray.get([a.pid.remote() for a in workers.actors])
    killed = []

    def kill_first_worker(done, total):
        if not killed:  # the worker still holds queued chunks (2 in flight per worker)
            os.kill(pids[0], signal.SIGKILL)
            killed.append(done)

    info = _run(workers, images, tmp_path / "ray", progress=kill_first_worker)
    assert killed and killed[0] < 21
    assert info["failed"] == 0 and info["computed"] == 21
    assert_same_results(tmp_path / "ray", serial)
    assert ray.get(workers.actors[0].pid.remote()) != pids[0]  # Ray restarted the actor in a new process
    assert ray.get(workers.actors[1].pid.remote()) == pids[1]


def test_an_interrupted_run_resumes_with_only_the_missing_pairs(workers, serial, images, tmp_path):
    out = tmp_path / "ray"

    def ctrl_c(done, total):
        if done >= 9:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(workers, images, out, progress=ctrl_c)
    first = (out / "results.csv").read_text().splitlines()
    n_done = len(first) - 1
    assert 9 <= n_done < 21 and not (out / "summary.csv").exists()
    totals = []
    info = _run(workers, images, out, progress=lambda done, total: totals.append(total))
    assert info["computed"] == 21 - n_done and set(totals) == {21 - n_done}
    assert (out / "results.csv").read_text().splitlines()[:len(first)] == first  # kept as they were
    assert_same_results(out, serial)


def test_resource_requests_that_cannot_be_met_are_refused(workers):
    from explainers.errors import InvalidParameterError
    from explainers.evaluation.distributed import RayWorkers, parse_address

    assert parse_address("local:3") == ("local", 3) and parse_address("auto") == ("auto", None)
    assert parse_address("ray://head:10001") == ("ray://head:10001", None)
    with pytest.raises(InvalidParameterError, match="local:N"):
        parse_address("local:0")
    # the module's cluster has 2 CPUs and no GPU (Ray is already initialised: the pool joins it)
    with pytest.raises(InvalidParameterError, match="has 0 GPUs"):
        RayWorkers("deit_tiny_patch16_224", WEIGHTS, workers=1, gpus_per_worker=0.5)
    with pytest.raises(InvalidParameterError, match="do not fit"):
        RayWorkers("deit_tiny_patch16_224", WEIGHTS, workers=3, cpus_per_worker=1)
    with pytest.raises(InvalidParameterError, match="cpus-per-worker"):
        RayWorkers("deit_tiny_patch16_224", WEIGHTS, workers=1, cpus_per_worker=0)
    assert ray.is_initialized() and len(workers.actors) == 2  # a refused pool leaves the running one alone
