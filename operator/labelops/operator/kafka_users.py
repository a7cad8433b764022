"""A campaign's Kafka users and ACLs made to match kafka_access.campaign_users, and removed.

Only on a broker that authenticates with SCRAM (WorkerEnvironment.kafka_access is set);
otherwise both are no-ops. Like the database role: the password is stored in the campaign's
Secret before any user carries it, so a crash in between never leaves a user whose password
nobody knows; a later pass finds the Secret and sets that password.
"""

from __future__ import annotations

import asyncio
import base64
import secrets

from labelops.api.kafka_connection import ENV_SASL_PASSWORD
from labelops.operator import pass_scope
from labelops.operator.context import OperatorContext
from labelops.operator.kafka_access import (
    SCRAM_ITERATIONS,
    CampaignUser,
    campaign_users,
    credentials_secret,
    diff_acls,
    principal,
)
from labelops.operator.plan import CampaignRef


async def converge_kafka_access(ctx: OperatorContext, ref: CampaignRef) -> None:
    """Secrets, SCRAM users and exactly their ACLs; raises KafkaUnavailable to be retried."""
    access = ctx.workers.kafka_access
    if access is None or access.sasl_mechanism is None:
        return
    users = campaign_users(ref.names)
    # Three rounds of requests, each sent at once: the Secrets read, the Secrets written
    # (with the read of which users exist), the passwords set (with the ACLs). A password is
    # still stored before any user carries it.
    lives = (
        [None] * len(users)
        if pass_scope.just_created()
        else await asyncio.gather(
            *(ctx.kube.get("v1", "Secret", ref.namespace, u.secret, ours=True) for u in users)
        )
    )
    new_passwords: dict[str, str] = {}
    stored_passwords: dict[str, str] = {}
    for user, live in zip(users, lives, strict=True):
        stored = ((live or {}).get("data") or {}).get(ENV_SASL_PASSWORD)
        if stored:
            stored_passwords[user.name] = base64.b64decode(stored).decode()
        else:
            new_passwords[user.name] = secrets.token_urlsafe(24)
    passwords = {**stored_passwords, **new_passwords}
    *_, existing = await asyncio.gather(
        *(
            ctx.kube.apply(
                credentials_secret(
                    ref.metadata(user.secret), access.as_user(user.name, passwords[user.name])
                )
            )
            for user in users
        ),
        ctx.kafka.existing_users([user.name for user in users]),
    )
    missing = {name: pw for name, pw in stored_passwords.items() if name not in existing}

    async def exact_acls(user: CampaignUser) -> None:
        changes = diff_acls(user.acls, await ctx.kafka.acls_of(principal(user.name)))
        await ctx.kafka.create_acls(sorted(changes.create, key=str))
        await ctx.kafka.delete_acls(sorted(changes.delete, key=str))

    await asyncio.gather(
        ctx.kafka.set_passwords(
            {**new_passwords, **missing}, access.sasl_mechanism, SCRAM_ITERATIONS
        ),
        *(exact_acls(user) for user in users),
    )


async def remove_kafka_access(ctx: OperatorContext, ref: CampaignRef) -> list[str]:
    """Delete the campaign's ACLs and SCRAM users (its Secrets go with the campaign, whose
    children they are); returns what was removed, for the reclaim Event."""
    access = ctx.workers.kafka_access
    if access is None or access.sasl_mechanism is None:
        return []
    names = [user.name for user in campaign_users(ref.names)]
    acls = await ctx.kafka.delete_acls_of([principal(name) for name in names])
    existing = await ctx.kafka.existing_users(names)
    await ctx.kafka.delete_users(sorted(existing), access.sasl_mechanism)
    return [f"Kafka user {name}" for name in sorted(existing)] + (
        [f"{acls} Kafka ACLs"] if acls else []
    )
