"""The labeling page's one template in both modes (api/labeling_page.py): the router's
rendering (router/page.py) and a campaign's, with undefined variables refused, so a typo in
the template fails here rather than rendering as an empty string in the worker's Flask."""

from __future__ import annotations

import re

import jinja2

from labelops.api.labeling_page import ASSETS, TEMPLATE, PageContext, page_files
from labelops.api.pool_router import RouterConfig
from labelops.router.page import LabelingPage

POOL = RouterConfig.model_validate(
    {
        "pool": "crowd",
        "namespace": "ns",
        "identity": {"tokens": {"secretRef": {"name": "t"}}},
        "campaigns": [{"name": "a", "url": "http://a:8080"}],
    }
)


def rendered(context: PageContext) -> str:
    templates, _ = page_files()
    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return environment.from_string((templates / TEMPLATE).read_text("utf-8")).render(page=context)


def ids(html: str) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', html))


def test_the_router_renders_the_page_for_its_pool_and_holds_the_package_assets() -> None:
    page = LabelingPage(POOL)
    html = page.html.decode()
    assert '<body data-mode="pool" data-task-type="">' in html
    assert "<title>crowd · labelops</title>" in html and ">ns/crowd<" in html
    assert 'href="/static/app.css"' in html and 'src="/static/app.js"' in html
    assert "{{" not in html and "{%" not in html
    assert 'id="pool-campaigns"' in html and 'id="campaign-percent"' not in html
    _, static = page_files()
    assert {name: a.body for name, a in page.assets.items()} == {
        name: (static / name).read_bytes() for name in ASSETS
    }
    assert page.assets["app.js"].content_type == "text/javascript"


def test_every_element_the_script_looks_up_is_in_the_page_of_some_mode() -> None:
    campaign = rendered(PageContext("campaign", "ns", "c", "pairwise", "/static/"))
    pool = rendered(PageContext("pool", "ns", "crowd", ""))
    assert '<body data-mode="campaign" data-task-type="pairwise">' in campaign
    assert 'id="me-today"' in campaign and 'id="pool-campaigns"' not in campaign
    _, static = page_files()
    script = (static / "app.js").read_text("utf-8")
    looked_up = set(re.findall(r'\$\("([a-z-]+)"\)', script))
    assert looked_up and looked_up <= ids(campaign) | ids(pool), looked_up - ids(campaign)
    # What both modes' code paths share (signing in, the task, errors) is in both.
    shared = {"token", "signin-form", "task", "item-id", "task-campaign", "instructions", "error"}
    assert shared <= ids(campaign) & ids(pool)
