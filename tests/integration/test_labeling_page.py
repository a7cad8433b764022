"""The labeling page in headless Chromium (Debian's package, driven by Playwright): a labeler
signs in, labels with keys and clicks, skips, watches their progress, until nothing is left.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest
from psycopg import sql
from worker_harness import (
    TOKENS,
    Campaign,
    LiveApi,
    campaign_config,
    live_api,
    provisioned,
    unique_name,
)

from labelops.store.items import ItemRecord

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]

from playwright.sync_api import Browser, ConsoleMessage, Page, Request, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # A missing browser fails these tests, never skips them: a green run must mean the page
    # was tested.
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium); "
            ".ci/run does, and `make test` refuses to start without it",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Served(Protocol):
    """Whatever serves the page: a worker (LiveApi) or a pool's router."""

    url: str


class Visit:
    """One labeler's tab, recording console errors and every URL the page asked for."""

    def __init__(self, browser: Browser, api: Served) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page: Page = self.context.new_page()
        self.requested: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.requested.append(_url(r)))
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.api = api

    def _console(self, message: ConsoleMessage) -> None:
        # A 4xx the page handled (a refused token) is logged by Chromium; that is expected.
        if message.type == "error" and "Failed to load resource" not in message.text:
            self.errors.append(message.text)

    def sign_in(self, token: str) -> None:
        self.page.goto(self.api.url + "/")
        self.page.fill("#token", token)
        self.page.click("#signin-form button[type=submit]")

    def expect_item(self, previous: str | None = None) -> str:
        item = self.page.locator("#item-id")
        expect(self.page.locator("#task")).to_be_visible()
        if previous is not None:
            expect(item).not_to_have_text(previous)
        return item.inner_text()

    def expect_toast(self, text: str) -> None:
        expect(self.page.locator("#toast")).to_have_text(text)

    def close(self) -> None:
        self.context.close()


def _url(request: Request) -> str:
    return request.url


def stored_labels(campaign: Campaign) -> dict[str, Any]:
    query = sql.SQL(
        "SELECT i.external_id, l.value FROM {labels} l JOIN {items} i ON i.id = l.item_id"
    ).format(
        labels=sql.Identifier(campaign.config.schema_, "labels"),
        items=sql.Identifier(campaign.config.schema_, "items"),
    )
    with campaign.pool.connection() as conn:
        return dict(conn.execute(query).fetchall())


@pytest.fixture
def campaign_with(postgres_dsn: str, kafka_bootstrap: str) -> Iterator[Any]:
    opened: list[Any] = []

    def open_campaign(task: dict[str, Any], items: list[ItemRecord]) -> tuple[Campaign, LiveApi]:
        config = campaign_config(unique_name("page"), task, items=len(items))
        provisioning = provisioned(postgres_dsn, kafka_bootstrap, config)
        campaign = provisioning.__enter__()
        opened.append(provisioning)
        campaign.seed(items)
        serving = live_api(campaign)
        api = serving.__enter__()
        opened.append(serving)
        return campaign, api

    yield open_campaign
    for context in reversed(opened):
        context.__exit__(None, None, None)


def pair(n: int) -> dict[str, Any]:
    return {
        "prompt": f"Question {n}: how do vaccines work?",
        "responses": [
            {
                "id": f"model-a-{n}",
                "text": f"They train the immune system to recognise a pathogen ({n}).",
            },
            {"id": f"model-b-{n}", "text": f"They contain tiny magnets ({n})."},
        ],
    }


