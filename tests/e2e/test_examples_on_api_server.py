"""Every campaign and LabelerPool in examples/ is accepted by the real API server: the
CRDs' OpenAPI schemas, defaults and CEL rules admit it. Server-side apply with dryRun=All runs
the whole admission chain without storing the object, so no operator is needed and nothing is
left behind.
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
from labelops.api.labeler_pool import KIND as POOL_KIND
from labelops.api.labeler_pool import PLURAL as POOL_PLURAL

pytestmark = pytest.mark.e2e

EXAMPLES = sorted((REPO_ROOT / "examples").glob("*.yaml"))
# A campaign's kind, or the LabelerPool's in the pool example.
KINDS = {KIND: PLURAL, POOL_KIND: POOL_PLURAL}


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
    obj = next(d for d in docs if d["kind"] in KINDS)
    kind = obj["kind"]
    apply(kube_api, [secret])

    resource = dynamic.DynamicClient(kube_api).resources.get(
        api_version=f"{GROUP}/{VERSION}", kind=kind
    )
    accepted = resource.server_side_apply(
        body=obj,
        name=obj["metadata"]["name"],
        namespace=namespace,
        field_manager=FIELD_MANAGER,
        dry_run="All",
    ).to_dict()

    # What the server would store: the example's spec, with the CRD's defaults filled in.
    assert accepted["metadata"]["name"] == obj["metadata"]["name"]
    if kind == KIND:
        for key, value in obj["spec"]["task"].items():
            assert accepted["spec"]["task"][key] == value, key
        assert accepted["spec"]["target"] == obj["spec"]["target"]
    else:
        for key, value in obj["spec"].items():
            assert accepted["spec"][key] == value, key
    # A dry run stores nothing.
    with pytest.raises(client.ApiException) as missing:
        client.CustomObjectsApi(kube_api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, KINDS[kind], obj["metadata"]["name"]
        )
    assert missing.value.status == 404
