"""Child processes that never outlive the process that started them (tests and benchmarks).

Each child runs in a process group of its own (stopped by its group id, with its own children) and,
on Linux, with ``PR_SET_PDEATHSIG``: the kernel signals it when its parent dies, even by SIGKILL.
Every child still running when the parent exits (normally, by SIGINT's ``KeyboardInterrupt``, or by
SIGTERM/SIGHUP, which the first start turns into ``SystemExit``) is stopped by an ``atexit`` hook.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.embedded import free_port, port_open

REPO = Path(__file__).resolve().parent.parent.parent
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None  # loaded before any fork
_RUNNING: set[Proc] = set()
_HOOKS_INSTALLED = False
__all__ = ["REPO", "Proc", "children_of", "die_with_parent", "free_port", "port_open", "wait_until"]


def wait_until(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.1, message: str = "") -> Any:
    """Return the first truthy value of ``predicate()``; fail with ``message`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except AssertionError:
            raise  # the predicate knows it will never hold (e.g. the process exited)
        except Exception as exc:  # noqa: BLE001 - not ready yet (connection refused, ...): try again
            last_error = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{message or 'condition'} not met within {timeout:.0f} s (last error: {last_error!r})")
        time.sleep(interval)


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking the kernel to send ``sig`` to the child when its parent dies (Linux only).

    It runs after ``Popen``'s ``user=`` switch (a change of user would clear the setting) and only calls
    prctl through a libc loaded before the fork: nothing that could deadlock in a forked child.
    """
    if _LIBC is None:
        return None
    return lambda: _LIBC.prctl(_PR_SET_PDEATHSIG, sig)


def _stop_all() -> None:
    for proc in list(_RUNNING):
        try:
            proc.stop(timeout=10)
        except Exception as exc:  # noqa: BLE001 - stop the others anyway
            print(f"warning: could not stop {proc.name}: {exc!r}", file=sys.stderr)


def _raise_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: finally blocks, then atexit, stop every child


def _install_hooks() -> None:
    global _HOOKS_INSTALLED
    if _HOOKS_INSTALLED:
        return
    _HOOKS_INSTALLED = True
    atexit.register(_stop_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(sig) == signal.SIG_DFL:
                signal.signal(sig, _raise_exit)


@dataclass(eq=False)
class Proc:
    """A child process in a session of its own, its stdout and stderr in files (never a full pipe).

    ``stop_signal`` is what :meth:`stop` sends first (and what the kernel sends if this process dies);
    ``user`` runs it as another system user (PostgreSQL refuses to run as root).
    """

    name: str
    argv: list[str]
    env: dict[str, str] | None
    workdir: Path
    cwd: Path = REPO
    stop_signal: int = signal.SIGTERM
    user: str | None = None
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    ended_at: float | None = None
    stdout_path: Path = field(init=False)
    stderr_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.stdout_path = self.workdir / f"{self.name}.stdout"
        self.stderr_path = self.workdir / f"{self.name}.stderr"

    def start(self) -> Proc:
        _install_hooks()
        with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                user=self.user,
                start_new_session=True,  # its own process group: stopped by id, with its children
                preexec_fn=die_with_parent(self.stop_signal),
            )
        self.started_at, self.ended_at = time.monotonic(), None
        _RUNNING.add(self)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def poll(self) -> int | None:
        assert self.process is not None
        code = self.process.poll()
        if code is not None and self.ended_at is None:
            self.ended_at = time.monotonic()
        return code

    def running(self) -> bool:
        return self.process is not None and self.poll() is None

    def wait(self, timeout: float) -> int:
        """The exit code; ``subprocess.TimeoutExpired`` if it is still running after ``timeout`` s."""
        assert self.process is not None
        code = self.process.wait(timeout)
        if self.ended_at is None:
            self.ended_at = time.monotonic()
        return code

    @property
    def runtime(self) -> float:
        return (self.ended_at or time.monotonic()) - self.started_at

    def stop(self, timeout: float = 15.0, sig: int | None = None) -> int | None:
        """``sig`` (default ``stop_signal``) to the child's process group, SIGKILL after ``timeout`` s.

        Idempotent: the group is signalled by the first call after a start only, never again (its id,
        the child's pid, may belong to another process group by then).
        """
        if self.process is None or self not in _RUNNING:
            return None if self.process is None else self.process.returncode
        if self.process.poll() is None:
            self.signal_group(sig or self.stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.process.wait(5)
        self.signal_group(signal.SIGKILL)  # leftovers of the group (its own children), if any
        if self.ended_at is None:
            self.ended_at = time.monotonic()
        _RUNNING.discard(self)
        return self.process.returncode

    def signal_group(self, sig: int) -> None:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, sig)  # the group id is the child's pid (start_new_session)
        except (ProcessLookupError, PermissionError):
            pass

    def children(self) -> set[int]:
        """The pids of this process's direct children (gunicorn workers, a Celery pool)."""
        return children_of(self.pid)

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace") if self.stdout_path.exists() else ""

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def output(self) -> str:
        return self.stdout() + self.stderr()

    def tail(self, lines: int = 40) -> str:
        text = f"--- {self.name} stdout ---\n{self.stdout()}\n--- {self.name} stderr ---\n{self.stderr()}"
        return "\n".join(text.splitlines()[-lines:])


def children_of(pid: int) -> set[int]:
    """Every process whose parent is ``pid`` (any of its threads may have forked it)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found
