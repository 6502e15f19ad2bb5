"""The embedded ledger: the contract run over a SQLite file.

Several site services on one machine share one file. Each transaction runs
inside ``BEGIN IMMEDIATE``, which takes SQLite's write lock before reading,
so concurrent writers are serialised and no update is lost. Every
transaction, accepted or refused, is appended to ``txlog`` for audit.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from sn_service import contract
from sn_service.ledger.base import ContractError, Ledger, LedgerUnavailable, now_ms

_SCHEMA = """
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS txlog (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts_ms INTEGER NOT NULL,
    caller TEXT NOT NULL,
    fn TEXT NOT NULL,
    args TEXT NOT NULL,
    outcome TEXT NOT NULL
);
"""


_NOT_CREATED = (
    "a new empty ledger would lose the swarm's history, so none is made; a new swarm's first "
    "swarm-sn creates it (with an empty --data-dir)"
)


class LedgerMissing(LedgerUnavailable):
    """The embedded ledger's file does not exist (deleted, moved, or a wrong path)."""


class EmbeddedLedger(Ledger):
    """The contract over a SQLite file shared by the sites of one machine.

    Args:
        path: the SQLite file.
        identity: the caller identity of every transaction from this object.
        clock_ms: the transaction timestamp source (tests pass their own).
        busy_timeout_s: how long to wait for another writer's lock.
        create: make the file (and its folder) if it does not exist; with False
            a missing file is ``LedgerMissing``. Only a new swarm creates its
            ledger: a tool that reads one, or a site that has joined tasks on
            it, must never silently start an empty history.

    Once open, a ledger whose file is deleted or moved answers every
    transaction with ``LedgerUnavailable`` naming the file (never with an
    empty new ledger in its place); a file put back in place is used again.
    """

    def __init__(
        self,
        path: str | Path,
        identity: str,
        clock_ms: Any = None,
        busy_timeout_s: float = 30.0,
        create: bool = True,
    ) -> None:
        self.path = Path(path)
        self.identity = identity
        self._clock_ms = clock_ms or now_ms
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        if not self.path.is_file():
            if not create:
                raise LedgerMissing(f"no embedded ledger at {self.path}: {_NOT_CREATED}")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = self._connect(create=create)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
        finally:
            conn.close()

    def _connect(self, create: bool = False) -> sqlite3.Connection:
        # mode=rw: a connection never creates the file, so a deleted ledger is an error, not a new empty one.
        uri = f"{self.path.resolve().as_uri()}?mode={'rwc' if create else 'rw'}"
        try:
            conn = sqlite3.connect(
                uri, uri=True, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=True
            )
        except sqlite3.OperationalError as exc:
            raise self._gone(exc) from exc
        conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_s * 1000)}")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _gone(self, cause: object) -> LedgerUnavailable:
        if self.path.is_file():
            return LedgerUnavailable(f"embedded ledger {self.path}: {cause}")
        return LedgerMissing(
            f"the embedded ledger file {self.path} is gone (deleted or moved): put it back (e.g. from a backup) "
            f"and the swarm carries on; {_NOT_CREATED}"
        )

    def _conn(self) -> sqlite3.Connection:
        # One connection per thread: sqlite3 connections must not be shared. An open connection keeps
        # a deleted file's data readable, so each transaction first checks the file is still the one
        # this connection opened.
        try:
            inode = os.stat(self.path).st_ino
        except FileNotFoundError:
            self.close()
            raise self._gone("file not found") from None
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "inode", None) != inode:
            self.close()  # the file was replaced (restored from a backup): read the new one
            conn = None
        if conn is None:
            conn = self._connect()
            self._local.conn, self._local.inode = conn, inode
        return conn

    def _run(self, fn: str, args: tuple, write: bool) -> dict:
        conn = self._conn()
        ts = self._clock_ms()

        def read(key: str) -> dict | None:
            row = conn.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
            return json.loads(row[0]) if row else None

        view = contract.StateView(read)
        try:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.OperationalError as exc:
            raise LedgerUnavailable(f"embedded ledger {self.path}: {exc}") from exc
        try:
            try:
                result = contract.execute(view, fn, list(args), self.identity, ts)
            except ContractError as exc:
                if write:
                    self._log(conn, ts, fn, args, f"refused {exc.code}")
                    conn.execute("COMMIT")
                else:
                    conn.execute("ROLLBACK")
                raise
            if write:
                conn.executemany(
                    "INSERT INTO state(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    [(k, json.dumps(v, sort_keys=True)) for k, v in view.writes.items()],
                )
                self._log(conn, ts, fn, args, "ok")
            conn.execute("COMMIT")
            return result
        except ContractError:
            raise
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise LedgerUnavailable(f"embedded ledger {self.path}: {exc}") from exc

    def _log(self, conn: sqlite3.Connection, ts: int, fn: str, args: tuple, outcome: str) -> None:
        conn.execute(
            "INSERT INTO txlog(ts_ms, caller, fn, args, outcome) VALUES(?, ?, ?, ?, ?)",
            (ts, self.identity, fn, json.dumps(args, default=str), outcome),
        )

    def invoke(self, fn: str, *args: Any) -> dict:
        """Runs a transaction under SQLite's write lock and commits its writes."""
        return self._run(fn, args, write=True)

    def query(self, fn: str, *args: Any) -> dict:
        """Runs a query in a read transaction."""
        return self._run(fn, args, write=False)

    def close(self) -> None:
        """Closes this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
