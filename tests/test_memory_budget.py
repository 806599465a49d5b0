"""One memory budget for every cache of the app, and freed memory handed back to the system (issues 16 and 17:
a crowd of two sessions held 1.9 GB; a session's large uploads grew the process past the cache budget)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image

from vit_explain_studio import cache


def test_images_are_counted_as_pillow_stores_them():
    # Pillow keeps RGB (and RGBA, CMYK, 32-bit) pixels in 4 bytes, 8-bit grey and palette in 1, 16-bit grey in 2
    assert cache.nbytes(Image.new("RGB", (100, 50))) == 100 * 50 * 4
    assert cache.nbytes(Image.new("RGBA", (100, 50))) == 100 * 50 * 4
    assert cache.nbytes(Image.new("L", (100, 50))) == 100 * 50
    assert cache.nbytes(Image.new("P", (100, 50))) == 100 * 50
    assert cache.nbytes(Image.new("I;16", (100, 50))) == 100 * 50 * 2
    assert cache.nbytes(Image.new("F", (100, 50))) == 100 * 50 * 4
    assert cache.nbytes({"a": [np.zeros(1000, np.float32), b"x" * 10]}) == 4010


@pytest.mark.parametrize("mb", ["64", "256", "1000"])
def test_the_stores_together_stay_within_the_budget(monkeypatch, mb):
    monkeypatch.setenv("VIT_EXPLAIN_CACHE_MB", mb)
    cache.stores.clear()
    try:
        stores = cache.stores()
        assert {"images", "captures", "renders", "curves", "downloads", "sanity"} <= set(stores)
        assert sum(s.max_bytes for s in stores.values()) <= int(mb) * 2**20
        from vit_explain_studio import sanity_page

        assert sanity_page._store() is stores["sanity"]  # the Sanity page's results are inside the budget too
    finally:
        cache.stores.clear()


FRAGMENT = textwrap.dedent("""
    import json, os, sys, threading, time
    sys.path.insert(0, {root!r})
    import numpy as np
    from vit_explain_studio import cache

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    kept = []
    def work():  # a computation on a worker thread: 400 MB of 100 kB blocks, one in 50 outlives it
        blocks = [bytearray(100_000) for _ in range(4000)]
        kept.extend(blocks[::50])
    t = threading.Thread(target=work)
    t.start()
    t.join()
    time.sleep(0.2)
    held = rss()
    cache.LRU(2**20).put("result", np.zeros(10), owner="s")  # what a computation stores when it ends
    time.sleep(1.0)
    print(json.dumps({{"held": held, "after": rss(), "kept_mb": len(kept) * 0.1}}))
""")


@pytest.mark.skipif(not sys.platform.startswith("linux") or cache._LIBC is None, reason="glibc only")
def test_storing_a_result_returns_freed_memory_to_the_system():
    """Memory freed between live blocks stays in glibc's arenas (resident) until malloc_trim: storing a computed
    value wakes a trim, so the process shrinks back to what is alive."""
    out = subprocess.run([sys.executable, "-c", FRAGMENT.format(root=str(ROOT))], capture_output=True, text=True,
                         timeout=120, env={"PATH": "/usr/bin:/bin", "MALLOC_ARENA_MAX": "2"})
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["held"] - r["after"] > 250, r  # ~390 MB freed but resident before the trim


def test_computations_take_turns(monkeypatch):
    """One computation at a time by default (each holds its own autograd buffers); nested calls in one
    thread do not wait for themselves; VIT_EXPLAIN_PARALLEL_PASSES allows more."""
    import threading
    import time

    monkeypatch.setattr(cache, "_slots", None)
    running, most = [0], [0]
    lock = threading.Lock()

    def work():
        with cache.compute_slot(), cache.compute_slot():  # re-entrant
            with lock:
                running[0] += 1
                most[0] = max(most[0], running[0])
            time.sleep(0.05)
            with lock:
                running[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    [t.start() for t in threads]
    [t.join(10) for t in threads]
    assert most[0] == 1 and running[0] == 0
    monkeypatch.setenv("VIT_EXPLAIN_PARALLEL_PASSES", "3")
    monkeypatch.setattr(cache, "_slots", None)
    most[0] = 0
    threads = [threading.Thread(target=work) for _ in range(6)]
    [t.start() for t in threads]
    [t.join(10) for t in threads]
    assert most[0] == 3
