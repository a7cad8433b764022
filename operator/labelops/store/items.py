"""Writing ingested items and dead letters, inside a transaction the caller runs.

Items are upserted by external id: a new id inserts; a known id is updated (payload,
priority, model) only while nobody has leased or labeled it, so what a labeler saw and
labeled never changes under them; later updates of such an item are ignored. Redelivery
of the same message writes nothing.

A batch costs the database one statement, whatever its size: the messages travel as one
JSON array built from their raw bytes (no serialising again in Python), PostgreSQL parses
it once into a materialised row set, and a single statement inserts the new ids and
updates the untouched known ones (rows an INSERT of the same statement adds are not seen
by its UPDATE, so no item is written twice). Dead letters are one INSERT from arrays.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
import psycopg
from psycopg import sql

from labelops.api.campaign import TaskType
from labelops.quality.sampling import audit_hash_sql
from labelops.store.progress import (
    COUNTER_FIELDS,
    PROGRESS_SHARDS,
    bump_statement,
)
from labelops.store.queries import Queries


@dataclass(frozen=True)
class ItemRecord:
    """One well-formed item, as Python values."""

    id: str
    payload: dict[str, Any]
    priority: int = 0
    model_prediction: Any = None
    model_confidence: float | None = None
    model_version: str | None = None
    gold_value: Any = None

    def as_raw(self) -> RawItem:
        document: dict[str, Any] = {"id": self.id, "payload": self.payload}
        if self.priority:
            document["priority"] = self.priority
        if self.model_version is not None:
            document["model"] = {
                "version": self.model_version,
                "prediction": self.model_prediction,
                "confidence": self.model_confidence,
            }
        if self.gold_value is not None:
            document["gold"] = {"value": self.gold_value}
        return RawItem(self.id, orjson.dumps(document))


class RawItem(NamedTuple):
    """One well-formed item message: its id and the JSON object it came as
    ({"id", "payload", "priority"?, "model"?: {"prediction", "confidence"}}). A tuple:
    ingest makes one per message, and a frozen dataclass costs several times more."""

    id: str
    raw: bytes


class RawPrediction(NamedTuple):
    """One well-formed prediction message: the item id and the JSON object it came as
    ({"id", "model": {"version", "prediction", "confidence"}})."""

    id: str
    raw: bytes


@dataclass(frozen=True)
class DeadLetter:
    """A message that could not be ingested, kept with why, and where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str


@dataclass(frozen=True)
class IngestOutcome:
    inserted: int
    updated: int
    dead_lettered: int  # newly recorded (a redelivered bad message counts once)
    scored: int = 0  # items whose prediction this batch set or changed
    early: int = 0  # predictions kept for items that have not arrived yet

    def __add__(self, other: IngestOutcome) -> IngestOutcome:
        return IngestOutcome(
            self.inserted + other.inserted,
            self.updated + other.updated,
            self.dead_lettered + other.dead_lettered,
            self.scored + other.scored,
            self.early + other.early,
        )


@dataclass(frozen=True)
class UnfitPrediction:
    """A prediction whose value does not fit its item (e.g. prefers a response the item
    does not have): the message, and the item's response ids."""

    item_id: str
    response_ids: list[str]


@dataclass(frozen=True)
class PredictionOutcome:
    scored_ids: list[int]  # items (row ids) whose prediction changed
    unfit: list[UnfitPrediction]
    early: int


# Serialises "is the item there yet?" between item batches (shared) and prediction batches
# (exclusive), per schema and bucket of item ids: otherwise an item and its early
# prediction, committed at the same moment by two replicas, could each miss the other and
# the prediction wait forever. An item and its predictions share a bucket, so batches of
# other buckets (another writer's, another replica's) go on at the same time.
ARRIVAL_LOCK_CLASS = 0x4C425052  # 'LBPR'
ARRIVAL_BUCKETS = 16


def arrival_bucket(item_id: bytes) -> int:
    """The arrival lock bucket of an item id (as UTF-8: a message's key)."""
    return zlib.crc32(item_id) % ARRIVAL_BUCKETS


