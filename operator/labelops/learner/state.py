"""Everything the learner knows, in memory only, rebuilt from the topics on every start.

Items by id (latest payload), human labels by item and labelId (so a label relayed twice
counts once), and which version last scored each item (so new items are scored between
retrains, and nothing is scored twice by one version).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from labelops.learner.messages import HumanLabel, ItemMessage


@dataclass
class LearnerState:
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)  # item -> labelId -> value
    scored_by: dict[str, str] = field(default_factory=dict)  # item -> version

    def add_item(self, item: ItemMessage) -> None:
        if self.items.get(item.item_id) != item.payload:
            self.items[item.item_id] = item.payload
            self.scored_by.pop(item.item_id, None)  # a changed payload needs a new score

    def add_label(self, label: HumanLabel) -> None:
        self.labels.setdefault(label.item_id, {})[label.label_id] = label.value

    @property
    def human_labels(self) -> int:
        """Human labels on known items (what a version is named after)."""
        return sum(len(values) for item, values in self.labels.items() if item in self.items)

    def label_values(self) -> Mapping[str, Sequence[Any]]:
        return {item: list(values.values()) for item, values in self.labels.items()}

    def unlabeled(self) -> list[tuple[str, dict[str, Any]]]:
        """Items no person has labeled yet, by id."""
        return [(i, p) for i, p in sorted(self.items.items()) if not self.labels.get(i)]

    def to_score(self, version: str) -> list[tuple[str, dict[str, Any]]]:
        """Unlabeled items this version has not scored yet."""
        return [(i, p) for i, p in self.unlabeled() if self.scored_by.get(i) != version]

    def mark_scored(self, item_ids: Sequence[str], version: str) -> None:
        for item_id in item_ids:
            self.scored_by[item_id] = version
