"""The operator's Kopf entry: settings, handler registration (by import) and `run()`.

Runs as `labelops operator`. Plain `kopf run -m labelops.operator.main` is not enough:
handlers need the OperatorContext (settings and clients) that run() builds and hands over as memo.

The Kubernetes permissions the operator needs are the list in rbac.py; the Helm chart grants
exactly those (tests/tools/test_chart_render.py compares them), cluster-wide or per watched
namespace. Kopf's cluster scanning (CRD and namespace watches) is off so that nothing
cluster-scoped is needed: the namespaces served are the ones named, the resources the ones
the API server serves at start, hence the CRD check before Kopf runs.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kopf

from labelops.api.campaign import GROUP, PLURAL, VERSION
from labelops.operator import metrics
from labelops.operator.context import OperatorContext
from labelops.operator.handlers import (  # noqa: F401  (importing registers the handlers)
    campaign_progress,
    campaign_reclaim,
    campaign_reconcile,
    campaign_watch,
    pool_reconcile,
    tokens_secret_watch,
    worker_rollout,
)
from labelops.operator.routine_logs import quiet_routine_successes
from labelops.operator.settings import ConfigError, OperatorSettings, watch_namespaces

# Blocking client calls run in threads; 100 campaigns reconciling at once need more than
# asyncio's default of cpu+4.
CLIENT_THREADS = 32


@kopf.on.startup(id="labelops-settings")
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    # Annotations, not status.kopf: the structural schema would prune unknown status fields.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Only warnings of Kopf's own logs become Events; condition transitions are posted
    # explicitly by the status writer.
    settings.posting.level = logging.WARNING
    settings.posting.reporting_component = "labelops-operator"
    # Timers and the Deployment watch succeed every few seconds per campaign: their
    # success lines would be most of the log at a thousand campaigns.
    quiet_routine_successes(
        frozenset(
            {
                campaign_watch.CAMPAIGN_WATCH,
                campaign_reconcile.RESYNC_TIMER,
                pool_reconcile.POOL_TIMER,
                worker_rollout.WORKER_ROLLOUT,
                tokens_secret_watch.TOKENS_SECRET_WATCH,
            }
        )
    )
    # The API server ends a watch after server_timeout; the client gives up a little later
    # so a silently dropped connection is noticed instead of waiting forever.
    settings.watching.server_timeout = 270
    settings.watching.client_timeout = 300
    settings.watching.connect_timeout = 10
    # Only the labelers' tokens Secrets reach the operator, filtered by the API server.
    settings.watching.label_selectors["v1", "secrets"] = tokens_secret_watch.TOKENS_SECRET_SELECTOR
    settings.networking.request_timeout = 60
    settings.peering.standalone = True
    # No CRD or namespace watches: they would need cluster-wide list/watch (rbac.py).
    settings.scanning.disabled = True
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=CLIENT_THREADS, thread_name_prefix="labelops-client")
    )


def run(namespaces: Sequence[str] = (), verbose: bool = False) -> int:
    """Run until SIGINT/SIGTERM; returns the process exit code.

    namespaces: the ones to serve (a Role in each suffices); empty: the whole cluster.
    """
    kopf.configure(verbose=verbose)
    try:
        settings = OperatorSettings.from_env()
        served = watch_namespaces(namespaces)
    except ConfigError as err:
        print(f"labelops operator: {err}", file=sys.stderr)
        return 2
    context = OperatorContext.create(settings)
    if not context.kube.serves_campaigns():
        context.close()
        print(
            f"labelops operator: the API server does not serve {PLURAL}.{GROUP}/{VERSION}: "
            "install the CRD (crds/, or the Helm chart) first; the operator serves only what "
            "exists when it starts, so it exits and its pod restarts until then",
            file=sys.stderr,
        )
        return 3
    metrics_server = metrics.serve(settings.metrics_port)
    try:
        asyncio.run(
            kopf.operator(
                clusterwide=not served,
                namespaces=list(served),
                standalone=True,
                liveness_endpoint=settings.liveness_endpoint,
                memo=kopf.Memo(context=context),
            )
        )
    finally:
        metrics_server.shutdown()
        context.close()
    return 0
