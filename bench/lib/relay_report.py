"""bench/relay.py's table."""

from __future__ import annotations

TARGET_RATIO = 0.5
TARGET_P99_MS = 250.0


def print_table(f: dict) -> None:
    rows = [
        ("events", f"{f['events']:,} × ~{f['payload_bytes_mean']} B UserCreated"),
        (
            "(a) confluent-kafka produce baseline" if f["bus"] == "kafka" else "(a) nats-py publish_async baseline",
            f"{f['baseline']['events_per_second']:,} ev/s",
        ),
        ("(b) relay OutboxWorker.run()", f"{f['relay']['events_per_second']:,} ev/s"),
        (
            "    ratio to baseline",
            f"{f['relay']['ratio_to_baseline']:.0%} (target ≥ {TARGET_RATIO:.0%}: "
            f"{'met' if f['targets']['relay_ratio_met'] else 'MISSED'})",
        ),
        ("    COPY of the rows", f"{f['relay']['copy_rows_per_second']:,} rows/s"),
    ]
    if f.get("relay_ceiling"):
        ceiling = f["relay_ceiling"]
        rows.insert(
            -1,
            (
                "(b0) relay to a bus that acks at once (its ceiling)",
                f"{ceiling['events_per_second']:,} ev/s ({ceiling['ratio_to_baseline']:.0%} of (a))",
            ),
        )
    if f.get("baseline_encoding_in_loop"):
        encoding = f["baseline_encoding_in_loop"]
        rows.insert(
            2,
            (
                "(a') the same, building the records in the loop",
                f"{encoding['events_per_second']:,} ev/s (relay: {encoding['relay_ratio']:.0%} of it)",
            ),
        )
    for run in f["latency"]:
        rows.append(
            (
                f"(c) commit→{'Kafka' if f['bus'] == 'kafka' else 'JetStream'}, {run['mode']}",
                f"p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms, max {run['max_ms']} ms "
                f"({run['received']}/{run['events']} at {run['achieved_rate_per_second']}/s)",
            )
        )
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")
    poke = next((run for run in f["latency"] if run["mode"] == "poke"), None)
    if poke is not None:
        verdict = "met" if f["targets"]["p99_met"] else "MISSED"
        print(f"{'p99 target (poke)'.ljust(width)}  < {TARGET_P99_MS:.0f} ms: {verdict}")
