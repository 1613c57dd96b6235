"""bench/relay.py's latency runs: writer processes commit users, a JetStream or Kafka subscriber in
another process records commit-to-delivery time, the relay runs in a thread of the benchmark."""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

from bench.lib.progress import progress
from devtools.harness import REPO, die_with_parent

RELAY_BENCH = str(REPO / "bench" / "relay.py")  # its --subscriber and --writer modes


# --- the subscriber (a separate process, so that its work does not share the relay's GIL) ---------
async def _subscribe(url: str, stream: str, subject: str, expected: int, out: str, idle_timeout: float) -> None:
    import nats
    from nats.js.api import DeliverPolicy

    nc = await nats.connect(url)
    js = nc.jetstream()
    latencies: list[float] = []
    done = asyncio.Event()
    last = [time.monotonic()]

    async def on_message(msg) -> None:  # type: ignore[no-untyped-def]
        received = time.time()
        sent = datetime.fromisoformat(json.loads(msg.data)["time"]).timestamp()
        latencies.append((received - sent) * 1000.0)
        last[0] = time.monotonic()
        if len(latencies) >= expected:
            done.set()

    await js.subscribe(subject, stream=stream, cb=on_message, ordered_consumer=True, deliver_policy=DeliverPolicy.NEW)
    print("ready", flush=True)
    while not done.is_set():
        try:
            await asyncio.wait_for(done.wait(), 0.5)
        except TimeoutError:
            if latencies and time.monotonic() - last[0] > idle_timeout:
                break
    Path(out).write_text(json.dumps(latencies))
    await nc.close()


def subscriber_main(argv: list[str]) -> None:
    url, stream, subject, expected, out = argv
    if url.startswith("kafka://"):
        _subscribe_kafka(url.removeprefix("kafka://"), stream, int(expected), out, idle_timeout=10.0)
        return
    asyncio.run(_subscribe(url, stream, subject, int(expected), out, idle_timeout=10.0))


