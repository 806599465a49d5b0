"""The app in a real browser: ``streamlit run app.py`` headless on 127.0.0.1, driven with Playwright through
Debian's ``/usr/bin/chromium``. Opens the app, uploads a photo, switches page, moves a slider, and checks
that the heatmap and the Plotly curves render. Screenshots go to ``test-output/browser/``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT, SAMPLES, WEIGHTS, _require

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
OUT = ROOT / "test-output" / "browser"
WAIT_MS = 240_000  # the first model load and explanation on a busy 2-core CI machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("streamlit did not become healthy")


@pytest.fixture(scope="module")
def server():
    if not CHROMIUM.exists():
        pytest.fail("/usr/bin/chromium is missing: apt-get install chromium (.ci/run does)")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    OUT.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, VIT_EXPLAIN_WEIGHTS=str(_require(WEIGHTS)), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", STREAMLIT_BROWSER_GATHER_USAGE_STATS="false")
    log = open(OUT / "streamlit.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port)],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.kill()
        proc.wait(timeout=30)
        log.close()


def _wait_idle(page) -> None:
    """Until the app has finished running (no 'running' status widget)."""
    page.wait_for_function(
        "() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=WAIT_MS)


def test_upload_switch_page_slider(server):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1500, "height": 2300})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(server, timeout=60_000)

            # 1. the landing page shows a heatmap on the bundled sample with no clicks
            main = page.locator("[data-testid=stMain]")
            expect(main.get_by_text("Attention Rollout · ", exact=False).first).to_be_visible(timeout=WAIT_MS)
            _wait_idle(page)
            expect(main.locator(".js-plotly-plot", has_text="Top-5 predictions")).to_be_visible(timeout=WAIT_MS)
            page.screenshot(path=str(OUT / "1-landing.png"))

            # 2. upload a photo
            sidebar = page.locator("[data-testid=stSidebar]")
            sidebar.get_by_text("Upload", exact=True).click()
            data = (SAMPLES / "chelsea.png").read_bytes()
            sidebar.locator("input[type=file]").set_input_files(
                files=[{"name": "uploaded-cat.png", "mimeType": "image/png", "buffer": data}])
            expect(sidebar.get_by_text("uploaded-cat.png · 451×300")).to_be_visible(timeout=WAIT_MS)
            _wait_idle(page)

            # 3. switch page: attention rollout (the upload stays selected)
            sidebar.get_by_role("link", name="Attention rollout").click()
            expect(main.get_by_role("heading", name="Attention rollout")).to_be_visible(timeout=WAIT_MS)
            overlay = main.locator("[data-testid=stImage] img").first
            expect(overlay).to_be_visible(timeout=WAIT_MS)
            expect(sidebar.get_by_text("uploaded-cat.png · 451×300")).to_be_visible()
            curves = main.locator(".js-plotly-plot", has_text="Insertion")
            expect(curves).to_be_visible(timeout=WAIT_MS)
            _wait_idle(page)
            assert curves.locator(".scatterlayer .trace").count() >= 2  # insertion and deletion drawn
            expect(main.get_by_text("Insertion AUC ↑", exact=True)).to_be_visible()
            before = overlay.get_attribute("src")
            assert overlay.evaluate("img => img.complete && img.naturalWidth > 0")

            # 4. move a cheap slider: the discard ratio
            slider = main.locator("[data-testid=stSlider]", has_text="Discard ratio").get_by_role("slider")
            slider.focus()
            for _ in range(40):
                page.keyboard.press("ArrowLeft")
            expect(slider).to_have_attribute("aria-valuetext", "0.50", timeout=30_000)
            page.wait_for_function(
                "(src) => { const img = document.querySelector('[data-testid=stMain] [data-testid=stImage] img');"
                " return img && img.src !== src && img.complete && img.naturalWidth > 0; }",
                arg=before, timeout=WAIT_MS)
            _wait_idle(page)
            # each key press queued a fragment rerun; while they drain, the old chart can stand beside the new
            # one for a moment: wait until exactly one curves chart is left
            expect(curves).to_have_count(1, timeout=60_000)
            _wait_idle(page)
            expect(curves).to_be_visible()
            assert curves.locator(".scatterlayer .trace").count() >= 2
            page.screenshot(path=str(OUT / "2-attention-after-slider.png"))

            # 5. a long method can be cancelled while it runs
            sidebar.get_by_role("link", name="GradMask").click()
            expect(main.get_by_role("heading", name="GradMask")).to_be_visible(timeout=WAIT_MS)
            _wait_idle(page)
            masks = main.locator("[data-testid=stSlider]", has_text="Masks layer").get_by_role("slider")
            masks.focus()
            page.keyboard.press("End")  # 33 x 192 masked forward passes: long on any CPU
            main.get_by_role("button", name="Run").click()
            cancel = main.get_by_role("button", name="Cancel")
            expect(cancel).to_be_visible(timeout=WAIT_MS)
            cancel.click()
            expect(main.get_by_text("Cancelled.", exact=False)).to_be_visible(timeout=WAIT_MS)
            expect(main.get_by_role("button", name="Run again")).to_be_visible()
            _wait_idle(page)
            page.screenshot(path=str(OUT / "3-gradmask-cancelled.png"))
            assert main.locator("[data-testid=stException]").count() == 0
            assert not errors, errors
        finally:
            browser.close()
