"""The labeling page as both its servers render it: a campaign's worker (worker/http/page.py,
one campaign) and a pool's router (router/page.py, every campaign of the pool).

One template and one script, package data of the worker package
(labelops/worker/templates/index.html, labelops/worker/static/): the router loads the same
files from the installed package (page_files()), it does not import the worker. The template
is rendered with a PageContext under the name `page`; the script reads the mode from
`<body data-mode>`.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Literal

TEMPLATE = "index.html"
STATIC_URL_PATH = "/static"
# The page's only assets, each served from static/ under STATIC_URL_PATH.
ASSETS = ("app.js", "app.css")

PAGE_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

PageMode = Literal["campaign", "pool"]


@dataclass(frozen=True)
class PageContext:
    """What the template shows before anyone signs in.

    mode: "campaign" (a worker: one campaign, its progress) or "pool" (a router: each task's
    own campaign, the pool's shares). name: the campaign's or the pool's. task_type: the
    campaign's, or "" for a pool (each task shows its own). static_prefix: where ASSETS are,
    ending in "/".
    """

    mode: PageMode
    namespace: str
    name: str
    task_type: str
    static_prefix: str = STATIC_URL_PATH + "/"


def page_files() -> tuple[Traversable, Traversable]:
    """The template and static directories of the installed package: (templates, static)."""
    worker = files("labelops") / "worker"
    return worker / "templates", worker / "static"
