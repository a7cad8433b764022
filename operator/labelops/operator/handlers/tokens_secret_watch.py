"""Watch the labelers' tokens Secrets, so a rotated or removed token takes effect within
seconds (token_sync.py), without a rollout and without waiting for the next reconcile.

The API server filters the watch (main.py sets a label selector): the operator receives
only Secrets opted in for a campaign with the labelops.dev/campaign label, never the
operator's own database Secrets or anyone else's.
"""

from __future__ import annotations

from typing import Any

import kopf

from labelops.operator.metrics import measured
from labelops.operator.plan import TOKEN_OPT_IN_LABEL
from labelops.operator.token_sync import tokens_secret_changed

TOKENS_SECRET_WATCH = "tokens-secret"
# What the watch asks the API server for: opted-in Secrets that the operator did not write.
TOKENS_SECRET_SELECTOR = f"{TOKEN_OPT_IN_LABEL},app.kubernetes.io/managed-by!=labelops"


@kopf.on.event(
    "", "v1", "secrets", id=TOKENS_SECRET_WATCH, labels={TOKEN_OPT_IN_LABEL: kopf.PRESENT}
)
async def on_tokens_secret(body: kopf.Body, type: str | None, memo: kopf.Memo, **_: Any) -> None:
    with measured("tokens-secret"):
        await tokens_secret_changed(memo.context, body, deleted=type == "DELETED")
