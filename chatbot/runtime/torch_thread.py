"""The one thread that computes with every core in this process: the batched engine's batches, the llama.cpp engine's
generations and the router's encoder.

With GNU OpenMP, which torch's CPU build and llama.cpp share in a process, each thread that computes on several threads
keeps its own team of workers. Once two teams exist (the router's and the engine's, say) there are more OpenMP threads
than cores on a small machine, libgomp stops spinning its workers between parallel regions, and each of a forward's few
hundred regions has to wake a sleeping worker: routing a message in the bot's process took about twice its time alone
(9.6 ms against 4.1 ms for all-MiniLM-L6-v2 on 2 cores), and llama.cpp decoded 63 tokens/s instead of 105. So long work
(an engine serving its batch) and short work (embedding texts) are tasks of this one thread. Short work asked for while
the thread is busy runs on the caller's thread with one torch thread, which makes no second team, instead of waiting
for the long task.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

_tasks: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
_wake = threading.Condition()
_thread: threading.Thread | None = None
_busy = False  # running a task
_single = threading.local()  # which other threads have been set to one torch thread


def submit(fn: Callable[[], T]) -> Future[T]:
    """Queue *fn* for the torch thread (started on first use); its result comes in the future."""
    global _thread
    future: Future[T] = Future()
    with _wake:
        if _thread is None:
            _thread = threading.Thread(target=_loop, name="chatbot-torch", daemon=True)
            _thread.start()
        _tasks.append((fn, future))
        _wake.notify()
    return future


def start(fn: Callable[[], Any], what: str) -> None:
    """Queue *fn* for the torch thread without waiting for it; what it raises is logged, as nobody reads its future."""

    def done(future: Future[Any]) -> None:
        if not future.cancelled() and (exc := future.exception()) is not None:
            log.error("torch thread task failed", exc_info=exc, extra={"fields": {"task": what}})

    submit(fn).add_done_callback(done)


def run(fn: Callable[[], T]) -> T:
    """*fn*'s result, computed on the torch thread, or here on one torch thread if that thread is busy with a long task."""
    if on_torch_thread():
        return fn()
    with _wake:
        busy = _busy and _thread is not None
    if not busy:
        return submit(fn).result()
    if not getattr(_single, "set", False):
        import torch

        torch.set_num_threads(1)  # this thread's OpenMP setting: no team of its own
        _single.set = True
    return fn()


def on_a_thread_of_its_own(fn: Callable[[], T], name: str = "chatbot-apart") -> T:
    """*fn*'s result, computed on a new thread that ends with it: long work that computes beside the torch thread
    (a benchmark's training) keeps a team of OpenMP threads only while it runs, not for the rest of the process."""
    result: list[T] = []
    failed: list[BaseException] = []

    def target() -> None:
        try:
            result.append(fn())
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller
            failed.append(exc)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return result[0]


def on_torch_thread() -> bool:
    return threading.current_thread() is _thread


def run_pending() -> None:
    """Run the tasks queued meanwhile; a long task calls it between its steps (on the torch thread only)."""
    while (task := _next(block=False)) is not None:
        _call(*task)


def _next(*, block: bool) -> tuple[Callable[[], Any], Future[Any]] | None:
    with _wake:
        while block and not _tasks:
            _wake.wait()
        return _tasks.popleft() if _tasks else None


def _call(fn: Callable[[], Any], future: Future[Any]) -> None:
    if future.set_running_or_notify_cancel():
        try:
            future.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - the caller gets it
            future.set_exception(exc)


def _loop() -> None:
    global _busy
    from chatbot.runtime.device import set_threads

    set_threads()
    while True:
        task = _next(block=True)
        with _wake:
            _busy = True
        try:
            _call(*task)
        finally:
            with _wake:
                _busy = False
