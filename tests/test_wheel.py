"""The built wheel, installed as a user installs it: in a new virtual environment outside the checkout, with
``pip install "<wheel>[app]"``. The dependencies are not downloaded again: the new environment sees the test
environment's site-packages through a ``.pth`` file, so ``pip install --no-index`` finds them satisfied (and the
checkout's own editable install, if any, stays inactive: a path listed in a .pth file has its own .pth files
ignored)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, WEIGHTS

pytestmark = pytest.mark.slow
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "explainers", "vit_explain_studio")


def _run(args, cwd, timeout=600, env=None):
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, f"{args[:3]}: {r.stdout[-1500:]}\n{r.stderr[-3000:]}"
    return r


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:  # a copy of the sources, so the build leaves nothing in the checkout
        (shutil.copytree if (ROOT / name).is_dir() else shutil.copy2)(ROOT / name, src / name, **(
            {"ignore": ignore} if (ROOT / name).is_dir() else {}))
    (src / "results").mkdir()  # of the reference results, the wheel ships the summary only
    shutil.copy2(ROOT / "results" / "summary.json", src / "results" / "summary.json")
    _run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp / "dist")], cwd=src)
    (wheel,) = (tmp / "dist").glob("vit_explain_studio-*.whl")

    venv = tmp / "venv"
    # no pip or setuptools of its own (they would shadow newer ones torch needs): the test environment's pip,
    # seen through the .pth file, installs into this environment (its sys.prefix)
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
    py = venv / "bin" / "python"
    purelib = _run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp).stdout
    (Path(purelib.strip()) / "dev_site_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp), "HF_HUB_OFFLINE": "1",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "OMP_NUM_THREADS": "2"}
    _run([str(py), "-m", "pip", "install", "--no-index", f"{wheel}[app]"], cwd=tmp, env=env)
    work = tmp / "elsewhere"  # a folder outside the checkout
    work.mkdir()
    return venv, work, env


def test_import_explainers_from_the_wheel_leaves_streamlit_out(installed):
    venv, work, env = installed
    r = _run([str(venv / "bin" / "python"), "-c",
              "import sys, explainers; print(explainers.__file__); print('streamlit' in sys.modules)"], work, env=env)
    path, streamlit_loaded = r.stdout.split()
    assert Path(path).is_relative_to(venv) and not Path(path).is_relative_to(ROOT)
    assert streamlit_loaded == "False"


def test_vit_explain_command(installed):
    venv, work, env = installed
    r = _run([str(venv / "bin" / "vit-explain"), "--help"], work, env=env)
    assert r.stdout.startswith("usage: vit-explain ")
    sample = _run([str(venv / "bin" / "python"), "-c", "import vit_explain_studio, pathlib; print(pathlib.Path("
                   "vit_explain_studio.__file__).parent / 'assets' / 'samples' / 'chelsea.png')"], work, env=env)
    sample = Path(sample.stdout.strip())
    assert sample.is_file() and sample.is_relative_to(venv)  # the sample photos ship inside the package
    pages = _run([str(venv / "bin" / "python"), "-c", "from vit_explain_studio import settings as s; keys = ["
                  "p.key for p in s.EXPLAINER_PAGES] + ['home', 'compare', 'evaluate', 'attention_browser', 'sanity', "
                  "'inside', 'benchmark']; print(all(s.page(k).is_file() for k in keys), s.page('home'), s.RESULTS)"],
                 work, env=env).stdout.split()
    assert pages[0] == "True" and Path(pages[1]).is_relative_to(venv)  # and so do the page scripts
    assert (Path(pages[2]) / "summary.json").is_file() and Path(pages[2]).is_relative_to(venv)  # and the results
    r = _run([str(venv / "bin" / "vit-explain"), "explain", "--model", "deit_tiny_patch16_224", "--weights",
              str(WEIGHTS), "--image", str(sample), "--out", "heat.png"], work, env=env)
    assert json.loads(r.stdout)["target"] in range(281, 286), r.stdout[:300]  # a domestic cat (ImageNet 281-285)
    assert (work / "heat.png").stat().st_size > 1000


def test_vit_explain_studio_serves_the_app(installed):
    venv, work, env = installed
    port = _free_port()
    proc = subprocess.Popen([str(venv / "bin" / "vit-explain-studio"), "--server.port", str(port),
                             "--server.headless", "true", "--server.address", "127.0.0.1"], cwd=work,
                            env={**env, "VIT_EXPLAIN_WEIGHTS": str(WEIGHTS)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, body = time.monotonic() + 180, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as r:
                    body = r.read().decode()
                    break
            except OSError:
                time.sleep(1)
        assert body == "ok", f"no health answer; exit {proc.poll()}"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
