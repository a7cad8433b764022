"""Deterministic names of everything a campaign owns, derived from namespace and name.

Namespaces never contain dots, so `labelops.<namespace>.<name>` cannot collide between
campaigns. Postgres identifiers are capped at 63 bytes, so the schema/role name is a
readable prefix plus a hash of the full "namespace/name".
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

PG_IDENTIFIER_MAX = 63


@dataclass(frozen=True)
class CampaignNames:
    namespace: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def topic_prefix(self) -> str:
        return f"labelops.{self.namespace}.{self.name}"

    @property
    def items_topic(self) -> str:
        return f"{self.topic_prefix}.items"

    @property
    def labels_topic(self) -> str:
        return f"{self.topic_prefix}.labels"

    @property
    def predictions_topic(self) -> str:
        return f"{self.topic_prefix}.predictions"

    @property
    def consumer_group(self) -> str:
        return f"{self.topic_prefix}.worker"

    @property
    def schema(self) -> str:
        digest = hashlib.sha256(self.key.encode()).hexdigest()[:8]
        readable = re.sub(r"[^a-z0-9]+", "_", f"{self.namespace}_{self.name}".lower())
        room = PG_IDENTIFIER_MAX - len("lc__") - len(digest)
        return f"lc_{readable[:room]}_{digest}"

    @property
    def role(self) -> str:
        return self.schema

    @property
    def worker(self) -> str:
        return f"{self.name}-worker"

    @property
    def config_map(self) -> str:
        return f"{self.name}-config"

    @property
    def database_secret(self) -> str:
        return f"{self.name}-db"

    @property
    def resource_quota(self) -> str:
        return f"{self.name}-quota"

    def selector_labels(self) -> dict[str, str]:
        return {
            "app.kubernetes.io/name": "labelops-worker",
            "app.kubernetes.io/instance": self.name,
        }

    def labels(self) -> dict[str, str]:
        return {
            **self.selector_labels(),
            "app.kubernetes.io/component": "worker",
            "app.kubernetes.io/managed-by": "labelops",
            "labelops.dev/campaign": self.name,
        }
