"""What the browser tests (and ``benchmarks/bench_load.py``) share: finding a Chromium, starting
``streamlit run app.py`` on a free local port, and waiting for the app.

Chromium is looked up in this order: ``$VIT_EXPLAIN_CHROMIUM``, Debian's ``/usr/bin/chromium``, Playwright's
own download (``python -m playwright install chromium``). ``make test`` installs one first (``make chromium``
runs ``python tests/browser_support.py``, which exits 0 when a Chromium starts and 1 with the command to run
when none does).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
INSTALL_HINT = ("no Chromium for the browser tests: run `sudo apt-get install chromium` (Debian/Ubuntu) or "
                "`.venv/bin/python -m playwright install --with-deps chromium`, or set VIT_EXPLAIN_CHROMIUM to a "
                "Chromium binary")


def chromium_path() -> str | None:
    """The Chromium binary to drive: None when none is installed."""
    env = os.environ.get("VIT_EXPLAIN_CHROMIUM", "").strip()
    if env:
        return env if Path(env).exists() else None
    if DEBIAN_CHROMIUM.exists():
        return str(DEBIAN_CHROMIUM)
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            path = pw.chromium.executable_path
    except Exception:  # noqa: BLE001 - Playwright missing or broken: no browser
        return None
    return path if path and Path(path).exists() else None


def launch(pw):
    """A headless Chromium (Playwright ``Browser``) from :func:`chromium_path`."""
    path = chromium_path()
    if path is None:
        raise RuntimeError(INSTALL_HINT)
    return pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120) -> float:
    """Seconds until ``/_stcore/health`` answered; raises when the server died or never answered."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}")
        if health(url):
            return time.perf_counter() - t0
        time.sleep(0.1)
    raise TimeoutError("streamlit did not become healthy")


@contextmanager
def streamlit_server(env: dict | None = None, log_path: Path | None = None, cwd: Path = ROOT, script: str = "app.py"):
    """``streamlit run app.py`` (or another entry ``script``) headless on 127.0.0.1 and a free port; yields
    (url, process)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    full_env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                    STREAMLIT_BROWSER_GATHER_USAGE_STATS="false", **(env or {}))
    log = open(log_path, "w") if log_path else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", script, "--server.headless", "true",
         "--server.address", "127.0.0.1", "--server.port", str(port)],
        cwd=cwd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(url, proc)
        yield url, proc
    finally:
        proc.kill()
        proc.wait(timeout=30)
        if log_path:
            log.close()


OUT = ROOT / "test-output" / "browser"  # screenshots and server logs of the browser tests


@contextmanager
def app_server(log_name: str, env: dict | None = None):
    """The app (``streamlit run app.py``) on the real DeiT-Tiny weights of ../shared, its log in
    ``test-output/browser/<log_name>``; yields the url. ``env`` adds or overrides environment variables."""
    from conftest import WEIGHTS, _require

    OUT.mkdir(parents=True, exist_ok=True)
    with streamlit_server(env={"VIT_EXPLAIN_WEIGHTS": str(_require(WEIGHTS)), **(env or {})},
                          log_path=OUT / log_name) as (url, _):
        yield url


@contextmanager
def chromium():
    """A headless Chromium driven by Playwright, closed after the block."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = launch(pw)
        try:
            yield browser
        finally:
            browser.close()


def wait_idle(page, timeout_ms: int = 240_000) -> None:
    """Until the app has finished running (no 'running' status widget)."""
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=timeout_ms)


def choose(page, box, option, typed: str = "", tries: int = 3) -> None:
    """Pick ``option`` (a name or a regex) from the selectbox ``box``: wait until the app is idle, open the list
    (typing ``typed`` to filter it), click the option. A rerun that redraws the box closes its list, so the list
    is opened again, at most ``tries`` times, before the last wait raises."""
    choice = page.get_by_role("option").filter(has_text=option).first
    for attempt in range(tries):
        wait_idle(page)
        box.scroll_into_view_if_needed()
        box.click()
        if typed:
            page.keyboard.type(typed)
        try:
            choice.wait_for(timeout=10_000 if attempt < tries - 1 else 30_000)
            break
        except Exception:  # noqa: BLE001 - the list closed or never opened: open it again
            if attempt == tries - 1:
                raise
            page.keyboard.press("Escape")
    choice.click()


def main() -> int:
    """Exit 0 when a Chromium is found and starts headless, else 1 with what to run."""
    path = chromium_path()
    if path is None:
        print(INSTALL_HINT, file=sys.stderr)
        return 1
    try:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = launch(pw)
            page = browser.new_page()
            page.set_content("<p>ok</p>")
            browser.close()
    except Exception as e:  # noqa: BLE001 - reported with the fix
        print(f"Chromium at {path} does not start ({e.__class__.__name__}: {str(e).splitlines()[0]}); "
              f"{INSTALL_HINT}", file=sys.stderr)
        return 1
    print(f"Chromium for the browser tests: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
