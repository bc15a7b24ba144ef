"""Adapter folders put in place so that a kill leaves the old adapter or the new one, never none.

A local skill's adapter lives in ``adapters/NAME`` beside ``models.yaml``. Training writes the new
one into ``adapters/NAME.tmp``, with a file ``chatbot.json`` that names it by a fresh id. Then, under
the registry's lock, :func:`install` renames the old folder to ``NAME.old`` and the new one into
place, and the registry, saved in the same locked step, records the new id
(``training.adapter_id``). The old folder is removed once the registry is saved.

Whatever a kill interrupts, :func:`repair`, run under the same lock each time the registry is edited
and when a bot is built, reads the ids and keeps exactly the adapter that the registry names: the new
one when the registry was saved, else the old one. A ``NAME.tmp`` is left to the next training.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from chatbot.files import atomic_write_text, sync_folder

MARKER = "chatbot.json"
log = logging.getLogger(__name__)


def staging(final: Path) -> Path:
    """An empty ``NAME.tmp`` beside *final* for the new adapter (what a killed training left there is removed)."""
    staged = final.with_name(final.name + ".tmp")
    shutil.rmtree(staged, ignore_errors=True)
    return staged


def replaced(final: Path) -> Path:
    return final.with_name(final.name + ".old")


def adapter_id(folder: Path) -> str | None:
    """The id in *folder*'s ``chatbot.json``; None when it has none (trained before ids, or not an adapter of ours)."""
    try:
        value = json.loads((folder / MARKER).read_text(encoding="utf-8")).get("adapter_id")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def seal(folder: Path, **info: Any) -> str:
    """Give the staged adapter in *folder* a fresh id (returned), and sync its files to disk."""
    new_id = uuid.uuid4().hex
    atomic_write_text(folder / MARKER, json.dumps({"adapter_id": new_id} | info, indent=2) + "\n")
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
        elif path.is_dir():
            sync_folder(path)
    sync_folder(folder)
    return new_id


def install(staged: Path, final: Path) -> Path | None:
    """Put *staged* in *final*'s place; the adapter it replaces is kept as ``NAME.old`` (returned) until :func:`discard`.

    Call it under the registry's lock, and record the new id in the registry in the same locked step.
    """
    old = replaced(final)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    else:
        old = None
    os.replace(staged, final)
    sync_folder(final.parent)
    return old


def discard(old: Path | None) -> None:
    """Remove the adapter that :func:`install` replaced, once the registry naming the new one is saved."""
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
        sync_folder(old.parent)


def repair(final: Path, expected: str | None) -> str | None:
    """After a kill: keep at *final* the adapter whose id the registry records (*expected*). Says what it did, if anything.

    Call it under the registry's lock, so that no :func:`install` runs meanwhile.
    """
    old = replaced(final)
    if not old.exists():
        return None
    if final.exists() and adapter_id(final) == expected:  # the registry was saved: the swap is done
        discard(old)
        return f"{final}: removed the adapter it replaced ({old.name})"
    if adapter_id(old) == expected:  # killed before the registry was saved: the old adapter is still the registered one
        if final.exists():
            aside = final.with_name(final.name + ".unregistered")
            shutil.rmtree(aside, ignore_errors=True)
            os.replace(final, aside)
            os.replace(old, final)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            os.replace(old, final)
        sync_folder(final.parent)
        return f"{final}: put back the registered adapter (a training was stopped before it was registered)"
    log.warning("adapter repair: neither %s nor %s has the id the registry records (%s); left as they are", final, old, expected)
    return None