def _fits(task_type: TaskType, prediction: str, payload: str) -> str:
    """SQL: the checks of a label value that depend on its item (labelops.api.tasktypes,
    LabelValidator._item_violations), for a prediction that arrives apart from its item."""
    ids = f"jsonb_array_elements({payload} -> 'responses')"
    if task_type is TaskType.PAIRWISE:
        return (
            f"({prediction} ->> 'preferred' = 'tie' OR EXISTS"
            f" (SELECT 1 FROM {ids} r WHERE r ->> 'id' = {prediction} ->> 'preferred'))"
        )
    if task_type is TaskType.RANKING:
        return (
            "((SELECT array_agg(o ORDER BY o)"
            f"  FROM jsonb_array_elements_text({prediction} -> 'order') o)"
            f" = (SELECT array_agg(r ->> 'id' ORDER BY r ->> 'id') FROM {ids} r))"
        )
    return "true"


# The item's own score stays when the message brings the same payload again (a redelivery,
# a re-read of the topic): a newer prediction from the predictions topic is never undone.
_KEEP = "(i.model_version IS NOT NULL AND i.payload = m.payload)"
_NEW_SCORE = (
    "(i.model_version, i.model_prediction, i.model_confidence) IS DISTINCT FROM"
    " (m.version, m.prediction, m.confidence)"
)

# The campaign's policy as one row (NULLs when it has no row): scalar subqueries, so the
# planner's estimate of the rows it is joined with stays that of the batch (a join with the
# table, never analysed, is estimated at hundreds of rows and turns lookups into scans).
_POLICY = (
    "(SELECT (SELECT audit_rate FROM {campaign_policy}) AS audit_rate,"
    " (SELECT order_by FROM {campaign_policy}) AS order_by)"
)

# Whether the UPDATE of upsert_items gives an open item a new score (model_scored_at set to
# now(), a version set), with a policy row: then its audit and claim_rank are decided again.
_RESCORED = (
    f"(NOT {_KEEP} AND {_NEW_SCORE} AND m.version IS NOT NULL"
    " AND i.completed_at IS NULL AND m.order_by IS NOT NULL)"
)


def _audit(item_id: str, version: str, rate: str) -> str:
    """SQL: whether the item is an audit of the version it is scored by, as after_scoring
    decides it (labelops.quality.sampling): never without a version or at rate 0, so the
    hash is computed only where audits are drawn. False without a policy row."""
    return (
        f"coalesce(CASE WHEN {version} IS NOT NULL AND {rate} > 0"
        f" THEN {audit_hash_sql(item_id, version)} < {rate} END, false)"
    )


