"""Writing files so that a crash leaves the old content or the new, never a mix; hashing them.

Every file the package writes in place (``models.yaml``, JSONL outputs, router state) goes through
:func:`atomic_write`: a temporary file in the same folder, flushed to disk, given the mode the user
expects (the old file's, or what the umask gives a new one, not mkstemp's 0600), then renamed over
the target, and the folder synced so the rename itself survives a power cut.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode(path: Path) -> int:
    """The permissions for *path*: those it has, or what the umask gives a new file."""
    if path.exists():
        return path.stat().st_mode & 0o777
    return 0o666 & ~umask()


def sync_folder(folder: Path) -> None:
    """Make a rename or a new file in *folder* durable (a no-op where folders can't be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Create or replace *path* with what ``write(handle)`` writes to a binary handle, atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, file_mode(target))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    sync_folder(target.parent)
    return target


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`atomic_write` of UTF-8 *text*, with ``\\n`` line ends on every platform."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
