"""The server's event loop keeps its place while visitors' explanations compute (issue 16: the health check's
p95 latency was 259 ms with six sessions on two cores, and the event loop's waits were almost all time spent
runnable, waiting for a core held by a computation). A computation's native workers (torch's OpenMP
threads, which never hold the GIL) run at a higher nice value (:func:`vit_explain_studio.cache.lower_priority`); Python
threads, the event loop's main thread and the computing thread itself, keep theirs (a niced thread holding
the GIL stalls the event loop). Checked in a fresh process, so that the test run's own threads keep theirs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FRAGMENT = """
import json, os, sys, threading
sys.path.insert(0, {root!r})
import torch
from vit_explain_studio import cache

torch.set_num_threads(2)
a = torch.randn(256, 256)
a @ a  # the main thread's own workers exist before any computation (as the server's model load makes them)
prio = lambda tid: os.getpriority(os.PRIO_PROCESS, tid)
seen = []

def rerun():  # a Streamlit rerun: a thread of its own that computes in a slot
    with cache.compute_slot():
        for _ in range(20):
            a @ a
        with cache.compute_slot():  # nested: nothing changes
            seen.append({{"thread": prio(threading.get_native_id()),
                         "workers": [prio(t) for t in cache.native_thread_ids()]}})

for _ in range(2):
    t = threading.Thread(target=rerun)
    t.start()
    t.join()
print(json.dumps({{"main": prio(threading.get_native_id()), "seen": seen}}))
"""


def run_fragment(nice: str) -> dict:
    env = {"PATH": "/usr/bin:/bin", "VIT_EXPLAIN_COMPUTE_NICE": nice, "VIT_EXPLAIN_CACHE_MB": "64"}
    out = subprocess.run([sys.executable, "-c", FRAGMENT.format(root=str(ROOT))], capture_output=True, text=True,
                         timeout=300, env=env, cwd=str(ROOT))
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


base = os.getpriority(os.PRIO_PROCESS, 0) if hasattr(os, "getpriority") else 0
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux") or base >= 18,
                                reason="per-thread nice values are Linux's; this process is niced to the limit")


@linux_only
def test_computations_run_below_the_event_loop():
    """Every rerun's native compute workers (torch's OpenMP threads, made by each new thread, and those made
    before the first computation) run at the configured nice value; the Python threads keep their own."""
    nice = min(19, base + 7)
    r = run_fragment(str(nice))
    assert r["main"] == base, r
    assert len(r["seen"]) == 2, r
    for s in r["seen"]:
        assert s["thread"] == base, r
        assert len(s["workers"]) >= 2 and all(w >= nice for w in s["workers"]), r  # the rerun's own too


@linux_only
def test_a_nice_value_of_zero_leaves_priorities_alone():
    r = run_fragment("0")
    assert r["main"] == base and all(s["thread"] == base for s in r["seen"]), r
    assert all(w == base for s in r["seen"] for w in s["workers"]), r


def test_the_configured_value_is_clamped(monkeypatch):
    from vit_explain_studio import cache

    for raw, want in (("5", 5), ("-3", 0), ("40", 19), ("soon", cache.COMPUTE_NICE)):
        monkeypatch.setenv("VIT_EXPLAIN_COMPUTE_NICE", raw)
        assert cache.compute_nice() == want
    monkeypatch.delenv("VIT_EXPLAIN_COMPUTE_NICE")
    assert cache.compute_nice() == cache.COMPUTE_NICE == 10