def test_a_full_pairwise_round_with_keys_clicks_and_a_skip(
    browser: Browser, campaign_with: Any
) -> None:
    campaign, api = campaign_with(
        {"type": "pairwise"}, [ItemRecord(f"q/{n}", pair(n), priority=10 - n) for n in range(4)]
    )
    visit = Visit(browser, api)
    page = visit.page
    posts: list[str] = []
    page.on(
        "request",
        lambda r: posts.append(r.url.removeprefix(api.url)) if r.method == "POST" else None,
    )
    try:
        visit.sign_in("not-a-token")
        expect(page.locator("#signin-error")).to_contain_text("not accepted")

        visit.sign_in(TOKENS["alice"])
        expect(page.locator("#labeler")).to_have_text("alice")
        expect(page.locator("#instructions")).to_have_text(campaign.config.task.instructions)
        expect(page.locator("#shortcut-list")).to_contain_text("Response A is better")
        expect(page.locator(".pair .option")).to_have_count(2)

        first = visit.expect_item()
        assert first == "q/0"  # highest priority first
        page.keyboard.press("1")
        expect(page.locator(".pair .option").first).to_have_attribute("aria-pressed", "true")
        page.keyboard.press("Enter")
        visit.expect_toast("Label saved")
        expect(page.locator("#me-today")).to_have_text("1 / 1000")

        second = visit.expect_item(previous=first)
        page.click(".pair .option >> nth=1")
        page.click("#submit")
        visit.expect_toast("Label saved")
        expect(page.locator("#me-today")).to_have_text("2 / 1000")

        skipped = visit.expect_item(previous=second)
        page.keyboard.press("s")
        visit.expect_toast("Skipped")

        last = visit.expect_item(previous=skipped)
        page.keyboard.press("t")
        page.fill("#rationale", "Both are fine.")
        page.keyboard.press("Control+Enter")  # submits from inside the text box
        visit.expect_toast("Label saved")

        expect(page.locator("#empty")).to_be_visible()
        expect(page.locator("#me-today")).to_have_text("3 / 1000")
        expect(page.locator("#me-left")).to_have_text("997")
        expect(page.locator("#campaign-counts")).to_contain_text("3 of 4 labels")
        expect(page.locator("#campaign-percent")).to_have_text("75%")
        if screenshots := os.environ.get("LABELOPS_SCREENSHOT_DIR"):
            page.screenshot(path=f"{screenshots}/labeling-page-done.png", full_page=True)
    finally:
        visit.close()

    assert stored_labels(campaign) == {
        first: {"preferred": "model-a-0"},
        second: {"preferred": "model-b-1"},
        last: {"preferred": "tie", "rationale": "Both are fine."},
    }
    assert skipped not in stored_labels(campaign)
    assert visit.errors == []
    # A label's receipt carries the next task (?next=true): the page claims only at the
    # start, after the skip, and once more when a receipt brought none (to learn why).
    label_posts = [p for p in posts if "/labels" in p]
    assert len(label_posts) == 3 and all(p.endswith("/labels?next=true") for p in label_posts)
    assert posts.count("/v1/tasks/claim") == 3, posts
    assert all(url.startswith(api.url + "/") for url in visit.requested), visit.requested


TYPE_ROUNDS: dict[str, tuple[dict[str, Any], dict[str, Any], list[str], dict[str, Any]]] = {
    # task, payload, what the labeler does (keys, or "click:<selector>"), the stored value
    "rating": (
        {"type": "rating", "scale": {"min": 1, "max": 7}},
        {"prompt": "Summarise the article.", "text": "A fine summary."},
        ["6", "Enter"],
        {"score": 6},
    ),
    "classification": (
        {"type": "classification", "choices": ["positive", "negative", "neutral"]},
        {"text": "I loved it."},
        ["3", "click:.choices .option >> nth=0", "Enter"],
        {"choice": "positive"},
    ),
    "classification-multiple": (
        {"type": "classification", "choices": ["spam", "toxic", "off-topic"], "multiple": True},
        {"text": "Buy now!!!"},
        ["3", "1", "click:.choices .option >> nth=2", "2", "Enter"],
        {"choices": ["spam", "toxic"]},
    ),
    "ranking": (
        {"type": "ranking"},
        {
            "prompt": "Rank the answers.",
            "responses": [{"id": r, "text": f"answer {r}"} for r in ("x", "y", "z")],
        },
        [
            "3",
            "ArrowUp",
            "ArrowUp",
            "click:.ranking li >> nth=2 >> button[aria-label='Move up']",
            "Enter",
        ],
        {"order": ["z", "y", "x"]},
    ),
    "free-text": (
        {"type": "free-text", "minLength": 5, "maxLength": 40},
        {"prompt": "Describe the image."},
        ["type:A cat", "type: on a mat", "Control+Enter"],
        {"text": "A cat on a mat"},
    ),
}


@pytest.mark.parametrize("variant", TYPE_ROUNDS)
def test_each_task_type_is_labeled_from_the_page(
    variant: str, browser: Browser, campaign_with: Any
) -> None:
    task, payload, actions, expected = TYPE_ROUNDS[variant]
    campaign, api = campaign_with(task, [ItemRecord("only", payload)])
    visit = Visit(browser, api)
    page = visit.page
    try:
        visit.sign_in(TOKENS["bob"])
        visit.expect_item()
        if variant == "free-text":
            expect(page.locator("#submit")).to_be_disabled()  # nothing typed yet
        for action in actions:
            if action.startswith("click:"):
                page.click(action.removeprefix("click:"))
            elif action.startswith("type:"):
                page.keyboard.type(action.removeprefix("type:"))
            else:
                page.keyboard.press(action)
        visit.expect_toast("Label saved")
        expect(page.locator("#empty")).to_be_visible()
        if screenshots := os.environ.get("LABELOPS_SCREENSHOT_DIR"):
            page.screenshot(path=f"{screenshots}/labeling-page-{variant}.png", full_page=True)
    finally:
        visit.close()
    assert stored_labels(campaign) == {"only": expected}
    assert visit.errors == []


