"""Alert rules (deploy/prometheus) and the runbook (docs/runbook.md) against each other, the contract
and the application code. promtool comes from Debian's `prometheus` package."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS_FILE = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST_FILE = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
# Every top-level Python package of the service (what the image ships), not tests or benchmarks.
APP_SOURCE_DIRS = tuple(
    sorted(p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name not in ("tests", "bench", "docs"))
)

CONTRACT_ALERTS = {
    "IamServiceHighLatency",
    "IamServiceOutboxPendingGrowing",
    "IamServiceDatabaseErrors",
    "IamServiceEventBusErrors",
    "IamServiceRelayStale",
    "IamServiceOutboxPoisonEvents",
    "IamServiceCrashLooping",
    "IamServiceReplicaLagging",
}
CONTRACT_METRICS = {
    "http_requests_total": ("method", "route", "status"),
    "http_request_duration_seconds": ("method", "route"),
    "database_errors_total": (),
    "event_bus_errors_total": (),
    "outbox_pending_count": (),
    "outbox_oldest_pending_age_seconds": (),
    "outbox_failed_count": (),
    "outbox_relay_last_success_timestamp_seconds": (),
}
# Metrics the runbook names that other exporters provide.
EXTERNAL_METRICS = {"kube_pod_container_status_restarts_total"}  # kube-state-metrics


# --- helpers ---------------------------------------------------------------------------------------
def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None and os.access("/usr/bin/promtool", os.X_OK):
        path = "/usr/bin/promtool"
    if path is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("promtool not installed (Debian package prometheus); required under CI=true")
        pytest.skip("promtool not installed (Debian package prometheus)")
    return path


def _rules() -> dict[str, dict]:
    groups = yaml.safe_load(ALERTS_FILE.read_text())["groups"]
    (group,) = groups
    assert group["name"] == "iam-service"
    rules = {}
    for rule in group["rules"]:
        assert rule["alert"] not in rules, f"duplicate alert {rule['alert']}"
        rules[rule["alert"]] = rule
    return rules


def _runbook() -> str:
    return RUNBOOK.read_text()


def _github_anchor(heading: str) -> str:
    """The id GitHub gives a Markdown heading."""
    text = re.sub(r"[`*_]{1,2}(?=\S)|(?<=\S)[`*_]{1,2}", "", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _runbook_headings() -> dict[str, str]:
    """anchor -> heading text, for every ATX heading outside code blocks."""
    headings = {}
    in_fence = False
    for line in _runbook().splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        match = None if in_fence else re.match(r"^(#{1,6})\s+(.+?)\s*#*\s*$", line)
        if match:
            headings[_github_anchor(match.group(2))] = match.group(2)
    return headings


def _runbook_code() -> str:
    """Inline code spans and fenced code blocks of the runbook."""
    text = _runbook()
    fenced = re.findall(r"^\s*```[^\n]*\n(.*?)^\s*```", text, flags=re.MULTILINE | re.DOTALL)
    prose = re.sub(r"^\s*```[^\n]*\n.*?^\s*```", "", text, flags=re.MULTILINE | re.DOTALL)
    inline = re.findall(r"`([^`\n]+)`", prose)
    return "\n".join(fenced + inline)


def _section(title: str) -> str:
    """Text of the runbook section (## or ###) with this title, up to the next heading of its level."""
    text = _runbook()
    match = re.search(rf"^(#+) {re.escape(title)}\s*$", text, flags=re.MULTILINE)
    assert match, f"runbook has no section {title!r}"
    level = len(match.group(1))
    rest = text[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, flags=re.MULTILINE)
    return rest[: end.start()] if end else rest


# --- promtool --------------------------------------------------------------------------------------
def test_promtool_check_rules():
    result = subprocess.run(
        [_promtool(), "check", "rules", str(ALERTS_FILE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass():
    result = subprocess.run(
        [_promtool(), "test", "rules", str(ALERTS_TEST_FILE)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ALERTS_TEST_FILE.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- rules -----------------------------------------------------------------------------------------
def test_alerts_are_exactly_the_contract_alerts():
    assert set(_rules()) == CONTRACT_ALERTS


def test_every_alert_has_severity_summary_description_and_a_runbook_anchor_that_exists():
    anchors = _runbook_headings()
    for name, rule in _rules().items():
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        annotations = rule["annotations"]
        assert annotations["summary"].strip() and annotations["description"].strip(), name
        path, _, anchor = annotations["runbook_url"].partition("#")
        assert path == "docs/runbook.md", name
        assert anchor in anchors, f"{name}: no runbook heading with anchor #{anchor}"
        assert anchors[anchor] == name, f"{name}: #{anchor} is the section of {anchors[anchor]!r}"


@pytest.mark.parametrize(
    ("alert", "needles", "duration"),
    [
        (
            "IamServiceHighLatency",
            ["histogram_quantile(0.99", "http_request_duration_seconds_bucket", "[5m]", "> 0.5"],
            "10m",
        ),
        (
            "IamServiceOutboxPendingGrowing",
            [
                "outbox_pending_count) > 100",
                "deriv(outbox_pending_count",
                ") > 0",
                "outbox_oldest_pending_age_seconds) > 300",
            ],
            "10m",
        ),
        ("IamServiceDatabaseErrors", ["increase(database_errors_total[5m]) > 0"], None),
        ("IamServiceEventBusErrors", ["increase(event_bus_errors_total[5m]) > 0"], "5m"),
        ("IamServiceRelayStale", ["time() - ", "outbox_relay_last_success_timestamp_seconds) > 120"], None),
        ("IamServiceOutboxPoisonEvents", ["outbox_failed_count) > 0"], None),
        (
            "IamServiceReplicaLagging",
            ["database_replica_lag_seconds) > 30", "database_replica_up) == 0"],
            "5m",
        ),
        (
            "IamServiceCrashLooping",
            ['increase(kube_pod_container_status_restarts_total{namespace=~".*", pod=~"iam-service.*"}[15m]) > 3'],
            None,
        ),
    ],
)
def test_alert_expressions_follow_the_contract(alert, needles, duration):
    rule = _rules()[alert]
    expr = " ".join(rule["expr"].split())
    for needle in needles:
        assert needle in expr, f"{alert}: {needle!r} not in {expr!r}"
    if duration is not None:
        assert rule["for"] == duration


def test_every_alert_has_a_firing_and_a_quiet_unit_test_case():
    tests = yaml.safe_load(ALERTS_TEST_FILE.read_text())
    assert tests["rule_files"] == ["alerts.yml"]
    firing, quiet = set(), set()
    for group in tests["tests"]:
        for case in group.get("alert_rule_test", []):
            (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    assert firing == CONTRACT_ALERTS, CONTRACT_ALERTS - firing
    assert quiet == CONTRACT_ALERTS, CONTRACT_ALERTS - quiet


# --- runbook ---------------------------------------------------------------------------------------
def test_runbook_has_the_sections_of_the_seed_runbook():
    headings = set(_runbook_headings().values())
    assert {
        "Service Overview",
        "Key Dependencies",
        "Monitoring & Key Metrics",
        "Common Alerts & Troubleshooting",
        "Deployment & Rollback",
    } <= headings
    assert headings >= CONTRACT_ALERTS, "one section per alert"


def test_runbook_names_only_alerts_that_exist():
    named = set(re.findall(r"\bIamService[A-Z][A-Za-z]+\b", _runbook()))
    assert named <= set(_rules()), named - set(_rules())


def test_runbook_lists_redis_and_what_its_outage_does():
    section = _section("Key Dependencies")
    for needle in ("Redis", "`CELERY_BROKER_URL`", "`REDIS_URL`", "PostgreSQL", "NATS", "relay_outbox --once"):
        assert needle in section, needle
    assert "keeps answering" in section and "commit" in section


def test_runbook_documents_every_contract_metric_with_its_labels():
    section = _section("Monitoring & Key Metrics")
    for metric, labels in CONTRACT_METRICS.items():
        row = next((line for line in section.splitlines() if line.startswith(f"| `{metric}`")), None)
        assert row, f"{metric} is not in the metrics table"
        for label in labels:
            assert f"`{label}`" in row, (metric, label)
    assert "failed to publish event" in section
    assert "OutboxWorker" in section and "EventBusAdapter" in section


@pytest.mark.parametrize(
    "command",
    [
        'kubectl logs -l app=iam-service | grep "failed to publish event"',
        "kubectl logs <pod-name> --previous",
        "kubectl exec deploy/iam-service -- python manage.py check_dependencies",
        "kubectl exec deploy/iam-service -- python manage.py outbox_status",
        "python manage.py relay_outbox --once",
        "kubectl rollout undo deployment/iam-service\n",
        "kubectl rollout undo deployment/iam-service-worker",
        "kubectl rollout undo deployment/iam-service-beat",
        "python manage.py migrate <app> <previous_migration>",
    ],
)
def test_runbook_gives_the_operational_commands(command):
    assert command in _runbook()


def test_runbook_pg_stat_activity_check_filters_by_application_name():
    text = _runbook()
    assert "pg_stat_activity" in text
    assert "application_name IN ('iam-web', 'iam-worker', 'iam-beat')" in text


def test_runbook_crash_loop_section_names_the_fatal_variables():
    section = _section("IamServiceCrashLooping")
    for needle in ("FATAL", "`DATABASE_URL`", "`EVENT_BUS_URL`", "redacted", "kubectl logs <pod-name> --previous"):
        assert needle in section, needle


def test_runbook_uses_only_management_commands_of_the_contract():
    used = set(re.findall(r"manage\.py (\w+)", _runbook()))
    assert used <= {"check_dependencies", "relay_outbox", "outbox_status", "migrate", "showmigrations"}, used


# --- runbook <-> application code ------------------------------------------------------------------
def _app_source() -> str:
    texts = []
    for directory in APP_SOURCE_DIRS:
        for path in sorted((ROOT / directory).rglob("*.py")):
            texts.append(path.read_text(errors="replace"))
    return "\n".join(texts)


def _defined(name: str, source: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", source) is not None


def _metric_defined(metric: str, source: str) -> bool:
    candidates = [metric]
    if metric.endswith("_bucket"):
        candidates.append(metric.removesuffix("_bucket"))
    for suffix in ("_count", "_sum"):
        if metric.endswith("_seconds" + suffix):
            candidates.append(metric.removesuffix(suffix))
    if metric.endswith("_total"):
        # prometheus_client appends _total to a Counter's name: Counter("database_errors", ...).
        candidates.append(metric.removesuffix("_total"))
    return any(_defined(name, source) for name in candidates)


def _runbook_metric_names() -> set[str]:
    names = set(re.findall(r"\b([a-z][a-z0-9_]*_(?:total|count|seconds|bucket))\b", _runbook_code()))
    return names - EXTERNAL_METRICS


def _runbook_env_names() -> set[str]:
    return set(re.findall(r"\b([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)\b", _runbook_code()))


def test_runbook_token_extraction_finds_the_contract_names():
    assert set(CONTRACT_METRICS) <= _runbook_metric_names()
    assert {"DATABASE_URL", "EVENT_BUS_URL", "CELERY_BROKER_URL", "REDIS_URL"} <= _runbook_env_names()


def test_runbook_metrics_and_env_vars_exist_in_the_application_code():
    """Every metric and variable the runbook names is defined by the code (iam_project, the apps).

    Fails until the application code defines these names: that is the point of it.
    """
    source = _app_source()
    missing_metrics = sorted(m for m in _runbook_metric_names() if not _metric_defined(m, source))
    missing_env = sorted(v for v in _runbook_env_names() if not _defined(v, source))
    assert not missing_metrics and not missing_env, (
        f"named in docs/runbook.md but not found in {', '.join(APP_SOURCE_DIRS)}: "
        f"metrics {missing_metrics}, variables {missing_env}"
    )
