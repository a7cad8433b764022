"""A labeler's skills, resolved from the pool's spec: a skill is held through any one of its
groups or by being listed among its members."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from labelops.api.labeler_pool import Skill


def skills_of(labeler: str, groups: Iterable[str], skills: Sequence[Skill]) -> frozenset[str]:
    held = frozenset(groups)
    return frozenset(
        skill.name
        for skill in skills
        if labeler in skill.members or not held.isdisjoint(skill.groups)
    )
