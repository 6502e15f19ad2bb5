"""The embedded ledger: the contract run over a SQLite file.

Several site services on one machine share one file. Each transaction runs
inside ``BEGIN IMMEDIATE``, which takes SQLite's write lock before reading,
so concurrent writers are serialised and no update is lost. Every
transaction, accepted or refused, is appended to ``txlog`` for audit.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from sn_service import contract
from sn_service.ledger.base import ContractError, Ledger, LedgerUnavailable

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


class EmbeddedLedger(Ledger):
    """The contract over a SQLite file shared by the sites of one machine.

    Args:
        path: the SQLite file; created with its parent folder if missing.
        identity: the caller identity of every transaction from this object.
        clock_ms: the transaction timestamp source (tests pass their own).
        busy_timeout_s: how long to wait for another writer's lock.
    """

    def __init__(
        self,
        path: str | Path,
        identity: str,
        clock_ms: Any = None,
        busy_timeout_s: float = 30.0,
    ) -> None:
        self.path = Path(path)
        self.identity = identity
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._busy_timeout_s = busy_timeout_s
        self._local = threading.local()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=True)
        conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_s * 1000)}")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _conn(self) -> sqlite3.Connection:
        # One connection per thread: sqlite3 connections must not be shared.
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
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
