"""The relay's on-commit pokes in the tests: recorded, never sent (a pytest plugin, see tests/conftest.py).

The tests run Celery tasks eagerly (``CELERY_TASK_ALWAYS_EAGER``, for import jobs), so a poke sent
for real would relay in the committing thread and leave no event pending for the test to look at.
The boundary is replaced instead: ``relay_outbox_task.apply_async`` records its options, and the
write path up to it (``outbox.services.poke_relay``, its on-commit registration) runs unchanged. Tests
drain the outbox themselves (``tests/outbox_helpers.py``); processes started by the tests poke a real
worker through a real broker.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class Pokes:
    """What ``relay_outbox_task.apply_async`` was asked; set ``error`` to make it fail (a broker outage)."""

    sent: list[dict[str, Any]] = field(default_factory=list)
    error: Exception | None = None

    def apply_async(self, *args: Any, **options: Any) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append(options)


@pytest.fixture(autouse=True)
def pokes() -> Iterator[Pokes]:
    from outbox.tasks import relay_outbox_task

    recorder = Pokes()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(relay_outbox_task, "apply_async", recorder.apply_async)
        yield recorder
