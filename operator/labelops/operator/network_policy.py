"""A campaign's NetworkPolicies: what its worker and learner pods may talk to, and who may
talk to them. Pure: settings and names in, objects out.

Workers take labelers' requests on the API port (metrics are served there too) and call
PostgreSQL, Kafka and DNS, nothing else. The learner takes no requests but scrapes and calls
Kafka and DNS only: it holds no database credentials and needs no database route. Kubelet
probes are not subject to NetworkPolicy.

Who the peers are differs per cluster (Kafka and PostgreSQL are often outside it), so each
is a list of NetworkPolicyPeers from the operator's settings (LABELOPS_NETWORK_POLICY_PEERS,
the chart's `campaignNetworkPolicy`): an empty list means any destination (or source) on the
port, which still closes every other port; for scrapers it means none. The Kafka and
PostgreSQL ports are the ones in the addresses workers are given, so they cannot drift.

A pool campaign's workers are called by its pool's router: once `api` restricts the callers,
the router's pods (by the labels of its Deployment, in the campaign's namespace) are admitted
too, or a pool would stop routing the moment an operator narrowed who may call workers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DNS_PORT = 53
ROUTER_APP = "labelops-router"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class LabelSelectorRequirement(_Strict):
    key: str = Field(min_length=1)
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: tuple[str, ...] = ()


class LabelSelector(_Strict):
    match_labels: dict[str, str] = Field(default_factory=dict, alias="matchLabels")
    match_expressions: tuple[LabelSelectorRequirement, ...] = Field(
        default=(), alias="matchExpressions"
    )


class IPBlock(_Strict):
    cidr: str = Field(min_length=1)
    except_: tuple[str, ...] = Field(default=(), alias="except")


class Peer(_Strict):
    """A NetworkPolicyPeer: an ipBlock, or pods by namespace and/or pod labels."""

    ip_block: IPBlock | None = Field(default=None, alias="ipBlock")
    namespace_selector: LabelSelector | None = Field(default=None, alias="namespaceSelector")
    pod_selector: LabelSelector | None = Field(default=None, alias="podSelector")

    @model_validator(mode="after")
    def _one_kind(self) -> Peer:
        if self.ip_block is None and self.namespace_selector is None and self.pod_selector is None:
            raise ValueError("a peer needs ipBlock, namespaceSelector or podSelector")
        if self.ip_block is not None and (self.namespace_selector or self.pod_selector):
            raise ValueError("ipBlock cannot be combined with namespaceSelector or podSelector")
        return self

    def manifest(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)


class NetworkPolicyPeers(_Strict):
    """Who may reach campaign pods and whom they may reach. Empty means anyone on that port,
    except `metrics`: no scraper is admitted to a learner unless listed."""

    api: tuple[Peer, ...] = ()  # callers of the worker API (labelers, an ingress, the router)
    metrics: tuple[Peer, ...] = ()  # scrapers, e.g. the monitoring namespace
    kafka: tuple[Peer, ...] = ()
    postgres: tuple[Peer, ...] = ()
    dns: tuple[Peer, ...] = ()


class PeersError(ValueError):
    """The peers setting is not valid; the message names the field and what is allowed."""


def parse_peers(text: str, source: str) -> NetworkPolicyPeers:
    """NetworkPolicyPeers from JSON, e.g. {"kafka": [{"ipBlock": {"cidr": "10.0.0.0/16"}}]}."""
    try:
        return NetworkPolicyPeers.model_validate_json(text or "{}")
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise PeersError(
            f"{source}: {where}: {first['msg']} (allowed keys: api, metrics, kafka, postgres, "
            "dns, each a list of NetworkPolicyPeers: ipBlock, namespaceSelector, podSelector)"
        ) from None


def kafka_ports(bootstrap: str) -> tuple[int, ...]:
    """The ports of a bootstrap list ("a:9092,b:9093"); 9092 for a host without one."""
    ports = set()
    for server in bootstrap.split(","):
        server = server.strip()
        if not server:
            continue
        _, _, port = server.rpartition(":")
        ports.add(int(port) if port.isdigit() else 9092)
    return tuple(sorted(ports))


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"port": port, "protocol": "TCP"} for port in ports]


def _rule(direction: str, peers: tuple[Peer, ...], ports: list[dict[str, Any]]) -> dict[str, Any]:
    rule: dict[str, Any] = {"ports": ports}
    if peers:
        rule[direction] = [peer.manifest() for peer in peers]
    return rule


def _dns(peers: NetworkPolicyPeers) -> dict[str, Any]:
    ports = [{"port": DNS_PORT, "protocol": "UDP"}, *_tcp(DNS_PORT)]
    return _rule("to", peers.dns, ports)


@dataclass(frozen=True)
class Pods:
    """The pods a policy is for: the policy's metadata, their labels, the port they serve."""

    metadata: Mapping[str, Any]
    selector: Mapping[str, str]
    port: int


def _policy(
    pods: Pods, ingress: list[dict[str, Any]], egress: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": dict(pods.metadata),
        "spec": {
            "podSelector": {"matchLabels": dict(pods.selector)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }


def router_selector_labels(pool: str) -> dict[str, str]:
    """The labels of a pool's router pods (its Deployment's selector, pool_plan.py)."""
    return {"app.kubernetes.io/name": ROUTER_APP, "app.kubernetes.io/instance": pool}


def router_peer(pool: str) -> Peer:
    """The pool's router pods; a podSelector alone means the policy's own namespace, the
    pool's (a campaign joins a pool of its namespace)."""
    return Peer.model_validate({"podSelector": {"matchLabels": router_selector_labels(pool)}})


def worker_policy(
    workers: Pods,
    peers: NetworkPolicyPeers,
    kafka: tuple[int, ...],
    postgres_port: int,
    pool: str | None = None,
) -> dict[str, Any]:
    """Ingress on the API port only (from `api` peers, and once `api` is restricted the
    `metrics` peers, since metrics share the port, and the router of the campaign's pool);
    egress to PostgreSQL, Kafka and DNS only."""
    routers = (router_peer(pool),) if pool is not None else ()
    callers = peers.api + peers.metrics + routers if peers.api else ()
    return _policy(
        workers,
        ingress=[_rule("from", callers, _tcp(workers.port))],
        egress=[
            _rule("to", peers.postgres, _tcp(postgres_port)),
            _rule("to", peers.kafka, _tcp(*kafka)),
            _dns(peers),
        ],
    )


def learner_policy(
    learner: Pods, peers: NetworkPolicyPeers, kafka: tuple[int, ...]
) -> dict[str, Any]:
    """Ingress on the metrics port only from scrapers (none when `metrics` is empty: nobody
    else calls a learner); egress to Kafka and DNS only."""
    ingress = [_rule("from", peers.metrics, _tcp(learner.port))] if peers.metrics else []
    return _policy(
        learner, ingress=ingress, egress=[_rule("to", peers.kafka, _tcp(*kafka)), _dns(peers)]
    )