def _subscribe_kafka(bootstrap: str, topic: str, expected: int, out: str, idle_timeout: float) -> None:
    """Reads ``topic`` (fresh for this run) from the beginning by partition assignment (no group join)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-latency",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 5,  # librdkafka waits up to 500 ms for a fetch to fill: that is not the relay
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    print("ready", flush=True)
    latencies: list[float] = []
    last = time.monotonic()
    while len(latencies) < expected and not (latencies and time.monotonic() - last > idle_timeout):
        message = consumer.poll(0.1)  # not consume(n, timeout): that waits for n messages or the timeout
        if message is not None and message.error() is None:
            received = time.time()
            headers = dict(message.headers() or [])
            if headers.get("ce_type") == b"UserCreated":
                sent = datetime.fromisoformat(headers["ce_time"].decode()).timestamp()
                latencies.append((received - sent) * 1000.0)
                last = time.monotonic()
    consumer.close()
    Path(out).write_text(json.dumps(latencies))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100.0 * (len(ordered) - 1))))
    return ordered[index]


def writer_main(argv: list[str]) -> None:
    """A separate process (like a web worker): ``user_create`` at ``rate``/s; one line per commit (the poke)."""
    database_url, nats_url, stream, prefix, tenant_id, rate_text, seconds_text, label = argv
    from bench.lib.relay_setup import setup_django

    setup_django(database_url, nats_url, stream, prefix, migrate=False)
    from tenants.models import Tenant
    from users.services import user_create

    tenant = Tenant.objects.get(pk=tenant_id)
    rate, total = float(rate_text), int(float(rate_text) * float(seconds_text))
    write_ms: list[float] = []
    late = 0
    started = time.perf_counter()
    for index in range(total):
        pause = started + index / rate - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        elif pause < -0.005:
            late += 1
        t0 = time.perf_counter()
        user_create(tenant=tenant, external_id=f"lat-{label}-{index}", email=f"lat-{label}-{index}@example.com")
        write_ms.append((time.perf_counter() - t0) * 1000.0)
        sys.stdout.write("c\n")  # committed: the on-commit poke
        sys.stdout.flush()
    achieved = total / (time.perf_counter() - started)
    summary = {"achieved": achieved, "late": late, "write_p50_ms": statistics.median(write_ms), "events": total}
    sys.stdout.write("done " + json.dumps(summary) + "\n")
    sys.stdout.flush()


def latency_run(
    *, mode: str, database_url: str, nats_url: str, stream: str, prefix: str, tenant_id: str, rate: float,
    seconds: float, tmp: Path, writer_count: int,
) -> dict:  # fmt: skip
    from django.conf import settings
    from django.db import connection

    from outbox.relay import OutboxWorker

    total = int(rate * seconds)
    out = tmp / f"latencies-{mode}.json"
    if nats_url.startswith("kafka://"):  # a fresh topic per mode: the subscriber reads it from the start
        from dataclasses import replace

        from eventbus import get_adapter

        adapter = get_adapter()  # the warm producer of (b): no connection set-up inside the measurement
        stream = f"{stream}_latency_{mode}"
        adapter.topic = replace(adapter.topic, name=stream)  # type: ignore[attr-defined]
        adapter.ensure_stream()
    subscriber = subprocess.Popen(
        [
            sys.executable,
            RELAY_BENCH,
            "--subscriber",
            nats_url,
            stream,
            f"{prefix}.*.user.UserCreated",
            str(total),
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=die_with_parent(),
    )
    if subscriber.stdout.readline().strip() != "ready":
        raise RuntimeError("the subscriber did not start")

    wake = threading.Event()
    stop = threading.Event()
    interval = settings.OUTBOX_RELAY_INTERVAL
    relay_runs = [0]

    def relay_loop() -> None:
        worker = OutboxWorker()
        try:
            while not stop.is_set():
                if mode == "poke":
                    wake.wait(interval)  # woken by every commit; the interval is beat's fallback
                    wake.clear()
                else:
                    time.sleep(interval)
                worker.run()
                relay_runs[0] += 1
            worker.run()
        finally:
            connection.close()

    relay = threading.Thread(target=relay_loop, name="relay", daemon=True)
    relay.start()
    # Several writer processes, as several web workers would be: each at rate / writers.
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                RELAY_BENCH,
                "--writer",
                database_url,
                nats_url,
                stream,
                prefix,
                tenant_id,
                str(rate / writer_count),
                str(seconds),
                f"{mode}{number}",
            ],
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=die_with_parent(),
        )
        for number in range(writer_count)
    ]
    bar = progress(total, f"latency ({mode}) user_create at {rate:.0f}/s")
    summaries: list[dict] = []
    lock = threading.Lock()

    def read(process: subprocess.Popen) -> None:
        for line in process.stdout:
            if line == "c\n":
                wake.set()
                with lock:
                    bar.update(1)
            elif line.startswith("done "):
                with lock:
                    summaries.append(json.loads(line[5:]))

    readers = [threading.Thread(target=read, args=(w,), daemon=True) for w in writers]
    for reader in readers:
        reader.start()
    for writer, reader in zip(writers, readers, strict=True):
        writer.wait(seconds * 4 + 60)
        reader.join(10)
    bar.close()
    try:
        subscriber.wait(30)
    finally:
        stop.set()
        wake.set()
        relay.join(30)
        if subscriber.poll() is None:
            subscriber.kill()
    if any(w.returncode != 0 for w in writers) or len(summaries) != writer_count:
        raise RuntimeError(f"a writer failed (exits {[w.returncode for w in writers]})")
    summary = {
        "achieved": sum(x["achieved"] for x in summaries),
        "late": sum(x["late"] for x in summaries),
        "write_p50_ms": statistics.median(x["write_p50_ms"] for x in summaries),
    }
    latencies = json.loads(out.read_text()) if out.exists() else []
    return {
        "mode": mode,
        "writers": writer_count,
        "relay_interval_seconds": interval,
        "target_rate_per_second": rate,
        "achieved_rate_per_second": round(summary["achieved"], 1),
        "writes_late_over_5ms": summary["late"],
        "events": total,
        "received": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p90_ms": round(percentile(latencies, 90), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1) if latencies else None,
        "user_create_p50_ms": round(summary["write_p50_ms"], 2),
        "relay_runs": relay_runs[0],
    }
