"""The labeling page served by a pool's router, in headless Chromium: a real `labelops router`
in front of two real `labelops worker` processes of different task types (pairwise and
classification). A labeler signs in on the router's page once and labels the tasks of both
campaigns, each rendered with its own campaign's task type and instructions; the labels land
in each campaign's schema with that campaign's shape. Also the router's forward of a
campaign's document (GET /v1/campaigns/{campaign}) and its page and assets over plain HTTP.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser, Page, expect
from psycopg import sql
from test_labeling_page import Visit, browser
from test_oidc import AUDIENCE, Issuer, claims, issuer, published, rsa_key, sign
from test_router import (
    POOL_TOKENS,
    Worker,
    bearer,
    campaign_entry,
    problem,
    router,
    started_worker,
)
from worker_harness import TOKENS, pairwise_payload

from labelops.api.labeling_page import page_files

__all__ = ["browser", "issuer"]  # fixtures shared with test_labeling_page and test_oidc

pytestmark = pytest.mark.integration

ITEMS = 3
CHOICES = ["positive", "negative", "mixed"]
PAIRWISE = {"type": "pairwise", "instructions": "Pick the better response."}
CLASSIFICATION = {
    "type": "classification",
    "choices": CHOICES,
    "instructions": "Is the review positive, negative or mixed?",
}


def review(n: int) -> dict[str, Any]:
    return {"text": f"Review {n}: the battery lasts two days, the screen scratches."}


@pytest.fixture(scope="module")
def workers(
    postgres_dsn: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Worker]]:
    # Two labels an item: each test's labeler finds every item still open to them.
    common: dict[str, Any] = {"items": ITEMS, "labels_per_item": 2}
    with (
        started_worker(
            "p",
            postgres_dsn,
            kafka_bootstrap,
            tmp_path_factory,
            task=PAIRWISE,
            payload=pairwise_payload,
            **common,
        ) as pairwise,
        started_worker(
            "c",
            postgres_dsn,
            kafka_bootstrap,
            tmp_path_factory,
            task=CLASSIFICATION,
            payload=review,
            **common,
        ) as classification,
    ):
        yield {"p": pairwise, "c": classification}


def labels_of(worker: Worker, labeler: str) -> dict[str, Any]:
    """The labeler's labels in the campaign's schema: item id -> stored value."""
    schema = worker.campaign.config.schema_
    query = sql.SQL(
        "SELECT i.external_id, l.value FROM {} l JOIN {} i ON i.id = l.item_id WHERE l.labeler = %s"
    ).format(sql.Identifier(schema, "labels"), sql.Identifier(schema, "items"))
    with worker.campaign.pool.connection() as conn:
        return dict(conn.execute(query, (labeler,)).fetchall())


def shown_task(page: Page, previous: tuple[str, str] | None) -> tuple[str, str]:
    """The (campaign, item id) on screen, once it is not previous."""
    expect(page.locator("#task")).to_be_visible()
    if previous is not None:
        # Item ids repeat across campaigns ("p/item 0", "c/item 0" differ, but wait for both).
        page.wait_for_function(
            """([campaign, item]) =>
                document.getElementById("task-campaign-name").textContent !== campaign ||
                document.getElementById("item-id").textContent !== item""",
            arg=list(previous),
        )
    expect(page.locator("#task-campaign")).to_be_visible()
    return page.locator("#task-campaign-name").inner_text(), page.locator("#item-id").inner_text()


def test_one_sign_in_labels_both_campaigns_each_with_its_own_task_type(
    workers: dict[str, Worker], browser: Browser, tmp_path: Path
) -> None:
    p, c = workers["p"], workers["c"]
    by_name = {p.name: p, c.name: c}
    with router(workers, tmp_path, [campaign_entry(p), campaign_entry(c)]) as rt:
        visit = Visit(browser, rt)
        page = visit.page
        try:
            visit.sign_in("not-a-pool-token")
            expect(page.locator("#signin-error")).to_contain_text("not accepted")
            expect(page.locator("#campaign-name")).to_have_text("test/crowd")

            visit.sign_in(POOL_TOKENS["ann"])
            expect(page.locator("#labeler")).to_have_text("ann")
            labeled: dict[str, dict[str, Any]] = {p.name: {}, c.name: {}}
            skipped: str | None = None
            shown: list[tuple[str, str]] = []
            current: tuple[str, str] | None = None
            for _ in range(2 * ITEMS):
                current = shown_task(page, current)
                campaign, item_id = current
                shown.append(current)
                worker = by_name[campaign]
                # The page shows the campaign of the task, rendered with that campaign's
                # type and instructions.
                assert item_id.startswith(("p/" if worker is p else "c/") + "item ")
                expect(page.locator("#task-type")).to_have_text(
                    worker.campaign.config.task.type.value
                )
                expect(page.locator("#instructions")).to_have_text(
                    worker.campaign.config.task.instructions
                )
                expect(page.locator("#me-leases")).to_have_text("1 / 5")
                held = page.locator("#me-campaigns li")
                expect(held).to_have_count(1)
                expect(held).to_contain_text(campaign)
                expect(held).to_contain_text("1 held")
                n = int(item_id.rpartition(" ")[2])
                if screenshots := os.environ.get("LABELOPS_SCREENSHOT_DIR"):
                    kind = worker.campaign.config.task.type.value
                    page.screenshot(path=f"{screenshots}/router-page-{kind}.png", full_page=True)
                if worker is p:
                    expect(page.locator(".pair .option")).to_have_count(2)
                    page.keyboard.press("2")
                    labeled[campaign][item_id] = {"preferred": f"m2-{n}"}
                elif skipped is None:
                    expect(page.locator(".choices .option")).to_have_count(len(CHOICES))
                    page.keyboard.press("s")
                    visit.expect_toast("Skipped")
                    skipped = item_id
                    continue
                else:
                    page.click(".choices .option >> nth=2")
                    labeled[campaign][item_id] = {"choice": CHOICES[2]}
                page.keyboard.press("Enter")
                visit.expect_toast("Label saved")

            expect(page.locator("#empty")).to_be_visible()
            expect(page.locator("#me-leases")).to_have_text("0 / 5")
            pool = page.locator("#pool-campaigns li")
            expect(pool).to_have_count(2)
            for name in (p.name, c.name):
                expect(page.locator(f"#pool-campaigns li[data-campaign='{name}']")).to_contain_text(
                    f"{ITEMS} served"
                )
        finally:
            visit.close()

    assert {campaign for campaign, _ in shown} == {p.name, c.name}
    assert labels_of(p, "ann") == labeled[p.name] and len(labeled[p.name]) == ITEMS
    assert labels_of(c, "ann") == labeled[c.name] and len(labeled[c.name]) == ITEMS - 1
    assert skipped is not None and skipped not in labels_of(c, "ann")
    assert visit.errors == []
    # Each campaign's document was fetched once, through the router; nothing direct.
    documents = [url for url in visit.requested if "/v1/campaign" in url]
    assert sorted(documents) == sorted(f"{rt.url}/v1/campaigns/{name}" for name in by_name)
    assert all(url.startswith(rt.url + "/") for url in visit.requested), visit.requested
    assert not any(url.endswith("/v1/progress") for url in visit.requested)


def test_an_oidc_labeler_signs_in_on_the_router_s_page_with_a_bearer_jwt(
    workers: dict[str, Worker], browser: Browser, issuer: Issuer, tmp_path: Path
) -> None:
    p, c = workers["p"], workers["c"]
    key = rsa_key()
    issuer.keys.append(published(key, "page-key"))
    identity = {"oidc": {"issuer": issuer.url, "audience": AUDIENCE, "usernameClaim": "email"}}
    entries = [campaign_entry(p), campaign_entry(c, priority=1)]
    with router(workers, tmp_path, entries, identity=identity) as rt:
        visit = Visit(browser, rt)
        page = visit.page
        try:
            visit.sign_in(sign(claims(issuer, exp=1), key, kid="page-key"))
            expect(page.locator("#signin-error")).to_contain_text("not accepted")

            visit.sign_in(sign(claims(issuer, email="oona@example.com"), key, kid="page-key"))
            expect(page.locator("#labeler")).to_have_text("oona@example.com")
            campaign, item_id = shown_task(page, None)
            assert campaign == c.name  # the higher tier
            page.keyboard.press("1")
            page.keyboard.press("Enter")
            visit.expect_toast("Label saved")
            expect(page.locator("#pool-labelers")).to_contain_text("test/crowd")
        finally:
            visit.close()
    assert labels_of(c, "oona@example.com") == {item_id: {"choice": CHOICES[0]}}
    assert visit.errors == []


def test_the_router_forwards_a_campaign_s_document_and_serves_the_page(
    workers: dict[str, Worker], tmp_path: Path
) -> None:
    p, c = workers["p"], workers["c"]
    with router(workers, tmp_path, [campaign_entry(p), campaign_entry(c)]) as rt:
        ben = rt.session("ben")
        for worker in (p, c):
            routed = ben.get(f"{rt.url}/v1/campaigns/{worker.name}")
            assert routed.status_code == 200, routed.text
            direct = bearer(TOKENS["alice"]).get(f"{worker.process.url}/v1/campaign")
            assert routed.json() == direct.json()
            assert routed.json()["task"]["type"] == worker.campaign.config.task.type.value

        unknown = problem(ben.get(f"{rt.url}/v1/campaigns/nope"), 404)
        assert unknown["campaign"] == "nope" and "'nope'" in unknown["detail"]
        assert p.name in unknown["detail"] and c.name in unknown["detail"]
        missing = requests.get(f"{rt.url}/v1/campaigns/{p.name}", timeout=5)
        assert problem(missing, 401)["reason"] == "missing-credentials"
        assert missing.headers["WWW-Authenticate"].startswith('Bearer realm="labelops"')
        wrong = bearer("not-a-pool-token").get(f"{rt.url}/v1/campaigns/{p.name}")
        assert problem(wrong, 401)["reason"] == "unknown-token"

        page = requests.get(f"{rt.url}/", timeout=5)
        assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        assert 'data-mode="pool"' in page.text and "test/crowd" in page.text
        _, static = page_files()
        for name, content_type in (("app.js", "text/javascript"), ("app.css", "text/css")):
            asset = requests.get(f"{rt.url}/static/{name}", timeout=5)
            assert asset.status_code == 200
            assert asset.headers["Content-Type"].startswith(content_type)
            assert asset.content == (static / name).read_bytes()
            again = requests.get(
                f"{rt.url}/static/{name}",
                headers={"If-None-Match": asset.headers["ETag"]},
                timeout=5,
            )
            assert again.status_code == 304 and again.content == b""
        problem(requests.get(f"{rt.url}/static/index.html", timeout=5), 404)
