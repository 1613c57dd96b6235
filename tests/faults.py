"""Faults injected from outside the production code: an event-bus adapter that lets a test act at chosen calls.

:class:`FaultyAdapter` wraps the real NATS or Kafka adapter (the protocol of :mod:`eventbus.base`) and
hands it to ``OutboxWorker(adapter=...)``. The relay runs unchanged and calls the adapter from inside
its lock, so a callback there runs while the lock is held: before a batch goes out (``before_publish``),
or once the bus has acknowledged it and before PostgreSQL marks it (``after_result``).

``python -m tests.faults stall-after-ack`` is a relay process for crash tests: one relay run whose
adapter, once the bus has acknowledged the first batch, prints ``acked <count>`` and stalls (the lock
held, nothing marked) until the test kills it. It exits, marking nothing, if the test goes away first.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from eventbus.base import BatchResult, EventBusAdapter, Message

STALL_AFTER_ACK = "stall-after-ack"


class FaultyAdapter:
    """An :class:`EventBusAdapter` that calls the test back around the real adapter's publishes.

    ``before_publish(n, messages)``: before the ``n``-th batch (from 1) is handed to the bus.
    ``after_result(n, result)``: once the bus answered the ``n``-th batch, before the relay sees it.
    """

    def __init__(
        self,
        inner: EventBusAdapter,
        *,
        before_publish: Callable[[int, Sequence[Message]], None] | None = None,
        after_result: Callable[[int, BatchResult], None] | None = None,
    ) -> None:
        self.inner = inner
        self.before_publish = before_publish
        self.after_result = after_result
        self.batches = 0

    def _before(self, messages: Sequence[Message]) -> int:
        self.batches += 1
        if self.before_publish is not None:
            self.before_publish(self.batches, messages)
        return self.batches

    def _after(self, number: int, result: BatchResult) -> BatchResult:
        if self.after_result is not None:
            self.after_result(number, result)
        return result

    def publish_batch(self, messages: Sequence[Message]) -> BatchResult:
        number = self._before(messages)
        return self._after(number, self.inner.publish_batch(messages))

    def publish_batch_start(self, messages: Sequence[Message]) -> Any:
        number = self._before(messages)
        return number, self.inner.publish_batch_start(messages)

    def publish_batch_result(self, handle: Any) -> BatchResult:
        number, inner_handle = handle
        return self._after(number, self.inner.publish_batch_result(inner_handle))

    def ensure_stream(self) -> None:
        self.inner.ensure_stream()

    def close(self) -> None:
        self.inner.close()


def read_until(process: subprocess.Popen, prefix: str, *, timeout: float) -> str:
    """The process's output up to the end of its first line starting with ``prefix``, or all it wrote
    before it ended or ``timeout`` passed (the caller's assertion shows it)."""
    assert process.stdout is not None
    fd = process.stdout.fileno()
    text = ""
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0 and select.select([fd], [], [], remaining)[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        text += chunk.decode(errors="replace")
        line = re.search(rf"^{re.escape(prefix)}.*\n", text, re.MULTILINE)
        if line:
            return text[: line.end()]
    return text


def _stall_after_ack() -> None:
    """One relay run that stalls, lock held and nothing marked, once the bus acknowledged a batch."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "iam_project.settings")  # as manage.py
    import django

    django.setup()
    from eventbus import get_adapter
    from outbox.relay import OutboxWorker

    def stall(_number: int, result: BatchResult) -> None:
        if result.acked:
            print(f"acked {result.acked}", flush=True)
            sys.stdin.read()  # returns only when the test has gone (stdin closed): then mark nothing
            os._exit(3)

    result = OutboxWorker(adapter=FaultyAdapter(get_adapter(), after_result=stall)).run()
    print(f"never stalled: {result.as_dict()}", flush=True)
    raise SystemExit(2)


if __name__ == "__main__":
    if sys.argv[1:] != [STALL_AFTER_ACK]:
        raise SystemExit(f"usage: python -m tests.faults {STALL_AFTER_ACK}")
    _stall_after_ack()
