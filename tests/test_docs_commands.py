"""The first hour: the README's and the docs' shell blocks work as pasted against `make run`'s stack.

One development stack (``manage.py devstack``, what ``make run`` starts: embedded PostgreSQL and
NATS, web, worker and beat) runs in a data directory of its own on a free port. Every ```` ```bash ````
block of the README, docs/pip.md and docs/events.md then runs, each document in one bash session
(so a variable set in one block serves the next), from the clone's root, as a newcomer would paste
it. Two substitutions only: the stack's port for ``127.0.0.1:8000`` and its data directory for
``.data/``. A block may be left out with an HTML comment ``<!-- not run by tests/test_docs_commands.py:
REASON -->`` on the line before it. curl fails on an HTTP error here (``--fail-with-body``), so a
documented call that answers 4xx/5xx fails the test, unless the block prints the status code itself
(``-w``), which the test then checks. Last, Ctrl-C (SIGINT) stops the stack cleanly.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devtools.embedded import free_port
from tests import proc_helpers as ph

pytestmark = pytest.mark.processes

DOCUMENTS = [
    "README.md",
    "docs/pip.md",
    "docs/events.md",
    "docs/search.md",
]  # in this order: the README creates tenant acme
SKIP = re.compile(r"<!-- not run by tests/test_docs_commands\.py: (?P<reason>[^>]+?) -->\s*$")
FENCE = re.compile(r"^```bash\n(?P<body>.*?)^```$", re.M | re.S)
# curl fails on an HTTP error, except where the block prints the status itself (-w), which the test reads.
PREAMBLE = """set -euo pipefail
curl() {
  case " $* " in *" -w "*) command curl "$@" ;; *) command curl --fail-with-body --silent --show-error "$@"; echo ;; esac
}
"""


@dataclass
class Block:
    document: str
    line: int
    body: str
    skip: str | None


def shell_blocks(document: str) -> list[Block]:
    text = (ph.REPO / document).read_text()
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = SKIP.search(before)
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(Block(document, line, match.group("body"), skip.group("reason") if skip else None))
    return blocks


@dataclass
class DevStack:
    proc: ph.Proc
    port: int
    data_dir: Path
    env: dict[str, str]
    password: str


@pytest.fixture(scope="module")
def devstack(tmp_path_factory) -> Iterator[DevStack]:  # type: ignore[no-untyped-def]
    yield from run_devstack(tmp_path_factory.mktemp("devstack"))


def run_devstack(workdir: Path, **extra: str) -> Iterator[DevStack]:
    """``make run``'s stack in a data directory of its own, stopped (embedded servers too) at the end."""
    data_dir = workdir / "data"
    port = free_port()
    env = ph.base_env(IAM_ENV="development", IAM_DATA_DIR=str(data_dir), **extra)
    proc = ph.Proc("devstack", [ph.PYTHON, ph.MANAGE, "devstack", "--port", str(port)], env, workdir)
    try:
        proc.start()

        def password() -> str | None:
            if not proc.running():
                raise AssertionError(f"devstack exited with {proc.poll()}:\n{proc.tail(60)}")
            found = re.search(r"Console user: admin / (\S+)", proc.stdout())
            return found.group(1) if found else None

        secret = ph.wait_until(password, timeout=300, interval=0.5, message="devstack up with its console user")
        yield DevStack(proc, port, data_dir, env, secret)
    finally:
        proc.stop(timeout=30)
        stopped = subprocess.run(
            [ph.PYTHON, "-c", "from devtools.embedded import stop_embedded_services; stop_embedded_services()"],
            env=env,
            cwd=ph.REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def test_every_skipped_block_says_why() -> None:
    blocks = [block for document in DOCUMENTS for block in shell_blocks(document)]
    assert len([block for block in blocks if block.skip is None]) >= 6, "the docs lost their runnable blocks"
    for block in blocks:
        assert block.skip is None or len(block.skip.strip()) > 10, f"{block.document}:{block.line}"


@pytest.mark.parametrize("document", DOCUMENTS)
def test_the_documented_commands_work_as_pasted(devstack: DevStack, document: str) -> None:
    blocks = [block for block in shell_blocks(document) if block.skip is None]
    assert blocks, f"{document} has no runnable shell block"
    script = PREAMBLE
    for block in blocks:
        body = block.body.replace("127.0.0.1:8000", f"127.0.0.1:{devstack.port}")
        body = body.replace(".data/", f"{devstack.data_dir}/")
        script += f"echo '### {block.document}:{block.line}'\n{body}\n"
    result = subprocess.run(
        ["bash", "-c", script],
        env=devstack.env,
        cwd=ph.REPO,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, (
        f"exit {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    )
    if document == "README.md":
        assert "401" in result.stdout.splitlines(), result.stdout  # the revoked key's request
        assert '"slug":"acme"' in result.stdout.replace(" ", ""), result.stdout
    if document == "docs/pip.md":
        lines = result.stdout.splitlines()
        assert "304" in lines and "data.json" in lines, result.stdout
    if document == "docs/events.md":
        assert "applied" in result.stdout + result.stderr, result.stdout + result.stderr
    if document == "docs/search.md":
        assert "400" in result.stdout.splitlines() and '"external_id":"ada"' in result.stdout.replace(" ", "")


def test_ctrl_c_stops_the_stack_cleanly_and_beat_keeps_routine_ticks_quiet(devstack: DevStack) -> None:
    """Runs last in this module: it stops the stack."""
    output = devstack.proc.stdout()
    assert "Sending due task" not in output, "beat's routine tick is logged"
    # The console user comes last at start-up: after the worker's banner and its "ready" line.
    assert output.index("Console user: admin") > output.index(" ready.") > output.index("[tasks]"), output[-3000:]
    devstack.proc.process.send_signal(signal.SIGINT)  # what Ctrl-C sends to the foreground process
    code = devstack.proc.wait(90)
    output = devstack.proc.output()
    assert code == 0, f"exit {code}:\n{devstack.proc.tail(60)}"
    assert devstack.proc.stdout().rstrip().endswith("Stopped web, worker and beat."), devstack.proc.tail(20)
    assert "CommandError" not in output and "Traceback" not in output, devstack.proc.tail(60)


@pytest.mark.processes
def test_make_run_bus_kafka_relays_to_an_embedded_kafka_broker(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``make run BUS=kafka``: the same stack with the embedded Kafka-compatible broker as its event bus."""
    from tests.conftest import basic
    from tests.kafka_topic import topic_messages

    stack_runner = run_devstack(tmp_path, IAM_DEV_EVENT_BUS="kafka")
    stack = next(stack_runner)
    try:
        url = (stack.data_dir / "kafka.url").read_text()
        assert url.startswith("kafka://127.0.0.1:") and "kafka.url" in stack.proc.stdout()
        created = ph.http_request(
            stack.port,
            "POST",
            "/api/v1/tenants/",
            headers={"Authorization": basic("admin", stack.password), "Content-Type": "application/json"},
            body=json.dumps({"slug": "kafka-run", "name": "Kafka run"}),
        )
        assert created.status == 201, created.text[:300]
        tenant_id = created.json()["id"]

        def relayed() -> bool:  # by the stack's own worker (on-commit poke or beat)
            events = [r.envelope for r in topic_messages(url.removeprefix("kafka://"), "iam.events", idle=0.5)]
            return any(e["type"] == "TenantCreated" and e["aggregateid"] == tenant_id for e in events)

        ph.wait_until(relayed, timeout=60, interval=1.0, message="TenantCreated in the Kafka topic")
    finally:
        stack_runner.close()
