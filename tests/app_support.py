"""Shared helpers of the AppTest files: the app with the real DeiT-Tiny weights (``VIT_EXPLAIN_WEIGHTS``, an
autouse fixture once imported into a test module), a fresh AppTest, reading its Plotly charts."""

from __future__ import annotations

import base64
import json
import os

import numpy as np
import pytest
from conftest import ROOT, WEIGHTS, _require

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

TIMEOUT = 600


@pytest.fixture(scope="module", autouse=True)
def offline_weights():
    """The app's default model reads the real DeiT-Tiny weights from ../shared (no network)."""
    old = {k: os.environ.get(k) for k in ("VIT_EXPLAIN_WEIGHTS", "VIT_EXPLAIN_ALLOWED_PATHS")}
    os.environ["VIT_EXPLAIN_WEIGHTS"] = str(_require(WEIGHTS))
    os.environ.pop("VIT_EXPLAIN_ALLOWED_PATHS", None)
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def new_app(**state) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    for k, v in state.items():
        at.session_state[k] = v
    return at


def check_clean(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def plotly_specs(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def curves_spec(at: AppTest) -> dict:
    specs = [s for s in plotly_specs(at) if any("insertion" in (t.get("name") or "").lower() or
                                                "insertion" in (t.get("hovertemplate") or "")
                                                for t in s["data"])]
    assert specs, "no insertion/deletion curves were drawn"
    return specs[0]


def decode(v) -> np.ndarray:
    """A Plotly JSON array: a list, or a typed array {"dtype", "bdata" (base64), "shape"}."""
    if isinstance(v, dict):
        arr = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        shape = v.get("shape")
        if shape:
            arr = arr.reshape([int(n) for n in str(shape).split(",")])
        return arr.astype(np.float64)
    return np.asarray(v, dtype=np.float64)


def grid_values(at: AppTest) -> np.ndarray:
    """The raw patch map drawn by the page (the Plotly heatmap of the patch grid)."""
    for s in plotly_specs(at):
        for t in s["data"]:
            if t.get("type") == "heatmap":
                return decode(t["z"])
    raise AssertionError("no patch grid drawn")


def open_page(page: str, **state) -> AppTest:
    at = new_app(**state)
    at.run()
    check_clean(at)
    at.switch_page(f"vit_explain_studio/app_pages/{page}.py").run()
    check_clean(at)
    return at
