"""What the relay and every event-bus adapter share: the message, the batch result, the interface.

The adapters (``eventbus/jetstream.py`` for NATS JetStream, ``eventbus/kafka.py`` for Kafka) import
this module and nothing of each other's; ``eventbus.get_adapter`` picks one by the scheme of
``EVENT_BUS_URL``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, TypeVar

from core.config import EventBusConfig

S = TypeVar("S")


@dataclass(frozen=True)
class Message:
    event_id: str
    subject: str
    payload: bytes
    key: str = ""  # the aggregate id: Kafka's message key (one aggregate, one partition)


@dataclass
class BatchResult:
    """``acked``: how many messages, from the start, the bus acknowledged (duplicates included).

    ``error`` is set when the batch stopped at message ``acked``; ``per_event`` tells whether the
    error belongs to that message (too large, rejected) or to the transport (down, timeout).
    """

    acked: int
    duplicates: int = 0
    error: BaseException | None = None
    per_event: bool = False
    acked_after_failure: list[int] = field(default_factory=list)


class AdapterBase:
    """What every adapter holds: the bus's connection settings, how long a publish and a connection
    may take, and the lock over its client, which each process (``_pid``) builds for itself."""

    def __init__(self, config: EventBusConfig, *, publish_timeout: float = 5.0, connect_timeout: float = 2.0) -> None:
        self.config = config
        self.publish_timeout = publish_timeout
        self.connect_timeout = connect_timeout
        self._pid = -1
        self._lock = threading.Lock()


def from_settings(kind: type[S], settings: Any, **given: Any) -> S:
    """The settings dataclass ``kind`` (an adapter's stream or topic): each field whose metadata names a
    Django setting (``field(metadata={"setting": "KAFKA_TOPIC"})``) read from ``settings``, ``given`` the rest."""
    read = {item.name: getattr(settings, item.metadata["setting"]) for item in fields(kind) if item.metadata}  # type: ignore[arg-type]  # kind is a dataclass
    return kind(**read, **given)


class EventBusAdapter(Protocol):
    def publish_batch(self, messages: Sequence[Message]) -> BatchResult: ...

    def publish_batch_start(self, messages: Sequence[Message]) -> Any: ...

    def publish_batch_result(self, handle: Any) -> BatchResult: ...

    def ensure_stream(self) -> None: ...

    def close(self) -> None: ...


# CloudEvents NATS protocol binding, structured content mode: the body is the JSON event format.
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"