def test_a_refused_label_shows_the_problem_and_keeps_the_task(
    browser: Browser, campaign_with: Any
) -> None:
    custom = {"properties": {"text": {"pattern": "^[^0-9]*$"}}}
    campaign, api = campaign_with(
        {"type": "free-text", "labelSchema": custom}, [ItemRecord("t", {"prompt": "No digits."})]
    )
    visit = Visit(browser, api)
    page = visit.page
    try:
        visit.sign_in(TOKENS["carol"])
        visit.expect_item()
        page.keyboard.type("route 66")
        page.keyboard.press("Control+Enter")
        expect(page.locator("#error")).to_be_visible()
        expect(page.locator("#error-title")).to_have_text(
            "The label does not fit the campaign's label schema"
        )
        expect(page.locator("#error-list")).to_contain_text("/value/text")
        expect(page.locator("#item-id")).to_have_text("t")  # still on the same task
    finally:
        visit.close()
    assert stored_labels(campaign) == {}


# --- hostile content -----------------------------------------------------------------------

# Markup in every field the page shows: each would set window.__pwned or change the title if
# the page ever turned text into HTML.
HOSTILE_INSTRUCTIONS = "<script>window.__pwned = 'instructions'</script><b>bold?</b>"
HOSTILE_ID = "\"'><img src=x onerror=\"window.__pwned='id'\">"
HOSTILE_PAIR: dict[str, Any] = {
    "prompt": "<script>window.__pwned = 'prompt'; document.title = 'pwned'</script>",
    "responses": [
        {
            "id": '"><img src=x onerror="window.__pwned=\'response-id\'">',
            "text": "<img src=x onerror=\"window.__pwned='response-text'\">",
        },
        {
            "id": "b",
            "text": "<svg onload=\"window.__pwned='svg'\"></svg>"
            "<a href=\"javascript:window.__pwned='link'\">click</a>"
            "<iframe srcdoc=\"<script>parent.__pwned='iframe'</script>\"></iframe>",
        },
    ],
}
INJECTED = "#task img, #task script, #task svg, #task iframe, #task a, #instructions b"


def directives(policy: str) -> dict[str, list[str]]:
    parsed: dict[str, list[str]] = {}
    for part in policy.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


def test_markup_in_items_and_instructions_is_shown_as_text_and_never_runs(
    browser: Browser, campaign_with: Any
) -> None:
    campaign, api = campaign_with(
        {"type": "pairwise", "instructions": HOSTILE_INSTRUCTIONS},
        [ItemRecord(HOSTILE_ID, HOSTILE_PAIR)],
    )
    visit = Visit(browser, api)
    page = visit.page
    try:
        response = page.goto(api.url + "/")
        assert response is not None
        policy = directives(response.headers["content-security-policy"])
        # Only the page's own script runs: no inline script, no handler attribute, no eval,
        # no plugin, no frame, nothing fetched or posted elsewhere.
        assert policy["default-src"] == ["'none'"]
        assert policy["script-src"] == ["'self'"]
        assert policy["connect-src"] == ["'self'"]
        assert policy["base-uri"] == ["'none'"] and policy["form-action"] == ["'none'"]
        assert policy["frame-ancestors"] == ["'none'"]
        assert "object-src" not in policy and "frame-src" not in policy  # default-src 'none'
        assert response.headers["x-content-type-options"] == "nosniff"
        title = page.title()

        visit.sign_in(TOKENS["alice"])
        assert visit.expect_item() == HOSTILE_ID
        expect(page.locator("#instructions")).to_have_text(HOSTILE_INSTRUCTIONS)
        expect(page.locator("#task")).to_contain_text(HOSTILE_PAIR["prompt"])
        expect(page.locator("#task")).to_contain_text(HOSTILE_PAIR["responses"][1]["text"])
        assert page.locator(INJECTED).count() == 0, "markup became elements"
        assert page.evaluate("window.__pwned") is None
        assert page.title() == title

        # Labeled like any item: the hostile response id is stored exactly as it came.
        page.keyboard.press("1")
        page.keyboard.press("Enter")
        visit.expect_toast("Label saved")
        assert page.evaluate("window.__pwned") is None
        assert visit.errors == []

        # The policy is a second wall: markup that did become elements (a future bug) still
        # could not run. Chromium reports each block as a securitypolicyviolation.
        page.evaluate(
            """() => {
                window.__blocked = [];
                document.addEventListener("securitypolicyviolation",
                    (e) => window.__blocked.push(e.effectiveDirective));
                document.body.insertAdjacentHTML("beforeend",
                    '<img src="/no-such-image.png" onerror="window.__pwned = \\'handler\\'">');
                const script = document.createElement("script");
                script.textContent = "window.__pwned = 'inline script'";
                document.body.append(script);
            }"""
        )
        page.wait_for_function("window.__blocked.length >= 2")
        blocked = page.evaluate("window.__blocked")
        assert sorted(set(blocked)) == ["script-src-attr", "script-src-elem"], blocked
        assert page.evaluate("window.__pwned") is None
        assert page.title() == title
    finally:
        visit.close()
    assert stored_labels(campaign) == {
        HOSTILE_ID: {"preferred": HOSTILE_PAIR["responses"][0]["id"]}
    }