class IngestStatements:
    """The ingest statements of one campaign schema and task type, composed once."""

    def __init__(self, schema: str, task_type: TaskType = TaskType.CLASSIFICATION) -> None:
        self.schema = schema
        names = {
            name: sql.Identifier(schema, name)
            for name in (
                "items",
                "leases",
                "dead_letters",
                "early_predictions",
                "campaign_policy",
                "model_versions",
                "claim_rank",
            )
        }
        early_fits = _fits(task_type, "e.model_prediction", "m.payload")
        # %s: a JSON array of item messages, unique by id. Rows are inserted in id order
        # so two ingestors overlapping during a rebalance lock them in one order. A
        # prediction that came before its item (early_predictions) is the item's score
        # when it fits the item: the predictions topic carries the newest scores, an item's
        # own model is its first.
        # The score a row gets in this statement decides, in the same write, what
        # after_scoring decides once predictions were applied (functions/after_scoring.sql):
        # an open item's audit and claim_rank, from the campaign's policy, and the version
        # registered in model_versions. Each item is written once; ingest then calls
        # auto_accept on the scored items.
        message_audit = _audit("b.id", "(b.model ->> 'version')", "pol.audit_rate")
        early_audit = _audit("f.id", "f.e_version", "f.audit_rate")
        upsert_items = (
            "WITH m AS MATERIALIZED ("
            "  SELECT b.id, b.payload, coalesce(b.priority, 0) AS priority,"
            "         b.model ->> 'version' AS version, b.model -> 'prediction' AS prediction,"
            "         (b.model ->> 'confidence')::double precision AS confidence,"
            "         b.gold -> 'value' AS gold,"
            f"        {message_audit} AS audit, pol.audit_rate, pol.order_by"
            "  FROM jsonb_to_recordset(%s::jsonb)"
            "       AS b(id text, payload jsonb, priority integer, model jsonb, gold jsonb),"
            f"      {_POLICY} pol"
            "), early AS ("
            "  DELETE FROM {early_predictions} e USING m WHERE e.external_id = m.id"
            "  RETURNING e.*"
            "), n AS MATERIALIZED ("
            "  SELECT f.*,"
            "         CASE WHEN f.early_fits THEN f.e_version ELSE f.version END AS s_version,"
            "         CASE WHEN f.early_fits THEN f.e_prediction ELSE f.prediction END"
            "           AS s_prediction,"
            "         CASE WHEN f.early_fits THEN f.e_confidence ELSE f.confidence END"
            "           AS s_confidence,"
            f"        CASE WHEN f.early_fits THEN {early_audit}"
            "              ELSE f.audit END AS s_audit"
            "  FROM (SELECT m.*, e.external_id IS NOT NULL AS had_early,"
            f"              (e.external_id IS NOT NULL AND ({early_fits}) IS TRUE) AS early_fits,"
            "               e.model_version AS e_version, e.model_prediction AS e_prediction,"
            "               e.model_confidence AS e_confidence"
            "        FROM m LEFT JOIN early e ON e.external_id = m.id) f"
            "), inserted AS ("
            "  INSERT INTO {items} (external_id, payload, priority, gold_value, model_version,"
            "                       model_prediction, model_confidence, model_scored_at,"
            "                       audit, claim_rank)"
            "  SELECT id, payload, priority, gold, s_version, s_prediction, s_confidence,"
            "         CASE WHEN s_version IS NOT NULL THEN now() END, s_audit,"
            "         CASE WHEN s_version IS NOT NULL"
            "              THEN {claim_rank}(s_audit, s_confidence, order_by) ELSE 0 END"
            # One order for every ingestor; "C": the locale's collation costs more than
            # the rest of the sort.
            '  FROM n ORDER BY id COLLATE "C"'
            "  ON CONFLICT (external_id) DO NOTHING"
            "  RETURNING id, external_id, model_version, model_version IS NOT NULL AS scored,"
            "            gold_value IS NOT NULL AS gold"
            # An item keeps what labelers saw: it is updated only while nobody has leased or
            # labeled it, and a redelivery of the same content writes nothing. lease_count
            # is checked besides the leases rows: after waiting for a concurrent claim's row
            # lock the row's own columns are re-read, while the subquery still sees the old
            # snapshot. Rows the INSERT above adds are not visible to this UPDATE.
            "), updated AS ("
            "  UPDATE {items} i SET payload = m.payload, priority = m.priority,"
            "         gold_value = m.gold,"
            f"        model_version = CASE WHEN {_KEEP} THEN i.model_version ELSE m.version END,"
            f"        model_prediction = CASE WHEN {_KEEP} THEN i.model_prediction"
            "                                ELSE m.prediction END,"
            f"        model_confidence = CASE WHEN {_KEEP} THEN i.model_confidence"
            "                                ELSE m.confidence END,"
            f"        model_scored_at = CASE WHEN {_KEEP} OR NOT {_NEW_SCORE}"
            "                               THEN i.model_scored_at"
            "                               WHEN m.version IS NOT NULL THEN now() END,"
            f"        audit = CASE WHEN {_RESCORED} THEN m.audit ELSE i.audit END,"
            f"        claim_rank = CASE WHEN {_RESCORED}"
            "                          THEN {claim_rank}(m.audit, m.confidence, m.order_by)"
            "                          ELSE i.claim_rank END,"
            "         updated_at = now()"
            # Only what the INSERT did not add: a batch of new items looks nothing up.
            "  FROM (SELECT * FROM m WHERE NOT EXISTS"
            "        (SELECT 1 FROM inserted x WHERE x.external_id = m.id)) m"
            # "<= 0", not "= 0" (the counts are never negative): before the first
            # ANALYZE of a fresh campaign's items, "= 0" is estimated to keep almost no row,
            # and the planner then scans items once per message of the batch.
            "  WHERE i.external_id = m.id AND i.label_count <= 0 AND i.lease_count <= 0"
            "    AND NOT EXISTS (SELECT 1 FROM {leases} l WHERE l.item_id = i.id)"
            "    AND ((i.payload, i.priority, i.gold_value)"
            "         IS DISTINCT FROM (m.payload, m.priority, m.gold)"
            f"        OR (NOT {_KEEP} AND {_NEW_SCORE}))"
            "  RETURNING i.id, i.model_version,"
            "            i.model_version IS NOT NULL AND i.model_scored_at = now() AS scored"
            "), versions AS ("
            "  INSERT INTO {model_versions} (version)"
            "  SELECT DISTINCT s.model_version"
            "  FROM (SELECT model_version FROM inserted WHERE scored"
            "        UNION ALL SELECT model_version FROM updated WHERE scored) s"
            "  ORDER BY 1 ON CONFLICT (version) DO NOTHING"
            ")"
            " SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM updated),"
            "        ARRAY(SELECT id FROM inserted WHERE scored"
            "              UNION ALL SELECT id FROM updated WHERE scored),"
            "        (SELECT count(*) FROM n WHERE had_early AND NOT early_fits),"
            "        (SELECT count(*) FROM inserted WHERE gold)"
        )
        fits = _fits(task_type, "p.prediction", "i.payload")
        prediction_audit = _audit("b.id", "(b.model ->> 'version')", "pol.audit_rate")
        # %s: a JSON array of prediction messages, unique by item id. The latest wins: an
        # item takes the prediction whatever its state (auto_accept decides, after this
        # statement, whether it completes the item); a prediction for an item not there yet
        # is kept for it. An open item's audit and claim_rank are decided in the same write.
        # The UPDATE finds each item itself (by external id, in the batch's id order, as
        # every ingestor locks them): only what it did not apply (no such item, the same
        # score again, a prediction that does not fit its item) is looked up once more.
        upsert_predictions = (
            "WITH p AS MATERIALIZED ("
            "  SELECT b.id, b.model ->> 'version' AS version,"
            "         b.model -> 'prediction' AS prediction,"
            "         (b.model ->> 'confidence')::double precision AS confidence,"
            f"        {prediction_audit} AS audit, pol.order_by"
            "  FROM jsonb_to_recordset(%s::jsonb) AS b(id text, model jsonb),"
            f"      {_POLICY} pol"
            "), applied AS ("
            "  UPDATE {items} i SET model_version = p.version, model_prediction = p.prediction,"
            "         model_confidence = p.confidence, model_scored_at = now(),"
            "         audit = CASE WHEN i.completed_at IS NULL AND p.order_by IS NOT NULL"
            "                      THEN p.audit ELSE i.audit END,"
            "         claim_rank = CASE WHEN i.completed_at IS NULL AND p.order_by IS NOT NULL"
            "                           THEN {claim_rank}(p.audit, p.confidence, p.order_by)"
            "                           ELSE i.claim_rank END"
            "  FROM p"
            f"  WHERE i.external_id = p.id AND ({fits}) IS TRUE"
            "    AND (i.model_version, i.model_prediction, i.model_confidence)"
            "        IS DISTINCT FROM (p.version, p.prediction, p.confidence)"
            "  RETURNING i.id, i.model_version, i.external_id"
            "), rest AS MATERIALIZED ("
            "  SELECT p.id, p.version, p.prediction, p.confidence FROM p"
            "  WHERE NOT EXISTS (SELECT 1 FROM applied a WHERE a.external_id = p.id)"
            "), known AS MATERIALIZED ("
            f"  SELECT p.id, ({fits}) IS TRUE AS fits,"
            # The item's responses only where the prediction does not fit (to explain it).
            f"         CASE WHEN ({fits}) IS TRUE THEN NULL"
            "              ELSE i.payload -> 'responses' END AS responses"
            "  FROM rest p JOIN {items} i ON i.external_id = p.id"
            "), versions AS ("
            "  INSERT INTO {model_versions} (version)"
            "  SELECT DISTINCT model_version FROM applied ORDER BY 1"
            "  ON CONFLICT (version) DO NOTHING"
            "), early AS ("
            "  INSERT INTO {early_predictions}"
            "   (external_id, model_version, model_prediction, model_confidence, received_at)"
            "  SELECT p.id, p.version, p.prediction, p.confidence, now() FROM rest p"
            "  WHERE NOT EXISTS (SELECT 1 FROM known k WHERE k.id = p.id)"
            '  ORDER BY p.id COLLATE "C"'
            "  ON CONFLICT (external_id) DO UPDATE SET model_version = EXCLUDED.model_version,"
            "     model_prediction = EXCLUDED.model_prediction,"
            "     model_confidence = EXCLUDED.model_confidence, received_at = EXCLUDED.received_at"
            "  RETURNING 1"
            ")"
            " SELECT ARRAY(SELECT id FROM applied),"
            "        ARRAY(SELECT id FROM known WHERE NOT fits),"
            "        ARRAY(SELECT coalesce(responses, '[]')::text FROM known WHERE NOT fits),"
            "        (SELECT count(*) FROM early)"
        )
        self.upsert_items = sql.SQL(upsert_items).format(**names).as_bytes(None)
        self.upsert_predictions = sql.SQL(upsert_predictions).format(**names).as_bytes(None)
        # %s: the schema, twice; buckets in ascending order (every transaction takes its
        # locks in that one order: no deadlock) and whether each is taken exclusively.
        self.lock_arrivals = (
            "SELECT CASE WHEN u.exclusive"
            f" THEN pg_advisory_xact_lock({ARRIVAL_LOCK_CLASS}, hashtext(%s || '/' || u.bucket))"
            " ELSE pg_advisory_xact_lock_shared("
            f"{ARRIVAL_LOCK_CLASS}, hashtext(%s || '/' || u.bucket)) END"
            " FROM unnest(%s::integer[], %s::boolean[]) AS u(bucket, exclusive)"
        ).encode()
        # auto_accept(scored item ids, -, -, progress shard): what a trusted version's
        # threshold covers completes without people (functions/auto_accept.sql).
        self.auto_accept = (
            sql.SQL("SELECT {}(%s::bigint[], NULL::text, NULL::integer, %s::smallint)")
            .format(sql.Identifier(schema, "auto_accept"))
            .as_bytes(None)
        )
        self.bump_progress = bump_statement(schema).as_bytes(None)
        self.insert_dead_letters = (
            sql.SQL(
                "INSERT INTO {dead_letters}"
                " (source_topic, source_partition, source_offset, raw_key, raw_value, reason)"
                " SELECT * FROM unnest(%s::text[], %s::integer[], %s::bigint[], %s::bytea[],"
                "                      %s::bytea[], %s::text[])"
                " ON CONFLICT ON CONSTRAINT dead_letters_position_unique DO NOTHING"
            )
            .format(**names)
            .as_bytes(None)
        )


