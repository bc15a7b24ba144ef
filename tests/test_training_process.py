"""A server's fine-tuning job trains in a process of its own: with its own thread budget and a lower
priority, stopped when the server stops, and a crash of it fails the job without taking the server down."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from environment import scaled

from chatbot.jobs.store import JobStore
from chatbot.jobs.training_process import NICE, default_threads
from chatbot.jobs.worker import JobWorker, model_name

ROWS = [{"prompt": f"Review number {i}, it was fine.\n\n###\n\n", "completion": f" {'positive' if i % 2 else 'negative'} END"}
        for i in range(8)]


def _queue_job(store: JobStore, job_id: str, base: str, epochs: int) -> None:
    upload = store.add_file("mood.jsonl", "fine-tune", "".join(json.dumps(r) + "\n" for r in ROWS).encode())
    store.add_job({"id": job_id, "object": "fine_tuning.job", "created_at": 1, "status": "queued", "model": base,
                   "training_file": upload["id"], "validation_file": None, "hyperparameters": {"n_epochs": epochs, "batch_size": 2},
                   "metadata": {"kind": "classify"}, "seed": 0, "user_provided_suffix": None, "error": None, "finished_at": None})


def _started(store: JobStore, job_id: str) -> dict[str, Any]:
    """The "started" event's data, once the training has taken a step."""
    deadline = time.monotonic() + scaled(120)
    while time.monotonic() < deadline:
        events = store.events(job_id, limit=100)[0]
        if any(e["message"].startswith("Step ") for e in events):
            return next(e["data"] for e in events if e["message"] == "Fine-tuning job started")
        time.sleep(0.05)
    raise AssertionError(f"no training step: {store.job(job_id)}")


def _ended(store: JobStore, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + scaled(60)
    while store.job(job_id)["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.05)
    return store.job(job_id)


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + scaled(30)
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture()
def store(tmp_path: Path) -> JobStore:
    return JobStore(f"sqlite:///{tmp_path / 'c.db'}", tmp_path / ".chatbot")


@pytest.fixture()
def worker(store: JobStore, tmp_path: Path) -> Iterator[JobWorker]:
    worker = JobWorker(store, tmp_path / "models.yaml", threads=1)
    worker.start()
    yield worker
    worker.stop()


def test_the_default_thread_budget_leaves_a_core_to_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATBOT_JOB_THREADS", raising=False)
    assert default_threads() == max(1, (os.cpu_count() or 1) - 1)
    monkeypatch.setenv("CHATBOT_JOB_THREADS", "3")
    assert default_threads() == 3


def test_a_job_trains_in_another_process_at_a_lower_priority_and_a_crash_there_fails_only_the_job(
        store: JobStore, worker: JobWorker, tiny_base: str, tmp_path: Path) -> None:
    _queue_job(store, "ftjob-crash", tiny_base, epochs=100)
    started = _started(store, "ftjob-crash")
    pid = started["training_process"]
    assert pid != os.getpid() and started["threads"] == 1
    nice = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])  # field 19: the nice value
    assert nice == os.nice(0) + NICE

    os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer would
    job = _ended(store, "ftjob-crash")
    assert job["status"] == "failed" and job["error"]["code"] == "training_failed"
    assert "killed by SIGKILL" in job["error"]["message"], job["error"]
    name = model_name(tiny_base, None, "ftjob-crash")
    assert not list(tmp_path.glob(f"adapters/{name}*"))  # nothing its training wrote is left

    _queue_job(store, "ftjob-next", tiny_base, epochs=1)  # the worker goes on
    job = _ended(store, "ftjob-next")
    assert job["status"] == "succeeded", job["error"]
    assert (tmp_path / "models.yaml").read_text().count(job["fine_tuned_model"]) >= 1


def test_a_cancel_and_a_stopping_server_stop_the_training_process(store: JobStore, worker: JobWorker, tiny_base: str,
                                                                   tmp_path: Path) -> None:
    _queue_job(store, "ftjob-cancel", tiny_base, epochs=100)
    pid = _started(store, "ftjob-cancel")["training_process"]
    assert worker.cancel("ftjob-cancel")["status"] == "cancelled"
    assert _gone(pid)

    _queue_job(store, "ftjob-stop", tiny_base, epochs=100)
    pid = _started(store, "ftjob-stop")["training_process"]
    worker.stop()
    assert _gone(pid)
    assert not list(tmp_path.glob("adapters/*"))
