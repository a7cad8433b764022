"""`labelops export`: stream a campaign's accepted labels at the database's pace, in
constant memory.

PostgreSQL builds every output line itself (json_build_object) and streams the lines with
COPY ... TO STDOUT; Python only moves bytes from the socket to the file. COPY runs in CSV
mode with a quote and a delimiter (\\x01, \\x02) that JSON text never contains raw, so no
line is ever quoted or escaped and what arrives is exactly the JSON line.

Building the lines is the export's cost (a few microseconds of one backend's CPU per label),
so jsonl reads with STREAMS connections at once: the items' ids are cut into ranges of about
RANGE_LABELS labels, each connection exports one range at a time, and the ranges are written
in order. Every connection reads the same snapshot (pg_export_snapshot), so the file is one
consistent state of the campaign, as with one connection; memory holds at most STREAMS + 1
ranges' lines, whatever the campaign's size.

Gold items (items.gold_value set) and gold answers are never exported as training labels,
nor labels that no longer count (excluded: a blocked labeler's; withdrawn: a distrusted
model's).

Formats:
  jsonl         one accepted label per line: label id, item id, labeler, value, origin,
                created_at, its lineage (modelVersion and confidence of a machine label,
                the campaign's generation and specDigest it was given under) and the
                item payload.
  consolidated  one line per completed item: {"itemId", "value", "confidence", "method",
                "labels", "agreement", "origin", "disputed"}, by --method majority,
                weighted or dawid-skene (labelops.quality.consolidation).
  rlhf          pairwise campaigns only; one line per item whose consolidated preference
                names a response: {"id", "prompt", "chosen", "rejected", "chosen_id",
                "rejected_id", "agreement", "confidence", "votes", "labels"}. Items whose
                consolidated preference is a tie, or that have no labels, are left out
                (counted on stderr).
The per-item formats read one row per item (its labels aggregated by PostgreSQL, in label
order; a thread reads ahead, so the database works while Python consolidates), so their
Python cost is per item, not per label: majority decides each item as it is read (the
same result as labelops.quality.consolidation's, see majority_record), weighted
consolidates ITEMS_PER_CHUNK items at a time; dawid-skene is batch EM over the whole
campaign, so it holds every label's (item, labeler, value) in memory first.

rlhf by majority parses no JSON per item: PostgreSQL sends each item's id, prompt and
responses as JSON text pieces and its labels' values as one text (rlhf_pieces_query, read
over id ranges by STREAMS connections like jsonl); the outcome of a sequence of values
(preferred response, votes, agreement) is decided once and kept as the line's last bytes,
and a line is its pieces joined around them (RlhfPieces), byte for byte the line
write_rlhf_records writes.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import sys
import threading
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import IO, Any, cast

import orjson
import psycopg
import psycopg.conninfo
from psycopg import sql

from labelops.api.campaign import GROUP, PLURAL, VERSION

FORMATS = ("jsonl", "consolidated", "rlhf")
METHODS = ("majority", "weighted", "dawid-skene")
ITEMS_PER_CHUNK = 5000
# labelops.quality.consolidation's: top two shares closer than this are a tie (a unit test
# holds majority_record to consolidate()'s results).
_TIE = 1e-12
STREAMS = 2
RANGE_LABELS = 20_000
READ_AHEAD_LINES = 1000
READ_AHEAD_CHUNKS = 16
WRITE_BYTES = 1 << 20
# CSV mode with characters JSON text never holds raw: no field is quoted, nothing escaped.
_RAW_LINES = "(FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')"


@dataclass(frozen=True)
class LabelRow:
    label_id: str
    item_id: str
    payload: dict[str, Any]
    labeler: str
    value: Any
    origin: str
    created_at: str


@dataclass(frozen=True)
class ItemLabels:
    """One completed item with its labels in label order: (labeler, value, origin), and
    when known each value's key (value_key), in the same order."""

    item_id: str
    payload: dict[str, Any] | None
    labels: list[tuple[str, Any, str]]
    keys: list[str] | None = field(default=None, compare=False)


@dataclass
class RlhfTally:
    written: int = 0
    ties: int = 0


# --- reading -------------------------------------------------------------------------------


def columns(conn: psycopg.Connection[Any], schema: str) -> set[str]:
    """ "table.column" of the schema's items and labels: what this schema's version has."""
    rows = conn.execute(
        "SELECT table_name || '.' || column_name FROM information_schema.columns"
        " WHERE table_schema = %s AND table_name IN ('items', 'labels')",
        (schema,),
    ).fetchall()
    return {row[0] for row in rows}


