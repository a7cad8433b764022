"""A campaign's Kafka users and ACLs made to match kafka_access.campaign_users, and removed.

Only on a broker that authenticates with SCRAM (WorkerEnvironment.kafka_access is set);
otherwise both are no-ops. Like the database role: the password is stored in the campaign's
Secret before any user carries it, so a crash in between never leaves a user whose password
nobody knows; a later pass finds the Secret and sets that password.
"""

from __future__ import annotations

import base64
import secrets

from labelops.api.kafka_connection import ENV_SASL_PASSWORD
from labelops.operator import pass_scope
from labelops.operator.context import OperatorContext
from labelops.operator.kafka_access import (
    SCRAM_ITERATIONS,
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
    new_passwords: dict[str, str] = {}
    stored_passwords: dict[str, str] = {}
    for user in users:
        live = (
            None
            if pass_scope.just_created()
            else await ctx.kube.get("v1", "Secret", ref.namespace, user.secret, ours=True)
        )
        stored = ((live or {}).get("data") or {}).get(ENV_SASL_PASSWORD)
        if stored:
            stored_passwords[user.name] = base64.b64decode(stored).decode()
        else:
            new_passwords[user.name] = secrets.token_urlsafe(24)
        password = stored_passwords.get(user.name) or new_passwords[user.name]
        await ctx.kube.apply(
            credentials_secret(ref.metadata(user.secret), access.as_user(user.name, password))
        )
    existing = await ctx.kafka.existing_users([user.name for user in users])
    missing = {name: pw for name, pw in stored_passwords.items() if name not in existing}
    await ctx.kafka.set_passwords(
        {**new_passwords, **missing}, access.sasl_mechanism, SCRAM_ITERATIONS
    )
    for user in users:
        changes = diff_acls(user.acls, await ctx.kafka.acls_of(principal(user.name)))
        await ctx.kafka.create_acls(sorted(changes.create, key=str))
        await ctx.kafka.delete_acls(sorted(changes.delete, key=str))


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