_STATEMENTS: dict[tuple[str, TaskType], IngestStatements] = {}


def statements_for(schema: str, task_type: TaskType = TaskType.CLASSIFICATION) -> IngestStatements:
    found = _STATEMENTS.get((schema, task_type))
    if found is None:
        found = _STATEMENTS[schema, task_type] = IngestStatements(schema, task_type)
    return found


def _json_array(raws: Sequence[bytes]) -> str:
    return (b"[" + b",".join(raws) + b"]").decode()


def lock_arrivals(
    cur: psycopg.Cursor[Any],
    statements: IngestStatements,
    *,
    items: Iterable[str] = (),
    predictions: Iterable[str] = (),
) -> None:
    """Take the arrival locks of these item ids' buckets for this transaction: shared to add
    items, exclusive to keep predictions for items that are not there yet. Call it first."""
    locks = arrival_locks(items, predictions)
    if locks:
        schema = statements.schema
        buckets, exclusive = [b for b, _ in locks], [x for _, x in locks]
        cur.execute(statements.lock_arrivals, (schema, schema, buckets, exclusive))


def arrival_locks(items: Iterable[str], predictions: Iterable[str]) -> list[tuple[int, bool]]:
    """(bucket, exclusive) of the arrival locks a batch of these item and prediction ids
    takes, in the one order every transaction takes them: exclusive where a prediction
    is, shared where only items are."""
    exclusive = {arrival_bucket(i.encode()) for i in predictions}
    shared = {arrival_bucket(i.encode()) for i in items} - exclusive
    return sorted([(b, True) for b in exclusive] + [(b, False) for b in shared])


