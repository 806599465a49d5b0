"""The distribution's metadata and the files around it: one source for each fact."""

from __future__ import annotations

import re
import subprocess
import sys

import tomllib
from conftest import ROOT, WEIGHTS

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirement_lines(text: str) -> list[str]:
    return [line.split("#")[0].strip() for line in text.splitlines() if line.split("#")[0].strip()]


def test_requirements_txt_is_the_runtime_of_pyproject():
    """requirements.txt (what a Space and the Docker image install) = the core dependencies + the app and clip
    extras, and no test tool."""
    runtime = PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"]["app"] + \
        PYPROJECT["optional-dependencies"]["clip"]
    lines = _requirement_lines((ROOT / "requirements.txt").read_text())
    assert lines == runtime
    for tool in ("pytest", "ruff", "hypothesis", "playwright", "grad-cam", "lxt", "torchcam", "quantus", "ray"):
        assert not any(re.match(rf"{tool}\b", line) for line in lines), tool


def test_version_changelog_and_citation_agree():
    import explainers

    version = explainers.__version__
    assert f"## [{version}]" in (ROOT / "CHANGELOG.md").read_text()
    assert f'version: "{version}"' in (ROOT / "CITATION.cff").read_text()
    assert "MIT License" in (ROOT / "LICENSE").read_text() and PYPROJECT["license"] == "MIT"


def test_readme_is_a_short_front_door():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    assert "make run" in readme and "make test" in readme
    for link in re.findall(r"\]\(((?:docs/|assets/|LICENSE|CITATION|CHANGELOG)[^)#]*)", readme):
        assert (ROOT / link).exists(), link


def test_readme_library_example_runs(tmp_path):
    """The README's ten-line example, run as written from the checkout (local weights, as on an offline machine)."""
    readme = (ROOT / "README.md").read_text()
    code = re.search(r"## The library in ten lines\n\n```python\n(.*?)```", readme, re.S).group(1)
    assert len(code.strip().splitlines()) <= 10
    assert "../shared/weights/deit_tiny_patch16_224" in code
    code = code.replace("../shared/weights/deit_tiny_patch16_224", str(WEIGHTS))
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"})
    assert r.returncode == 0, r.stderr[-2000:]
    first, second = r.stdout.strip().splitlines()
    assert first.startswith("bull mastiff") and first.endswith("(14, 14)")
    auc = [float(v) for v in re.findall(r"AUC (\d\.\d+)", second)]
    assert len(auc) == 2 and auc[0] > auc[1]  # a faithful map: insertion above deletion


def test_generated_doc_tables_cover_every_method():
    sys.path.insert(0, str(ROOT / "tools"))
    import doc_tables

    from explainers import METHODS

    methods, cite = doc_tables.methods_table(), doc_tables.cite_list()
    for name, m in METHODS.items():
        assert f"| `{name}` |" in methods and f"`{name}`" in cite
        assert m.family in doc_tables.FAMILY_PAGES, f"{name}: family {m.family!r} has no docs page"
        assert f"(`{name}`)" in doc_tables.family_section(m.family)
    for page, _ in doc_tables.FAMILY_PAGES.values():
        assert (ROOT / "docs" / "methods" / page).exists()
    page = (ROOT / "docs" / "cite.md").read_text()
    assert "| paper | methods |" in doc_tables.expand(page)


def test_every_package_is_listed_for_the_wheel():
    """pyproject lists the packages by hand (the results summary is mapped into the app package), so a new
    subpackage must be added there: a folder with an __init__.py that the list lacks would be left out of the
    wheel and break an installed library."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {".".join(p.parent.relative_to(ROOT).parts) for top in ("explainers", "vit_explain_studio")
             for p in (ROOT / top).rglob("__init__.py")}
    listed = set(setuptools["packages"])
    assert found <= listed, sorted(found - listed)
    mapped = {name: ROOT / folder for name, folder in setuptools["package-dir"].items()}
    assert listed - found == set(mapped), sorted(listed - found - set(mapped))
    assert all((folder / "summary.json").is_file() for folder in mapped.values())
