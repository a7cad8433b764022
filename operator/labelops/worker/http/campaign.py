"""The campaign blueprint: what the campaign asks for (task type, instructions, the label
schema the page renders) and how far it has come."""

from __future__ import annotations

from flask import Blueprint, Response

from labelops.worker.http import json_bodies
from labelops.worker.http.services import Services, respond


def campaign_blueprint(services: Services) -> Blueprint:
    campaign = Blueprint("campaign", __name__)
    # The campaign's description changes only with a new config, that is a new worker.
    description = json_bodies.campaign(services.config)

    @campaign.get("/v1/campaign", endpoint="getCampaign")
    def get_campaign() -> Response:
        return respond(description)

    @campaign.get("/v1/progress", endpoint="getProgress")
    def get_progress() -> Response:
        return respond(json_bodies.progress(services.store.progress(), services.config))

    return campaign
