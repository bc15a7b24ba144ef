"""The background worker that runs fine-tuning jobs, one at a time, in the order they were created.

A job goes ``validating_files`` (the files are checked as ``chatbot data check`` does) → ``queued``
→ ``running`` (the local trainer, the same one ``chatbot train`` uses, in a process of its own:
:mod:`chatbot.jobs.training_process`) → ``succeeded`` (the model is
registered as a skill and served at once), ``failed`` (with the reason, and the line for a bad file)
or ``cancelled``. The registry is where a job commits: a job that was running when the server
stopped ends, at the next start, ``succeeded`` when its model is in ``models.yaml`` (it was
registered just before the kill), else ``failed``, with whatever its training wrote removed. Queued
ones are picked up again. The model keeps a copy of its data files in its adapter folder, so that
deleting the uploads never breaks routing.

Several servers may share one database and folder (replicas behind a load balancer): a queued job is
claimed by exactly one of them (a compare-and-set on its status), whose worker beats a heartbeat
while it trains. A job whose worker is gone (its process ended, or no heartbeat for ``lease_s``) is
recovered as above by whichever server sees it first; a cancel sent to another server reaches the
training at its next heartbeat.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chatbot import registry as registry_io
from chatbot.errors import ChatbotError
from chatbot.jobs.store import ACTIVE, JobStore, alive
from chatbot.registry import Skill
from chatbot.jobs.training_process import COMMAND, Stopped, TrainingCrashed, default_threads, train_apart
from chatbot.skills import DEFAULT_KIND

log = logging.getLogger(__name__)
EVENT_EVERY_STEPS = 5
KEEP_LAST_EPOCHS = 3  # as OpenAI: checkpoints of the last three epochs (and of the best one)
HEARTBEAT_S = 2.0  # how often a training job says its worker is alive (and learns of a cancel on another server)
LEASE_S = float(os.environ.get("CHATBOT_JOB_LEASE_S", 60))  # a running job without a heartbeat this long is recovered


_LIVE: set[str] = set()  # the workers of this process that run


def worker_id() -> str:
    """Who runs a job: host, process, and a random part (one process may start several workers)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def gone(owner: str | None, heartbeat_at: float | None, lease_s: float) -> bool:
    """Whether a running job's worker is surely gone: none recorded, a worker of this host whose
    process has ended (or, in this process, that has stopped), or no heartbeat for *lease_s* seconds."""
    if not owner or heartbeat_at is None:
        return True
    host, pid = (owner.split(":") + [""])[:2]
    if host == socket.gethostname() and pid.isdigit():
        if int(pid) == os.getpid():
            return owner not in _LIVE
        if not alive(int(pid)):
            return True
    return time.time() - heartbeat_at > lease_s


def checkpoint_name(model: str, step: int) -> str:
    """A kept epoch's model id, as OpenAI names checkpoints: ``<model>:ckpt-step-<step>``."""
    return f"{model}:ckpt-step-{step}"


def model_name(base: str, suffix: str | None, job_id: str) -> str:
    """The fine-tuned model's id, also its skill name: ``ft-<base>-<suffix>-<6 hex>``."""
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(base).name).strip("-.")[:24] or "model"
    tail = f"-{re.sub(r'[^A-Za-z0-9_.-]+', '-', suffix)[:18]}" if suffix else ""
    return f"ft-{clean}{tail}-{job_id[-6:]}"


