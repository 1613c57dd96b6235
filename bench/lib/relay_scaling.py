"""bench/relay.py ``--relays 1,2,4 --partitions 8``: relay throughput with N relay processes against N raw
``publish_async`` publisher processes, in the same run.

For each N: the outbox gets ``--scale-events`` pending rows spread over ``--partitions`` lanes; N
relay processes (``bench/relay.py --relay-worker``, each ``OutboxWorker().run()`` in a loop until no row
is pending) start, set Django up, connect and create the stream, then wait for the go file: the clock
runs from the go file to the last process's exit. The baseline is N processes
(``bench/relay.py --publisher``) publishing the same number of events of the same size, split between
them, with nats-py ``publish_async`` + ``Nats-Msg-Id`` to a fresh stream, timed the same way. Every
child is a :class:`devtools.harness.children.Proc` (its own process group, dies with the benchmark).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from pathlib import Path

from devtools.harness.children import Proc, wait_until

BENCH = Path(__file__).resolve().parent.parent / "relay.py"


def _wait_for_file(path: Path) -> None:
    while not path.exists():
        time.sleep(0.002)


def relay_worker_main(argv: list[str]) -> None:
    """``--relay-worker <ready file> <go file>``: one relay process (settings from the environment)."""
    ready, go = Path(argv[0]), Path(argv[1])
    import django

    django.setup()
    from eventbus import get_adapter
    from outbox.models import OutboxEvent, QueuedEvent
    from outbox.relay import OutboxWorker

    get_adapter().ensure_stream()
    OutboxEvent.objects.exists()  # connected before the clock starts
    worker = OutboxWorker()
    ready.touch()
    _wait_for_file(go)
    published = runs = 0
    while QueuedEvent.objects.filter(status=OutboxEvent.Status.PENDING).exists():
        result = worker.run()
        runs += 1
        if result.transport_error:
            raise SystemExit(f"relay transport error: {result.transport_error}")
        published += result.published
        if not result.published:
            time.sleep(0.005)  # every lane with work is held by the other relays
    print(f"published {published} in {runs} runs", flush=True)


def publisher_main(argv: list[str]) -> None:
    """``--publisher <url> <stream> <subject prefix> <count> <payload file> <ready file> <go file>``."""
    url, stream, prefix, count, payload_file, ready, go = argv
    payload = Path(payload_file).read_bytes()
    from eventbus.jetstream import new_event_loop

    async def publish() -> None:
        import nats

        nc = await nats.connect(url)
        js = nc.jetstream(publish_async_max_pending=4000)
        await js.stream_info(stream)  # connected, the stream there, before the clock starts
        Path(ready).touch()
        _wait_for_file(Path(go))
        for index in range(int(count)):
            await js.publish_async(
                f"{prefix}.{index % 64}.user.UserCreated", payload, headers={"Nats-Msg-Id": str(uuid.uuid4())}
            )
        await js.publish_async_completed()
        await nc.close()

    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(publish())


def _timed(procs: list[Proc], directory: Path, timeout: float = 600) -> float:
    """Start ``procs``, wait until each is ready, touch the go file; seconds until the last one exits."""
    for proc in procs:
        proc.start()
    wait_until(
        lambda: all((directory / f"{proc.name}.ready").exists() or _failed(proc) for proc in procs),
        timeout=120,
        message="the processes ready",
    )
    started = time.perf_counter()
    (directory / "go").touch()
    for proc in procs:
        code = proc.wait(timeout)
        if code != 0:
            raise RuntimeError(f"{proc.name} exited {code}:\n{proc.tail()}")
    return time.perf_counter() - started


def _failed(proc: Proc) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"{proc.name} exited {proc.poll()} before it was ready:\n{proc.tail()}")
    return False


async def _create_stream(url: str, stream: str, prefix: str) -> int:
    import nats
    from nats.js.api import StorageType, StreamConfig

    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(
            StreamConfig(name=stream, subjects=[f"{prefix}.>"], storage=StorageType.FILE, duplicate_window=7200)
        )
        return 0
    finally:
        await nc.close()


async def _stored(url: str, stream: str) -> int:
    import nats

    nc = await nats.connect(url)
    try:
        return (await nc.jsm().stream_info(stream)).state.messages
    finally:
        await nc.close()


def scaling_run(
    *,
    relays: list[int],
    partitions: int,
    rows: list[tuple[str, str, bytes, dict]],
    tenant_id: uuid.UUID,
    nats_url: str,
    stamp: str,
    tmp: Path,
) -> dict:
    """The figures of every N in ``relays``: relay and baseline events/s, their ratio, the speed-up."""
    from bench.lib.relay_baselines import insert_rows
    from outbox.models import OutboxEvent, QueuedEvent

    events = len(rows)
    runs = []
    for count in relays:
        directory = tmp / f"scale-{count}"
        directory.mkdir(parents=True, exist_ok=True)
        stream, prefix = f"BENCH_SCALE_{count}_{stamp}", f"benchscale{count}{stamp.lower()}"
        OutboxEvent.objects.all().delete()
        subject_rows = [(e, prefix + s[s.index(".") :], p, f) for e, s, p, f in rows]
        insert_rows(subject_rows, tenant_id, partitions=partitions)
        env = {**os.environ, "NATS_STREAM_NAME": stream, "NATS_SUBJECT_PREFIX": prefix}
        env["OUTBOX_PARTITIONS"] = str(partitions)
        procs = [
            Proc(
                f"relay-{index}",
                [
                    sys.executable,
                    str(BENCH),
                    "--relay-worker",
                    str(directory / f"relay-{index}.ready"),
                    str(directory / "go"),
                ],
                env,
                directory,
            )
            for index in range(count)
        ]
        relay_seconds = _timed(procs, directory)
        stored = asyncio.run(_stored(nats_url, stream))
        pending = QueuedEvent.objects.filter(status=OutboxEvent.Status.PENDING).count()
        if stored != events or pending:
            raise RuntimeError(f"{count} relays: stream holds {stored} of {events}, {pending} pending")

        base_directory = tmp / f"base-{count}"
        base_directory.mkdir(parents=True, exist_ok=True)
        base_stream, base_prefix = f"BENCH_SCALE_BASE_{count}_{stamp}", f"benchscalebase{count}{stamp.lower()}"
        asyncio.run(_create_stream(nats_url, base_stream, base_prefix))
        payload_file = base_directory / "payload.json"
        payload_file.write_bytes(rows[0][2])
        shares = [events // count + (1 if index < events % count else 0) for index in range(count)]
        publishers = [
            Proc(
                f"publisher-{index}",
                [
                    sys.executable, str(BENCH), "--publisher", nats_url, base_stream, base_prefix, str(share),
                    str(payload_file), str(base_directory / f"publisher-{index}.ready"), str(base_directory / "go"),
                ],
                env,
                base_directory,
            )
            for index, share in enumerate(shares)
        ]  # fmt: skip
        base_seconds = _timed(publishers, base_directory)
        if asyncio.run(_stored(nats_url, base_stream)) != events:
            raise RuntimeError(f"{count} publishers: the stream does not hold {events}")
        runs.append(
            {
                "relays": count,
                "relay_events_per_second": round(events / relay_seconds),
                "baseline_events_per_second": round(events / base_seconds),
                "relay_ratio_to_baseline": round(base_seconds / relay_seconds, 3),
            }
        )
        print(f"  {count} relay process(es): {runs[-1]}", flush=True)
    one = runs[0]["relay_events_per_second"] if runs and runs[0]["relays"] == 1 else None
    for run in runs:
        run["speedup_vs_one_relay"] = None if one is None else round(run["relay_events_per_second"] / one, 2)
    return {"partitions": partitions, "events": events, "cores": os.cpu_count(), "runs": runs}


def print_scaling(scaling: dict) -> None:
    print(
        f"\n(d) relay processes against raw publish_async processes: {scaling['events']:,} events, "
        f"{scaling['partitions']} partitions, {scaling['cores']} cores (os.cpu_count())"
    )
    print(f"{'N':>3}  {'relay ev/s':>11}  {'speed-up':>8}  {'raw publishers ev/s':>20}  {'relay/raw':>9}")
    for run in scaling["runs"]:
        speedup = "-" if run["speedup_vs_one_relay"] is None else f"{run['speedup_vs_one_relay']:.2f}×"
        print(
            f"{run['relays']:>3}  {run['relay_events_per_second']:>11,}  {speedup:>8}  "
            f"{run['baseline_events_per_second']:>20,}  {run['relay_ratio_to_baseline']:>9.0%}"
        )
