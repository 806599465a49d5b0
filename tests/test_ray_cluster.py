"""Two Ray nodes joined with ``ray start`` on this machine, with token authentication (issue 24, causes 15-16):
``evaluate --ray HEAD:PORT`` with a relative ``--weights`` path from another folder gives the serial run's rows,
and a driver without the cluster's token gets the advice instead of Ray's raw error. Every process the test
starts is in a process group of its own, killed at the end even when the test fails."""

from __future__ import annotations

import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from conftest import VAL100, WEIGHTS
from run_support import read_csv

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

RAY = Path(sys.executable).with_name("ray")
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _left(marker: str) -> list[int]:
    """Processes whose command line names this test's own folder (Ray's workers of the two nodes)."""
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if marker.encode() in (p / "cmdline").read_bytes():
                    pids.append(int(p.name))
            except OSError:
                continue
    return pids


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    root = tmp_path_factory.mktemp("raycluster")
    short = Path(tempfile.mkdtemp(prefix="vr", dir="/tmp"))  # Ray's socket paths must stay under 108 bytes
    home = root / "home"
    home.mkdir()
    port, token = _free_port(), uuid.uuid4().hex
    base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "PYTHONPATH"}
    base.update(HOME=str(home), RAY_USAGE_STATS_ENABLED="0", OMP_NUM_THREADS="1")
    env = {**base, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    groups = []
    common = ["--num-cpus=1", "--disable-usage-stats"]
    try:
        for args in (["--head", f"--port={port}", f"--temp-dir={short}", "--include-dashboard=false"],
                     [f"--address=127.0.0.1:{port}"]):
            p = subprocess.Popen([str(RAY), "start", *args, *common], env=env, start_new_session=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            groups.append(p.pid)  # ray start leads its group: the node's processes stay in it after it exits
            out, _ = p.communicate(timeout=240)
            assert p.returncode == 0, out[-3000:]
        yield {"address": f"127.0.0.1:{port}", "env": env, "base": base, "root": root}
    finally:
        for g in reversed(groups):
            _kill_group(g)
        deadline = time.time() + 10
        while _left(str(short)) and time.time() < deadline:
            for pid in _left(str(short)):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        shutil.rmtree(short, ignore_errors=True)


def _evaluate(cluster, env, cwd: Path, weights: str):
    cwd.mkdir(exist_ok=True)
    args = ["evaluate", "--images", str(VAL100), "--model", "deit_tiny_patch16_224", "--weights", weights,
            "--methods", "random,gaussian", "--limit", "2", "--steps", "2", "--quiet", "--out", "out",
            "--ray", cluster["address"], "--workers", "2", "--cpus-per-worker", "1"]
    code = f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom explainers.cli import main\nsys.exit(main({args!r}))"
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=400)


def test_two_nodes_with_a_token_and_a_relative_weights_path(cluster, deit_tiny, tmp_path):
    from explainers.evaluation import run_evaluation

    cwd = cluster["root"] / "elsewhere"
    cwd.mkdir(exist_ok=True)
    relative = os.path.relpath(WEIGHTS, cwd)
    assert not Path(relative).is_absolute()
    done = _evaluate(cluster, cluster["env"], cwd, relative)
    assert done.returncode == 0, done.stderr[-3000:]
    serial = tmp_path / "serial"
    run_evaluation(deit_tiny, VAL100, serial, methods="random,gaussian", limit=2, steps=2, show_progress=False)
    got = {(r["image"], r["method"]): r for r in read_csv(cwd / "out" / "results.csv")}
    want = read_csv(serial / "results.csv")
    assert len(got) == len(want) == 4  # 2 workers x 1 CPU: one on each node
    for w in want:
        r = got[(w["image"], w["method"])]
        assert r["target"] == w["target"] and not r["error"]
        for c in ("probability", "insertion_auc", "deletion_auc"):
            assert math.isclose(float(r[c]), float(w[c]), abs_tol=1e-6), c


def test_a_driver_without_the_token_gets_the_advice(cluster):
    cwd = cluster["root"] / "no-token"
    done = _evaluate(cluster, cluster["base"], cwd, str(WEIGHTS))
    assert done.returncode == 2, done.stderr[-3000:]
    err = done.stderr.split("error: ", 1)[-1]
    assert "RAY_AUTH_MODE=token" in err and "RAY_AUTH_TOKEN" in err and "this process has none" in err
    assert "Traceback" not in done.stderr