def _training_labels(present: set[str]) -> sql.Composable:
    """Which labels and items are training data: never a gold item or a gold answer, and
    only labels that still count (not excluded from a blocked labeler, not withdrawn from
    a distrusted model), in the schemas that know those columns."""
    conditions = [
        condition
        for column, condition in (
            ("items.gold_value", "i.gold_value IS NULL"),
            ("labels.gold", "NOT l.gold"),
            ("labels.status", "l.status = 'counted'"),
        )
        if column in present
    ]
    return sql.SQL(" AND ".join(conditions) or "true")


# Lineage of a label, in the schemas that keep it.
LINEAGE = (
    ("model_version", "modelVersion"),
    ("confidence", "confidence"),
    ("generation", "generation"),
    ("spec_digest", "specDigest"),
)


def copy_lines(conn: psycopg.Connection[Any], query: sql.Composable) -> Iterator[bytes]:
    """The rows of a one-column query of JSON text, each a line ending in a newline."""
    with conn.transaction():
        conn.execute("SET LOCAL TIME ZONE 'UTC'")
        with (
            conn.cursor() as cur,
            cur.copy(sql.SQL("COPY ({}) TO STDOUT {}").format(query, sql.SQL(_RAW_LINES))) as copy,
        ):
            for data in copy:
                yield bytes(data)


def jsonl_query(
    conn: psycopg.Connection[Any], schema: str, ids: range | None = None
) -> sql.Composable:
    """The jsonl lines of the labels of the items whose row ids are in `ids` (all: None)."""
    return _jsonl_query(columns(conn, schema), schema, ids)


def _join_bounds(ids: range | None) -> sql.Composable:
    """An id range of the labels-items join as conditions on both tables (the planner
    carries equalities across a join, not ranges); nothing without a range."""
    if ids is None:
        return sql.SQL("")
    return sql.SQL(
        " AND l.item_id >= {lo} AND l.item_id < {hi} AND i.id >= {lo} AND i.id < {hi}"
    ).format(lo=sql.Literal(ids.start), hi=sql.Literal(ids.stop))


def _jsonl_query(present: set[str], schema: str, ids: range | None) -> sql.Composable:
    lineage = [
        sql.SQL(", {}, l.{}").format(sql.Literal(key), sql.Identifier(column))
        for column, key in LINEAGE
        if f"labels.{column}" in present
    ]
    bounds = _join_bounds(ids)
    return sql.SQL(
        "SELECT json_build_object('label_id', l.id, 'item_id', i.external_id,"
        " 'labeler', l.labeler, 'value', l.value, 'origin', l.origin,"
        " 'created_at', l.created_at{lineage}, 'payload', i.payload)"
        " FROM {labels} l JOIN {items} i ON i.id = l.item_id"
        " WHERE {training}{bounds}"
        " ORDER BY l.item_id, l.ordinal"
    ).format(
        lineage=sql.SQL("").join(lineage),
        labels=sql.Identifier(schema, "labels"),
        items=sql.Identifier(schema, "items"),
        training=_training_labels(present),
        bounds=bounds,
    )


def id_ranges(
    conn: psycopg.Connection[Any], schema: str, labels_per_range: int = RANGE_LABELS
) -> list[range]:
    """The items' row ids cut into consecutive ranges of about `labels_per_range` labels
    each (from the labels per item id on average), in the caller's transaction."""
    row = conn.execute(
        sql.SQL(
            "SELECT min(i.id), max(i.id), (SELECT count(*) FROM {labels}) FROM {items} i"
        ).format(labels=sql.Identifier(schema, "labels"), items=sql.Identifier(schema, "items")),
    ).fetchone()
    if row is None or row[0] is None or not row[2]:
        return []
    first, last, labels = int(row[0]), int(row[1]), int(row[2])
    per_id = labels / (last - first + 1)
    step = max(1, int(labels_per_range / per_id))
    return [range(lo, min(lo + step, last + 1)) for lo in range(first, last + 1, step)]


def _conninfo(conn: psycopg.Connection[Any]) -> str:
    """How to open another connection like `conn` (its password included)."""
    options = {
        option.keyword.decode(): option.val.decode()
        for option in conn.pgconn.info
        if option.val is not None
    }
    return psycopg.conninfo.make_conninfo("", **options)


def copy_ranges(
    conn: psycopg.Connection[Any],
    schema: str,
    query: Callable[[psycopg.Connection[Any], range], sql.Composable],
    *,
    streams: int = STREAMS,
    labels_per_range: int = RANGE_LABELS,
) -> Iterator[bytes]:
    """Blocks of the lines of query(conn, ids) for every range of item ids, in id order, read
    by `streams` connections at once (conn and streams - 1 others) from one snapshot."""
    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        conn.commit()  # the snapshot's transaction must be a new one
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        conn.execute("SET LOCAL TIME ZONE 'UTC'")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()
        assert snapshot is not None
        ranges = id_ranges(conn, schema, labels_per_range)
        queries = [query(conn, ids) for ids in ranges]
        if not queries:
            return
        with ExitStack() as stack:
            others = [
                stack.enter_context(psycopg.connect(_conninfo(conn)))
                for _ in range(min(streams, len(queries)) - 1)
            ]
            for other in others:
                other.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                other.execute(
                    sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(snapshot[0]))
                )
                other.execute("SET LOCAL TIME ZONE 'UTC'")
            yield from _RangeReaders([conn, *others], queries).blocks()


