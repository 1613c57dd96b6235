"""A hot-standby replica of a harness :class:`~devtools.harness.servers.Postgres`, for the replica tests and bench.

``pg_basebackup -R`` from the same binaries (the pgserver wheel's) copies the primary and writes the
standby's ``primary_conninfo``; the standby streams the primary's WAL over TCP (the primary must
listen on a host: ``Postgres(host="127.0.0.1")``; initdb's ``trust`` rules let replication in). Like
every harness server it runs in its own process group and dies with this process.
"""

from __future__ import annotations

import os
import pwd
import subprocess

from devtools.harness.children import wait_until
from devtools.harness.servers import Postgres

__all__ = ["Standby", "lsn_value", "replication_binaries_missing"]


def lsn_value(text: str | None) -> int:
    """``16/B374D848`` → its integer (0 for None)."""
    if not text:
        return 0
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def replication_binaries_missing() -> str | None:
    """Why a primary + standby cannot be started here (None: they can)."""
    from devtools.harness.servers import pgserver_bin

    try:
        binaries = pgserver_bin()
    except FileNotFoundError as exc:
        return str(exc)
    missing = [name for name in ("initdb", "postgres", "pg_basebackup") if not (binaries / name).exists()]
    return f"missing PostgreSQL binaries in {binaries}: {', '.join(missing)}" if missing else None


class Standby(Postgres):
    """A streaming hot standby of ``primary`` on its own free port (127.0.0.1), restartable on it."""

    def __init__(self, primary: Postgres, port: int | None = None, *, settings: dict[str, str] | None = None) -> None:
        assert primary.host, "a standby streams over TCP: the primary must listen on a host"
        super().__init__(port, host="127.0.0.1", settings={"fsync": "off"} if settings is None else settings)
        self.primary = primary

    def init(self) -> Standby:
        """``pg_basebackup -R -X stream`` of the running primary, unless the data directory has one."""
        if self.initialised:
            return self
        argv = [str(self.bin / "pg_basebackup"), "-D", str(self.data), "-h", self.primary.host]
        # --checkpoint=fast: the backup starts at once, not after a spread checkpoint (minutes on a loaded primary)
        argv += ["-p", str(self.primary.port), "-U", "postgres", "-R", "-X", "stream", "--no-sync", "--checkpoint=fast"]
        result = subprocess.run(
            argv, user=self.user, cwd=self.base, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"pg_basebackup exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        os.chmod(self.data, 0o700)  # PostgreSQL refuses a data directory others can read
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.data, entry.pw_uid, entry.pw_gid)
        return self

    def query(self, sql: str, name: str = "postgres") -> object:
        with self.connect(name) as conn:
            row = conn.execute(sql).fetchone()
            return row[0] if row else None

    def replayed(self) -> int:
        """The WAL position this standby has replayed."""
        return lsn_value(str(self.query("SELECT pg_last_wal_replay_lsn()::text")))

    def pause_replay(self) -> None:
        self.query("SELECT pg_wal_replay_pause()")
        wait_until(
            lambda: self.query("SELECT pg_get_wal_replay_pause_state()") == "paused",
            timeout=10,
            message="replay paused",
        )

    def resume_replay(self) -> None:
        self.query("SELECT pg_wal_replay_resume()")

    def wait_for(self, lsn: int, timeout: float = 30.0) -> None:
        """Until this standby has replayed ``lsn``."""
        wait_until(lambda: self.replayed() >= lsn, timeout=timeout, interval=0.05, message=f"replay of {lsn:x}")

    def caught_up(self, timeout: float = 30.0) -> None:
        """Until this standby has replayed everything the primary has written so far."""
        with self.primary.connect() as conn:
            target = lsn_value(str(conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0]))  # type: ignore[index]  # one row
        self.wait_for(target, timeout)