class JobWorker:
    def __init__(self, store: JobStore, registry_path: Path, on_model: Callable[[Skill], None] | None = None, *,
                 route_new_models: bool = False, lease_s: float = LEASE_S, threads: int | None = None,
                 training_command: tuple[str, ...] = COMMAND) -> None:
        """*route_new_models*: a job's model joins the bot's router at once; otherwise it answers only when asked by name.

        *lease_s*: how long a running job of another server may go without a heartbeat before this one recovers it.
        *threads*: torch threads of a job's training process (default: :func:`~chatbot.jobs.training_process.default_threads`).
        *training_command*: what starts that process; a wrapper may come first (``prlimit --as=…``,
        ``taskset``, a profiler) if it ends by running the default.
        """
        self.threads = threads or default_threads()
        self.training_command = training_command
        self.store = store
        self.owner = worker_id()
        self.lease_s = lease_s
        self.route_new_models = route_new_models
        self.registry_path = registry_path
        self.on_model = on_model
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cancel: set[str] = set()
        self._lock = threading.Lock()  # a cancel and a job's last steps (serving its model) never overlap
        self._finishing: str | None = None
        self._preload: tuple[str, ...] = ()
        self._thread: threading.Thread | None = None

    def start(self, preload: tuple[str, ...] = ()) -> None:
        """Recover the jobs a stopped server was running, and run the queue; *preload*: bases whose tokenizer is loaded first.

        Loading a tokenizer holds the GIL a few hundred milliseconds; done at start, a job's start later costs the server nothing.
        """
        _LIVE.add(self.owner)
        self._recover_abandoned()  # this server, or another, died while they ran
        self._preload = preload
        self._thread = threading.Thread(target=self._loop, name="fine-tuning-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop after the current training step (a job cut short is failed at the next start) and wait for the worker."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        _LIVE.discard(self.owner)

    def wake(self) -> None:
        self._wake.set()

    def cancel(self, job_id: str) -> dict[str, Any] | None:
        """Cancel a job that has not ended; a running one stops after its current step.

        None when it has ended, or when it is finishing: trained, its model being put into service.
        """
        with self._lock:
            if job_id == self._finishing:
                return None
            job = self.store.update_job(job_id, only_if=ACTIVE, status="cancelled", finished_at=int(time.time()))
            if job is not None:
                self._cancel.add(job_id)
        if job is not None:
            self.store.add_event(job_id, "Job cancelled")
        return job

    def finishing(self, job_id: str) -> bool:
        return job_id == self._finishing

    def _loop(self) -> None:
        from chatbot.runtime.base_models import on_disk, training_tokenizer

        for base in (b for b in self._preload if on_disk(b)):  # never a download or a conversion before any job asks
            try:
                training_tokenizer(base)
            except ChatbotError as exc:  # a job on it will say so
                log.warning("cannot load the tokenizer of %s: %s", base, exc)
        while not self._stop.is_set():
            job = self.store.next_queued()
            if job is None:
                self._wake.wait(timeout=2.0)
                self._wake.clear()
                self._recover_abandoned()
                continue
            try:
                if job["status"] == "validating_files":
                    self._validate(job)
                else:
                    self._train(job)
            except Exception as exc:  # noqa: BLE001 - a job's failure must never stop the worker
                log.exception("fine-tuning job %s failed", job["id"])
                self._fail(job["id"], "training_failed", f"{type(exc).__name__}: {exc}")

    def _paths(self, job: dict[str, Any]) -> tuple[Path, Path | None]:
        valid = job.get("validation_file")
        return self.store.file_path(job["training_file"]), self.store.file_path(valid) if valid else None

    def _validate(self, job: dict[str, Any]) -> None:
        from chatbot.runtime.base_models import token_counter
        from chatbot.training.skill import check_or_fail

        self.store.add_event(job["id"], "Validating training file: " + job["training_file"])
        data, valid = self._paths(job)
        for path, field in ((data, "training_file"), (valid, "validation_file")):
            if path is not None and not path.exists():
                self._fail(job["id"], "invalid_file", f"{job[field]}: the file is gone (deleted?)", param=field)
                return
        try:
            count, context = token_counter(job["model"])
            check_or_fail(data, valid, count, context, job["metadata"].get("kind"))
        except ChatbotError as exc:
            message = str(exc).replace(str(data), job["training_file"])
            if valid is not None:
                message = message.replace(str(valid), job["validation_file"])
            self._fail(job["id"], "invalid_training_file", message, param="training_file")
            return
        if self.store.update_job(job["id"], only_if=("validating_files",), status="queued"):
            self.store.add_event(job["id"], "Files validated, job queued")

    def _train(self, job: dict[str, Any]) -> None:
        from chatbot.training.hyperparams import Hyperparameters

        job_id = job["id"]
        if not self.store.update_job(job_id, only_if=("queued",), owner=self.owner, status="running"):
            return  # another server's worker took it
        data, valid = self._paths(job)
        hp = job["hyperparameters"]
        hyper = Hyperparameters(**{k: (None if v == "auto" else v) for k, v in hp.items() if k in Hyperparameters.model_fields},
                                seed=job.get("seed") or 0)
        name = model_name(job["model"], job.get("user_provided_suffix"), job_id)

        def on_start(pid: int) -> None:  # which server trains it (host:pid:…), in which process, with how many threads
            self.store.add_event(job_id, "Fine-tuning job started", data={"worker": self.owner, "training_process": pid,
                                                                          "threads": self.threads})

        def on_step(epoch: int, step: int, total: int, loss: float) -> None:
            if step % EVENT_EVERY_STEPS == 0 or step == total:
                self.store.add_event(job_id, f"Step {step}/{total}: training loss={loss:.4f}", type="metrics",
                                     data={"step": step, "total_steps": total, "epoch": epoch, "train_loss": loss})

        def on_epoch(epoch: int, train_loss: float, valid_loss: float | None) -> None:
            extra = f", validation loss={valid_loss:.4f}" if valid_loss is not None else ""
            self.store.add_event(job_id, f"Epoch {epoch} done: training loss={train_loss:.4f}{extra}", type="metrics",
                                 data={"epoch": epoch, "train_loss": train_loss, "valid_loss": valid_loss})

        beating = threading.Event()
        threading.Thread(target=self._beat, args=(job_id, beating), name=f"heartbeat-{job_id}", daemon=True).start()
        try:
            train_apart(dict(name=name, kind=job["metadata"].get("kind", DEFAULT_KIND), data=str(data), valid=valid and str(valid),
                             base=job["model"], hyperparameters=hyper.model_dump(), registry_path=str(self.registry_path),
                             description=f"fine-tuned by job {job_id}", force=True, routing=self.route_new_models, keep_data=True,
                             keep_last=KEEP_LAST_EPOCHS, fine_tuning_job=job_id),
                        threads=self.threads, on_start=on_start, on_step=on_step, on_epoch=on_epoch,
                        should_stop=lambda: job_id in self._cancel or self._stop.is_set(), command=self.training_command)
        except Stopped:
            self._discard(name)
            return
        except TrainingCrashed as exc:  # killed, perhaps just after it registered the model
            if self._registered(job, name) is None:
                self._discard(name)
                self._fail(job_id, "training_failed", str(exc))
                return
        except ChatbotError as exc:
            self._fail(job_id, "training_failed", str(exc))
            return
        finally:
            beating.set()
        skill = self._registered(job, name)  # as the training process registered it
        with self._lock:
            # cancelled after the last step, here or on another server: its model is never served
            if skill is None or job_id in self._cancel or self.store.beat(job_id, self.owner) != "running":
                self._discard(name)
                if skill is None:  # models.yaml was edited meanwhile
                    self._fail(job_id, "training_failed", f"the trained model {name} is not in {self.registry_path}")
                return
            self._finishing = job_id
        try:
            self._finish(job, skill)
        finally:
            self._finishing = None

    def _finish(self, job: dict[str, Any], skill: Skill) -> None:
        """Serve the registered model and mark the job succeeded; safe to run again after a kill.

        The checkpoints are the epochs kept: the registered one under the model's name, the others
        as ``NAME:ckpt-step-N``.
        """
        job_id, record = job["id"], skill.training
        resolved = record.hyperparameters if record else {}
        for epoch in (record.epochs if record else []):
            if epoch.checkpoint or epoch.epoch == record.selected_epoch:
                model = skill.name if epoch.epoch == record.selected_epoch else checkpoint_name(skill.name, epoch.step)
                self.store.add_checkpoint(job_id, model, epoch.step, {"step": epoch.step, "train_loss": epoch.train_loss,
                                                                      "valid_loss": epoch.valid_loss, "epoch": epoch.epoch})
        if self.on_model:
            self.on_model(skill)  # served from now on
        self.store.add_event(job_id, f"New fine-tuned model created: {skill.name}")
        if record and record.stopped_early:
            self.store.add_event(job_id, f"Stopped early after epoch {record.epochs[-1].epoch}: validation did not improve after epoch "
                                         f"{record.best_epoch}")
        self.store.add_event(job_id, "The job has successfully completed")
        self.store.update_job(job_id, only_if=("running",), status="succeeded", fine_tuned_model=skill.name, finished_at=int(time.time()),
                              trained_tokens=record.trained_tokens if record else None,
                              hyperparameters={k: resolved.get(k, v) for k, v in job["hyperparameters"].items()})

    def _beat(self, job_id: str, done: threading.Event) -> None:
        """While *job_id* trains: the heartbeat, and a cancel made on another server."""
        while not done.wait(HEARTBEAT_S):
            try:
                status = self.store.beat(job_id, self.owner)
            except Exception:  # noqa: BLE001 - a database hiccup: the next beat tries again
                log.warning("heartbeat of job %s failed", job_id, exc_info=True)
                continue
            if status != "running":  # cancelled elsewhere, or taken over after a long stall: stop at the next step
                self._cancel.add(job_id)

    def _recover_abandoned(self) -> None:
        """Recover each running job whose worker is gone, unless another server takes it first."""
        for job, owner, heartbeat_at in self.store.running():
            if gone(owner, heartbeat_at, self.lease_s) and self.store.take_over(job["id"], owner, self.owner):
                self._recover(job)

    def _recover(self, job: dict[str, Any]) -> None:
        """A job the server was running when it stopped: finished if its model was registered, else failed and cleaned up."""
        name = model_name(job["model"], job.get("user_provided_suffix"), job["id"])
        skill = self._registered(job, name)
        if skill is not None:
            self.store.add_event(job["id"], "The server stopped after the model was registered; finishing the job")
            self._finish(job, skill)
            return
        self._discard(name)
        self._fail(job["id"], "server_restarted", "the server stopped while this job was running; create a new job to train again")

    def _registered(self, job: dict[str, Any], name: str) -> Skill | None:
        """The model *job* trained, as ``models.yaml`` has it; None when it is not registered."""
        skill = registry_io.load(self.registry_path, missing_ok=True).skills.get(name)
        if skill is not None and skill.training is not None and skill.training.fine_tuning_job == job["id"]:
            return skill
        return None

    def _discard(self, name: str) -> None:
        """Undo what the training of a cancelled or interrupted job wrote: its skill in models.yaml and its adapter folders."""
        with registry_io.editing(self.registry_path) as registry:
            registry.skills.pop(name, None)
            folder = self.registry_path.parent / "adapters" / name
            for path in (folder, folder.with_name(name + ".tmp"), folder.with_name(name + ".old")):
                shutil.rmtree(path, ignore_errors=True)

    def _fail(self, job_id: str, code: str, message: str, param: str | None = None) -> None:
        job = self.store.update_job(job_id, only_if=ACTIVE, status="failed", finished_at=int(time.time()),
                                    error={"code": code, "message": message, "param": param})
        if job is not None:
            self.store.add_event(job_id, f"Job failed: {message}", level="error")