@dataclass(frozen=True)
class ItemsOutcome:
    inserted: int
    updated: int
    gold: int  # of the inserted, gold items
    scored_ids: list[int]  # items (row ids) whose prediction this changed
    unfit_early: int  # early predictions that did not fit their item (dropped)


def upsert_items(
    cur: psycopg.Cursor[Any], statements: IngestStatements, items: Sequence[RawItem]
) -> ItemsOutcome:
    """Insert new items, update untouched known ones; needs lock_arrivals (shared)."""
    ordered = sorted(items, key=lambda i: i.id)
    row = cur.execute(statements.upsert_items, (_json_array([i.raw for i in ordered]),)).fetchone()
    assert row is not None  # the statement always returns its one row
    return ItemsOutcome(int(row[0]), int(row[1]), int(row[4]), list(row[2]), int(row[3]))


def upsert_predictions(
    cur: psycopg.Cursor[Any], statements: IngestStatements, predictions: Sequence[RawPrediction]
) -> PredictionOutcome:
    """Apply predictions (unique item ids; the caller keeps the newest per id) to their
    items, or keep them for items not there yet. Needs lock_arrivals(exclusive=True)."""
    ordered = sorted(predictions, key=lambda p: p.id)
    row = cur.execute(
        statements.upsert_predictions, (_json_array([p.raw for p in ordered]),)
    ).fetchone()
    assert row is not None  # the statement always returns its one row
    applied, unfit_ids, unfit_responses, early = row
    unfit = [
        UnfitPrediction(
            item_id,
            [str(r.get("id")) for r in orjson.loads(responses) if isinstance(r, dict)],
        )
        for item_id, responses in zip(unfit_ids, unfit_responses, strict=True)
    ]
    return PredictionOutcome(list(applied), unfit, int(early))


