"""Hostile uploads (issues 16 and 17): the peak memory and time of decoding each one, in a fresh process.

Each file (built in code by ``tests/hostile_files.py``, cached in a temporary folder) goes through the app's
upload path, ``vit_explain_studio.state.decode`` (the function the sidebar calls with the uploaded bytes; it
runs without a Streamlit server), or with ``--library`` through ``explainers.load_image``, in a fresh subprocess.
The child
resets its peak RSS (``/proc/self/clear_refs``) right before the call and reports the peak increase (VmHWM
after minus RSS before) and the time; the parent kills a child that runs past ``--timeout`` or above
``--kill-mb`` of RSS.

Targets (issue 17): every hostile upload refused or decoded within 300 MB of peak RSS increase and 2 s.
Exit status 1 when one is missed.

    python benchmarks/bench_hostile_uploads.py [--library] [--only NAME ...] [--timeout 30] [--kill-mb 6000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import hostile_files as hf  # noqa: E402

TARGET_MB, TARGET_S = 300, 2.0

CASES = {  # name -> builder of the file's bytes (the sizes reported in the issues)
    "jpeg_10k_progressive_scans": lambda: hf.jpeg_scan_bomb(10_000, side=4096),
    "jpeg_800k_progressive_scans": lambda: hf.jpeg_scan_bomb(800_000, side=256),
    "jpeg_12M_empty_app_markers": lambda: hf.jpeg_marker_flood(12_000_000),
    "jpeg_header_10000x10000_data_16x16": lambda: hf.jpeg_declared(10_000, 10_000),
    "png_4M_private_chunks": lambda: hf.png_chunk_flood(4_000_000),
    "png_rgba_10000x10000": lambda: hf.png_declared(10_000, 10_000, 8, 6, full=True),
    "png_16bit_rgb_10000x10000": lambda: hf.png_declared(10_000, 10_000, 16, 2, full=True),
    "png_16bit_grey_10000x10000": lambda: hf.png_declared(10_000, 10_000, 16, 0, full=True),
    "tiff_float_10000x10000": lambda: hf.tiff_float(10_000, 10_000),
    "tiff_6M_strip_offsets": lambda: hf.tiff_tag_flood(6_000_000),
    "webp_rgba_16383x6100": lambda: hf.webp_full(16383, 6100),
    "ico_holding_png_14142x14142": lambda: hf.ico_holding(hf.png_declared(14142, 14142, 8, 6, full=True)),
    "gif_24M_comment_subblocks": lambda: hf.gif_comment_flood(24_000_000),
    "bmp_rle8_48MB": lambda: hf.bmp_rle8(8000, 6000, 48_000_000),
    "pgm_plain_4900x4900": lambda: hf.ppm_plain(4900, 4900),
}
LARGEST_ACCEPTED = {  # real images just inside the bound: accepted, and within the same targets
    "ok_png_rgba_4096x4096": lambda: hf.png_declared(4096, 4096, 8, 6, full=True),
    "ok_png_rgb_7000x5000": lambda: hf.png_declared(7000, 5000, 8, 2, full=True),
    "ok_png_16bit_grey_6000x6000": lambda: hf.png_declared(6000, 6000, 16, 0, full=True),
    "ok_jpeg_10000x10000": lambda: hf.jpeg_full(10_000, 10_000),
    "ok_jpeg_progressive_6000x4000": lambda: hf.jpeg_full(6000, 4000, progressive=True),
    "ok_webp_4000x3000": lambda: hf.webp_lossy(4000, 3000),
}
CASES.update(LARGEST_ACCEPTED)

CHILD = r"""
import gc, json, os, sys, time
sys.path.insert(0, {root!r})
import torch
torch.set_num_threads(1)
from explainers import ImageError
if {library!r}:
    from explainers import load_image as decode
else:
    import logging
    logging.getLogger("streamlit").setLevel(logging.ERROR)
    from vit_explain_studio.state import decode
data = open({path!r}, "rb").read()
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
def hwm():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmHWM"))
gc.collect()
before = rss()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
t0 = time.perf_counter()
try:
    out = decode(data)
    img = out[0] if isinstance(out, tuple) else out
    result = f"accepted as {{img.size[0]}}x{{img.size[1]}} {{img.mode}}"
except ImageError as e:
    result = "refused: " + str(e)
except Exception as e:
    result = f"RAW {{type(e).__name__}}: {{e}}"
seconds = time.perf_counter() - t0
print(json.dumps({{"seconds": seconds, "peak_mb": max(0.0, hwm() - before), "before_mb": before, "result": result}}))
"""


def build(name: str, cache: Path) -> Path:
    path = cache / f"{name}.bin"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(CASES[name]())
        tmp.replace(path)
    return path


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))
    except (OSError, StopIteration):
        return 0.0


def measure(path: Path, library: bool, timeout: float, kill_mb: float, base_mb: float = 0.0) -> dict:
    """Run one decode in a fresh child. A killed child's peak is its RSS minus ``base_mb`` (the RSS a child
    has before decoding)."""
    code = CHILD.format(root=str(ROOT), library=library, path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0, peak = time.perf_counter(), 0.0
    while proc.poll() is None:
        peak = max(peak, _rss_mb(proc.pid))
        if time.perf_counter() - t0 > timeout or peak > kill_mb:
            proc.kill()
            proc.wait()
            why = f"KILLED after {time.perf_counter() - t0:.0f} s" if peak <= kill_mb else f"KILLED at {peak:.0f} MB"
            return {"seconds": time.perf_counter() - t0, "peak_mb": peak - base_mb, "result": why}
        time.sleep(0.02)
    out, err = proc.communicate()
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"seconds": float("nan"), "peak_mb": float("nan"), "result": "CRASHED: " + err.strip()[-200:]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", action="store_true", help="decode with explainers.load_image, not the app's path")
    ap.add_argument("--only", nargs="*", default=None, help="case names (default: all)")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--kill-mb", type=float, default=6000.0)
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "vit_explain_hostile"))
    args = ap.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    names = args.only or list(CASES)
    path_name = "explainers.load_image" if args.library else "vit_explain_studio.state.decode (the app's upload path)"
    print(f"decoding through {path_name}; targets: <= {TARGET_MB} MB peak RSS increase, <= {TARGET_S} s")
    print(f"{'file':38s} {'size':>8s} {'peak MB':>8s} {'seconds':>8s}  result")
    tiny = cache / "tiny.png"
    tiny.write_bytes(hf.png_declared(4, 4, full=True))
    base_mb = measure(tiny, args.library, args.timeout, args.kill_mb)["before_mb"]
    ok = True
    for name in names:
        path = build(name, cache)
        r = measure(path, args.library, args.timeout, args.kill_mb, base_mb)
        good = r["peak_mb"] <= TARGET_MB and r["seconds"] <= TARGET_S and not r["result"].startswith(
            ("RAW", "KILLED", "CRASHED"))
        ok &= good
        size = path.stat().st_size / 2**20
        print(f"{name:38s} {size:6.2f}MB {r['peak_mb']:8.1f} {r['seconds']:8.2f}  {'' if good else 'MISSED '}"
              f"{r['result'][:110]}", flush=True)
    print("all within the targets" if ok else "some files missed the targets")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
