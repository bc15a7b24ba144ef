"""Uploaded files and fine-tuning jobs, with their events and checkpoints, in the server's database.

File contents live in the data folder (``<data>/files/<id>``); everything else in SQL, so that jobs
survive a restart of the server. A server passes the conversation store's engine, so both share
one pool. Objects come out in OpenAI's shapes (plain dicts).
"""

from __future__ import annotations

import io
import os
import time
import uuid
from pathlib import Path
from typing import Any, BinaryIO

from sqlalchemy import JSON, Engine, Float, Integer, String, Text, func, select, tuple_, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from chatbot.database import create_tables, open_engine
from chatbot.errors import ChatbotError
from chatbot.files import sync_folder

ACTIVE = ("validating_files", "queued", "running")
ORPHAN_GRACE_S = 5.0  # a file without a row younger than this may be another server's upload about to commit
FINAL = ("succeeded", "failed", "cancelled")


class _Base(DeclarativeBase):
    pass


class _File(_Base):
    __tablename__ = "ft_files"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    filename: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(32))
    bytes: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[int] = mapped_column(Integer)


class _Job(_Base):
    __tablename__ = "ft_jobs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[int] = mapped_column(Integer, index=True)
    status: Mapped[str] = mapped_column(String(32), index=True)
    body: Mapped[dict[str, Any]] = mapped_column(JSON)  # the job object as the API shows it
    owner: Mapped[str | None] = mapped_column(String(128), nullable=True)  # the worker running it: see worker_id()
    heartbeat_at: Mapped[float | None] = mapped_column(Float, nullable=True)  # when its worker last said it was alive


class _Event(_Base):
    __tablename__ = "ft_events"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(64), unique=True)
    job_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[int] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class _Checkpoint(_Base):
    __tablename__ = "ft_checkpoints"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(255))
    step: Mapped[int] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)


