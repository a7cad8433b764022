"""The labeler blueprint: what the worker knows of the labeler presenting the token (their
labels today, quota left, leases held)."""

from __future__ import annotations

from flask import Blueprint, Response, g

from labelops.worker.http import json_bodies
from labelops.worker.http.services import Services, respond


def labeler_blueprint(services: Services) -> Blueprint:
    labeler = Blueprint("labeler", __name__)

    @labeler.get("/v1/me", endpoint="getMe")
    def get_me() -> Response:
        return respond(json_bodies.me(services.store.me(g.labeler)))

    return labeler
