"""examples/ holds a campaign of every task type, each valid by the API models, with its
labelers' Secret beside it, and an item and a label of the shapes its comment describes.

tests/e2e/test_examples_on_api_server.py applies each to the real API server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devstack.kubeapply import load_documents
from devstack.stack import REPO_ROOT
from labelops.api.campaign import CampaignSpec, TaskType
from labelops.api.labeler_pool import LabelerPoolSpec
from labelops.api.tasktypes import LabelValidator, payload_violations
from labelops.operator.pool_plan import POOL_OPT_IN_LABEL

ALL_EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))


def kinds_of(path: Path) -> list[str]:
    return sorted(d["kind"] for d in load_documents(path))


# A campaign with its labelers' Secret each, but for the pool's (a LabelerPool and its tokens).
POOL_EXAMPLES = [p for p in ALL_EXAMPLES if "LabelerPool" in kinds_of(p)]
EXAMPLES = [p for p in ALL_EXAMPLES if p not in POOL_EXAMPLES]

# An item and a label of each example's task, as its header comment describes them.
SAMPLES: dict[TaskType, tuple[dict[str, Any], Any]] = {
    TaskType.PAIRWISE: (
        {"prompt": "p", "responses": [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}]},
        {"preferred": "a"},
    ),
    TaskType.CLASSIFICATION: ({"text": "WINNER!! claim your prize now"}, {"choice": "spam"}),
    TaskType.RATING: ({"prompt": "p", "text": "an answer"}, {"score": 6}),
    TaskType.RANKING: (
        {
            "prompt": "q",
            "responses": [
                {"id": "a", "text": "x"},
                {"id": "b", "text": "y"},
                {"id": "c", "text": "z"},
            ],
        },
        {"order": ["b", "a", "c"]},
    ),
    TaskType.FREE_TEXT: ({"prompt": "p"}, {"text": "a reference answer of some length"}),
}


def campaign_and_secret(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    docs = load_documents(path)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == ["LabelingCampaign", "Secret"], f"{path.name}: {kinds}"
    campaign = next(d for d in docs if d["kind"] == "LabelingCampaign")
    secret = next(d for d in docs if d["kind"] == "Secret")
    return campaign, secret


def test_there_is_an_example_of_every_task_type() -> None:
    types = {
        CampaignSpec.model_validate(campaign_and_secret(p)[0]["spec"]).task.type for p in EXAMPLES
    }
    assert sorted(t.value for t in types) == sorted(t.value for t in TaskType)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_an_example_is_a_valid_campaign_with_its_labelers_secret(path: Path) -> None:
    campaign, secret = campaign_and_secret(path)
    spec = CampaignSpec.model_validate(campaign["spec"])
    assert spec.labelers.token_secret_ref is not None, "the example names no tokens Secret"
    assert spec.labelers.token_secret_ref.name == secret["metadata"]["name"]
    assert campaign["metadata"]["namespace"] == secret["metadata"]["namespace"]
    assert secret["stringData"], "a campaign without labelers cannot collect labels"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_an_example_accepts_the_item_and_label_its_comment_describes(path: Path) -> None:
    spec = CampaignSpec.model_validate(campaign_and_secret(path)[0]["spec"])
    item, label = SAMPLES[spec.task.type]
    assert payload_violations(spec.task.type, item) == []
    assert LabelValidator(spec.task).violations(item, label) == []


def test_there_is_a_pool_example() -> None:
    assert POOL_EXAMPLES, "examples/ holds no LabelerPool"


@pytest.mark.parametrize("path", POOL_EXAMPLES, ids=[p.stem for p in POOL_EXAMPLES])
def test_a_pool_example_is_a_valid_pool_with_its_opted_in_tokens_secret(path: Path) -> None:
    assert kinds_of(path) == ["LabelerPool", "Secret"], f"{path.name}: {kinds_of(path)}"
    docs = load_documents(path)
    pool = next(d for d in docs if d["kind"] == "LabelerPool")
    secret = next(d for d in docs if d["kind"] == "Secret")
    spec = LabelerPoolSpec.model_validate(pool["spec"])
    assert spec.identity.tokens is not None, "the example names no tokens Secret"
    assert spec.identity.tokens.secret_ref.name == secret["metadata"]["name"]
    assert secret["metadata"]["labels"][POOL_OPT_IN_LABEL] == pool["metadata"]["name"]
    assert pool["metadata"]["namespace"] == secret["metadata"]["namespace"]
    members = {m for skill in spec.skills for m in skill.members}
    assert members <= set(secret["stringData"]), "a skill member without a token"
