"""A fine-tuning job's training, in a process of its own, so that it cannot starve the server that serves.

The server's worker starts one process per job (``python -m chatbot.jobs.training_process``: a
fresh interpreter, with no OpenMP team or torch state of the server's, and no re-import of the
server's own script) and follows it through JSON lines. The process:

* computes with a budget of its own: ``threads`` torch threads (by default every core but one;
  ``CHATBOT_JOB_THREADS`` or ``chatbot serve --job-threads`` to change it), at a lower CPU priority
  (``nice`` + :data:`NICE`), so a request always finds a core;
* runs the same trainer as ``chatbot train`` (:func:`chatbot.training.skill.train_skill`), which
  registers the model in ``models.yaml``; the server reads it from there;
* stops at its next step when the server asks (a cancel, or the server stopping) or its stdin
  closes, and dies with the server (Linux's parent-death signal): a killed server never leaves a
  training behind that would register a model after the job was recovered as failed.

Protocol: the server writes one JSON line on the process's stdin (the job: ``train_skill``'s
arguments and the thread budget), then ``stop`` to stop it. The process writes events on its stdout,
one JSON list a line (``["step", epoch, step, total, loss]``, ``["epoch", epoch, train_loss,
valid_loss]``, then one of ``["done"]``, ``["stopped"]``, ``["failed", message]``, ``["crashed",
message]``); anything else it prints goes to its stderr, which is the server's.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

from chatbot.errors import ChatbotError

log = logging.getLogger(__name__)
NICE = 10  # how much lower the training's CPU priority is than the server's
POLL_S = 0.5  # how often the server looks for a cancel while no event comes
COMMAND = (sys.executable, "-m", "chatbot.jobs.training_process")
_PR_SET_PDEATHSIG = 1


class Stopped(Exception):
    """The training stopped because the server asked it to (a cancel, or the server stopping)."""


class TrainingCrashed(ChatbotError):
    """The training process ended without a result: killed (out of memory?) or crashed."""


def default_threads() -> int:
    """Torch threads a job trains with: ``CHATBOT_JOB_THREADS``, else every core but one (at least one)."""
    configured = os.environ.get("CHATBOT_JOB_THREADS")
    if configured:
        return max(1, int(configured))
    return max(1, (os.cpu_count() or 1) - 1)


def train_apart(train_kwargs: dict[str, Any], *, threads: int,
                on_step: Callable[[int, int, int, float], None],
                on_epoch: Callable[[int, float, float | None], None],
                should_stop: Callable[[], bool],
                on_start: Callable[[int], None] | None = None,
                command: tuple[str, ...] = COMMAND) -> None:
    """Run ``train_skill(**train_kwargs)`` in a new process (*command*) and wait for it.

    *train_kwargs* are JSON values (paths as strings, hyperparameters as a dict). *on_step* and
    *on_epoch* are called here, in the caller's thread, as the training reports; when *should_stop*
    (asked after each event, and every :data:`POLL_S`) returns true, the training stops at its next
    step. *on_start* gets the process id. Returns when the model is registered; raises
    :class:`Stopped` when it stopped on request, :class:`ChatbotError` with the trainer's message
    when training failed, :class:`TrainingCrashed` when the process died.
    """
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                               env=os.environ | {"OMP_NUM_THREADS": str(threads)})
    assert process.stdin is not None and process.stdout is not None
    events: queue.Queue[list[Any] | None] = queue.Queue()
    threading.Thread(target=_read, args=(process.stdout, events), name=f"training-events-{process.pid}", daemon=True).start()
    if on_start is not None:
        on_start(process.pid)
    try:
        process.stdin.write(json.dumps({"train": train_kwargs, "threads": threads, "parent": os.getpid()}) + "\n")
        process.stdin.flush()
        kind, detail = _follow(process, events, on_step, on_epoch, should_stop)
    except (BrokenPipeError, OSError):  # it died before it read its job
        kind, detail = "crashed", ""
    finally:
        _stop(process)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:  # never reached a step to stop at: a training is never left running
            process.kill()
            process.wait()
    if kind == "stopped":
        raise Stopped
    if kind == "failed":
        raise ChatbotError(detail)
    if kind == "crashed":
        raise TrainingCrashed(detail or f"the training process ended without a result ({_exit_reason(process.returncode)})")


def _read(stdout: IO[str], events: queue.Queue[list[Any] | None]) -> None:
    for line in stdout:
        try:
            events.put(json.loads(line))
        except ValueError:
            log.warning("training process: %s", line.rstrip())
    events.put(None)  # it closed its stdout: it has ended


def _follow(process: subprocess.Popen[str], events: queue.Queue[list[Any] | None], on_step: Callable[..., None],
            on_epoch: Callable[..., None], should_stop: Callable[[], bool]) -> tuple[str, str]:
    while True:
        try:
            event = events.get(timeout=POLL_S)
        except queue.Empty:
            event = []
        if event is None:
            process.wait()
            return "crashed", ""
        if event:
            kind, *payload = event
            if kind == "step":
                on_step(*payload)
            elif kind == "epoch":
                on_epoch(*payload)
            else:  # done, stopped, failed or crashed: the last event
                return kind, payload[0] if payload else ""
        if should_stop():
            _stop(process)


def _stop(process: subprocess.Popen[str]) -> None:
    try:
        if process.stdin is not None and not process.stdin.closed:
            process.stdin.write("stop\n")
            process.stdin.close()
    except OSError:  # it has ended already
        pass


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}, perhaps for lack of memory"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}; the server's log has its error output"


def _die_with(parent: int) -> None:
    """Ask Linux to kill this process when its parent dies (elsewhere: nothing to ask)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before we asked
        os._exit(1)


def main() -> None:
    """The training process: read the job, train, report, say how it ended."""
    out = os.fdopen(os.dup(1), "w", buffering=1)  # events only; whatever else prints goes to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the server's terminal stops the server, which stops this
    job = json.loads(sys.stdin.readline())
    _die_with(job["parent"])
    try:
        os.nice(NICE)
    except OSError:
        pass
    stop = threading.Event()

    def watch_stdin() -> None:  # "stop", or the server closed it: stop at the next step
        sys.stdin.readline()
        stop.set()

    threading.Thread(target=watch_stdin, name="stop-watch", daemon=True).start()

    def send(*event: Any) -> None:
        out.write(json.dumps(event) + "\n")

    import torch

    torch.set_num_threads(job["threads"])
    from chatbot.training.hyperparams import Hyperparameters
    from chatbot.training.skill import train_skill

    def on_step(epoch: int, step: int, total: int, loss: float) -> None:
        if stop.is_set():
            raise Stopped
        send("step", epoch, step, total, loss)

    kwargs = dict(job["train"])
    kwargs["hyperparameters"] = Hyperparameters(**kwargs["hyperparameters"])
    try:
        train_skill(**kwargs, on_step=on_step, on_epoch=lambda *epoch: send("epoch", *epoch))
    except Stopped:
        send("stopped")
    except ChatbotError as exc:
        send("failed", str(exc))
    except Exception as exc:  # noqa: BLE001 - reported to the server, which fails the job with it
        log.exception("training failed")
        send("crashed", f"{type(exc).__name__}: {exc}")
    else:
        send("done")


if __name__ == "__main__":
    main()
