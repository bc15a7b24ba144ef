"""Where turns are stored: SQLAlchemy over an SQLite file by default, PostgreSQL by URL.

Every turn is written in one transaction (the turn, the session's entities, its timestamp) and
committed before the reply goes back to the caller, so a crash loses at most the turn in flight,
never a committed one. ``locked(session_id)`` serialises turns of one session across threads and
processes (see :mod:`chatbot.conversation.locks`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Engine, Float, ForeignKey, Integer, String, Text, UniqueConstraint, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from chatbot.conversation.locks import SessionLocks
from chatbot.conversation.records import Session, SessionInfo, Timings, Turn, fill_slots
from chatbot.database import create_tables, database_url, open_engine
from chatbot.defaults import DATA_DIR
from chatbot.errors import ChatbotError

MAX_SESSION_ID = 200


class _Base(DeclarativeBase):
    pass


class _SessionRow(_Base):
    __tablename__ = "chat_sessions"
    id: Mapped[str] = mapped_column(String(MAX_SESSION_ID), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    entities: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class _TurnRow(_Base):
    __tablename__ = "chat_turns"
    __table_args__ = (UniqueConstraint("session_id", "position"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("chat_sessions.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    user_text: Mapped[str] = mapped_column(Text)
    reply: Mapped[str] = mapped_column(Text)
    skill: Mapped[str | None] = mapped_column(String(64), nullable=True)
    score: Mapped[float] = mapped_column(Float, default=0.0)
    fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    label: Mapped[str | None] = mapped_column(String(200), nullable=True)
    entities: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    asked: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # added later: nullable, added to old databases on open
    awaiting: Mapped[str | None] = mapped_column(String(200), nullable=True)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _turn(row: _TurnRow) -> Turn:
    return Turn(index=row.position, user=row.user_text, reply=row.reply, skill=row.skill, score=row.score,
                fallback=row.fallback, label=row.label, entities=row.entities or {},
                timings=Timings(**(row.timings or {})), created_at=_utc(row.created_at), asked=row.asked or [],
                awaiting=row.awaiting)


def check_session_id(session_id: str) -> str:
    if not session_id or len(session_id) > MAX_SESSION_ID or not session_id.isprintable():
        raise ChatbotError(f"invalid session id {session_id[:40]!r}", hint=f"use 1 to {MAX_SESSION_ID} printable characters")
    return session_id


class ConversationStore:
    """Sessions and their turns in a SQL database."""

    def __init__(self, url: str, *, lock_dir: Path | None = None) -> None:
        self.url = url
        self.engine: Engine = open_engine(url)
        if self.engine.dialect.name == "sqlite" and lock_dir is None and self.engine.url.database not in (None, "", ":memory:"):
            lock_dir = Path(self.engine.url.database).parent / "locks"
        self._locks = SessionLocks(self.engine, lock_dir)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        create_tables(self.engine, _Base.metadata, 727210)

    @classmethod
    def open(cls, db: str | None = None, data_dir: str | os.PathLike[str] = DATA_DIR) -> ConversationStore:
        folder = Path(data_dir)
        url = database_url(db, folder)
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return cls(url)

    @contextmanager
    def locked(self, session_id: str) -> Iterator[None]:
        """Hold *session_id* for one turn: other threads and processes wait."""
        with self._locks.hold(check_session_id(session_id)):
            yield

    def append(self, session_id: str, *, user: str, reply: str, skill: str | None = None, score: float = 0.0,
               fallback: bool = False, label: str | None = None, entities: dict[str, list[str]] | None = None,
               timings: Timings | None = None, asked: list[str] | None = None, awaiting: str | None = None) -> tuple[Turn, dict[str, list[str]]]:
        """Commit one turn; returns it and the session's entities after it."""
        check_session_id(session_id)
        now = datetime.now(timezone.utc)
        with self._session.begin() as db:
            row = db.get(_SessionRow, session_id)
            if row is None:
                row = _SessionRow(id=session_id, created_at=now, updated_at=now, entities={})
                db.add(row)
                db.flush()
            position = db.scalar(select(func.count()).where(_TurnRow.session_id == session_id)) or 0
            turn = _TurnRow(session_id=session_id, position=position, user_text=user, reply=reply, skill=skill, score=float(score),
                            fallback=fallback, label=label, entities=entities or {}, timings=(timings or Timings()).model_dump(),
                            created_at=now, asked=asked or None, awaiting=awaiting)
            db.add(turn)
            row.entities = fill_slots(row.entities or {}, entities or {})
            row.updated_at = now
            db.flush()
            return _turn(turn), dict(row.entities)

    def history(self, session_id: str, last: int | None = None) -> list[Turn]:
        """The session's turns in order (only the *last* ones if given); empty for an unknown session."""
        query = select(_TurnRow).where(_TurnRow.session_id == session_id).order_by(_TurnRow.position.desc())
        if last is not None:
            query = query.limit(last)
        with self._session() as db:
            return [_turn(row) for row in reversed(db.scalars(query).all())]

    def get(self, session_id: str) -> Session | None:
        with self._session() as db:
            row = db.get(_SessionRow, session_id)
            if row is None:
                return None
            turns = self.history(session_id)
            return Session(id=row.id, created_at=_utc(row.created_at), updated_at=_utc(row.updated_at), turns=len(turns),
                           entities=row.entities or {}, history=turns)

    def entities(self, session_id: str) -> dict[str, list[str]]:
        with self._session() as db:
            row = db.get(_SessionRow, session_id)
            return dict(row.entities or {}) if row else {}

    def sessions(self) -> list[SessionInfo]:
        """Every session, the most recently active first."""
        counts = select(_TurnRow.session_id, func.count().label("n")).group_by(_TurnRow.session_id).subquery()
        query = (select(_SessionRow, func.coalesce(counts.c.n, 0))
                 .outerjoin(counts, counts.c.session_id == _SessionRow.id)
                 .order_by(_SessionRow.updated_at.desc()))
        with self._session() as db:
            return [SessionInfo(id=row.id, created_at=_utc(row.created_at), updated_at=_utc(row.updated_at), turns=n)
                    for row, n in db.execute(query).all()]

    def delete(self, session_id: str) -> bool:
        """Remove a session and its turns; False if there was none."""
        with self._session.begin() as db:
            row = db.get(_SessionRow, session_id)
            if row is None:
                return False
            db.query(_TurnRow).filter(_TurnRow.session_id == session_id).delete()
            db.delete(row)
            return True

    def close(self) -> None:
        self.engine.dispose()
