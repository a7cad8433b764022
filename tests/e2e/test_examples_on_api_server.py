"""Every campaign in examples/ is accepted by the real API server: the CRD's OpenAPI schema,
defaults and CEL rules admit it. Server-side apply with dryRun=All runs the whole admission
chain without storing the campaign, so no operator is needed and nothing is left behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, dynamic
from test_operator_harness import crd_namespace

from devstack.kubeapply import FIELD_MANAGER, apply, load_documents
from devstack.stack import REPO_ROOT
from labelops.api.campaign import GROUP, KIND, PLURAL, VERSION

pytestmark = pytest.mark.e2e

EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def namespace(kube_api: client.ApiClient) -> Iterator[str]:
    with crd_namespace(kube_api, "e2e-examples") as name:
        yield name


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_the_api_server_accepts_the_example(
    kube_api: client.ApiClient, namespace: str, path: Path
) -> None:
    docs = load_documents(path)
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
    secret = next(d for d in docs if d["kind"] == "Secret")
    campaign = next(d for d in docs if d["kind"] == KIND)
    apply(kube_api, [secret])

    resource = dynamic.DynamicClient(kube_api).resources.get(
        api_version=f"{GROUP}/{VERSION}", kind=KIND
    )
    accepted = resource.server_side_apply(
        body=campaign,
        name=campaign["metadata"]["name"],
        namespace=namespace,
        field_manager=FIELD_MANAGER,
        dry_run="All",
    ).to_dict()

    # What the server would store: the example's spec, with the CRD's defaults filled in.
    assert accepted["metadata"]["name"] == campaign["metadata"]["name"]
    for key, value in campaign["spec"]["task"].items():
        assert accepted["spec"]["task"][key] == value, key
    assert accepted["spec"]["target"] == campaign["spec"]["target"]
    # A dry run stores nothing.
    with pytest.raises(client.ApiException) as missing:
        client.CustomObjectsApi(kube_api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, campaign["metadata"]["name"]
        )
    assert missing.value.status == 404
