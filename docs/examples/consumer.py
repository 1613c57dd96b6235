"""A minimal iam-service event consumer: a durable JetStream pull consumer with idempotent apply.

    pip install nats-py
    python docs/examples/consumer.py --url nats://127.0.0.1:4222 --stream IAM_EVENTS \
        --subject 'iam.*.user.*' --durable my-service-users --state users.json

What it shows (docs/events.md, "What a consumer must do"):

* a **durable** pull consumer with explicit acks, so a restart resumes where it stopped;
* **idempotent apply**: an event whose ``id`` was seen, or whose ``aggregateversion`` is not newer
  than the version held for its aggregate, changes nothing (redeliveries, duplicates outside
  JetStream's window and ``replay_events`` copies are all safe);
* **ack after apply**: the new state is written to ``--state`` first, then the messages are acked.
  A crash in between means a redelivery, which the rule above makes harmless.

The "read model" here is a JSON file mapping ``<aggregatetype>:<aggregateid>`` to the latest state;
a real consumer would update its own database in one transaction with its seen-ids/versions table.
With ``--idle-exit N`` it stops after N seconds without messages and prints a JSON summary.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from collections import OrderedDict
from pathlib import Path

TOMBSTONES = {"UserDeleted": True, "TenantDeleted": True, "TenantPurged": True, "AttributeDefinitionDeleted": True}


class Store:
    """The consumer's state: the latest version of every aggregate and the recently seen event ids."""

    def __init__(self, path: Path | None, seen_limit: int = 100_000) -> None:
        self.path = path
        self.seen_limit = seen_limit
        self.aggregates: dict[str, dict] = {}
        self.seen: OrderedDict[str, None] = OrderedDict()
        self.counts = {"applied": 0, "duplicates": 0, "stale": 0, "invalid": 0}
        if path is not None and path.exists():
            saved = json.loads(path.read_text())
            self.aggregates = saved["aggregates"]
            self.seen = OrderedDict.fromkeys(saved["seen"])

    def remember(self, event_id: str) -> None:
        self.seen[event_id] = None
        while len(self.seen) > self.seen_limit:  # ids only guard the cheap path; versions decide
            self.seen.popitem(last=False)

    def apply(self, event: dict) -> str:
        """Apply one CloudEvent; returns ``applied``, ``duplicate`` or ``stale``."""
        if event["id"] in self.seen:
            self.counts["duplicates"] += 1
            return "duplicate"
        key = f"{event['aggregatetype']}:{event['aggregateid']}"
        version = int(event["aggregateversion"])
        held = self.aggregates.get(key)
        if held is not None and version <= held["version"]:
            self.remember(event["id"])  # an older or equal state (e.g. a replay): nothing to change
            self.counts["stale"] += 1
            return "stale"
        if event["type"] == "TenantPurged":  # everything of the tenant is gone for good
            for other in [k for k, v in self.aggregates.items() if v["tenant"] == event["tenantid"]]:
                self.aggregates[other]["deleted"] = True
        self.aggregates[key] = {
            "version": version,
            "type": event["type"],
            "tenant": event["tenantid"],
            "deleted": TOMBSTONES.get(event["type"], False),  # kept as a tombstone: a late update stays stale
            "data": event["data"],
        }
        self.remember(event["id"])
        self.counts["applied"] += 1
        return "applied"

    def save(self) -> None:
        if self.path is None:
            return
        temporary = self.path.with_suffix(self.path.suffix + ".tmp")
        temporary.write_text(json.dumps({"aggregates": self.aggregates, "seen": list(self.seen)}))
        os.replace(temporary, self.path)  # atomic: a crash leaves the old or the new state


async def consume(args: argparse.Namespace) -> dict:
    import nats  # here, not at the top: docs/examples/kafka_consumer.py imports Store without nats-py
    import nats.errors
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    store = Store(Path(args.state) if args.state else None)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)

    nc = await nats.connect(args.url, name=f"example-consumer-{args.durable}", max_reconnect_attempts=-1)
    js = nc.jetstream()
    subscription = await js.pull_subscribe(
        args.subject,
        durable=args.durable,
        stream=args.stream,
        config=ConsumerConfig(
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=30,
            max_ack_pending=1000,
        ),
    )
    last_message = time.monotonic()
    try:
        while not stop.is_set():
            try:
                messages = await subscription.fetch(args.batch, timeout=1)
            except (TimeoutError, nats.errors.TimeoutError):  # nothing arrived within the timeout
                if args.idle_exit and time.monotonic() - last_message > args.idle_exit:
                    break
                continue
            last_message = time.monotonic()
            applied = []
            for message in messages:
                try:
                    event = json.loads(message.data)
                    event["id"], event["aggregateid"], event["aggregateversion"]
                except (ValueError, KeyError, TypeError):
                    store.counts["invalid"] += 1
                    await message.term()  # not an event of ours: never redeliver it
                    continue
                outcome = store.apply(event)
                applied.append(message)
                if args.verbose:
                    print(f"{outcome:9} {event['type']} {event['aggregateid']} v{event['aggregateversion']}")
            store.save()  # apply (and persist) first …
            for message in applied:  # … then ack: a crash in between means a harmless redelivery
                await message.ack()
    finally:
        with contextlib.suppress(Exception):
            await nc.flush(timeout=5)  # the acks are on the wire
        await nc.close()
    live = sum(1 for value in store.aggregates.values() if not value["deleted"])
    return {**store.counts, "aggregates": len(store.aggregates), "live": live}


def main() -> None:
    parser = argparse.ArgumentParser(description="Consume iam-service events idempotently (example).")
    parser.add_argument("--url", default="nats://127.0.0.1:4222", help="NATS server URL")
    parser.add_argument("--stream", default="IAM_EVENTS", help="JetStream stream name")
    parser.add_argument(
        "--subject", default="iam.*.user.*", help="subject filter, e.g. iam.<tenant id>.> or iam.*.user.*"
    )
    parser.add_argument("--durable", default="example-consumer", help="durable consumer name (resume point)")
    parser.add_argument("--state", default=None, help="JSON file holding the consumer's state")
    parser.add_argument("--batch", type=int, default=100, help="messages per fetch")
    parser.add_argument("--idle-exit", type=float, default=0, help="stop after this many idle seconds (0: never)")
    parser.add_argument("--verbose", action="store_true", help="print every event's outcome")
    summary = asyncio.run(consume(parser.parse_args()))
    print(json.dumps(summary))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
