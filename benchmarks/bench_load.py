"""A bounded crowd against a local server: N Chromium sessions for T minutes (issue 16 item 7).

    VIT_EXPLAIN_WEIGHTS=../shared/weights/deit_tiny_patch16_224 python benchmarks/bench_load.py --sessions 6 --minutes 3

Starts ``streamlit run app.py`` (``VIT_EXPLAIN_CACHE_MB`` as given, default 256), opens N sessions in one
headless Chromium and drives them round-robin like visitors: switch page (attention rollout, transformer
attribution, generic attention, gradients, compare), move a cheap slider, download a file, now and then
upload a distinct photo. Meanwhile it samples the server's resident memory (RSS, the process and its
children) and the latency of ``/_stcore/health`` every 0.5 s. Prints RSS start/peak/end, health latency
p50/p95/max, page errors and failed downloads, and checks them against the targets: 0 page errors, 0 failed
downloads, peak RSS <= budget + model + 400 MB, p95 health latency <= 250 ms.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from browser_support import launch, streamlit_server, wait_idle  # noqa: E402

DEFAULT_WEIGHTS = ROOT.parent / "shared" / "weights" / "deit_tiny_patch16_224"
PAGES = [("attention", "Attention rollout"), ("chefer", "Transformer attribution (LRP)"),
         ("generic_attention", "Generic attention"), ("gradients", "Gradients and CAM"), ("compare", "Compare")]


class Monitor(threading.Thread):
    """Samples the server's RSS (MB) and the health check's latency (s) until stopped."""

    def __init__(self, url: str, pid: int, period: float = 0.5):
        super().__init__(daemon=True)
        self.url, self.pid, self.period = url, pid, period
        self.rss: list[float] = []
        self.latency: list[float] = []
        self.health_failures = 0
        self.stop = threading.Event()

    def sample_rss(self) -> float:
        """Resident MB of the server and its child processes (Linux /proc)."""
        total, todo = 0, [self.pid]
        while todo:
            pid = todo.pop()
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
                for task in Path(f"/proc/{pid}/task").iterdir():
                    todo += [int(c) for c in (task / "children").read_text().split()]
            except (OSError, StopIteration, ValueError):
                continue
        return total / 1024

    def run(self) -> None:
        while not self.stop.is_set():
            self.rss.append(self.sample_rss())
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=10) as r:
                    ok = r.status == 200
            except OSError:
                ok = False
            self.latency.append(time.perf_counter() - t)
            self.health_failures += not ok
            self.stop.wait(self.period)


def photo(seed: int) -> bytes:
    """A distinct 1600x1200 JPEG per upload (the decoded-image cache must stay within the budget)."""
    rng = np.random.default_rng(seed)
    photo = ROOT / "vit_explain_studio" / "assets" / "samples" / "both.png"
    base = np.asarray(Image.open(photo).convert("RGB").resize((1600, 1200)))
    noisy = np.clip(base.astype(np.int16) + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def visitor_step(page, url: str, k: int, step: int, stats: dict) -> None:
    """One action of session ``k``: a page switch, a slider move, a download or an upload."""
    action = step % 4
    main = page.locator("[data-testid=stMain]")
    if action == 0:
        key, _ = PAGES[(k + step // 4) % len(PAGES)]
        page.locator(f"[data-testid=stSidebarNav] a[href$='/{key}']").first.click(timeout=30_000)
    elif action == 1:
        slider = main.locator("[data-testid=stSlider] [role=slider]").first
        if slider.count():
            slider.focus()
            page.keyboard.press("ArrowLeft" if step % 8 < 4 else "ArrowRight")
    elif action == 2:  # a visitor downloads what the page shows once it is drawn
        wait_idle(page, 60_000)  # still busy after a minute: counted as a slow action by the caller
        buttons = main.get_by_role("button", name="JSON report")
        if buttons.count():
            try:
                with page.expect_download(timeout=60_000) as info:
                    buttons.first.click(timeout=30_000)
                if info.value.failure():
                    raise RuntimeError(info.value.failure())
                stats["downloads"] += 1
            except Exception as e:  # noqa: BLE001 - counted
                stats["failed_downloads"] += 1
                stats["download_errors"].append(f"{type(e).__name__}: {str(e)[:120]}")
    elif step % 16 == 3:
        side = page.locator("[data-testid=stSidebar]")
        side.get_by_text("Upload", exact=True).click(timeout=30_000)
        side.locator("input[type=file]").set_input_files(files=[{
            "name": f"crowd-{k}-{step}.jpg", "mimeType": "image/jpeg", "buffer": photo(1000 * k + step)}])
        stats["uploads"] += 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=6)
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--cache-mb", type=int, default=256, help="VIT_EXPLAIN_CACHE_MB of the server")
    ap.add_argument("--pause", type=float, default=0.5, help="seconds between two actions of one session")
    args = ap.parse_args()
    weights = os.environ.get("VIT_EXPLAIN_WEIGHTS", str(DEFAULT_WEIGHTS))
    # as `make run` and the Docker image start it (the app sets two arenas itself when this is unset)
    env = {"VIT_EXPLAIN_WEIGHTS": weights, "VIT_EXPLAIN_CACHE_MB": str(args.cache_mb),
           "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", "2")}
    stats = {"downloads": 0, "failed_downloads": 0, "download_errors": [], "uploads": 0, "errors": [], "steps": 0}
    from playwright.sync_api import sync_playwright

    print(f"{args.sessions} sessions x {args.minutes} min, VIT_EXPLAIN_CACHE_MB={args.cache_mb}, CPUs "
          f"{os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    with streamlit_server(env=env, log_path=ROOT / "test-output" / "bench_load.log") as (url, proc), \
            sync_playwright() as pw:
        mon = Monitor(url, proc.pid)
        mon.start()
        browser = launch(pw)
        pages = []
        for _ in range(args.sessions):
            page = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900}).new_page()
            page.on("pageerror", lambda e: stats["errors"].append(str(e)[:200]))
            page.goto(url, timeout=120_000)
            pages.append(page)
        for page in pages:  # "model": the server with the model loaded and every session's first page drawn
            wait_idle(page, 240_000)
        rss_model = mon.sample_rss()
        t_end = time.time() + 60 * args.minutes
        step = 0
        while time.time() < t_end:
            for k, page in enumerate(pages):
                try:
                    visitor_step(page, url, k, step + k, stats)
                except Exception as e:  # noqa: BLE001 - a slow page is not an app error; counted apart
                    stats.setdefault("slow_actions", 0)
                    stats["slow_actions"] = stats.get("slow_actions", 0) + 1
                    _ = e
                stats["steps"] += 1
            step += 1
            time.sleep(args.pause)
        for page in pages:  # let the last reruns finish before looking for blank pages
            try:
                wait_idle(page, 120_000)
            except Exception:  # noqa: BLE001 - a page still busy is counted blank below
                pass
        blank = sum(1 for p in pages if p.locator("[data-testid=stMain] h1").count() == 0)
        browser.close()
        mon.stop.set()
        mon.join(timeout=15)
        rss_end = mon.sample_rss()
    lat = sorted(mon.latency)
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000  # noqa: E731
    peak = max(mon.rss)
    bound = args.cache_mb + rss_model + 400
    print(f"actions {stats['steps']} · uploads {stats['uploads']} · downloads {stats['downloads']} · slow actions "
          f"{stats.get('slow_actions', 0)} · pages blank at the end {blank}")
    print(f"server RSS MB: start {mon.rss[0]:.0f} · with the model and {args.sessions} sessions drawn {rss_model:.0f}"
          f" · peak {peak:.0f} · end {rss_end:.0f} · median {statistics.median(mon.rss):.0f}")
    print(f"health latency ms: p50 {p(0.5):.0f} · p95 {p(0.95):.0f} · max {lat[-1] * 1000:.0f} "
          f"({len(lat)} checks, {mon.health_failures} failed)")
    print(f"page errors {len(stats['errors'])} · failed downloads {stats['failed_downloads']} · load average at the "
          f"end {os.getloadavg()[0]:.1f} (a busy machine delays the server's event loop: compare idle runs)")
    for e in (stats["errors"] + stats["download_errors"])[:5]:
        print("  ", e)
    checks = {"0 page errors": not stats["errors"], "0 failed downloads": stats["failed_downloads"] == 0,
              f"peak RSS <= budget + model + 400 MB ({bound:.0f} MB)": peak <= bound,
              "p95 health latency <= 250 ms": p(0.95) <= 250}
    for name, ok in checks.items():
        print(f"{'meets' if ok else 'MISSES'}: {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
