"""One turn at a time per session: across the threads of a process, and across processes.

Inside a process a lock per session id serialises threads. Across processes it is the database's
job: PostgreSQL gets an advisory lock keyed by the session id, held on a connection of its own
for the whole turn (the server frees it if the process dies); SQLite, a local file, gets a file
lock per session next to the database.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock
from sqlalchemy import Engine, text


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("utf-8")).digest()


class SessionLocks:
    def __init__(self, engine: Engine, lock_dir: Path | None) -> None:
        self._engine = engine
        self._lock_dir = lock_dir
        self._guard = threading.Lock()
        self._local: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, session_id: str) -> Iterator[None]:
        with self._thread_lock(session_id), self._process_lock(session_id):
            yield

    @contextmanager
    def _thread_lock(self, session_id: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._local.get(session_id, (threading.Lock(), 0))
            self._local[session_id] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._local[session_id]
                if users == 1:
                    del self._local[session_id]
                else:
                    self._local[session_id] = (lock, users - 1)

    @contextmanager
    def _process_lock(self, session_id: str) -> Iterator[None]:
        if self._engine.dialect.name == "postgresql":
            key = int.from_bytes(_digest(session_id)[:8], "big", signed=True)
            with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        elif self._lock_dir is not None:
            self._lock_dir.mkdir(parents=True, exist_ok=True)
            with FileLock(self._lock_dir / f"{_digest(session_id).hex()[:32]}.lock"):
                yield
        else:  # an in-memory database lives in one process only
            yield
