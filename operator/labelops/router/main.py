"""`labelops router`: the pool's router, configured only by its environment (settings.py),
one process on uvloop until SIGTERM (aiohttp stops accepting, lets requests finish)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping

import uvloop
from aiohttp import web

from labelops.api.environment import ConfigError
from labelops.identity.oidc import OidcVerifier
from labelops.router.app import Router
from labelops.router.identity import Identities, OidcIdentities, TokenIdentities
from labelops.router.settings import RouterSettings, settings_from_env
from labelops.router.state import PoolState

log = logging.getLogger("labelops.router")

EXIT_CONFIG = 2
SHUTDOWN_GRACE_SECONDS = 10.0


def identities(settings: RouterSettings) -> Identities:
    oidc = settings.config.identity.oidc
    if oidc is None:
        return TokenIdentities(settings.labeler_digests)
    return OidcIdentities(
        OidcVerifier(
            oidc.issuer,
            oidc.audience,
            username_claim=oidc.username_claim,
            groups_claim=oidc.groups_claim,
        )
    )


def build(settings: RouterSettings) -> Router:
    return Router(
        PoolState(settings.config, now=time.time()),
        identities(settings),
        settings.route_tokens,
        connections_per_campaign=settings.connections_per_campaign,
        relay_batches_in_flight=settings.relay_batches_in_flight,
    )


def run(environ: Mapping[str, str] | None = None) -> int:
    env = os.environ if environ is None else environ
    logging.basicConfig(
        level=env.get("LABELOPS_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        settings = settings_from_env(env)
        router = build(settings)
    except (ConfigError, ValueError) as err:
        log.error("cannot start: %s", err)
        return EXIT_CONFIG
    log.info(
        "router of pool %s/%s: %d campaigns (%s), on %s:%d",
        settings.config.namespace,
        settings.config.pool,
        len(settings.config.campaigns),
        ", ".join(c.name for c in settings.config.campaigns),
        settings.host,
        settings.port,
    )
    web.run_app(
        router.app(),
        host=settings.host,
        port=settings.port,
        shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )
    return 0
