"""The advisor's journey in a real browser (Playwright driving Debian's Chromium): what the
browser tests check and what ``bench/dashboard.py`` times. Not used by the app itself.

Playwright cannot download its own browsers here: it drives ``/usr/bin/chromium`` (Debian's
``chromium`` package; ``CREDIT_SCORING_CHROMIUM`` names another), with the flags that keep a
headless Chromium off the network.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

APP = Path(__file__).parents[1] / "dashboard" / "app.py"
CHROMIUM = os.environ.get("CREDIT_SCORING_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROW_TIMEOUT_MS = 30_000


def start_dashboard(api_url: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    """``streamlit run`` of the app on 127.0.0.1:``port``; returns once it is healthy."""
    env = {
        **os.environ,
        "CREDIT_SCORING_DASHBOARD_API_URL": api_url,
        "CREDIT_SCORING_ENVIRONMENT": "development",
    }
    command = [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", "127.0.0.1", "--server.port", str(port),
        "--server.headless", "true", "--browser.gatherUsageStats", "false",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=APP.parents[3],  # the project folder: its .streamlit/config.toml (theme)
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).text == "ok":
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.3)
    process.kill()
    raise RuntimeError("the dashboard did not start:\n" + log.read_text()[-3000:])


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def settled(page: Any, quiet_ms: int = 400) -> None:
    """Wait until Streamlit has finished the current run: no stale element, no "running"
    indicator, and the page unchanged for ``quiet_ms`` (a run draws its elements one by one)."""
    deadline = time.monotonic() + ROW_TIMEOUT_MS / 1000
    previous = None
    while time.monotonic() < deadline:
        page.wait_for_function(
            "() => !document.querySelector('[data-stale=\"true\"]') && "
            "!document.querySelector('[data-testid=\"stStatusWidget\"]')",
            timeout=ROW_TIMEOUT_MS,
        )
        current = page.evaluate("document.body.innerHTML.length")
        if current == previous:
            return
        previous = current
        page.wait_for_timeout(quiet_ms)
    raise TimeoutError("the page kept changing")


def sign_in(page: Any, base: str, advisor: str = "advisor-browser") -> None:
    page.goto(base)
    page.get_by_label("Your advisor id").fill(advisor)
    page.get_by_role("button", name="Sign in with a development identity").click()
    page.get_by_role("heading", name="Client score and explanation").wait_for()
    settled(page)


def choose(page: Any, label: str, option: str) -> None:
    """Pick one option of a select or multiselect by typing it, as a keyboard user would."""
    field = page.get_by_label(label, exact=True)
    field.click()
    field.fill(option)
    field.press("Enter")
    page.keyboard.press("Escape")
    settled(page)


def search(page: Any, column: str, value: str) -> None:
    choose(page, "Filter on", column)
    choose(page, f"{column}: any of", value)
    page.get_by_role("button", name="Search", exact=True).click()
    page.get_by_text("matching the filters").wait_for()
    settled(page)


def open_client(page: Any, client_id: str) -> float:
    """Open a client of the results; seconds from the click to the gauge, the decision and
    the explanation visible (the client's id caption of this very client)."""
    choose(page, "Client to open", client_id)
    start = time.perf_counter()
    page.get_by_role("button", name="Open client").click()
    page.get_by_text(f"Client {client_id} (pseudonymised id)").wait_for(timeout=ROW_TIMEOUT_MS)
    # this run's gauge, decision and explanation: present, drawn, and not the previous
    # client's (Streamlit keeps those on screen, marked stale, until it replaces them)
    page.wait_for_function(
        """() => {
          const fresh = [...document.querySelectorAll('[data-testid="stElementContainer"]')]
            .filter(e => e.getAttribute('data-stale') !== 'true');
          const has = text => fresh.some(e => e.innerText.includes(text));
          const drawn = fresh.filter(e => e.querySelector('[data-testid="stPlotlyChart"] svg'));
          return has('Gauge: the risk score is') && has('the risk score is')
            && has('Bar chart of the 10 largest contributions') && drawn.length >= 2;
        }""",
        timeout=ROW_TIMEOUT_MS,
    )
    return time.perf_counter() - start