class FileTooLarge(ChatbotError):
    """An upload past the size limit."""


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def alive(pid: int) -> bool:
    """Whether process *pid* runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class JobStore:
    def __init__(self, db: Engine | str, data_dir: Path) -> None:
        """*db*: the engine to share (a server's conversation store's), or a database URL."""
        self.engine = db if isinstance(db, Engine) else open_engine(db)
        self.files_dir = data_dir / "files"
        self.files_dir.mkdir(parents=True, exist_ok=True)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        create_tables(self.engine, _Base.metadata, 727211)
        self._remove_half_written()

    def _remove_half_written(self) -> None:
        """What a kill left in the files folder: uploads not yet renamed whose process has ended, and
        files without a row (older than ``ORPHAN_GRACE_S``: another server sharing the folder may be
        between renaming one and committing its row)."""
        for tmp in self.files_dir.glob(".file-*.tmp"):
            pid = tmp.name.split(".")[-2]
            if not pid.isdigit() or int(pid) == os.getpid() or not alive(int(pid)):
                tmp.unlink(missing_ok=True)
        with self._session() as db:
            known = set(db.scalars(select(_File.id)))
        for path in self.files_dir.glob("file-*.jsonl"):
            if path.stem not in known and _age(path) > ORPHAN_GRACE_S:
                path.unlink(missing_ok=True)

    # -- files -------------------------------------------------------------------------------------

    def add_file(self, filename: str, purpose: str, content: bytes | BinaryIO, *, limit: int | None = None) -> dict[str, Any]:
        """Store *content* (bytes, or a binary file read in chunks) as a new file; :class:`FileTooLarge` past *limit* bytes.

        The content is written to a temporary name, synced, renamed into place and the folder synced
        before its row is committed: after a kill there is at most a file without a row, never a
        row without its file.
        """
        file_id = new_id("file")
        tmp, size = self.files_dir / f".{file_id}.{os.getpid()}.tmp", 0
        source = io.BytesIO(content) if isinstance(content, bytes) else content
        try:
            with open(tmp, "wb") as out:
                while chunk := source.read(1 << 20):
                    size += len(chunk)
                    if limit is not None and size > limit:
                        raise FileTooLarge(f"the file is larger than {limit:,} bytes")
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.file_path(file_id))
        finally:
            tmp.unlink(missing_ok=True)
        sync_folder(self.files_dir)
        row = _File(id=file_id, filename=filename, purpose=purpose, bytes=size, created_at=int(time.time()))
        with self._session.begin() as db:
            db.add(row)
        return _file(row)

    def stored_bytes(self) -> int:
        """The size of every file stored."""
        with self._session() as db:
            return int(db.scalar(select(func.coalesce(func.sum(_File.bytes), 0))) or 0)

    def rows(self, file_id: str) -> int:
        """The non-blank lines of a stored file (its examples, for JSON Lines)."""
        with open(self.file_path(file_id), "rb") as handle:
            return sum(1 for line in handle if line.strip())

    def file(self, file_id: str) -> dict[str, Any] | None:
        with self._session() as db:
            row = db.get(_File, file_id)
            return _file(row) if row else None

    def file_path(self, file_id: str) -> Path:
        """Where the content is: files for fine-tuning are JSON Lines."""
        return self.files_dir / f"{file_id}.jsonl"

    def files(self, purpose: str | None = None) -> list[dict[str, Any]]:
        query = select(_File).order_by(_File.created_at.desc())
        if purpose:
            query = query.where(_File.purpose == purpose)
        with self._session() as db:
            return [_file(row) for row in db.scalars(query)]

    def jobs_using(self, file_id: str) -> list[str]:
        """The jobs that have not ended and train on (or validate with) the file."""
        with self._session() as db:
            rows = db.scalars(select(_Job).where(_Job.status.in_(ACTIVE)))
            return [r.id for r in rows if file_id in (r.body.get("training_file"), r.body.get("validation_file"))]

    def delete_file(self, file_id: str) -> bool:
        with self._session.begin() as db:
            row = db.get(_File, file_id)
            if row is None:
                return False
            db.delete(row)
        self.file_path(file_id).unlink(missing_ok=True)
        return True

    # -- jobs --------------------------------------------------------------------------------------

    def add_job(self, body: dict[str, Any], event: str | None = None) -> dict[str, Any]:
        """Store a new job and, in the same transaction, its first event (before any the worker adds)."""
        with self._session.begin() as db:
            db.add(_Job(id=body["id"], created_at=body["created_at"], status=body["status"], body=body))
            if event:
                db.add(_event(body["id"], event))
        return body

    def job(self, job_id: str) -> dict[str, Any] | None:
        with self._session() as db:
            row = db.get(_Job, job_id)
            return dict(row.body) if row else None

    def jobs(self, *, after: str | None = None, limit: int = 20) -> tuple[list[dict[str, Any]], bool]:
        """Newest first; *after* is the id of the last job of the previous page (one page read, in SQL)."""
        query = select(_Job).order_by(_Job.created_at.desc(), _Job.id.desc()).limit(limit + 1)
        with self._session() as db:
            if after:
                last = db.get(_Job, after)
                if last is None:
                    return [], False
                query = query.where(tuple_(_Job.created_at, _Job.id) < tuple_(last.created_at, last.id))
            rows = list(db.scalars(query))
        return [dict(r.body) for r in rows[:limit]], len(rows) > limit

    def update_job(self, job_id: str, *, only_if: tuple[str, ...] | None = None, owner: str | None = None,
                   **changes: Any) -> dict[str, Any] | None:
        """Change fields of the job; with *only_if*, only while its status is one of those. Returns the job, or None if unchanged.

        *owner*: the worker taking the job (its heartbeat starts now).
        """
        with self._session.begin() as db:
            # Compare and set in one UPDATE: it takes the write lock (SQLite) or the row lock
            # (PostgreSQL) before the status is tested, so a cancel and the worker never both win,
            # and of several servers sharing the database exactly one claims a queued job.
            claim = update(_Job).where(_Job.id == job_id).values(status=changes.get("status", _Job.status))
            if owner is not None:
                claim = claim.values(owner=owner, heartbeat_at=time.time())
            if only_if:
                claim = claim.where(_Job.status.in_(only_if))
            if db.execute(claim.execution_options(synchronize_session=False)).rowcount == 0:
                return None
            row = db.get(_Job, job_id)
            row.body = {**row.body, **changes}
            return dict(row.body)

    def next_queued(self) -> dict[str, Any] | None:
        with self._session() as db:
            row = db.scalars(select(_Job).where(_Job.status.in_(("validating_files", "queued"))).order_by(_Job.created_at, _Job.id)).first()
            return dict(row.body) if row else None

    def counts(self) -> dict[str, int]:
        """How many jobs are in each status."""
        with self._session() as db:
            return {status: int(n) for status, n in db.execute(select(_Job.status, func.count()).group_by(_Job.status))}

    def beat(self, job_id: str, owner: str) -> str | None:
        """*owner* is still running the job: its heartbeat is now. Returns the job's status (``cancelled``
        when another server cancelled it), or None when *owner* no longer holds it."""
        with self._session.begin() as db:
            held = db.execute(update(_Job).where(_Job.id == job_id, _Job.owner == owner).values(heartbeat_at=time.time())
                              .execution_options(synchronize_session=False)).rowcount
            return db.scalar(select(_Job.status).where(_Job.id == job_id)) if held else None

    def running(self) -> list[tuple[dict[str, Any], str | None, float | None]]:
        """Each running job, with its worker (``owner``) and the time of that worker's last heartbeat."""
        with self._session() as db:
            return [(dict(r.body), r.owner, r.heartbeat_at) for r in db.scalars(select(_Job).where(_Job.status == "running"))]

    def take_over(self, job_id: str, gone: str | None, owner: str) -> bool:
        """Hand a running job from its gone worker to *owner*; False when another server took it first."""
        with self._session.begin() as db:
            match = _Job.owner.is_(None) if gone is None else _Job.owner == gone
            taken = update(_Job).where(_Job.id == job_id, _Job.status == "running", match).values(owner=owner, heartbeat_at=time.time())
            return db.execute(taken.execution_options(synchronize_session=False)).rowcount == 1

    # -- events and checkpoints ----------------------------------------------------------------------

    def add_event(self, job_id: str, message: str, *, level: str = "info", type: str = "message", data: dict[str, Any] | None = None) -> None:
        with self._session.begin() as db:
            db.add(_event(job_id, message, level=level, type=type, data=data))

    def events(self, job_id: str, *, after: str | None = None, limit: int = 20) -> tuple[list[dict[str, Any]], bool]:
        """Newest first, as OpenAI lists them (one page read, in SQL)."""
        query = select(_Event).where(_Event.job_id == job_id).order_by(_Event.seq.desc()).limit(limit + 1)
        with self._session() as db:
            if after:
                last = db.scalar(select(_Event.seq).where(_Event.id == after, _Event.job_id == job_id))
                if last is None:
                    return [], False
                query = query.where(_Event.seq < last)
            rows = list(db.scalars(query))
        return [{"id": r.id, "object": "fine_tuning.job.event", "created_at": r.created_at, "level": r.level, "message": r.message,
                 "type": r.type, "data": r.data} for r in rows[:limit]], len(rows) > limit

    def add_checkpoint(self, job_id: str, model: str, step: int, metrics: dict[str, Any]) -> None:
        """Record the checkpoint of *model*, once (a job finished again after a restart adds none)."""
        with self._session.begin() as db:
            if db.scalar(select(_Checkpoint.id).where(_Checkpoint.job_id == job_id, _Checkpoint.model == model)) is not None:
                return
            db.add(_Checkpoint(id=new_id("ftckpt"), job_id=job_id, created_at=int(time.time()), model=model, step=step, metrics=metrics))

    def checkpoints(self, job_id: str) -> list[dict[str, Any]]:
        with self._session() as db:
            rows = list(db.scalars(select(_Checkpoint).where(_Checkpoint.job_id == job_id).order_by(_Checkpoint.step.desc())))
        return [{"id": r.id, "object": "fine_tuning.job.checkpoint", "created_at": r.created_at, "fine_tuned_model_checkpoint": r.model,
                 "fine_tuning_job_id": r.job_id, "metrics": r.metrics, "step_number": r.step} for r in rows]


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _event(job_id: str, message: str, *, level: str = "info", type: str = "message", data: dict[str, Any] | None = None) -> _Event:
    return _Event(id=new_id("ftevent"), job_id=job_id, created_at=int(time.time()), level=level, message=message, type=type, data=data or {})


def _file(row: _File) -> dict[str, Any]:
    return {"id": row.id, "object": "file", "bytes": row.bytes, "created_at": row.created_at, "filename": row.filename,
            "purpose": row.purpose, "status": "processed", "status_details": None}
