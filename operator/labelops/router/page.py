"""The labeling page from the pool's router: `GET /` and `GET /static/{name}`.

The same template and script a campaign's worker serves (api/labeling_page.py), loaded from
the installed package, never copied. The page is rendered once (it names only the pool);
the script renders each task with its own campaign's document, which the router forwards
(`GET /v1/campaigns/{campaign}`, router/app.py), and shows the router's `/v1/me` and
`/v1/pool` in place of one campaign's progress.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import jinja2
from aiohttp import web

from labelops.api.labeling_page import (
    ASSETS,
    PAGE_SECURITY_HEADERS,
    STATIC_URL_PATH,
    TEMPLATE,
    PageContext,
    page_files,
)
from labelops.api.pool_router import RouterConfig

CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css"}
# Revalidated on every load (a new image may bring a new script): a 304 when unchanged.
ASSET_CACHE_CONTROL = "no-cache"


@dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


class LabelingPage:
    def __init__(self, config: RouterConfig) -> None:
        templates, static = page_files()
        environment = jinja2.Environment(
            autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
        )
        template = environment.from_string((templates / TEMPLATE).read_text("utf-8"))
        context = PageContext(
            mode="pool", namespace=config.namespace, name=config.pool, task_type=""
        )
        self.html = template.render(page=context).encode()
        self.assets = {name: _asset(name, (static / name).read_bytes()) for name in ASSETS}

    def register(self, app: web.Application) -> None:
        app.router.add_get("/", self.index)
        app.router.add_get(STATIC_URL_PATH + "/{name}", self.asset)

    async def index(self, request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=self.html,
            content_type="text/html",
            charset="utf-8",
            headers=PAGE_SECURITY_HEADERS,
        )

    async def asset(self, request: web.Request) -> web.StreamResponse:
        asset = self.assets.get(request.match_info["name"])
        if asset is None:
            # The problems middleware answers it: "no such endpoint: /static/<name>".
            raise web.HTTPNotFound()
        headers = {
            "ETag": asset.etag,
            "Cache-Control": ASSET_CACHE_CONTROL,
            "X-Content-Type-Options": "nosniff",
        }
        if asset.etag in _etags(request.headers.get("If-None-Match", "")):
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=asset.body, content_type=asset.content_type, charset="utf-8", headers=headers
        )


def _asset(name: str, body: bytes) -> Asset:
    suffix = name[name.rfind(".") :]
    return Asset(body, CONTENT_TYPES[suffix], f'"{hashlib.sha256(body).hexdigest()[:32]}"')


def _etags(header: str) -> set[str]:
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}
