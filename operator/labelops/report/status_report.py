"""`labelops status`: campaigns as a person wants to read them.

One row per campaign with a progress bar, phase, readiness, ETA; with a NAME, the full
condition list too. Reads only the campaigns' status, which the operator keeps true.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO, cast

from labelops.api.campaign import GROUP, PLURAL, VERSION

BAR_WIDTH = 24


def progress_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * width)
    return "█" * filled + "░" * (width - filled)


def _condition(status: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    for cond in status.get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return {}


def _eta(progress: Mapping[str, Any], now: dt.datetime) -> str:
    eta = progress.get("eta")
    if progress.get("labelsTarget") and progress.get("labels", 0) >= progress["labelsTarget"]:
        return "done"
    if not eta:
        return "-"
    when = dt.datetime.fromisoformat(str(eta).replace("Z", "+00:00"))
    seconds = max(0, int((when - now).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def campaign_row(obj: Mapping[str, Any], now: dt.datetime) -> list[str]:
    status = obj.get("status") or {}
    progress = status.get("progress") or {}
    target = progress.get("labelsTarget") or 0
    labels = progress.get("labels") or 0
    fraction = labels / target if target else 0.0
    meta = obj["metadata"]
    return [
        meta["namespace"],
        meta["name"],
        status.get("phase") or "Pending",
        _condition(status, "Ready").get("status", "Unknown"),
        f"{progress_bar(fraction)} {fraction * 100:5.1f}%",
        f"{labels}/{target}",
        f"{progress.get('labelsPerHour', 0):.0f}/h",
        _eta(progress, now),
    ]


HEADERS = ["NAMESPACE", "NAME", "PHASE", "READY", "PROGRESS", "LABELS", "RATE", "ETA"]


def render_table(rows: Iterable[list[str]], headers: list[str] = HEADERS) -> str:
    all_rows = [headers, *rows]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in all_rows
    )


def render_conditions(obj: Mapping[str, Any]) -> str:
    status = obj.get("status") or {}
    rows = [
        [
            c.get("type", ""),
            c.get("status", ""),
            c.get("reason", ""),
            c.get("message", ""),
        ]
        for c in status.get("conditions") or []
    ]
    return render_table(rows, ["CONDITION", "STATUS", "REASON", "MESSAGE"])


def _list_campaigns(
    name: str | None, namespace: str | None, all_namespaces: bool
) -> list[dict[str, Any]]:
    from kubernetes import client

    from labelops.report.kubeconfig import load

    load()
    api = client.CustomObjectsApi()
    if name:
        ns = namespace or _current_namespace()
        return [
            cast(dict[str, Any], api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name))
        ]
    if all_namespaces or namespace is None:
        listed = api.list_cluster_custom_object(GROUP, VERSION, PLURAL)
    else:
        listed = api.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    listed = cast(dict[str, Any], listed)
    return sorted(
        listed["items"], key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"])
    )


def _current_namespace() -> str:
    from labelops.report.kubeconfig import current_namespace

    return current_namespace()


def status(
    name: str | None,
    namespace: str | None,
    all_namespaces: bool,
    out: TextIO = sys.stdout,
) -> int:
    from kubernetes.client.exceptions import ApiException

    try:
        campaigns = _list_campaigns(name, namespace, all_namespaces)
    except ApiException as err:
        if err.status == 404:
            where = namespace or _current_namespace()
            print(f"labelingcampaign {name!r} not found in namespace {where!r}", file=sys.stderr)
            return 1
        raise
    if not campaigns:
        print("No labeling campaigns found.", file=out)
        return 0
    now = dt.datetime.now(dt.UTC)
    print(render_table(campaign_row(c, now) for c in campaigns), file=out)
    if name:
        print(file=out)
        print(render_conditions(campaigns[0]), file=out)
    return 0
