"""Run one training in this process and kill it (SIGKILL) at a named point: the crash tests' subject.

    python tests/kill_at.py POINT retrain REGISTRY DATA BASE    # `chatbot train NAME --force` of the skill "shop"
    python tests/kill_at.py POINT job REGISTRY DB_URL            # a server's worker running the queued job
    python tests/kill_at.py POINT training-process               # (started by that worker: its training)

POINT is one of POINTS; the process kills itself there, as a power cut or an OOM kill would.
It exits 0 when the training ends without reaching the point. A job trains in a process of its
own, started as this script in mode ``training-process``: that process is armed too, and at the
point it kills the server's process, which takes it down with it, as a power cut takes both.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

POINTS = {
    "training": "in the last epoch, before the adapter is written",
    "staged": "the new adapter written beside the old one, not yet in place",
    "renaming": "between the two renames that swap the adapters",
    "installed": "the new adapter in place, models.yaml not yet saved",
    "registered": "models.yaml saved, the replaced adapter not yet removed",
    "serving": "the job's model registered and served, the job not yet marked succeeded",
}


IN_TRAINING_PROCESS = False


def die() -> None:
    if IN_TRAINING_PROCESS:  # the server dies, and this process with it
        os.kill(os.getppid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)


def wrap(owner: Any, attr: str, *, before: bool = False, when: Callable[..., bool] = lambda *a, **k: True) -> None:
    original = getattr(owner, attr)

    @functools.wraps(original)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if before and when(*args, **kwargs):
            die()
        result = original(*args, **kwargs)
        if not before and when(*args, **kwargs):
            die()
        return result

    setattr(owner, attr, wrapped)


def arm(point: str) -> None:
    from chatbot import adapters, registry
    from chatbot.jobs.store import JobStore
    from chatbot.training import trainer

    if point == "training":
        wrap(trainer, "_save", before=True)
    elif point == "staged":
        wrap(adapters, "seal")
    elif point == "renaming":
        wrap(adapters.os, "replace", when=lambda src, dst: str(dst).endswith(".old"))
    elif point == "installed":
        wrap(adapters, "install")
    elif point == "registered":
        wrap(registry, "save")
    elif point == "serving":
        wrap(JobStore, "update_job", before=True, when=lambda *a, **changes: changes.get("status") == "succeeded")
    else:
        raise SystemExit(f"unknown point {point!r}: one of {', '.join(POINTS)}")


def main(point: str, mode: str, *args: str) -> None:
    global IN_TRAINING_PROCESS
    from chatbot.training.hyperparams import Hyperparameters

    arm(point)
    if mode == "training-process":
        from chatbot.jobs import training_process

        IN_TRAINING_PROCESS = True
        training_process.main()
    elif mode == "retrain":
        from chatbot.training.skill import train_skill

        registry_path, data, base = args
        train_skill("shop", "qa", data, base=base, hyperparameters=Hyperparameters(n_epochs=1, batch_size=4),
                    registry_path=registry_path, force=True)
    else:
        from chatbot.jobs.store import ACTIVE, JobStore
        from chatbot.jobs.worker import JobWorker

        registry_path, db_url = args
        store = JobStore(db_url, Path(registry_path).parent / ".chatbot")
        worker = JobWorker(store, Path(registry_path), training_command=(sys.executable, __file__, point, "training-process"))
        worker.start()
        while any(job["status"] in ACTIVE for job in store.jobs(limit=100)[0]):
            time.sleep(0.05)
        worker.stop()


if __name__ == "__main__":
    main(*sys.argv[1:])
