"""Offline benchmark of consolidation and adaptive overlap on real crowd answers (issue 11).

    python bench/bench_consolidation.py         # about a minute; no stack needed
    python bench/bench_consolidation.py --all-methods \
        --out bench/results/consolidation-all-methods.json   # with GLAD and MACE: ~11 min here

Data: the truth-inference benchmark of Zheng, Li, Li, Shan & Cheng (PVLDB 10(5), 2017), in
../shared/datasets (beside the repository): D_PosSent (`zheng_d_sentiment`,
1,000 tweets, 20 answers each) and D_Product (`zheng_d_product`, 8,315 record pairs, 3 each).

Measures, and prints as JSON (also written to bench/results/consolidation.json):
  allAnswers  accuracy against the truth of each method over every answer, next to the
              published figures of crowd-kit (Ustalov et al., JOSS 9(96), 2024):
              majority, weighted (the one-coin posterior of labelops.quality.posterior with
              each worker's accuracy estimated from gold answers on a fixed random 10% of the
              items and from agreement with the leave-one-out majority elsewhere; no other use
              of the truth), Dawid-Skene, GLAD and MACE (crowd-kit), and Dawid-Skene with the
              gold items as known labels. Accuracy over all items and over the non-gold items.
  adaptive    the adaptive-overlap rule (stopping_decision, min 2, max 7, agreement 0.95) on
              D_PosSent: every item's answers are revealed one at a time in a random but fixed
              order; the open items take turns (one answer each per round, in a fixed shuffled
              order), and one gold answer (from the gold items' answers) is revealed for every
              nine non-gold ones, as a 10% gold rate would serve them. Workers' accuracies come
              from their gold answers so far and their agreement with the consensus of items
              already complete (labeler_accuracy). Reports the accuracy of the leading value
              against the truth on the non-gold items, the mean labels per item (non-gold only,
              and with the gold labels added), and the share disputed.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator"), str(REPO / "bench")]

from devstack.datasets import datasets_dir  # noqa: E402
from labelops.quality.consolidation import Method, consolidate  # noqa: E402
from labelops.quality.posterior import (  # noqa: E402
    agreement_credit,
    labeler_accuracy,
    stopping_decision,
)
from run import machine  # noqa: E402

DATASETS = datasets_dir()
PUBLISHED = {  # Ustalov et al., JOSS 2024, categorical methods over all answers
    "zheng_d_sentiment": {"majority": 0.932, "dawid-skene": 0.960, "glad": 0.948, "mace": 0.950},
    "zheng_d_product": {"majority": 0.897, "dawid-skene": 0.940, "glad": 0.928, "mace": 0.929},
}
GOLD_SHARE = 0.10
SEED = 2017

Label = tuple[str, str, int]


def load(name: str) -> tuple[list[Label], dict[str, int]]:
    folder = DATASETS / name
    with (folder / "answers.csv").open() as f:
        answers: list[Label] = [
            (r["item"], r["worker"], int(r["label"])) for r in csv.DictReader(f)
        ]
    with (folder / "truth.csv").open() as f:
        truth = {r["item"]: int(r["label"]) for r in csv.DictReader(f)}
    return answers, truth


def gold_items(truth: dict[str, int], share: float, seed: int) -> set[str]:
    items = sorted(truth)
    return set(random.Random(seed).sample(items, round(share * len(items))))


def accuracy(result: Mapping[Any, Any], truth: dict[str, int], items: set[str]) -> float:
    scored = [i for i in items if i in result]
    return sum(result[i].value == truth[i] for i in scored) / len(scored)


def estimated_accuracies(
    answers: list[Label], truth: dict[str, int], gold: set[str], num_classes: int
) -> dict[str, float]:
    """Per worker: gold answers on the gold items, and agreement with the majority of the
    *other* answers on every other item (ties skipped); nothing else of the truth."""
    per_item: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for item, worker, value in answers:
        per_item[item].append((worker, value))
    stats: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for item, votes in per_item.items():
        if item in gold:
            for worker, value in votes:
                s = stats[worker]
                s[0] += value == truth[item]
                s[1] += 1
            continue
        counts = Counter(v for _, v in votes)
        for worker, value in votes:
            others = counts.copy()
            others[value] -= 1
            ranked = others.most_common(2)
            if (
                not ranked
                or ranked[0][1] == 0
                or (len(ranked) > 1 and ranked[0][1] == ranked[1][1])
            ):
                continue
            s = stats[worker]
            s[2] += value == ranked[0][0]
            s[3] += 1
    return {
        w: labeler_accuracy(s[0], s[1], s[2], s[3], num_classes=num_classes)
        for w, s in stats.items()
    }


def all_answers(name: str, every_method: bool) -> dict[str, Any]:
    answers, truth = load(name)
    gold = gold_items(truth, GOLD_SHARE, SEED)
    every = set(truth)
    rest = every - gold
    k = len({v for _, _, v in answers})
    weights = estimated_accuracies(answers, truth, gold, k)
    runs: dict[str, dict[str, Any]] = {}
    plans: list[tuple[str, Method, dict[str, Any]]] = [
        ("majority", "majority", {}),
        ("weighted", "weighted", {"labeler_accuracy": weights, "num_classes": k}),
        ("dawid-skene", "dawid-skene", {}),
        ("dawid-skene+gold", "dawid-skene", {"gold": {i: truth[i] for i in gold}}),
    ]
    if every_method:
        plans += [("glad", "glad", {}), ("mace", "mace", {})]
    for method, algorithm, kwargs in plans:
        started = time.perf_counter()
        result = consolidate(answers, algorithm, **kwargs)
        seconds = time.perf_counter() - started
        entry: dict[str, Any] = {
            "accuracyAllItems": round(accuracy(result, truth, every), 4),
            "accuracyNonGoldItems": round(accuracy(result, truth, rest), 4),
            "seconds": round(seconds, 2),
        }
        published = PUBLISHED[name].get(method)
        if published is not None:
            entry["published"] = published
            entry["differenceFromPublished"] = round(entry["accuracyAllItems"] - published, 4)
        runs[method] = entry
    ds = runs["dawid-skene"]
    return {
        "items": len(truth),
        "answers": len(answers),
        "workers": len({w for _, w, _ in answers}),
        "labelsPerItem": round(len(answers) / len(truth), 2),
        "goldItems": len(gold),
        "methods": runs,
        "target": "Dawid-Skene within 0.005 of the published figure",
        "targetMet": abs(ds["differenceFromPublished"]) <= 0.005,
    }


def _replay_order(
    answers: list[Label], gold: set[str]
) -> tuple[dict[str, list[tuple[str, int]]], list[Label], list[str]]:
    """Per item, its answers in a fixed random order; the gold items' answers as one shuffled
    stream; the non-gold items in a fixed random order."""
    rng = random.Random(SEED)
    queues: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for item, worker, value in answers:
        queues[item].append((worker, value))
    for item in sorted(queues):
        rng.shuffle(queues[item])
    gold_stream: list[Label] = [(i, w, v) for i in sorted(gold) for w, v in queues[i]]
    rng.shuffle(gold_stream)
    order: list[str] = [i for i in sorted(queues) if i not in gold]
    rng.shuffle(order)
    return queues, gold_stream, order


def adaptive(
    name: str,
    min_labels: int,
    max_labels: int,
    agreement: float,
    credit: str = "hard",
    oracle: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Replay the answers under adaptive overlap (see the module docstring).

    `credit`: how a completed item credits its labelers' agreement: "hard" counts agreement
    with the item's leading value (their own vote included: what the store's quality job
    counts), "soft" adds `agreement_credit` (the posterior of their answer given the others).
    `oracle`: fixed worker accuracies instead of estimates (a ceiling, from the truth).
    """
    answers, truth = load(name)
    gold = gold_items(truth, GOLD_SHARE, SEED)
    k = len({v for _, _, v in answers})
    queues, gold_stream, order = _replay_order(answers, gold)
    stats: dict[str, list[float]] = defaultdict(lambda: [0, 0, 0.0, 0])
    given: dict[str, list[tuple[str, int]]] = {i: [] for i in order}
    decided: dict[str, Any] = {}
    gold_used = 0
    served = 0
    open_items = list(order)

    def acc(worker: str) -> float:
        if oracle is not None:
            return oracle[worker]
        s = stats[worker]
        return labeler_accuracy(int(s[0]), int(s[1]), s[2], s[3], num_classes=k)

    while open_items:
        still_open = []
        for item in open_items:
            if served % 9 == 8 and gold_used < len(gold_stream):
                g_item, g_worker, g_value = gold_stream[gold_used]
                gold_used += 1
                stats[g_worker][0] += g_value == truth[g_item]
                stats[g_worker][1] += 1
            worker, value = queues[item][len(given[item])]
            given[item].append((worker, value))
            served += 1
            weighted = [(v, acc(w)) for w, v in given[item]]
            decision = stopping_decision(weighted, k, min_labels, max_labels, agreement)
            if decision.complete or len(given[item]) == len(queues[item]):
                decided[item] = decision
                for j, (w, v) in enumerate(given[item]):
                    if credit == "soft":
                        stats[w][2] += agreement_credit(weighted, j, k)
                    else:
                        stats[w][2] += v == decision.leading_value
                    stats[w][3] += 1
            else:
                still_open.append(item)
        open_items = still_open

    correct = sum(decided[i].leading_value == truth[i] for i in order)
    labels = sum(len(given[i]) for i in order)
    # The export's batch method over the labels the rule collected.
    collected = [(i, w, v) for i in order for w, v in given[i]]
    ds = consolidate(collected, "dawid-skene")
    undisputed = [i for i in order if not decided[i].disputed]
    return {
        "rule": {"min": min_labels, "max": max_labels, "agreement": agreement},
        "accuracyEstimate": "oracle (from the truth)" if oracle else f"gold + {credit} agreement",
        "items": len(order),
        "accuracy": round(correct / len(order), 4),
        "labelsPerItem": round(labels / len(order), 3),
        "accuracyDawidSkeneOnCollected": round(accuracy(ds, truth, set(order)), 4),
        "labelsPerItemWithGold": round((labels + gold_used) / len(order), 3),
        "goldLabels": gold_used,
        "disputedShare": round(1 - len(undisputed) / len(order), 4),
        "accuracyUndisputed": round(
            sum(decided[i].leading_value == truth[i] for i in undisputed) / max(1, len(undisputed)),
            4,
        ),
        "target": "accuracy >= 0.95 using <= 7 labels per item on average",
        "targetMet": correct / len(order) >= 0.95 and labels / len(order) <= 7,
    }


