"""A single-node Kafka (KRaft, combined broker and controller) for tests and the demo.

It authenticates every client (SASL/SCRAM-SHA-512) and authorizes with ACLs (the KRaft
StandardAuthorizer, nothing allowed without an ACL): the stack's env holds the admin super
user's LABELOPS_KAFKA_* variables, and the operator gives each campaign its own user.

The jars come from Maven Central through stack/kafka/pom.xml and are copied once into
`<cache>/kafka-<version>/libs`; every start formats fresh storage under the state directory.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

from devstack.procs import (
    StackError,
    free_port,
    log_tail,
    pid_alive,
    port_open,
    require_tool,
    start_process,
    stop_pidfile,
    wait_until,
)
from labelops.api.kafka_connection import ENV_BOOTSTRAP, KafkaConnection, connection_from_env

NAME = "kafka"
JAVA_HINT = "apt-get install -y openjdk-17-jre-headless maven"
POM = Path(__file__).resolve().parents[1] / "stack" / "kafka" / "pom.xml"
LOG4J2_TEMPLATE = POM.parent / "log4j2.xml"
HEAP = "-Xmx512m"
READY_TIMEOUT = 120.0
RESOLVE_TIMEOUT = 900.0


def kafka_version(pom: Path = POM) -> str:
    """The broker version pinned in the pom, so the cache key cannot drift from it."""
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    node = ET.parse(pom).getroot().find("m:properties/m:kafka.version", ns)
    if node is None or not (node.text or "").strip():
        raise StackError(f"{pom} does not set <kafka.version>")
    return (node.text or "").strip()


def libs_dir(cache_dir: Path) -> Path:
    return cache_dir / f"kafka-{kafka_version()}" / "libs"


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def ensure_libs(cache_dir: Path, log_dir: Path) -> Path:
    """Resolve the broker's jars into the cache unless a complete copy for this pom is there."""
    libs = libs_dir(cache_dir)
    marker = libs.parent / "complete"
    # The marker holds the pom's digest: a changed logging backend re-resolves the same version.
    if marker.is_file() and marker.read_text().strip() == _pom_digest():
        return libs
    require_tool("java", JAVA_HINT)
    mvn = require_tool("mvn", JAVA_HINT)
    libs.parent.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    # Resolve into a scratch dir and rename it into place, so a run that is cut short
    # (or a second clone resolving at the same time) never leaves a half-filled libs dir.
    scratch = Path(tempfile.mkdtemp(prefix="libs-", dir=libs.parent))
    try:
        _copy_dependencies(mvn, scratch, log_dir / "kafka-deps.log")
        shutil.rmtree(libs, ignore_errors=True)
        scratch.rename(libs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    marker.write_text(_pom_digest())
    return libs


def _copy_dependencies(mvn: str, out_dir: Path, log: Path) -> None:
    argv = [
        mvn, "-B", "-q", "-f", str(POM),
        "dependency:copy-dependencies", f"-DoutputDirectory={out_dir}",
    ]  # fmt: skip
    with log.open("wb") as out:
        try:
            done = subprocess.run(
                argv, stdout=out, stderr=subprocess.STDOUT, timeout=RESOLVE_TIMEOUT, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise StackError(
                f"kafka: resolving jars with Maven took over {RESOLVE_TIMEOUT:.0f}s. Log: {log}"
            ) from exc
    if done.returncode != 0:
        raise StackError(
            f"kafka: Maven could not resolve the broker's jars (exit {done.returncode}). "
            f"Log: {log}\n{log_tail(log)}"
        )


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding."""
    while True:
        text = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        # Kafka's own generator avoids a leading '-', which command lines take for an option.
        if not text.startswith("-"):
            return text


ADMIN_USER = "admin"
SASL_MECHANISM = "SCRAM-SHA-512"


def admin_connection(port: int, password: str) -> KafkaConnection:
    """How the stack's clients (tests, bench, demo, the operator) reach the broker: as its
    super user, over SASL/SCRAM."""
    return KafkaConnection(
        bootstrap=f"127.0.0.1:{port}",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=SASL_MECHANISM,
        username=ADMIN_USER,
        password=password,
    )


def client_connection(bootstrap: str, environ: Mapping[str, str] | None = None) -> KafkaConnection:
    """The stack's credentials (LABELOPS_KAFKA_* in environ, as `. .stack/env` or the tests'
    stack_env fixture put them there) for a client of the broker at bootstrap (the stack's,
    or a proxy in front of it); PLAINTEXT when environ has none."""
    return connection_from_env(
        {**(os.environ if environ is None else environ), ENV_BOOTSTRAP: bootstrap}
    )


def _jaas(module: str, password: str, *, plain_users: bool = False) -> str:
    users = f' user_{ADMIN_USER}="{password}"' if plain_users else ""
    return (
        f"org.apache.kafka.common.security.{module} required "
        f'username="{ADMIN_USER}" password="{password}"{users};'
    )


def server_properties(data_dir: Path, port: int, controller_port: int, password: str) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "listeners": f"CLIENTS://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"CLIENTS://127.0.0.1:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "CLIENTS",
        # Both listeners authenticate: a PLAINTEXT controller port would let any local process
        # in as ANONYMOUS, which the authorizer would then have to trust as a super user.
        "listener.security.protocol.map": "CLIENTS:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT",
        # Clients and the broker itself use SCRAM, whose credentials live in the metadata log
        # (the admin's are written at format time). The controller cannot read that log before
        # it serves, so its listener uses PLAIN with the admin alone in its JAAS entry.
        "listener.name.clients.sasl.enabled.mechanisms": SASL_MECHANISM,
        "listener.name.clients.scram-sha-512.sasl.jaas.config": _jaas(
            "scram.ScramLoginModule", password
        ),
        "sasl.mechanism.inter.broker.protocol": SASL_MECHANISM,
        "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.controller.plain.sasl.jaas.config": _jaas(
            "plain.PlainLoginModule", password, plain_users=True
        ),
        "sasl.mechanism.controller.protocol": "PLAIN",
        # Nothing is allowed that an ACL does not allow; the admin (the operator, tests, bench
        # and demo) is the one super user. Campaigns get users and ACLs from the operator.
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "super.users": f"User:{ADMIN_USER}",
        "allow.everyone.if.no.acl.found": "false",
        "log.dirs": str(data_dir),
        # One broker: every internal topic must live with a single replica.
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        # Fewer offsets partitions make the first consumer group ready in well under a second.
        "offsets.topic.num.partitions": "4",
        "group.initial.rebalance.delay.ms": "0",
        # The operator creates its topics; a typo in a topic name must fail, not create one.
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _format_storage(java: str, libs: Path, props: Path, log: Path, password: str) -> None:
    argv = [
        # A one-shot tool: the C1 compiler alone halves its start-up on two cores.
        java, HEAP, "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC",
        f"-Dlog4j2.configurationFile={props.parent / 'log4j2.xml'}",
        "-cp", f"{libs}/*", "kafka.tools.StorageTool",
        "format", "--standalone", "--cluster-id", new_cluster_id(), "--config", str(props),
        # SCRAM credentials in KRaft are records of the metadata log: the admin's are
        # written with the log's first records, so the broker can authenticate itself.
        "--add-scram", f"{SASL_MECHANISM}=[name={ADMIN_USER},password={password}]",
    ]  # fmt: skip
    with log.open("ab") as out:
        done = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, timeout=120, check=False)
    if done.returncode != 0:
        raise StackError(
            f"kafka: formatting storage failed (exit {done.returncode}). Log: {log}\n"
            f"{log_tail(log)}"
        )


def _broker_ready(port: int, password: str) -> bool:
    from confluent_kafka.admin import AdminClient

    # librdkafka logs every refused connection to stderr; ask only once the port is open.
    if not port_open(port):
        return False
    admin = AdminClient(
        admin_connection(port, password).client_config({"socket.timeout.ms": 2000, "log_level": 0})
    )
    admin.list_topics(timeout=2)
    return True


def start(state_dir: Path, cache_dir: Path) -> dict[str, str]:
    """Start a fresh broker; returns LABELOPS_KAFKA_BOOTSTRAP once it answers metadata."""
    java = require_tool("java", JAVA_HINT)
    libs = ensure_libs(cache_dir, state_dir)
    home = state_dir / NAME
    shutil.rmtree(home, ignore_errors=True)
    (home / "data").mkdir(parents=True)
    port, controller_port = _two_free_ports()
    props = home / "server.properties"
    password = secrets.token_hex(16)
    props.write_text(server_properties(home / "data", port, controller_port, password))
    props.chmod(0o600)  # it holds the admin's password
    shutil.copyfile(LOG4J2_TEMPLATE, home / "log4j2.xml")
    log = state_dir / f"{NAME}.log"
    log.write_text("")  # a fresh log per start, so its tail explains this start
    _format_storage(java, libs, props, log, password)
    argv = [
        java, HEAP, "-Xms64m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={home / 'log4j2.xml'}",
        "-cp", f"{libs}/*", "kafka.Kafka", str(props),
    ]  # fmt: skip
    started = start_process(NAME, argv, state_dir, cwd=home)
    wait_until(started, lambda: _broker_ready(port, password), READY_TIMEOUT, "answering metadata")
    admin = admin_connection(port, password)
    return {ENV_BOOTSTRAP: admin.bootstrap, **admin.security_env()}


def _two_free_ports() -> tuple[int, int]:
    first = free_port()
    second = free_port()
    while second == first:
        second = free_port()
    return first, second


def pidfile(state_dir: Path) -> Path:
    return state_dir / f"{NAME}.pid"


def running(state_dir: Path) -> bool:
    try:
        return pid_alive(int(pidfile(state_dir).read_text().strip()))
    except (FileNotFoundError, ValueError):
        return False


def stop(state_dir: Path) -> None:
    # A lone broker shuts down cleanly in a few seconds; the grace covers a slow disk.
    stop_pidfile(pidfile(state_dir), grace=30.0)