class _RangeReaders:
    """One thread per connection, each taking the next query in turn and handing its lines
    over in blocks; the blocks come out query by query, in order. At most one query more
    than there are connections is read ahead of the one being written."""

    _DONE = object()

    def __init__(self, connections: list[psycopg.Connection[Any]], queries: list[Any]) -> None:
        self._connections = connections
        self._queries = queries
        self._outputs: list[queue.Queue[Any]] = [queue.Queue() for _ in queries]
        self._ahead = threading.Semaphore(len(connections) + 1)
        self._next = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def blocks(self) -> Iterator[bytes]:
        readers = [
            threading.Thread(target=self._read, args=(c,), name="export-range", daemon=True)
            for c in self._connections
        ]
        for reader in readers:
            reader.start()
        try:
            for output in self._outputs:
                while (block := output.get()) is not self._DONE:
                    if isinstance(block, BaseException):
                        raise block
                    yield block
                self._ahead.release()
        finally:
            self._stop.set()
            for _ in readers:
                self._ahead.release()
            for reader in readers:
                reader.join()

    def _read(self, conn: psycopg.Connection[Any]) -> None:
        while True:
            while not self._ahead.acquire(timeout=0.1):
                if self._stop.is_set():
                    return
            with self._lock:
                index = self._next
                self._next += 1
            if self._stop.is_set() or index >= len(self._queries):
                return
            output = self._outputs[index]
            try:
                self._copy(conn, self._queries[index], output)
            except BaseException as err:  # handed to the writer, raised there
                output.put(err)
                return
            output.put(self._DONE)

    def _copy(self, conn: psycopg.Connection[Any], query: Any, output: queue.Queue[Any]) -> None:
        pending: list[bytes] = []
        size = 0
        statement = sql.SQL("COPY ({}) TO STDOUT {}").format(query, sql.SQL(_RAW_LINES))
        with conn.cursor() as cur, cur.copy(statement) as copy:
            for data in copy:
                pending.append(bytes(data))
                size += len(data)
                if size >= WRITE_BYTES:
                    output.put(b"".join(pending))
                    pending.clear()
                    size = 0
                    if self._stop.is_set():
                        return
        output.put(b"".join(pending))


def items_query(
    conn: psycopg.Connection[Any], schema: str, *, with_payload: bool
) -> sql.Composable:
    """One JSON array per completed non-gold item: [external id, payload or null,
    [[labeler, value as JSON text, origin], ...]] (its training labels, in label order;
    each value as text, so Python parses each distinct value once: see ValueKeys)."""
    return sql.SQL(
        "SELECT json_build_array(i.external_id, {payload},"
        "        json_agg(json_build_array(l.labeler, l.value::text, l.origin)"
        "                 ORDER BY l.ordinal))"
        " FROM {items} i JOIN {labels} l ON l.item_id = i.id"
        " WHERE i.completed_at IS NOT NULL AND {training}"
        " GROUP BY i.id ORDER BY i.id"
    ).format(
        payload=sql.SQL("i.payload") if with_payload else sql.SQL("NULL"),
        labels=sql.Identifier(schema, "labels"),
        items=sql.Identifier(schema, "items"),
        training=_training_labels(columns(conn, schema)),
    )


