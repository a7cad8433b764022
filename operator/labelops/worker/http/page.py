"""The page blueprint: the labeling page, one HTML page that runs only its own script
(static/app.js) and talks only to this worker's API."""

from __future__ import annotations

from flask import Blueprint, Response, render_template

from labelops.worker.http.services import Services

PAGE_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def page_blueprint(services: Services) -> Blueprint:
    page = Blueprint("page", __name__)

    @page.get("/", endpoint="getLabelingPage")
    def labeling_page() -> Response:
        html = render_template("index.html", config=services.config)
        return Response(html, mimetype="text/html", headers=PAGE_SECURITY_HEADERS)

    return page
