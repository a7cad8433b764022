"""The page blueprint: the labeling page, one HTML page that runs only its own script
(static/app.js) and talks only to this worker's API (api/labeling_page.py: the same page
the pool's router serves, here for one campaign)."""

from __future__ import annotations

from flask import Blueprint, Response, render_template, url_for

from labelops.api.labeling_page import PAGE_SECURITY_HEADERS, TEMPLATE, PageContext
from labelops.worker.http.services import Services


def page_blueprint(services: Services) -> Blueprint:
    page = Blueprint("page", __name__)
    config = services.config

    @page.get("/", endpoint="getLabelingPage")
    def labeling_page() -> Response:
        context = PageContext(
            mode="campaign",
            namespace=config.namespace,
            name=config.name,
            task_type=config.task.type.value,
            static_prefix=url_for("static", filename=""),
        )
        html = render_template(TEMPLATE, page=context)
        return Response(html, mimetype="text/html", headers=PAGE_SECURITY_HEADERS)

    return page
