"""Synthetic RLHF items for the demo: a prompt and two responses, one clearly better.

Deterministic from a seed so two demo runs label the same data. The better response is
recorded (not sent to labelers) so the simulated labelers can agree or disagree with it.
Gold pairs are generated the same way and sent with their known answer ("gold": {"value":
...}): the worker serves them like any other pair and grades labelers on them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

TOPICS = [
    ("rotate a Kubernetes Secret without downtime", "Kubernetes"),
    ("choose the number of Kafka partitions for a topic", "Kafka"),
    ("find slow queries in PostgreSQL", "PostgreSQL"),
    ("write a good commit message", "git"),
    ("explain backpressure to a new engineer", "distributed systems"),
    ("size a connection pool", "databases"),
    ("debug a pod stuck in CrashLoopBackOff", "Kubernetes"),
    ("make an HTTP retry safe", "APIs"),
    ("pick a primary key for an events table", "PostgreSQL"),
    ("measure p99 latency honestly", "performance"),
    ("roll back a bad deploy", "operations"),
    ("review a pull request kindly", "teamwork"),
]

OPENERS = ["How do I", "What is the best way to", "Can you explain how to", "Help me"]


@dataclass(frozen=True)
class DemoItem:
    id: str
    payload: dict[str, Any]
    better: str  # response id a careful labeler prefers
    priority: int
    gold: bool = False  # a gold pair: sent with its known answer, never exported

    def message(self) -> dict[str, Any]:
        """The item as published to the campaign's items topic."""
        value: dict[str, Any] = {"id": self.id, "payload": self.payload, "priority": self.priority}
        if self.gold:
            value["gold"] = {"value": {"preferred": self.better}}
        return value


def _helpful(task: str, area: str, rng: random.Random) -> str:
    steps = rng.sample(
        [
            "state the goal and the constraint that matters most",
            f"check the {area} documentation for the defaults you rely on",
            "try it on a staging copy first and measure",
            "write down the rollback before you start",
            "automate the check so it runs every time",
            "tell the people affected what will change and when",
        ],
        3,
    )
    numbered = " ".join(f"{i}. {s.capitalize()}." for i, s in enumerate(steps, 1))
    return f"To {task}: {numbered} If anything looks off, stop and roll back."


def _unhelpful(task: str, rng: random.Random) -> str:
    return rng.choice(
        [
            f"Just {task}. It's easy.",
            "It depends.",
            f"Search the web for how to {task}.",
            "Not sure, maybe restart it?",
        ]
    )


def generate(count: int, seed: int = 7, prefix: str = "demo", gold: bool = False) -> list[DemoItem]:
    rng = random.Random(seed)
    items = []
    for n in range(count):
        task, area = rng.choice(TOPICS)
        prompt = f"{rng.choice(OPENERS)} {task}?"
        good, bad = _helpful(task, area, rng), _unhelpful(task, rng)
        first_is_good = rng.random() < 0.5
        responses = [
            {"id": "a", "text": good if first_is_good else bad},
            {"id": "b", "text": bad if first_is_good else good},
        ]
        items.append(
            DemoItem(
                id=f"{prefix}-{n:05d}",
                payload={"prompt": prompt, "responses": responses},
                better="a" if first_is_good else "b",
                priority=0 if gold else rng.choice([0, 0, 0, 1, 5]),
                gold=gold,
            )
        )
    return items


def generate_gold(count: int, seed: int = 11) -> list[DemoItem]:
    """Gold pairs: like the others (another seed), each with its known better response."""
    return generate(count, seed=seed, prefix="gold", gold=True)
