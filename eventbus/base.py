"""What the relay and every event-bus adapter share: the message, the batch result, the interface.

The adapters (``eventbus/jetstream.py`` for NATS JetStream, ``eventbus/kafka.py`` for Kafka) import
this module and nothing of each other's; ``eventbus.get_adapter`` picks one by the scheme of
``EVENT_BUS_URL``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


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


class EventBusAdapter(Protocol):
    def publish_batch(self, messages: Sequence[Message]) -> BatchResult: ...

    def publish_batch_start(self, messages: Sequence[Message]) -> Any: ...

    def publish_batch_result(self, handle: Any) -> BatchResult: ...

    def ensure_stream(self) -> None: ...

    def close(self) -> None: ...


# CloudEvents NATS protocol binding, structured content mode: the body is the JSON event format.
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"