def read_ahead(
    lines: Iterator[bytes], depth: int = READ_AHEAD_CHUNKS
) -> Generator[bytes, None, None]:
    """The same lines, read by a thread up to `depth` chunks ahead: PostgreSQL keeps
    building rows while Python consolidates, and memory stays bounded. A failure of the
    reader is raised here; stopping early stops the reader."""
    chunks: queue.Queue[list[bytes] | BaseException | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def read() -> None:
        try:
            chunk: list[bytes] = []
            for line in lines:
                chunk.append(line)
                if len(chunk) >= READ_AHEAD_LINES:
                    _put(chunks, chunk, stop)
                    chunk = []
                if stop.is_set():
                    return
            _put(chunks, chunk, stop)
            _put(chunks, None, stop)
        except BaseException as err:  # handed to the consumer, raised there
            _put(chunks, err, stop)
        finally:
            close = getattr(lines, "close", None)
            if close is not None:
                close()

    reader = threading.Thread(target=read, name="export-read-ahead", daemon=True)
    reader.start()
    try:
        while (chunk := chunks.get()) is not None:
            if isinstance(chunk, BaseException):
                raise chunk
            yield from chunk
    finally:
        stop.set()
        reader.join()


def _put(chunks: queue.Queue[Any], item: Any, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            chunks.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


class ValueKeys:
    """A label value's JSON text (as PostgreSQL writes jsonb) -> (value, value_key), each
    text parsed once: a campaign has few distinct values and many labels. Forgets all it
    knows past LIMIT texts (free-text values), so memory stays bounded."""

    LIMIT = 100_000

    def __init__(self) -> None:
        self._known: dict[str, tuple[Any, str]] = {}

    def __call__(self, text: str) -> tuple[Any, str]:
        found = self._known.get(text)
        if found is None:
            if len(self._known) >= self.LIMIT:
                self._known.clear()
            value = orjson.loads(text)
            found = self._known[text] = (value, value_key(value))
        return found


def parse_item_line(line: bytes, values: ValueKeys | None = None) -> ItemLabels:
    """An items_query line: its labels' values parsed (through `values`, when given)."""
    item_id, payload, labels = orjson.loads(line)
    known = values or ValueKeys()
    parsed = [known(text) for _, text, _ in labels]
    return ItemLabels(
        item_id,
        payload,
        [(lb, value, origin) for (lb, _, origin), (value, _) in zip(labels, parsed, strict=True)],
        [key for _, key in parsed],
    )


def parse_item_lines(lines: Iterable[bytes]) -> Iterator[ItemLabels]:
    values = ValueKeys()
    for line in lines:
        yield parse_item_line(line, values)


# --- writing -------------------------------------------------------------------------------


def write_lines(lines: Iterable[bytes], out: IO[bytes]) -> int:
    """Write newline-terminated lines in large writes; returns how many."""
    count = 0
    pending: list[bytes] = []
    size = 0
    for line in lines:
        pending.append(line)
        size += len(line)
        count += 1
        if size >= WRITE_BYTES:
            out.write(b"".join(pending))
            pending.clear()
            size = 0
    out.write(b"".join(pending))
    return count


def write_blocks(blocks: Iterable[bytes], out: IO[bytes]) -> int:
    """Write blocks of newline-terminated lines; returns how many lines."""
    count = 0
    for block in blocks:
        out.write(block)
        count += block.count(b"\n")
    return count


def write_jsonl(
    conn: psycopg.Connection[Any],
    schema: str,
    out: IO[bytes],
    *,
    streams: int = STREAMS,
    labels_per_range: int = RANGE_LABELS,
) -> int:
    blocks = copy_ranges(
        conn, schema, _jsonl_ranges(schema), streams=streams, labels_per_range=labels_per_range
    )
    return write_blocks(blocks, out)


def _jsonl_ranges(schema: str) -> Callable[[psycopg.Connection[Any], range], sql.Composable]:
    present: set[str] = set()

    def query(conn: psycopg.Connection[Any], ids: range) -> sql.Composable:
        if not present:  # read once, in the export's snapshot
            present.update(columns(conn, schema))
        return _jsonl_query(present, schema, ids)

    return query


def rlhf_record(item_labels: list[LabelRow]) -> dict[str, Any] | None:
    """The preference pair of one item by majority vote, or None when the vote is a tie
    (labels given as rows; the export itself consolidates, see rlhf_pair)."""
    votes = Counter(str(r.value.get("preferred")) for r in item_labels)
    ranked = votes.most_common()
    winner, top = ranked[0]
    if winner == "tie" or (len(ranked) > 1 and ranked[1][1] == top):
        return None
    return rlhf_pair(
        item_labels[0].item_id,
        item_labels[0].payload,
        winner,
        agreement=top / len(item_labels),
        confidence=None,
        votes=dict(votes),
    )


def rlhf_pair(
    item_id: str,
    payload: dict[str, Any],
    preferred: str,
    *,
    agreement: float,
    confidence: float | None,
    votes: dict[str, int],
) -> dict[str, Any] | None:
    """The preference pair of one item whose preferred response is `preferred` (None when
    that is a tie or names no response of the item)."""
    texts = {resp["id"]: resp["text"] for resp in payload["responses"]}
    if preferred not in texts:
        return None
    loser = next(rid for rid in texts if rid != preferred)
    return {
        "id": item_id,
        "prompt": payload["prompt"],
        "chosen": texts[preferred],
        "rejected": texts[loser],
        "chosen_id": preferred,
        "rejected_id": loser,
        **pair_fields(agreement=agreement, confidence=confidence, votes=votes),
    }


def pair_fields(
    *, agreement: float, confidence: float | None, votes: dict[str, int]
) -> dict[str, Any]:
    """A preference pair's fields after the pair itself (RlhfPieces keeps them as JSON)."""
    fields: dict[str, Any] = {
        "agreement": round(agreement, 4),
        "votes": votes,
        "labels": sum(votes.values()),
    }
    if confidence is not None:
        fields["confidence"] = round(confidence, 4)
    return fields


def rlhf_lines(rows: Iterable[LabelRow], tally: RlhfTally) -> Iterator[str]:
    """Majority-vote pairs from label rows in item order (kept for plain data)."""
    group: list[LabelRow] = []
    for row in [*rows, None]:
        if group and (row is None or row.item_id != group[0].item_id):
            record = rlhf_record(group)
            group = []
            if record is None:
                tally.ties += 1
            else:
                tally.written += 1
                yield json.dumps(record, ensure_ascii=False)
        if row is not None:
            group.append(row)


# --- consolidation -------------------------------------------------------------------------


def value_key(value: Any) -> str:
    """A label value as a hashable category: its canonical JSON text."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def origin_of(origins: Iterable[str]) -> str:
    kinds = set(origins)
    if kinds == {"machine"}:
        return "machine"
    if "machine" in kinds:
        return "mixed"
    return "human"


@dataclass(frozen=True)
class Evidence:
    """What the campaign knows besides the labels: how accurate each labeler is (gold
    answers and agreement with consensus, for `weighted`) and how many answers the task
    has (None: the distinct values seen)."""

    labeler_accuracy: dict[str, float] | None = None
    num_classes: int | None = None


def read_evidence(conn: psycopg.Connection[Any], schema: str) -> Evidence:
    """Evidence from labeler_quality and campaign_policy, in the schemas that have them."""
    from labelops.quality.posterior import labeler_accuracy

    tables = {
        row[0]
        for row in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
            " AND table_name IN ('labeler_quality', 'campaign_policy')",
            (schema,),
        ).fetchall()
    }
    num_classes = None
    if "campaign_policy" in tables:
        row = conn.execute(
            sql.SQL("SELECT num_classes FROM {}").format(sql.Identifier(schema, "campaign_policy"))
        ).fetchone()
        num_classes = row[0] if row else None
    accuracy: dict[str, float] | None = None
    if "labeler_quality" in tables:
        rows = conn.execute(
            sql.SQL(
                "SELECT labeler, gold_correct, gold_answers, agreements, agreement_total FROM {}"
            ).format(sql.Identifier(schema, "labeler_quality"))
        ).fetchall()
        accuracy = {
            labeler: labeler_accuracy(
                correct, answers, agree, agree_total, num_classes=num_classes or 2
            )
            for labeler, correct, answers, agree, agree_total in rows
        }
    conn.commit()  # nothing held open while the export streams
    return Evidence(accuracy, num_classes)


def consolidated_records(
    items: Iterable[ItemLabels],
    method: str,
    *,
    whole_campaign: bool,
    evidence: Evidence | None = None,
) -> Iterator[tuple[ItemLabels, dict[str, Any]]]:
    """(item, consolidated record) per item, in item order. Majority and weighted work
    ITEMS_PER_CHUNK items at a time; with whole_campaign (dawid-skene) every item is read
    before the first is consolidated."""
    from labelops.quality.consolidation import Method, consolidate

    known = evidence or Evidence()
    if method == "majority":
        # Each item's vote on its own, as it is read: the same result as consolidate()'s,
        # without grouping the chunk's labels again (they come grouped by item).
        for item in items:
            record = majority_record(item)
            if record is not None:
                yield item, record
        return

    def flush(chunk: list[ItemLabels]) -> Iterator[tuple[ItemLabels, dict[str, Any]]]:
        values: dict[str, Any] = {}
        triples = []
        for item in chunk:
            item_id, labels = item.item_id, item.labels
            keys = item.keys if item.keys is not None else [value_key(v) for _, v, _ in labels]
            for (labeler, value, _), key in zip(labels, keys, strict=True):
                values[key] = value
                triples.append((item_id, labeler, key))
        classes = known.num_classes
        results = consolidate(
            triples,
            cast("Method", method),
            labeler_accuracy=known.labeler_accuracy,
            # Never fewer than the values seen (a free-form value, a stale policy row).
            num_classes=max(classes, len(values)) if classes else None,
        )
        for item in chunk:
            result = results.get(item.item_id)
            if result is None:
                continue
            origins = [origin for _, _, origin in item.labels]
            yield (
                item,
                {
                    "itemId": item.item_id,
                    "value": values[str(result.value)],
                    "confidence": round(float(result.confidence), 6),
                    "method": method,
                    "labels": origins.count("human"),
                    "agreement": round(float(result.agreement), 6),
                    "origin": origin_of(origins),
                    "disputed": bool(result.disputed),
                },
            )

    chunk: list[ItemLabels] = []
    for item in items:
        chunk.append(item)
        if not whole_campaign and len(chunk) >= ITEMS_PER_CHUNK:
            yield from flush(chunk)
            chunk = []
    if chunk:
        yield from flush(chunk)


def majority_record(item: ItemLabels) -> dict[str, Any] | None:
    """The consolidated record of one item by majority (None when it has no labels): as
    labelops.quality.consolidation's majority over its values' keys (value_key) decides it:
    the most frequent key, ties to the smallest key; disputed when the top two are tied."""
    labels = item.labels
    n = len(labels)
    if not n:
        return None
    keys = item.keys if item.keys is not None else [value_key(v) for _, v, _ in labels]
    counts: dict[str, int] = {}
    for key in keys:
        counts[key] = counts.get(key, 0) + 1
    if len(counts) == 1:
        winner, top, second = keys[0], n, 0
    else:
        ranked = sorted(counts.items(), key=_by_votes)
        (winner, top), (_, second) = ranked[0], ranked[1]
    share = top / n
    rounded = round(share, 6)
    origins = [origin for _, _, origin in labels]
    return {
        "itemId": item.item_id,
        "value": labels[keys.index(winner)][1],
        "confidence": rounded,
        "method": "majority",
        "labels": origins.count("human"),
        "agreement": rounded,
        "origin": origin_of(origins),
        "disputed": second / n >= share - _TIE,
    }


def _by_votes(key_count: tuple[str, int]) -> tuple[int, str]:
    return -key_count[1], key_count[0]


def write_consolidated(
    conn: psycopg.Connection[Any], schema: str, method: str, out: IO[bytes]
) -> int:
    evidence = read_evidence(conn, schema)
    query = items_query(conn, schema, with_payload=False)
    items = parse_item_lines(read_ahead(copy_lines(conn, query)))
    records = consolidated_records(
        items, method, whole_campaign=method == "dawid-skene", evidence=evidence
    )
    return write_lines((orjson.dumps(record) + b"\n" for _, record in records), out)


def write_rlhf(
    conn: psycopg.Connection[Any],
    schema: str,
    method: str,
    out: IO[bytes],
    *,
    streams: int = STREAMS,
    labels_per_range: int = RANGE_LABELS,
) -> RlhfTally:
    """The preference pairs: by majority, lines assembled from pieces PostgreSQL encodes
    (rlhf_pieces_query, RlhfPieces); by the other methods, from consolidated records."""
    if method == "majority":
        tally = RlhfTally()
        blocks = copy_ranges(
            conn,
            schema,
            _rlhf_ranges(schema),
            streams=streams,
            labels_per_range=labels_per_range,
        )
        write_lines(RlhfPieces(tally).lines(blocks), out)
        return tally
    return write_rlhf_records(conn, schema, method, out)


def write_rlhf_records(
    conn: psycopg.Connection[Any], schema: str, method: str, out: IO[bytes]
) -> RlhfTally:
    """The preference pairs from consolidated records (any method), item by item in
    Python: the reference for the majority fast path (a test holds the two byte-identical)."""
    tally = RlhfTally()
    evidence = read_evidence(conn, schema)
    query = items_query(conn, schema, with_payload=True)
    items = parse_item_lines(read_ahead(copy_lines(conn, query)))
    records = consolidated_records(
        items, method, whole_campaign=method == "dawid-skene", evidence=evidence
    )

    def lines() -> Iterator[bytes]:
        for item, record in records:
            assert item.payload is not None  # read with its payload
            value = record["value"]
            preferred = value.get("preferred") if isinstance(value, dict) else None
            votes = pair_votes(v for _, v, _ in item.labels)
            pair = (
                rlhf_pair(
                    item.item_id,
                    item.payload,
                    str(preferred),
                    agreement=record["agreement"],
                    confidence=record["confidence"],
                    votes=votes,
                )
                if preferred is not None
                else None
            )
            if pair is None:
                tally.ties += 1
                continue
            tally.written += 1
            yield orjson.dumps(pair) + b"\n"

    write_lines(lines(), out)
    return tally


def pair_votes(values: Iterable[Any]) -> dict[str, int]:
    """Each label's preference counted, in the order first seen (a Counter's counts, for
    less)."""
    votes: dict[str, int] = {}
    for value in values:
        vote = str(value.get("preferred"))
        votes[vote] = votes.get(vote, 0) + 1
    return votes


# The pieces of a preference pair, one line per completed item (rlhf_pieces_query): fields
# apart by \x02 (COPY's delimiter, _RAW_LINES), the label values apart by \x03 (JSON text
# holds neither raw).
_PIECE = b"\x02"
_VALUE = "\x03"
# A plain pair's line (rlhf_pair's fields in its order): id, prompt, chosen, rejected,
# chosen_id, rejected_id, then the outcome's fields (pair_fields) and the closing brace.
_PAIR = b'{"id":%b,"prompt":%b,"chosen":%b,"rejected":%b,"chosen_id":%b,"rejected_id":%b%b\n'


def _rlhf_ranges(schema: str) -> Callable[[psycopg.Connection[Any], range], sql.Composable]:
    present: set[str] = set()

    def query(conn: psycopg.Connection[Any], ids: range) -> sql.Composable:
        if not present:  # read once, in the export's snapshot
            present.update(columns(conn, schema))
        return rlhf_pieces_query(present, schema, ids)

    return query


def rlhf_pieces_query(present: set[str], schema: str, ids: range | None) -> sql.Composable:
    """One row per completed item with training labels, in item order: its id as JSON
    text; its labels' values as JSON text in label order, apart by \\x03; then, when the
    payload is a plain pair (a string prompt and two responses of distinct string ids and
    string texts, as the pairwise payload schema asks), the prompt and each response's id
    and text as JSON text, else five NULLs and the whole payload as JSON text.

    PostgreSQL writes a JSON string as orjson does (the same escapes: a test holds them to
    it for every character), so these pieces are the exact bytes of the line's fields."""
    bounds = _join_bounds(ids)
    # Each level computes its columns once (OFFSET 0: not folded into the level above,
    # where every use would compute them again): the payload's two members, the responses,
    # their ids and texts, then whether they make a plain pair.
    return sql.SQL(
        "SELECT to_json(external_id), labels, CASE WHEN plain THEN prompt END,"
        " CASE WHEN plain THEN id0 END, CASE WHEN plain THEN text0 END,"
        " CASE WHEN plain THEN id1 END, CASE WHEN plain THEN text1 END,"
        " CASE WHEN NOT plain THEN payload END"
        " FROM (SELECT d.*, coalesce(jsonb_typeof(prompt) = 'string'"
        "         AND jsonb_typeof(id0) = 'string' AND jsonb_typeof(text0) = 'string'"
        "         AND jsonb_typeof(id1) = 'string' AND jsonb_typeof(text1) = 'string'"
        "         AND two AND id0 <> id1, false) AS plain"
        "  FROM (SELECT c.*, r0 -> 'id' AS id0, r0 -> 'text' AS text0,"
        "               r1 -> 'id' AS id1, r1 -> 'text' AS text1"
        # An array has exactly two elements when it has a second and no third; an object
        # or a scalar has neither (-> with a number gives NULL).
        "   FROM (SELECT b.*, b.payload -> 'prompt' AS prompt, responses -> 0 AS r0,"
        "                responses -> 1 AS r1,"
        "                responses -> 1 IS NOT NULL AND responses -> 2 IS NULL AS two"
        "    FROM (SELECT a.*, a.payload -> 'responses' AS responses"
        "     FROM (SELECT i.id, i.external_id, i.payload,"
        "                  string_agg(l.value::text, {separator} ORDER BY l.ordinal) AS labels"
        "           FROM {items} i JOIN {labels} l ON l.item_id = i.id"
        "           WHERE i.completed_at IS NOT NULL AND {training}{bounds}"
        "           GROUP BY i.id) a OFFSET 0) b OFFSET 0) c OFFSET 0) d OFFSET 0) e"
        " ORDER BY id"
    ).format(
        separator=sql.Literal(_VALUE),
        labels=sql.Identifier(schema, "labels"),
        items=sql.Identifier(schema, "items"),
        training=_training_labels(present),
        bounds=bounds,
    )


class RlhfPieces:
    """Preference-pair lines from rlhf_pieces_query's rows, byte for byte what
    write_rlhf_records writes by majority: an item's outcome (preferred response, votes,
    agreement) depends on its labels' values alone, so it is decided once per distinct
    sequence of values (majority_record, pair_votes, rlhf_pair's fields) and kept as the
    line's last bytes; a plain pair's line is then the item's pieces joined around them.
    An item whose payload is not a plain pair goes through rlhf_pair itself."""

    LIMIT = 100_000  # distinct label sequences remembered (free-form values)

    def __init__(self, tally: RlhfTally) -> None:
        self.tally = tally
        self._values = ValueKeys()
        self._outcomes: dict[bytes, _PairOutcome] = {}

    def lines(self, blocks: Iterable[bytes]) -> Iterator[bytes]:
        tally = self.tally
        outcomes = self._outcomes
        decide = self._decide
        for block in blocks:
            for row in block.split(b"\n")[:-1]:
                (item_id, labels, prompt, id0, text0, id1, text1, payload) = row.split(_PIECE)
                outcome = outcomes.get(labels) or decide(labels)
                preferred = outcome.preferred
                if preferred is None:
                    tally.ties += 1
                    continue
                if not prompt:  # not a plain pair (the pieces are NULL): the slow way
                    line = self._pair_line(item_id, payload, outcome)
                elif preferred == id0:
                    line = _PAIR % (item_id, prompt, text0, text1, id0, id1, outcome.tail)
                elif preferred == id1:
                    line = _PAIR % (item_id, prompt, text1, text0, id1, id0, outcome.tail)
                else:
                    line = None
                if line is None:
                    tally.ties += 1
                    continue
                tally.written += 1
                yield line

    def _decide(self, labels: bytes) -> _PairOutcome:
        if len(self._outcomes) >= self.LIMIT:
            self._outcomes.clear()
        parsed = [self._values(text) for text in labels.decode().split(_VALUE)]
        item = ItemLabels("", None, [("", v, "") for v, _ in parsed], [k for _, k in parsed])
        record = majority_record(item)
        assert record is not None  # the query returns items with labels only
        value = record["value"]
        preferred = value.get("preferred") if isinstance(value, dict) else None
        votes = pair_votes(v for v, _ in parsed)
        fields = pair_fields(
            agreement=record["agreement"], confidence=record["confidence"], votes=votes
        )
        outcome = _PairOutcome(
            None if preferred is None else orjson.dumps(str(preferred)),
            b"," + orjson.dumps(fields)[1:],
            record,
            votes,
        )
        self._outcomes[labels] = outcome
        return outcome

    @staticmethod
    def _pair_line(item_id: bytes, payload: bytes, outcome: _PairOutcome) -> bytes | None:
        assert outcome.preferred is not None
        pair = rlhf_pair(
            orjson.loads(item_id),
            orjson.loads(payload),
            orjson.loads(outcome.preferred),
            agreement=outcome.record["agreement"],
            confidence=outcome.record["confidence"],
            votes=outcome.votes,
        )
        return None if pair is None else orjson.dumps(pair) + b"\n"


@dataclass(frozen=True)
class _PairOutcome:
    preferred: bytes | None  # the preferred response id as JSON text; None: no pair
    tail: bytes  # the line's fields after rejected_id, as JSON text, and its closing brace
    record: dict[str, Any]  # majority_record's
    votes: dict[str, int]


def write_export(
    conn: psycopg.Connection[Any],
    schema: str,
    fmt: str,
    out: IO[bytes],
    method: str = "majority",
) -> RlhfTally | int:
    if fmt == "rlhf":
        return write_rlhf(conn, schema, method, out)
    if fmt == "consolidated":
        return write_consolidated(conn, schema, method, out)
    return write_jsonl(conn, schema, out)


# --- the command ---------------------------------------------------------------------------


def _campaign_database(name: str, namespace: str | None) -> tuple[str, str, str]:
    """(schema, dsn, task type) from the campaign's status and its database Secret."""
    from kubernetes import client

    from labelops.report.kubeconfig import current_namespace, load

    load()
    ns = namespace or current_namespace()
    obj: dict[str, Any] = client.CustomObjectsApi().get_namespaced_custom_object(  # type: ignore[assignment]
        GROUP, VERSION, ns, PLURAL, name
    )
    status = obj.get("status") or {}
    schema, secret_name = status.get("schema"), status.get("databaseSecret")
    if not schema or not secret_name:
        raise SystemExit(
            f"labelingcampaign {ns}/{name} has no database yet (status.schema is empty): "
            "wait until SchemaReady is True"
        )
    dsn = os.environ.get("LABELOPS_EXPORT_DSN")
    if not dsn:
        secret = client.CoreV1Api().read_namespaced_secret(secret_name, ns)
        dsn = base64.b64decode((secret.data or {})["dsn"]).decode()
    return schema, dsn, obj["spec"]["task"]["type"]


def export(
    name: str, namespace: str | None, fmt: str, out: str = "-", method: str = "majority"
) -> int:
    if fmt not in FORMATS:
        print(f"--format {fmt!r} is not one of {', '.join(FORMATS)}", file=sys.stderr)
        return 2
    if method not in METHODS:
        print(f"--method {method!r} is not one of {', '.join(METHODS)}", file=sys.stderr)
        return 2
    schema, dsn, task_type = _campaign_database(name, namespace)
    if fmt == "rlhf" and task_type != "pairwise":
        print(
            f"--format rlhf needs a pairwise campaign; {name} is {task_type}: use jsonl",
            file=sys.stderr,
        )
        return 2
    with ExitStack() as stack:
        target: IO[bytes] = (
            sys.stdout.buffer if out == "-" else stack.enter_context(open(out, "wb"))
        )
        conn = stack.enter_context(psycopg.connect(dsn))
        try:
            result = write_export(conn, schema, fmt, target, method)
            target.flush()
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly, like any Unix filter.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    if isinstance(result, RlhfTally):
        print(
            f"exported {result.written} preference pairs ({result.ties} ties left out)",
            file=sys.stderr,
        )
    elif fmt == "consolidated":
        print(f"exported {result} consolidated items ({method})", file=sys.stderr)
    else:
        print(f"exported {result} labels", file=sys.stderr)
    return 0
