"""The dashboard in a real browser (Playwright, Debian's Chromium) against the running API:
the advisor's journey, the page titles, text at 200%, and an axe-core scan of every page.
Screenshots and axe reports go to test-artifacts/dashboard/ (kept by CI)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from credit_scoring.auth.tokens import mint_development_token
from credit_scoring.config.loader import PROJECT_ROOT
from credit_scoring.devtools import journey
from tests.conftest import require_binary
from tests.serving_fixtures import free_port, stop_server

ARTIFACTS = Path(os.environ.get("CREDIT_SCORING_TEST_ARTIFACTS", PROJECT_ROOT / "test-artifacts"))
BLOCKING = {"serious", "critical"}


@pytest.fixture(scope="module")
def dashboard(api_server: dict[str, Any], tmp_path_factory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("dashboard") / "streamlit.log"
    process = journey.start_dashboard(api_server["url"], port, log)
    yield f"http://127.0.0.1:{port}/"
    stop_server(process)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(journey.CHROMIUM).exists():
        require_binary(Path(journey.CHROMIUM).name)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = journey.launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


def revolving_clients(api_url: str) -> list[str]:
    headers = {"Authorization": f"Bearer {mint_development_token('test', ['advisor'])}"}
    body = httpx.get(
        f"{api_url}/clients/search",
        params=[("eq:NAME_CONTRACT_TYPE", "Revolving loans"), ("limit", 20)],
        headers=headers,
    ).json()
    return [c["client_id"] for c in body["clients"]]


def scan(page: Any, name: str) -> list[dict[str, Any]]:
    """axe-core on the page as it is; the serious and critical violations."""
    from axe_playwright_python.sync_playwright import Axe

    journey.settled(page)
    results = Axe().run(page)
    folder = ARTIFACTS / "dashboard"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"axe-{name}.json").write_text(json.dumps(results.response["violations"], indent=2))
    screenshot(page, folder / f"{name}.png")
    return [v for v in results.response["violations"] if v.get("impact") in BLOCKING]


def screenshot(page: Any, path: Path) -> None:
    """The whole page: Streamlit scrolls inside its main block, so grow the viewport to it."""
    size = page.viewport_size
    height = page.evaluate(
        'Math.max(...[...document.querySelectorAll(\'[data-testid="stMain"], '
        '[data-testid="stMainBlockContainer"]\')].map(e => e.scrollHeight), 900)'
    )
    page.set_viewport_size({"width": size["width"], "height": min(int(height) + 100, 12000)})
    page.wait_for_timeout(300)
    page.screenshot(path=str(path))
    page.set_viewport_size(size)


def _summary(violations: list[dict[str, Any]]) -> list[str]:
    return [f"{v['id']} ({v['impact']}): {len(v['nodes'])} node(s)" for v in violations]


def test_the_advisor_journey_in_a_browser(dashboard, api_server, page):
    journey.sign_in(page, dashboard, advisor="advisor-browser")
    assert page.title() == "Client score and explanation · Credit advisor dashboard"
    journey.search(page, "NAME_CONTRACT_TYPE", "Revolving loans")
    assert page.get_by_text("matching the filters").is_visible()
    client_id = revolving_clients(api_server["url"])[3]
    seconds = journey.open_client(page, client_id)
    assert seconds < 30
    main = page.locator('[data-testid="stMain"]')
    text = main.inner_text()
    assert "Risk score (probability of default)" in text  # the gauge's own title, drawn
    assert ("✖ Refuse: the risk score is" in text) or ("✔ Accept: the risk score is" in text)
    assert "raises the risk" in text or "lowers the risk" in text
    charts = page.locator('[data-testid="stPlotlyChart"]')
    charts.nth(3).wait_for()
    journey.settled(page)  # the comparison section is drawn after the explanation
    text = main.inner_text()
    assert charts.count() == 4  # gauge, explanation, distribution, bivariate plot
    assert "this client among the comparison group" in text
    assert "by decision" in text
    assert "Histogram of " in text and "Scatter plot of " in text  # their text alternatives
    violations = scan(page, "client")
    assert not violations, _summary(violations)

    # text resized to 200% (WCAG 1.4.4): Streamlit sizes text in rem, so the root font size
    page.evaluate("document.documentElement.style.fontSize = '200%'")
    page.wait_for_timeout(300)
    decision = page.get_by_text("the risk score is", exact=False).first
    box = decision.bounding_box()
    width = page.evaluate("document.documentElement.clientWidth")
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width + 1
    assert (
        page.evaluate("parseFloat(getComputedStyle(document.querySelector('h1')).fontSize)")
        >= 2 * 32
    )
    screenshot(page, ARTIFACTS / "dashboard" / "client-text-200.png")


def test_every_page_has_a_distinct_title_and_passes_axe(dashboard, page):
    page.goto(dashboard)
    page.get_by_role("heading", name="Sign in (development)").wait_for()
    journey.settled(page)
    assert page.title() == "Sign in (development) · Credit advisor dashboard"
    violations = {"sign-in": scan(page, "sign-in")}
    journey.sign_in(page, dashboard, advisor="advisor-axe")
    titles = {}
    for link, heading in (
        ("Model card", "Model card"),
        ("Transparency", "Transparency: how client data are used"),
        ("Client score", "Client score and explanation"),
    ):
        page.get_by_role("link", name=link, exact=True).click()
        page.get_by_role("heading", name=heading).wait_for()
        journey.settled(page)
        titles[link] = page.title()
        violations[link] = scan(page, link.lower().replace(" ", "-"))
    assert titles == {
        "Model card": "Model card · Credit advisor dashboard",
        "Transparency": "Transparency: how client data are used · Credit advisor dashboard",
        "Client score": "Client score and explanation · Credit advisor dashboard",
    }
    assert {k: _summary(v) for k, v in violations.items()} == {k: [] for k in violations}