def fixed_first(name: str, n: int) -> dict[str, Any]:
    """Reference: the first n answers of every non-gold item (same order), consolidated."""
    answers, truth = load(name)
    gold = gold_items(truth, GOLD_SHARE, SEED)
    queues, _, order = _replay_order(answers, gold)
    first = [(i, w, v) for i in order for w, v in queues[i][:n]]
    out: dict[str, Any] = {"labelsPerItem": n}
    for method in ("majority", "dawid-skene"):
        result = consolidate(first, method)
        out[method] = round(sum(result[i].value == truth[i] for i in order) / len(order), 4)
    return out


def oracle_accuracies(name: str) -> dict[str, float]:
    answers, truth = load(name)
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for item, worker, value in answers:
        tally[worker][0] += value == truth[item]
        tally[worker][1] += 1
    return {w: labeler_accuracy(c, n, 0, 0, 1, 2) for w, (c, n) in tally.items()}


def adaptive_runs(name: str) -> dict[str, Any]:
    oracle = oracle_accuracies(name)
    return {
        "rule": adaptive(name, 2, 7, 0.95, "hard"),
        "softAgreement": adaptive(name, 2, 7, 0.95, "soft"),
        "max20": adaptive(name, 2, 20, 0.95, "hard"),
        "max20SoftAgreement": adaptive(name, 2, 20, 0.95, "soft"),
        "ceilingOracleAccuracies": adaptive(name, 2, 7, 0.95, oracle=oracle),
        "ceilingOracleAccuraciesMax20": adaptive(name, 2, 20, 0.95, oracle=oracle),
        "fixedFirst7": fixed_first(name, 7),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "consolidation.json"))
    parser.add_argument(
        "--all-methods",
        action="store_true",
        help="also GLAD and MACE (crowd-kit): several minutes on this machine",
    )
    args = parser.parse_args()
    started = time.perf_counter()
    result: dict[str, Any] = {
        "machine": machine(),
        "data": "Zheng et al., PVLDB 10(5) 2017; published: Ustalov et al., JOSS 9(96) 2024",
        "goldShare": GOLD_SHARE,
        "seed": SEED,
        "allAnswers": {
            n: all_answers(n, args.all_methods) for n in ("zheng_d_sentiment", "zheng_d_product")
        },
        "adaptive": {"zheng_d_sentiment": adaptive_runs("zheng_d_sentiment")},
    }
    result["seconds"] = round(time.perf_counter() - started, 1)
    text = json.dumps(result, indent=2)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
