"""The campaign's labeling policy as the schema's functions read it (table campaign_policy).

Every worker writes it at start from the config the operator gave it, so claim_task and
accept_label read one row instead of taking a dozen parameters, and a spec change (model,
quality, the blocked lists) reaches open items with the next rollout: items already complete
stay complete. A change of model.order rewrites the open items' place in the claim order.

    policy = CampaignPolicy.from_config(config)
    write_policy(conn, schema, policy)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import psycopg
from psycopg import sql

from labelops.api.campaign import ModelOrder, Task, TaskType
from labelops.api.worker_configmap import WorkerConfig


def answer_key(task: Task) -> str | None:
    """The member of a categorical label value that consensus, gold and audits compare."""
    match task.type:
        case TaskType.PAIRWISE:
            return "preferred"
        case TaskType.RATING:
            return "score"
        case TaskType.CLASSIFICATION if not task.multiple:
            return "choice"
    return None


def num_classes(task: Task) -> int | None:
    """How many answers a categorical task has: either response or a tie; the choices;
    every score of the scale."""
    match task.type:
        case TaskType.PAIRWISE:
            return 3
        case TaskType.RATING:
            assert task.scale is not None  # the CRD requires it for rating
            return task.scale.max - task.scale.min + 1
        case TaskType.CLASSIFICATION if not task.multiple:
            return len(task.choices or [])
    return None


def spec_digest(task: Task) -> str:
    """A digest of what labelers were given: instructions, type and label schema."""
    canonical = json.dumps(task.model_dump(mode="json", by_alias=True), sort_keys=True)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CampaignPolicy:
    namespace: str
    campaign: str
    labels_per_item: int
    generation: int
    spec_digest: str
    order_by: str
    answer_key: str | None
    num_classes: int | None
    auto_accept: bool
    target_accuracy: float
    confidence_level: float
    audit_rate: float
    brake_window: int
    gold_rate: float
    gold_onboarding: int
    gold_min_answers: int
    gold_min_accuracy: float
    overlap_min: int | None
    overlap_max: int | None
    overlap_agreement: float | None
    blocked: list[str]
    unblocked: list[str]

    @classmethod
    def from_config(cls, config: WorkerConfig) -> CampaignPolicy:
        model, quality = config.model, config.quality
        accept = model.auto_accept if model else None
        gold = quality.gold if quality else None
        overlap = quality.overlap if quality else None
        return cls(
            namespace=config.namespace,
            campaign=config.name,
            labels_per_item=config.target.labels_per_item,
            generation=config.generation,
            spec_digest=spec_digest(config.task),
            order_by=(model.order if model else ModelOrder.PRIORITY).value,
            answer_key=answer_key(config.task),
            num_classes=num_classes(config.task),
            auto_accept=accept is not None,
            target_accuracy=accept.target_accuracy if accept else 0.95,
            confidence_level=accept.confidence_level if accept else 0.95,
            audit_rate=accept.audit_rate if accept else 0.0,
            brake_window=accept.brake_window if accept else 100,
            gold_rate=gold.rate if gold else 0.0,
            gold_onboarding=gold.onboarding if gold else 0,
            gold_min_answers=gold.min_answers if gold else 10,
            gold_min_accuracy=gold.min_accuracy if gold else 0.0,
            overlap_min=overlap.min if overlap else None,
            overlap_max=overlap.max if overlap else None,
            overlap_agreement=overlap.agreement if overlap else None,
            blocked=sorted(config.blocked),
            unblocked=sorted(config.unblocked),
        )

    @property
    def adaptive(self) -> bool:
        return self.overlap_min is not None and self.num_classes is not None

    @property
    def first_cap(self) -> int:
        """Labels an item may take before its first decision: labelsPerItem, or overlap.min."""
        return self.overlap_min if self.adaptive and self.overlap_min else self.labels_per_item


def write_policy(conn: psycopg.Connection, schema: str, policy: CampaignPolicy) -> None:
    """Make the schema's campaign_policy row say `policy`, in one transaction. When
    model.order changed, every open item's place in the claim order (items.claim_rank) is
    rewritten with it, items locked in id order as every writer locks them."""
    values = asdict(policy)
    assignments = sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(name), sql.Placeholder(name)) for name in values
    )
    with conn.transaction():
        row = conn.execute(
            sql.SQL("SELECT order_by FROM {} FOR UPDATE").format(
                sql.Identifier(schema, "campaign_policy")
            )
        ).fetchone()
        conn.execute(
            sql.SQL("UPDATE {} SET {}").format(
                sql.Identifier(schema, "campaign_policy"), assignments
            ),
            values,
        )
        if row is not None and row[0] != policy.order_by:
            conn.execute(
                sql.SQL(
                    "UPDATE {items} i SET claim_rank = {rank}(i.audit, i.model_confidence, %s)"
                    " WHERE i.id IN (SELECT o.id FROM {items} o"
                    "   WHERE o.completed_at IS NULL AND o.gold_value IS NULL"
                    "   ORDER BY o.id FOR UPDATE)"
                ).format(
                    items=sql.Identifier(schema, "items"),
                    rank=sql.Identifier(schema, "claim_rank"),
                ),
                (policy.order_by,),
            )
