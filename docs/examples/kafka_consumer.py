"""A minimal iam-service event consumer on Kafka: idempotent apply, offsets kept with the state.

    pip install confluent-kafka
    python docs/examples/kafka_consumer.py --bootstrap 127.0.0.1:9092 --topic iam.events --state users.json

The same rules as the NATS example (docs/examples/consumer.py, whose ``Store`` it uses) and
docs/events.md, "What a consumer must do":

* **dedupe by the CloudEvent ``id``**: Kafka keeps every copy the relay produced. The idempotent
  producer drops its own retries within one producer session only, and a relay that crashed after
  the broker acknowledged, before it marked the row published, produces the event again;
* **apply only a newer ``aggregateversion``** (replays carry new ids and old versions);
* **the position is stored with the state**: each partition's next offset is written to ``--state``
  in the same atomic file write as the read model, so a restart resumes exactly there (a consumer
  group would commit its offsets after applying instead; this example assigns the partitions itself).

Events use the CloudEvents Kafka protocol binding: binary mode (``ce_*`` headers, the data as the
value; the service's default) or structured mode (``content-type: application/cloudevents+json``).
With ``--idle-exit N`` it stops after N seconds without messages and prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent))
from consumer import Store  # the example beside this one

INTEGER_ATTRIBUTES = ("aggregateversion",)


def cloudevent(message) -> dict:  # type: ignore[no-untyped-def]
    """The CloudEvent of a Kafka message, in either content mode of the Kafka protocol binding."""
    headers = {name: value.decode() for name, value in (message.headers() or [])}
    if headers.get("content-type", "").startswith("application/cloudevents+json"):
        return json.loads(message.value())  # structured mode
    event: dict = {name[3:]: value for name, value in headers.items() if name.startswith("ce_")}
    for attribute in INTEGER_ATTRIBUTES:  # header values are strings
        event[attribute] = int(event[attribute])
    event["data"] = json.loads(message.value())
    return event


def consume(args: argparse.Namespace) -> dict:
    state = Path(args.state) if args.state else None
    store = Store(state)
    offsets: dict[str, int] = json.loads(state.read_text()).get("offsets", {}) if state and state.exists() else {}
    stopping: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, _frame: stopping.append(number))

    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": args.name, "enable.auto.commit": False})
    partitions = consumer.list_topics(args.topic, timeout=10).topics[args.topic].partitions
    consumer.assign([TopicPartition(args.topic, p, offsets.get(str(p), OFFSET_BEGINNING)) for p in sorted(partitions)])
    last_message = time.monotonic()
    try:
        while not stopping:
            messages = consumer.consume(args.batch, timeout=1)
            messages = [m for m in messages if m.error() is None]
            if not messages:
                if args.idle_exit and time.monotonic() - last_message > args.idle_exit:
                    break
                continue
            last_message = time.monotonic()
            for message in messages:
                offsets[str(message.partition())] = message.offset() + 1
                try:
                    event = cloudevent(message)
                    event["id"], event["aggregateid"], event["aggregateversion"]
                except (ValueError, KeyError, TypeError):
                    store.counts["invalid"] += 1  # not an event of ours: skip it
                    continue
                outcome = store.apply(event)
                if args.verbose:
                    print(f"{outcome:9} {event['type']} {event['aggregateid']} v{event['aggregateversion']}")
            save(store, offsets)  # the read model and the position, in one atomic write
    finally:
        consumer.close()
    live = sum(1 for value in store.aggregates.values() if not value["deleted"])
    return {**store.counts, "aggregates": len(store.aggregates), "live": live}


def save(store: Store, offsets: dict[str, int]) -> None:
    if store.path is None:
        return
    temporary = store.path.with_suffix(store.path.suffix + ".tmp")
    temporary.write_text(json.dumps({"aggregates": store.aggregates, "seen": list(store.seen), "offsets": offsets}))
    temporary.replace(store.path)  # atomic: a crash leaves the old or the new state and position


def main() -> None:
    parser = argparse.ArgumentParser(description="Consume iam-service events from Kafka idempotently (example).")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    parser.add_argument("--topic", default="iam.events", help="the service's topic (KAFKA_TOPIC)")
    parser.add_argument("--name", default="example-consumer", help="client name (group.id)")
    parser.add_argument("--state", default=None, help="JSON file holding the consumer's state and offsets")
    parser.add_argument("--batch", type=int, default=100, help="messages per poll")
    parser.add_argument("--idle-exit", type=float, default=0, help="stop after this many idle seconds (0: never)")
    parser.add_argument("--verbose", action="store_true", help="print every event's outcome")
    summary = consume(parser.parse_args())
    print(json.dumps(summary))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
