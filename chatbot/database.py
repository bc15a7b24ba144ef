"""The one database engine factory: conversations and fine-tuning jobs share a server's engine and pool.

An SQLite file by default (WAL, full sync, foreign keys on), PostgreSQL by URL when several
processes serve one bot. Tables are created on open; on PostgreSQL under an advisory lock, since
several processes may start at once. A column added to a table in a later release is added to the tables
of an existing database on open (new columns are always nullable), so an old database keeps working.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, create_engine, event, inspect, text
from sqlalchemy.exc import ArgumentError, OperationalError

from chatbot.defaults import DB_ENV
from chatbot.errors import ChatbotError


def database_url(db: str | None, data_dir: Path) -> str:
    """*db* (a URL or an SQLite file path), else ``$CHATBOT_DB``, else ``<data_dir>/chatbot.db``."""
    db = db or os.environ.get(DB_ENV)
    if not db:
        return f"sqlite:///{(data_dir / 'chatbot.db').resolve()}"
    return db if "://" in db else f"sqlite:///{Path(db).resolve()}"


def open_engine(url: str) -> Engine:
    """An engine for *url*; a clear error when the URL or its driver is wrong."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        # A turn holds one connection for its session's advisory lock and takes a second to read and
        # write: room for both in each of a server's 32 worker threads (``create_app(workers=...)``).
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=70)
    except (ArgumentError, ImportError) as exc:
        hint = ("PostgreSQL needs the [postgres] extra: pip install 'chatbot[postgres]'" if "psycopg" in str(exc)
                else "pass e.g. sqlite:///chat.db or postgresql+psycopg://user@host/db")
        raise ChatbotError(f"cannot use database {url!r}: {exc}", hint=hint) from None


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
    cursor.execute("PRAGMA synchronous=FULL")  # a committed row survives a power cut
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_tables(engine: Engine, metadata: MetaData, lock_key: int) -> None:
    """Create *metadata*'s missing tables; on PostgreSQL one process at a time (advisory lock *lock_key*)."""
    try:
        with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(text(f"SELECT pg_advisory_xact_lock({int(lock_key)})"))
            metadata.create_all(conn)
            _add_new_columns(conn, metadata)
    except OperationalError as exc:
        raise ChatbotError(f"cannot open database {engine.url.render_as_string(hide_password=True)}: {exc.orig}",
                           hint="check the URL, that the server runs and that the folder is writable") from None


def _add_new_columns(conn: Connection, metadata: MetaData) -> None:
    """``ALTER TABLE … ADD COLUMN`` for each nullable column of *metadata* that an existing table lacks."""
    existing = inspect(conn)
    for table in metadata.sorted_tables:
        have = {column["name"] for column in existing.get_columns(table.name)}
        for column in table.columns:
            if column.name not in have and column.nullable:
                kind = column.type.compile(dialect=conn.dialect)
                conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column.name}" {kind}'))
