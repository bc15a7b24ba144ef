"""On-disk caches of the router: embeddings keyed by content hash, and fitted state written atomically.

Embeddings live in one SQLite file (``embeddings.sqlite``), one row per sha256(encoder id + text):
SQLite serialises concurrent writers, so two processes filling the same cache are safe. Fitted router
state (numpy arrays, a fine-tuned encoder folder) is written to a temporary name in the same folder
and then renamed, so a reader sees the whole thing or nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from chatbot.defaults import CACHE_ENV, cache_dir, data_dir
from chatbot.files import atomic_write, umask


def default_cache_dir(registry_path: str | os.PathLike[str] | None = None) -> Path:
    """``$CHATBOT_CACHE/routing``, else ``.chatbot/cache`` next to the registry, else ``~/.cache/chatbot/routing``."""
    if os.environ.get(CACHE_ENV):
        return cache_dir() / "routing"
    if registry_path is not None:
        return data_dir(registry_path) / "cache"
    return cache_dir() / "routing"


def digest(*parts: Any) -> str:
    """sha256 of *parts* serialised as canonical JSON."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def text_key(encoder_id: str, text: str) -> str:
    return hashlib.sha256(f"{encoder_id}\0{text}".encode()).hexdigest()


def _retry(call: Callable[[], Any], attempts: int = 200) -> Any:
    """*call*, tried again while another process holds the database (busy timeouts don't cover every case)."""
    for attempt in range(attempts):
        try:
            return call()
        except sqlite3.OperationalError as exc:
            if attempt == attempts - 1 or not any(word in str(exc) for word in ("locked", "busy")):
                raise
            time.sleep(0.01 * (1 + attempt % 20))
    raise AssertionError("unreachable")


class EmbeddingCache:
    """Embeddings stored by ``sha256(encoder id + text)`` in ``FOLDER/embeddings.sqlite``."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.path = self.folder / "embeddings.sqlite"
        self._db: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=60, check_same_thread=False, isolation_level=None)
            if _retry(lambda: db.execute("PRAGMA journal_mode").fetchone()[0]) != "wal":
                _retry(lambda: db.execute("PRAGMA journal_mode=WAL").fetchone())
            _retry(lambda: db.execute("CREATE TABLE IF NOT EXISTS embedding (key TEXT PRIMARY KEY, dim INTEGER, vector BLOB)"))
            self._db = db
        return self._db

    def get_many(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        db, found = self._connect(), {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start:start + 500])
            marks = ",".join("?" * len(chunk))
            for key, dim, blob in db.execute(f"SELECT key, dim, vector FROM embedding WHERE key IN ({marks})", chunk):
                found[key] = np.frombuffer(blob, dtype=np.float32, count=dim)
        return found

    def put_many(self, items: Iterable[tuple[str, np.ndarray]]) -> None:
        rows = [(key, int(v.shape[0]), np.ascontiguousarray(v, dtype=np.float32).tobytes()) for key, v in items]
        if rows:
            db = self._connect()

            def write() -> None:
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.executemany("INSERT OR IGNORE INTO embedding VALUES (?, ?, ?)", rows)
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise

            _retry(write)

    def __len__(self) -> int:
        return self._connect().execute("SELECT COUNT(*) FROM embedding").fetchone()[0]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def save_arrays(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write arrays plus a JSON header to *path* (``.npz``) atomically."""
    atomic_write(path, lambda handle: np.savez(handle, __meta__=np.array(json.dumps(meta)), **arrays))


def load_arrays(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """What :func:`save_arrays` wrote, or None when missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files if k != "__meta__"}
            return arrays, json.loads(str(data["__meta__"]))
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None


def build_folder(target: Path, write: Callable[[Path], None]) -> Path:
    """Create folder *target* by calling ``write(tmp)`` on a temporary folder, then renaming it."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        write(tmp)
        os.chmod(tmp, 0o777 & ~umask())
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first: keep its copy
            if not target.exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
