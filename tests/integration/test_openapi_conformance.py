"""The served OpenAPI document and the worker's behaviour agree, for every task type.

Schemathesis 4 loads /openapi.json from a live worker (real HTTP, real Postgres) and runs
all its phases: coverage (boundary and invalid values of every operation), fuzzing, and
stateful sequences that follow the document's links (claim -> submit label / release).
Every check is on: server errors, status codes, content types, headers and response bodies
against their schemas, negative data rejected, positive data accepted, authentication not
ignored, undocumented methods refused. The server also validates its own responses strictly,
so a response that strays from the document is a 500 and fails the run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from worker_harness import (
    TOKENS,
    campaign_config,
    live_api,
    pairwise_payload,
    provisioned,
    unique_name,
)

from labelops.store.items import ItemRecord

pytestmark = pytest.mark.integration

RESPONSES = [{"id": f"r{n}", "text": f"response {n}"} for n in range(3)]
TASKS: dict[str, tuple[dict[str, Any], Any]] = {
    "pairwise": ({"type": "pairwise"}, pairwise_payload),
    "ranking": ({"type": "ranking"}, lambda n: {"prompt": f"p{n}", "responses": RESPONSES}),
    "rating": ({"type": "rating", "scale": {"min": 1, "max": 7}}, lambda n: {"text": f"t{n}"}),
    "classification": (
        {"type": "classification", "choices": ["positive", "negative", "neutral"]},
        lambda n: {"text": f"t{n}"},
    ),
    "classification-multiple": (
        {"type": "classification", "choices": ["spam", "toxic", "off-topic"], "multiple": True},
        lambda n: {"text": f"t{n}"},
    ),
    "free-text": (
        {"type": "free-text", "minLength": 3, "maxLength": 200},
        lambda n: {"prompt": f"p{n}"},
    ),
    "custom-label-schema": (
        {
            "type": "rating",
            "scale": {"min": 1, "max": 5},
            "labelSchema": {"properties": {"score": {"not": {"const": 3}}}},
        },
        lambda n: {"text": f"t{n}"},
    ),
}

# A schema-valid label can still be refused for reasons the item decides (a pairwise
# `preferred` must be one of *this item's* response ids; a ranking a permutation of them),
# and a random item id is usually unknown or not leased: those answers are documented.
SCHEMATHESIS_CONFIG = """
[[operations]]
include-operation-id = "submitLabel"
checks.positive_data_acceptance.expected-statuses = ["2xx", "404", "409", "422", "429"]

[[operations]]
include-operation-id = "releaseTask"
checks.positive_data_acceptance.expected-statuses = ["2xx", "404", "409"]
"""
MAX_EXAMPLES = 40
SEED = 20261126


@pytest.mark.parametrize("variant", TASKS)
def test_schemathesis_finds_no_disagreement_between_document_and_behaviour(
    variant: str, postgres_dsn: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    task, payload = TASKS[variant]
    config = campaign_config(unique_name("conform"), task, labels_per_item=3, items=500)
    config_file = tmp_path / "schemathesis.toml"
    config_file.write_text(SCHEMATHESIS_CONFIG)
    with provisioned(postgres_dsn, kafka_bootstrap, config) as campaign:
        campaign.seed([ItemRecord(f"{variant}/{n}", payload(n)) for n in range(300)])
        with live_api(campaign) as api:
            run = subprocess.run(
                [
                    str(Path(sys.executable).with_name("schemathesis")),
                    "--config-file",
                    str(config_file),
                    "--no-color",
                    "run",
                    f"{api.url}/openapi.json",
                    "--header",
                    f"Authorization: Bearer {TOKENS['alice']}",
                    "--checks",
                    "all",
                    "--phases",
                    "examples,coverage,fuzzing,stateful",
                    "--max-examples",
                    str(MAX_EXAMPLES),
                    "--seed",
                    str(SEED),
                    "--workers",
                    "1",
                    "--request-timeout",
                    "10",
                    # Few *invalid* item ids or Idempotency-Keys can travel over HTTP at all
                    # (an empty path segment, a header with control characters), so negative
                    # generation discards many candidates. That health check is about
                    # generation speed, not about the API.
                    "--suppress-health-check",
                    "filter_too_much",
                ],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
        accepted = campaign.count("labels")
    report = run.stdout + run.stderr
    assert run.returncode == 0, report[-8000:]
    summary = report[report.find("SUMMARY") :]
    assert "Tested: 11" in summary, summary
    assert "Stateful" in summary and "❌" not in summary, summary
    if variant not in ("pairwise", "ranking"):
        # Stateful runs claim a task and submit a generated label for it; where any
        # schema-valid value fits the item, some of them must have been accepted.
        assert accepted > 0, summary
