"""The NATS JetStream implementation of the EventBusAdapter (nats-py), and :func:`get_adapter`, which
picks it or Kafka's (``eventbus/kafka.py``) by the scheme of ``EVENT_BUS_URL``. The interface the
relay and both adapters share is in ``eventbus/base.py``.

The adapter owns one asyncio loop on a daemon thread per process (created after a fork, never
inherited), so the NATS connection keeps answering the server's pings between relay runs; callers
stay synchronous and make no ORM calls inside coroutines. Every await carries a timeout.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import threading
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js.api import PubAck, StorageType, StreamConfig
from nats.js.client import JetStreamContext

from core.config import EventBusConfig
from eventbus.base import CLOUDEVENTS_CONTENT_TYPE, AdapterBase, BatchResult, Message

logger = logging.getLogger("iam.EventBusAdapter")

_T = TypeVar("_T")


@dataclass(frozen=True)
class StreamSettings:
    name: str = field(metadata={"setting": "NATS_STREAM_NAME"})
    subjects: list[str]  # from NATS_SUBJECT_PREFIX (new_adapter)
    replicas: int = field(metadata={"setting": "NATS_STREAM_REPLICAS"})
    max_age_seconds: float = field(metadata={"setting": "NATS_STREAM_MAX_AGE_SECONDS"})
    duplicate_window_seconds: float = field(metadata={"setting": "NATS_DUPLICATE_WINDOW_SECONDS"})
    max_msg_size: int = field(default=-1, metadata={"setting": "NATS_STREAM_MAX_MSG_SIZE"})


TRANSPORT_ERRORS = (
    nats.errors.TimeoutError,
    nats.errors.NoServersError,
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.UnexpectedEOF,
    nats.errors.FlushTimeoutError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    asyncio.TimeoutError,
    TimeoutError,
    OSError,
    ConnectionError,
)


def is_per_event(error: BaseException) -> bool:
    """An error that belongs to one message, so retrying the transport will not fix it."""
    if isinstance(error, nats.errors.MaxPayloadError):
        return True
    if isinstance(error, nats.js.errors.APIError) and not isinstance(error, TRANSPORT_ERRORS):
        return (error.code or 0) not in (408, 500, 503)
    return False


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop where installed: the relay is bound by the NATS client, and uvloop speeds it up."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is in requirements.txt; plain asyncio works too
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class _JetStream(JetStreamContext):
    """nats-py 2.16's ``publish_async`` loses JetStream error acks: ``APIError.from_error`` raises
    inside the reply callback, so the future never completes and a rejected message (e.g. over the
    stream's ``max_msg_size``) looks like a timeout. Complete the future with the error instead."""

    async def _handle_async_reply(self, msg: Msg) -> None:
        try:
            await super()._handle_async_reply(msg)
        except nats.js.errors.APIError as error:
            token = msg.subject[len(self._nc._inbox_prefix) + 22 + 2 :]  # as the parent computes it
            future = self._publish_async_futures.get(token)
            if future is not None and not future.done():
                future.set_exception(error)


class NatsJetStreamAdapter(AdapterBase):
    def __init__(self, config: EventBusConfig, stream: StreamSettings, **timeouts: float) -> None:
        super().__init__(config, **timeouts)
        self.stream = stream
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc: nats.NATS | None = None
        self._js: _JetStream | None = None
        self._stream_ready = False

    # --- the per-process loop ------------------------------------------------------------------
    def _submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        """Run ``coro`` on this process's loop thread; returns a concurrent future."""
        with self._lock:
            if self._pid != os.getpid() or self._loop is None:
                self._pid = os.getpid()
                self._nc = None
                self._js = None
                self._stream_ready = False
                self._loop = new_event_loop()
                thread = threading.Thread(target=self._loop.run_forever, name="event-bus-loop", daemon=True)
                thread.start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _run(self, coro: Coroutine[Any, Any, _T], timeout: float) -> _T:
        future = self._submit(coro)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    async def _connect(self) -> _JetStream:
        if self._nc is not None and self._nc.is_connected and self._js is not None:
            return self._js
        if self._nc is not None and not self._nc.is_closed:
            if self._nc.is_reconnecting:
                raise nats.errors.ConnectionReconnectingError
            await self._nc.close()
        options: dict[str, Any] = {  # nats.connect's keyword options
            "servers": self.config.servers,
            "connect_timeout": self.connect_timeout,
            "allow_reconnect": True,
            "max_reconnect_attempts": -1,  # nats-py gives up after 60 by default: never give up
            "reconnect_time_wait": 1,
            "name": f"iam-service-relay-{os.getpid()}",
            "error_cb": _quiet,
            "disconnected_cb": _disconnected,
            "reconnected_cb": _reconnected,
        }
        if self.config.user:
            options["user"] = self.config.user
            options["password"] = self.config.password
        if self.config.token:
            options["token"] = self.config.token
        if self.config.tls:
            import ssl

            context = ssl.create_default_context(cafile=self.config.tls_ca_file)
            options["tls"] = context
        try:
            # The first connect is bounded too (max_reconnect_attempts=-1 also applies to it).
            nc = await asyncio.wait_for(nats.connect(**options), self.connect_timeout + 1)
        except TimeoutError:
            raise nats.errors.NoServersError(
                f"could not connect to the event bus within {self.connect_timeout + 1:.0f} s"
            ) from None
        self._nc = nc
        js = self._js = _JetStream(nc, timeout=self.publish_timeout, publish_async_max_pending=4000)
        self._stream_ready = False
        return js

    async def _ensure_stream(self) -> None:
        js = await self._connect()
        if self._stream_ready:
            return
        config = StreamConfig(
            name=self.stream.name,
            subjects=self.stream.subjects,
            num_replicas=self.stream.replicas,
            max_age=self.stream.max_age_seconds,
            duplicate_window=self.stream.duplicate_window_seconds,
            storage=StorageType.FILE,
            max_msg_size=self.stream.max_msg_size,
        )
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:
            await js.update_stream(config)  # exists with another configuration: converge
        self._stream_ready = True

    def ensure_stream(self) -> None:
        self._run(self._ensure_stream(), self.connect_timeout + self.publish_timeout * 2)

    async def _publish(self, messages: Sequence[Message]) -> BatchResult:
        await self._ensure_stream()
        js = self._js
        assert js is not None, "connected by _ensure_stream"
        futures: list[asyncio.Future[PubAck]] = []
        stop: tuple[int, Exception] | None = None
        for index, message in enumerate(messages):
            try:
                futures.append(
                    await js.publish_async(
                        message.subject,
                        message.payload,
                        headers={"Nats-Msg-Id": message.event_id, "Content-Type": CLOUDEVENTS_CONTENT_TYPE},
                    )
                )
            except Exception as exc:  # noqa: BLE001 - classified below
                stop = (index, exc)
                break
        if futures:
            _, pending = await asyncio.wait(futures, timeout=self.publish_timeout)
            for future in pending:
                future.cancel()
        result = BatchResult(acked=0)
        for index, future in enumerate(futures):
            if future.cancelled():
                result.error, result.per_event = nats.errors.TimeoutError(), False
                break
            error = future.exception()
            if error is not None:
                result.error, result.per_event = error, is_per_event(error)
                if result.per_event:
                    # Later messages of other aggregates may have been acked; the relay may mark them.
                    result.acked_after_failure = [
                        later for later in range(index + 1, len(futures))
                        if not futures[later].cancelled() and futures[later].exception() is None
                    ]  # fmt: skip
                break
            result.acked += 1
            if future.result().duplicate:
                result.duplicates += 1
        else:
            if stop is not None:
                result.error, result.per_event = stop[1], is_per_event(stop[1])
        for future in futures:  # the errors after the first are not needed: retrieved, so asyncio logs none
            if future.done() and not future.cancelled():
                future.exception()
        return result

    def publish_batch(self, messages: Sequence[Message]) -> BatchResult:
        return self.publish_batch_result(self.publish_batch_start(messages))

    def publish_batch_start(self, messages: Sequence[Message]) -> concurrent.futures.Future[BatchResult]:
        """Start publishing a batch and return at once (the caller works on while the acks come)."""
        return self._submit(self._publish(messages))

    def publish_batch_result(self, handle: concurrent.futures.Future[BatchResult]) -> BatchResult:
        """Wait (bounded) for a started batch's acknowledgements."""
        try:
            return handle.result(self.connect_timeout + self.publish_timeout * 3)
        except Exception as exc:  # noqa: BLE001 - any failure to reach the bus is a transport failure
            handle.cancel()
            return BatchResult(acked=0, error=exc, per_event=is_per_event(exc))

    def close(self) -> None:
        if self._loop is not None and self._nc is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):  # closing is best effort
                self._run(self._nc.close(), 5)
        self._nc = None


async def _quiet(error: Exception) -> None:
    logger.debug("nats client error", extra={"component": "EventBusAdapter", "error": str(error)})


async def _disconnected() -> None:
    logger.warning("disconnected from the event bus", extra={"component": "EventBusAdapter"})


async def _reconnected() -> None:
    logger.info("reconnected to the event bus", extra={"component": "EventBusAdapter"})
