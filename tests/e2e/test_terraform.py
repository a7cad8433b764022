"""terraform/ validated and applied for real, with providers built from Go modules.

Terraform's registry is unreachable here, so the providers come from the Go module proxy
(terraform/dev-providers/) into a filesystem mirror. Only hashicorp/helm 1.3.2 is served,
older than the module's `>= 2.0.0`: an override file admits it in a scratch copy of the
tree. The module uses only arguments every helm provider since 1.3 has, so this checks the
module's real calls; the examples' provider blocks are empty for the same reason.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from devstack.stack import REPO_ROOT
from gotools import go_tool

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]  # first run builds two providers

PROVIDERS = {  # name -> (version it is mirrored as, tools module, package)
    "helm": ("1.3.2", "terraform/dev-providers/helm", "."),
    "kubernetes": (
        "3.2.1",
        "terraform/dev-providers/kubernetes",
        "github.com/hashicorp/terraform-provider-kubernetes",
    ),
}
ROOTS = ["modules/labelops", "examples/existing-cluster", "examples/kind"]
HELM_OVERRIDE = """\
terraform {
  required_providers {
    helm = {
      source  = "hashicorp/helm"
      version = "1.3.2"
    }
  }
}
"""


@pytest.fixture(scope="module")
def terraform() -> str:
    found = shutil.which("terraform")
    if found is None:
        pytest.fail("terraform is not on PATH (this machine image ships it in /usr/local/bin)")
    return found


@pytest.fixture(scope="module")
def tf_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment whose CLI config installs providers only from a local mirror."""
    home = tmp_path_factory.mktemp("terraform")
    for name, (version, module, package) in PROVIDERS.items():
        binary = go_tool(f"terraform-provider-{name}_v{version}", module, package)
        target = home / "mirror/registry.terraform.io/hashicorp" / name / version / "linux_amd64"
        target.mkdir(parents=True)
        (target / binary.name).symlink_to(binary)
    config = home / "terraformrc"
    config.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path = "{home / "mirror"}"\n  }}\n'
        "}\n"
    )
    return {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(config),
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
    }


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch copy of terraform/ and the chart (the module installs it by relative path)."""
    root = tmp_path_factory.mktemp("tree")
    shutil.copytree(REPO_ROOT / "terraform", root / "terraform", ignore=_scratch)
    shutil.copytree(REPO_ROOT / "charts", root / "charts")
    for relative in ROOTS:
        (root / "terraform" / relative / "dev_providers_override.tf").write_text(HELM_OVERRIDE)
    return root / "terraform"


def _scratch(_dir: str, names: list[str]) -> list[str]:
    return [n for n in names if n in {".terraform", ".terraform.lock.hcl", "dev-providers"}]


def tf(terraform: str, env: dict[str, str], cwd: Path, *args: str) -> str:
    done = subprocess.run(
        [terraform, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, f"terraform {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.parametrize("relative", ROOTS)
def test_configuration_validates(
    terraform: str, tf_env: dict[str, str], tree: Path, relative: str
) -> None:
    cwd = tree / relative
    tf(terraform, tf_env, cwd, "init", "-backend=false")
    result = json.loads(tf(terraform, tf_env, cwd, "validate", "-json"))
    assert result["valid"], result["diagnostics"]
    assert result["warning_count"] == 0, result["diagnostics"]


@pytest.fixture(scope="module")
def applied(
    terraform: str,
    tf_env: dict[str, str],
    tree: Path,
    stack_env: dict[str, str],
    kube_api: client.ApiClient,
) -> Iterator[tuple[str, str]]:
    """The module applied to the stack's control plane: (namespace, release name)."""
    suffix = secrets.token_hex(3)
    namespace, release = f"tf-labelops-{suffix}", f"tf-labelops-{suffix}"
    env = {
        **tf_env,
        # helm provider 1.3 reads KUBECONFIG, the kubernetes provider KUBE_CONFIG_PATH.
        "KUBECONFIG": stack_env["KUBECONFIG"],
        "KUBE_CONFIG_PATH": stack_env["KUBECONFIG"],
        "TF_VAR_namespace": namespace,
        "TF_VAR_release_name": release,
        "TF_VAR_kafka_bootstrap": stack_env["LABELOPS_KAFKA_BOOTSTRAP"],
        "TF_VAR_postgres_dsn": stack_env["LABELOPS_POSTGRES_DSN"],
    }
    cwd = tree / "modules/labelops"
    tf(terraform, env, cwd, "init")
    tf(terraform, env, cwd, "apply", "-auto-approve")
    try:
        yield namespace, release
        # A second plan must find nothing to do: the module converges.
        plan = subprocess.run(
            [terraform, "plan", "-detailed-exitcode"], cwd=cwd, env=env, capture_output=True
        )
        assert plan.returncode == 0, plan.stdout.decode() + plan.stderr.decode()
    finally:
        tf(terraform, env, cwd, "destroy", "-auto-approve")


def test_apply_creates_namespace_secrets_and_a_running_operator(
    kube_api: client.ApiClient, stack_env: dict[str, str], applied: tuple[str, str]
) -> None:
    namespace, release = applied
    core = client.CoreV1Api(kube_api)

    def secret(name: str, key: str) -> str:
        data = core.read_namespaced_secret(name, namespace).data or {}
        return base64.b64decode(data[key]).decode()

    assert secret(f"{release}-kafka", "bootstrap") == stack_env["LABELOPS_KAFKA_BOOTSTRAP"]
    assert secret(f"{release}-postgres", "dsn") == stack_env["LABELOPS_POSTGRES_DSN"]
    deployment = client.AppsV1Api(kube_api).read_namespaced_deployment(release, namespace)
    assert deployment.status is not None and deployment.status.available_replicas == 1
    assert deployment.spec is not None and deployment.spec.template.spec is not None
    [container] = deployment.spec.template.spec.containers
    refs = {
        e.name: (e.value_from.secret_key_ref.name, e.value_from.secret_key_ref.key)
        for e in container.env or []
        if e.value_from is not None and e.value_from.secret_key_ref is not None
    }
    assert refs == {
        "LABELOPS_KAFKA_BOOTSTRAP": (f"{release}-kafka", "bootstrap"),
        "LABELOPS_POSTGRES_DSN": (f"{release}-postgres", "dsn"),
    }