def auto_accept_scored(
    cur: psycopg.Cursor[Any], statements: IngestStatements, ids: list[int], shard: int
) -> int:
    """After the upserts scored these items (their audits and ranks decided, their versions
    registered): auto-accept what a trusted version's threshold covers, counting it in the
    progress shard `shard`; returns the items completed so."""
    if not ids:
        return 0
    # The ids as an array literal: psycopg's list dumper costs three times as much per id
    # (a batch of predictions sends thousands).
    ids_literal = "{" + ",".join(map(str, sorted(set(ids)))) + "}"
    row = cur.execute(statements.auto_accept, (ids_literal, shard)).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def record_dead_letters(
    cur: psycopg.Cursor[Any], statements: IngestStatements, dead_letters: Sequence[DeadLetter]
) -> int:
    """Newly recorded dead letters (one already recorded at its position counts 0)."""
    if not dead_letters:
        return 0
    cur.execute(
        statements.insert_dead_letters,
        (
            [d.topic for d in dead_letters],
            [d.partition for d in dead_letters],
            [d.offset for d in dead_letters],
            [d.key for d in dead_letters],
            [d.value for d in dead_letters],
            [d.reason for d in dead_letters],
        ),
    )
    return cur.rowcount


# Gold items are counted apart from the items to label, once the schema counts them.
COUNTS_GOLD = "gold_items" in COUNTER_FIELDS


def pick_shard() -> int:
    return random.randrange(PROGRESS_SHARDS)


def bump_ingest_counters(
    cur: psycopg.Cursor[Any],
    statements: IngestStatements,
    shard: int,
    *,
    items: int,
    gold_items: int,
    dead_lettered: int,
) -> None:
    """Add what a batch ingested to the progress shard `shard`, last in its transaction
    (see labelops.store.progress.bump_counters)."""
    deltas = {field: 0 for field in COUNTER_FIELDS}
    deltas["items_total"] = items - gold_items if COUNTS_GOLD else items
    deltas["dead_lettered"] = dead_lettered
    if COUNTS_GOLD:
        deltas["gold_items"] = gold_items
    if any(deltas.values()):
        cur.execute(statements.bump_progress, {"shard": shard, **deltas})


def write_ingest_batch(
    cur: psycopg.Cursor[Any],
    q: Queries,
    items: Sequence[ItemRecord],
    dead_letters: Sequence[DeadLetter],
) -> IngestOutcome:
    """Upsert items given as Python values (tests and seeding) and record dead letters."""
    statements = statements_for(q.schema)
    lock_arrivals(cur, statements, items=[i.id for i in items])
    inserted = updated = gold = 0
    if items:
        upserted = upsert_items(cur, statements, [i.as_raw() for i in items])
        inserted, updated, gold = upserted.inserted, upserted.updated, upserted.gold
    recorded = record_dead_letters(cur, statements, dead_letters)
    bump_ingest_counters(
        cur, statements, pick_shard(), items=inserted, gold_items=gold, dead_lettered=recorded
    )
    return IngestOutcome(inserted=inserted, updated=updated, dead_lettered=recorded)
