"""Token rotation without restarts, on the real API server with the operator and a real worker
process: a labeler's token changed in the tokens Secret is refused (401) and the new one
accepted, and a labeler removed from it refused, within 30 s, by the same worker process (no
rollout, no restart), whose environment never held a token. The Secret opting out (its
campaign label removed) or deleted leaves nobody signed in, as fast.

How it gets there: the operator watches opted-in tokens Secrets and writes their SHA-256
digests into the campaign's schema (operator/token_sync.py); each worker process re-reads
them every few seconds (worker/auth.py).
"""

from __future__ import annotations

import base64
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client
from test_operator_harness import (
    Operator,
    apply,
    campaign_documents,
    crd_namespace,
    delete_campaign,
    get_object,
    patch_spec,
    poll,
    running_operator,
    wait_campaign,
    wait_ready,
)

from devstack import podrunner
from devstack.procs import pid_alive
from labelops.api.worker_configmap import ENV_TOKEN_PREFIX
from labelops.operator.plan import CONFIG_HASH_ANNOTATION, TOKEN_OPT_IN_LABEL

pytestmark = pytest.mark.e2e

NAME = "rotation"
SECRET = f"{NAME}-labelers"
# What the issue asks: a changed or removed token takes effect within this long.
TAKES_EFFECT_SECONDS = 30.0


@pytest.fixture(scope="module")
def namespace(kube_api: client.ApiClient) -> Iterator[str]:
    with crd_namespace(kube_api, "e2e-tokens") as name:
        yield name


@pytest.fixture(scope="module")
def operator(
    kube_api: client.ApiClient,
    stack_env: dict[str, str],
    namespace: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Operator]:
    with running_operator(tmp_path_factory.mktemp("operator"), stack_env, namespace) as op:
        yield op
        patch_spec(kube_api, namespace, NAME, {"reclaimPolicy": "Delete"})
        delete_campaign(kube_api, namespace, NAME)
        wait_campaign(kube_api, namespace, NAME, lambda o: o is None, "deleted", 90, op)


def same_process(state_dir: Path, pod: podrunner.LocalPod) -> bool:
    """The worker started at the beginning still runs, and is still the pod's process."""
    pidfile = int((state_dir / f"{pod.name}.pid").read_text().split()[0])
    return pid_alive(pod.process.pid) and pidfile == pod.process.pid


def status_of(url: str, token: str) -> int:
    request = urllib.request.Request(f"{url}/v1/me", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as err:
        return err.code


def replace_tokens(
    kube_api: client.ApiClient, namespace: str, change: dict[str, str | None]
) -> None:
    """Set (a value) or remove (None) keys of the tokens Secret."""
    core = client.CoreV1Api(kube_api)
    secret = core.read_namespaced_secret(SECRET, namespace)
    data = dict(secret.data or {})
    for key, value in change.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = base64.b64encode(value.encode()).decode()
    secret.data = data
    core.replace_namespaced_secret(SECRET, namespace, secret)


def test_a_changed_or_removed_token_takes_effect_without_a_restart(
    kube_api: client.ApiClient, namespace: str, operator: Operator, tmp_path: Path
) -> None:
    secret, campaign = campaign_documents(namespace, NAME, **{"workers.replicas": 1})
    tokens: dict[str, str] = dict(secret["stringData"])
    apply(kube_api, [secret, campaign])
    wait_ready(kube_api, namespace, NAME, timeout=150, operator=operator)
    deployment = f"{NAME}-worker"
    before = get_object(kube_api, "apps/v1", "Deployment", namespace, deployment)
    assert before is not None

    pods = podrunner.start_pods(kube_api, namespace, deployment, tmp_path)
    try:
        (pod,) = pods
        pod.wait_ready()
        assert not [k for k in pod.env if k.startswith(ENV_TOKEN_PREFIX)], (
            "a labeler token reached the worker's environment"
        )
        rotated, removed, kept = sorted(tokens)[:3]
        for who in (rotated, removed, kept):
            assert status_of(pod.url, tokens[who]) == 200, f"{who}'s token before any change"

        new_token = f"rotated-{tokens[rotated][::-1]}"
        changed_at = time.monotonic()
        replace_tokens(kube_api, namespace, {rotated: new_token, removed: None})

        def took_effect() -> bool:
            return (
                status_of(pod.url, tokens[rotated]) == 401
                and status_of(pod.url, new_token) == 200
                and status_of(pod.url, tokens[removed]) == 401
            )

        poll(took_effect, "old token refused, new accepted, removed labeler refused", 60)
        took = time.monotonic() - changed_at
        print(f"token rotation took effect after {took:.1f}s")
        assert took < TAKES_EFFECT_SECONDS, f"took {took:.1f}s, more than {TAKES_EFFECT_SECONDS}"
        assert status_of(pod.url, tokens[kept]) == 200, "an unchanged labeler lost access"

        # The same process served all of it, and nothing was rolled out.
        assert same_process(tmp_path, pod), "the worker process was restarted or exited"
        after = get_object(kube_api, "apps/v1", "Deployment", namespace, deployment)
        assert after is not None
        assert after["metadata"]["generation"] == before["metadata"]["generation"]
        annotations = after["spec"]["template"]["metadata"].get("annotations") or {}
        assert annotations.get(CONFIG_HASH_ANNOTATION) == (
            before["spec"]["template"]["metadata"].get("annotations") or {}
        ).get(CONFIG_HASH_ANNOTATION)

        def everyone(status: int) -> Callable[[], bool]:
            return lambda: all(status_of(pod.url, t) == status for t in (tokens[kept], new_token))

        # Opted out (the campaign label removed): nobody gets in; opted in again: back.
        core = client.CoreV1Api(kube_api)
        core.patch_namespaced_secret(
            SECRET, namespace, {"metadata": {"labels": {TOKEN_OPT_IN_LABEL: None}}}
        )
        poll(everyone(401), "every token refused once the Secret opts out", TAKES_EFFECT_SECONDS)
        core.patch_namespaced_secret(
            SECRET, namespace, {"metadata": {"labels": {TOKEN_OPT_IN_LABEL: NAME}}}
        )
        poll(everyone(200), "the tokens accepted once it opts in again", TAKES_EFFECT_SECONDS)

        # The Secret gone: nobody gets in any more.
        core.delete_namespaced_secret(SECRET, namespace)
        poll(everyone(401), "every token refused once the Secret is deleted", TAKES_EFFECT_SECONDS)
        assert same_process(tmp_path, pod), "the worker process was restarted or exited"
    finally:
        podrunner.stop_pods(pods, tmp_path)
