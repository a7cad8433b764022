"""`labelops export`: stream a campaign's accepted labels, in constant memory.

Rows come from a server-side cursor in item order, so a campaign of millions of labels is
written with one item's labels in memory at a time.

Formats:
  jsonl  one accepted label per line: label id, item id, labeler, value, origin, created_at
         and the item payload.
  rlhf   pairwise campaigns only; one line per item with a majority preference:
         {"id", "prompt", "chosen", "rejected", "agreement", "votes", "labels"}. Items whose
         majority is a tie, or that have no labels, are left out (counted on stderr).
"""

from __future__ import annotations

import base64
import json
import os
import sys
from collections import Counter
from collections.abc import Generator, Iterable, Iterator
from contextlib import ExitStack, closing
from dataclasses import dataclass
from itertools import groupby
from typing import Any, TextIO

import psycopg
from psycopg import sql

from labelops.api.campaign import GROUP, PLURAL, VERSION

BATCH_ROWS = 2000


@dataclass(frozen=True)
class LabelRow:
    label_id: str
    item_id: str
    payload: dict[str, Any]
    labeler: str
    value: Any
    origin: str
    created_at: str


def stream_labels(conn: psycopg.Connection[Any], schema: str) -> Generator[LabelRow]:
    query = sql.SQL(
        "SELECT l.id, i.external_id, i.payload, l.labeler, l.value, l.origin, l.created_at"
        " FROM {s}.labels l JOIN {s}.items i ON i.id = l.item_id"
        " ORDER BY l.item_id, l.ordinal"
    ).format(s=sql.Identifier(schema))
    with conn.transaction(), conn.cursor(name="labelops_export") as cur:
        cur.itersize = BATCH_ROWS
        cur.execute(query)
        for row in cur:
            yield LabelRow(
                label_id=str(row[0]),
                item_id=row[1],
                payload=row[2],
                labeler=row[3],
                value=row[4],
                origin=row[5],
                created_at=row[6].isoformat(),
            )


def jsonl_lines(rows: Iterable[LabelRow]) -> Iterator[str]:
    for r in rows:
        yield json.dumps(
            {
                "label_id": r.label_id,
                "item_id": r.item_id,
                "labeler": r.labeler,
                "value": r.value,
                "origin": r.origin,
                "created_at": r.created_at,
                "payload": r.payload,
            },
            ensure_ascii=False,
        )


@dataclass
class RlhfTally:
    written: int = 0
    ties: int = 0


def rlhf_record(item_labels: list[LabelRow]) -> dict[str, Any] | None:
    """The preference pair of one item by majority vote, or None when the vote is a tie."""
    payload = item_labels[0].payload
    votes = Counter(str(r.value.get("preferred")) for r in item_labels)
    ranked = votes.most_common()
    winner, top = ranked[0]
    if winner == "tie" or (len(ranked) > 1 and ranked[1][1] == top):
        return None
    texts = {resp["id"]: resp["text"] for resp in payload["responses"]}
    loser = next(rid for rid in texts if rid != winner)
    return {
        "id": item_labels[0].item_id,
        "prompt": payload["prompt"],
        "chosen": texts[winner],
        "rejected": texts[loser],
        "chosen_id": winner,
        "rejected_id": loser,
        "agreement": round(top / len(item_labels), 4),
        "votes": dict(votes),
        "labels": len(item_labels),
    }


def rlhf_lines(rows: Iterable[LabelRow], tally: RlhfTally) -> Iterator[str]:
    for _, group in groupby(rows, key=lambda r: r.item_id):
        record = rlhf_record(list(group))
        if record is None:
            tally.ties += 1
            continue
        tally.written += 1
        yield json.dumps(record, ensure_ascii=False)


def write_export(
    conn: psycopg.Connection[Any], schema: str, fmt: str, out: TextIO
) -> RlhfTally | int:
    # closing(): the cursor's transaction ends here even when the reader stops early.
    with closing(stream_labels(conn, schema)) as rows:
        if fmt == "rlhf":
            tally = RlhfTally()
            for line in rlhf_lines(rows, tally):
                out.write(line + "\n")
            return tally
        count = 0
        for line in jsonl_lines(rows):
            out.write(line + "\n")
            count += 1
        return count


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


def export(name: str, namespace: str | None, fmt: str, out: str = "-") -> int:
    schema, dsn, task_type = _campaign_database(name, namespace)
    if fmt == "rlhf" and task_type != "pairwise":
        print(
            f"--format rlhf needs a pairwise campaign; {name} is {task_type}: use jsonl",
            file=sys.stderr,
        )
        return 2
    with ExitStack() as stack:
        target: TextIO = (
            sys.stdout if out == "-" else stack.enter_context(open(out, "w", encoding="utf-8"))
        )
        conn = stack.enter_context(psycopg.connect(dsn))
        try:
            result = write_export(conn, schema, fmt, target)
        except BrokenPipeError:
            # The reader went away (`| head`): stop quietly, like any Unix filter.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    if isinstance(result, RlhfTally):
        print(
            f"exported {result.written} preference pairs ({result.ties} ties left out)",
            file=sys.stderr,
        )
    else:
        print(f"exported {result} labels", file=sys.stderr)
    return 0
