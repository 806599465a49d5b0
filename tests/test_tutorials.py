"""The tutorials (docs/tutorials/*.ipynb) run top to bottom on the real DeiT-Tiny weights, as a reader runs them,
and are stored without outputs."""

from __future__ import annotations

import os

import pytest
from conftest import ROOT, SHARED

TUTORIALS = sorted((ROOT / "docs" / "tutorials").glob("*.ipynb"))


def test_there_are_tutorials():
    names = {p.stem for p in TUTORIALS}
    assert {"explain_one_photo", "batch_evaluation", "text_prompts", "sanity_checks"} <= names


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_stored_without_outputs(path):
    import nbformat

    book = nbformat.read(path, as_version=4)
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip the outputs"


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs(path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    # the kernel imports this checkout's code and finds the shared data as a reader's would
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("VIT_EXPLAIN_SHARED", str(SHARED))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    book = nbformat.read(path, as_version=4)
    client = NotebookClient(book, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
