"""Optional packages: ``import explainers`` imports none of them, the core install explains a photo, and a feature
whose extra is missing names the extra to install (never a bare ModuleNotFoundError)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, SAMPLES, WEIGHTS

from explainers import _extras
from explainers.cli import program_name
from explainers.errors import ExplainerError, MissingExtraError

OPTIONAL = ("streamlit", "ray", "open_clip", "sentencepiece", "quantus")
# what the core install lacks: the extras and the test tools / oracles of the dev extra
NOT_CORE = (*OPTIONAL, "pytorch_grad_cam", "cv2", "lxt", "torchcam", "zennit", "pytest", "hypothesis", "playwright",
            "mkdocs", "nbclient")

# As in a core-only install: Python treats a None in sys.modules as "no such module" (import raises
# ModuleNotFoundError, importlib.util.find_spec answers None).
BLOCK = """
import sys
for _name in BLOCKED:
    sys.modules[_name] = None
"""

def _python(code: str, blocked=(), timeout=240) -> subprocess.CompletedProcess:
    prefix = f"BLOCKED = {tuple(blocked)!r}\n{BLOCK}\n" if blocked else ""
    return subprocess.run([sys.executable, "-c", prefix + code], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})


def test_import_explainers_imports_no_optional_package():
    r = _python("import sys, json, explainers\n"
                f"print(json.dumps([m for m in {NOT_CORE!r} if m in sys.modules]))")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == []


def _block(monkeypatch, name: str) -> None:
    """Make ``name`` unimportable, as Python does for a blocked import (None in sys.modules), with its
    submodules that earlier tests of the session may have imported (they would be found without the parent)."""
    for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        monkeypatch.setitem(sys.modules, loaded, None)
    monkeypatch.setitem(sys.modules, name, None)


@pytest.mark.parametrize("module, extra", [("open_clip", "clip"), ("open_clip.zero_shot_metadata", "clip"),
                                           ("sentencepiece", "clip"), ("ray", "ray"), ("quantus", "quantus"),
                                           ("streamlit", "app")])
def test_require_names_the_extra(monkeypatch, module, extra):
    _block(monkeypatch, module.split(".")[0])
    with pytest.raises(MissingExtraError) as e:
        _extras.require(module)
    assert f'pip install "vit-explain-studio[{extra}]"' in str(e.value)
    assert isinstance(e.value, ExplainerError) and isinstance(e.value, ImportError)


def test_require_returns_the_module_when_installed():
    import json as json_module

    assert _extras.require("json") is json_module
    assert _extras.available("json") and not _extras.available("no_such_module_xyz")


def test_missing_dependency_of_an_installed_package_is_named(tmp_path, monkeypatch):
    # open_clip is there but its own import fails on a missing dependency: the extra and the dependency are named
    pkg = tmp_path / "open_clip"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("import ftfy_missing_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "open_clip", raising=False)
    with pytest.raises(MissingExtraError) as e:
        _extras.require("open_clip")
    assert 'pip install "vit-explain-studio[clip]"' in str(e.value)
    assert "ftfy_missing_dependency_xyz" in str(e.value)


def test_features_name_their_extra(monkeypatch):
    import explainers
    from explainers.evaluation.distributed import RayWorkers
    from explainers.text import imagenet_classnames, resolve_templates

    for name in ("open_clip", "ray"):
        _block(monkeypatch, name)
    with pytest.raises(MissingExtraError, match=r"\[clip\]"):
        resolve_templates("imagenet")
    with pytest.raises(MissingExtraError, match=r"\[clip\]"):
        imagenet_classnames()
    with pytest.raises(MissingExtraError, match=r"open_clip:ViT-B-16.*\[clip\]"):
        explainers.load_model("open_clip:ViT-B-16", weights="random", device="cpu")
    with pytest.raises(MissingExtraError, match=r"--ray.*\[ray\]"):
        RayWorkers("deit_tiny_patch16_224", WEIGHTS, address="local", workers=1)


def test_program_name():
    assert program_name("/venv/bin/vit-explain") == "vit-explain"
    assert program_name("C:/venv/Scripts/vit-explain.exe") == "vit-explain"
    assert program_name("/repo/explainers/__main__.py") == "python -m explainers"


def test_core_install_explains_a_photo_and_names_missing_extras():
    """With every optional package and test tool made unimportable: the command line explains a sample photo with
    the default method on the real DeiT-Tiny, and the text-prompt path names the 'clip' extra."""
    code = f"""
import json, sys
from explainers.cli import main
rc = main(["explain", "--model", "deit_tiny_patch16_224", "--weights", {str(WEIGHTS)!r},
           "--image", {str(SAMPLES / "chelsea.png")!r}, "--out", sys.argv[0] + ".png"])
assert rc == 0, rc
import explainers
from explainers.errors import MissingExtraError
try:
    explainers.load_model("open_clip:ViT-B-16", weights="random", device="cpu")
except MissingExtraError as e:
    print("MISSING:", e)
print("LOADED:", json.dumps(sorted(m for m in {NOT_CORE!r} if sys.modules.get(m) is not None)))
"""
    r = _python(code.replace('sys.argv[0] + ".png"', repr(str(ROOT / ".pytest_core_only.png"))), blocked=NOT_CORE)
    out = ROOT / ".pytest_core_only.png"
    try:
        assert r.returncode == 0, r.stderr[-2000:]
        assert out.stat().st_size > 1000
    finally:
        out.unlink(missing_ok=True)
    assert '"method": "attention_rollout"' in r.stdout
    assert 'MISSING: open_clip:ViT-B-16 (an open_clip model) needs the optional package open_clip' in r.stdout
    assert 'pip install "vit-explain-studio[clip]"' in r.stdout
    assert r.stdout.strip().splitlines()[-1] == "LOADED: []"


def test_app_command_names_the_app_extra(monkeypatch, capsys):
    from vit_explain_studio import launch

    monkeypatch.setitem(sys.modules, "streamlit", None)
    monkeypatch.delitem(sys.modules, "streamlit.web", raising=False)
    monkeypatch.delitem(sys.modules, "streamlit.web.cli", raising=False)
    assert launch.main(["--server.port", "1"]) == 2
    err = capsys.readouterr().err
    assert 'vit-explain-studio (the app) needs the optional package streamlit' in err
    assert 'pip install "vit-explain-studio[app]"' in err
