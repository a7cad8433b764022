"""The export's majority vote, item by item as it is read, against consolidate()'s."""

from __future__ import annotations

import random
from typing import Any

from labelops.quality.consolidation import consolidate
from labelops.report.export import ItemLabels, consolidated_records, origin_of, value_key

VALUES: list[Any] = [
    {"choice": "a"},
    {"choice": "b"},
    {"preferred": "tie"},
    "x",
    "y",
    1,
    2.5,
    True,
    False,
    [1, 2],
]


def random_items(rng: random.Random, count: int) -> list[ItemLabels]:
    items = []
    for n in range(count):
        kinds = rng.sample(VALUES, rng.randint(1, 4))
        labels = [
            (f"labeler-{rng.randrange(9)}", rng.choice(kinds), rng.choice(["human", "model"]))
            for _ in range(rng.randint(0, 7))
        ]
        keyed = rng.random() < 0.5  # keys given (as the export parses them) or not
        keys = [value_key(v) for _, v, _ in labels] if keyed else None
        items.append(ItemLabels(f"item-{n}", None, labels, keys))
    return items


def expected(items: list[ItemLabels]) -> list[dict[str, Any]]:
    values = {value_key(v): v for item in items for _, v, _ in item.labels}
    results = consolidate(
        [(i.item_id, lb, value_key(v)) for i in items for lb, v, _ in i.labels], "majority"
    )
    out = []
    for item in items:
        result = results.get(item.item_id)
        if result is None:
            continue
        origins = [origin for _, _, origin in item.labels]
        out.append(
            {
                "itemId": item.item_id,
                "value": values[str(result.value)],
                "confidence": round(float(result.confidence), 6),
                "method": "majority",
                "labels": origins.count("human"),
                "agreement": round(float(result.agreement), 6),
                "origin": origin_of(origins),
                "disputed": bool(result.disputed),
            }
        )
    return out


def test_majority_records_are_consolidates_results() -> None:
    rng = random.Random(14)
    items = random_items(rng, 3000)
    got = [record for _, record in consolidated_records(items, "majority", whole_campaign=False)]
    want = expected(items)
    assert len(want) < len(items)  # some items have no labels, and are left out
    assert any(r["disputed"] for r in want) and not all(r["disputed"] for r in want)
    assert got == want


def test_a_tie_goes_to_the_smallest_key_and_is_disputed() -> None:
    labels = [("l1", {"choice": "b"}, "human"), ("l2", {"choice": "a"}, "human")]
    ((_, record),) = consolidated_records(
        [ItemLabels("i", None, labels)], "majority", whole_campaign=False
    )
    assert record["value"] == {"choice": "a"}
    assert record["disputed"] is True
    assert record["confidence"] == record["agreement"] == 0.5
