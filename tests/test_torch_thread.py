"""One thread runs torch with every core: short work goes there when it is idle, runs here on one thread when it is busy."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from chatbot.runtime import torch_thread


def _where() -> tuple[str, int]:
    import torch

    return threading.current_thread().name, torch.get_num_threads()


def test_short_work_runs_on_the_torch_thread_with_every_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHATBOT_THREADS", "2")
    name, threads = torch_thread.run(_where)
    assert name == "chatbot-torch" and threads >= 1
    assert torch_thread.run(lambda: torch_thread.run(_where))[0] == "chatbot-torch"  # asked from there, it runs in place


def test_an_error_reaches_the_caller() -> None:
    def fail() -> None:
        raise ValueError("from the torch thread")

    with pytest.raises(ValueError, match="from the torch thread"):
        torch_thread.run(fail)
    assert torch_thread.run(_where)[0] == "chatbot-torch"  # and the thread goes on


def test_an_error_in_work_nobody_waits_for_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    def fail() -> None:
        raise ValueError("lost otherwise")

    with caplog.at_level("ERROR", logger="chatbot.runtime.torch_thread"):
        torch_thread.start(fail, "a test task")
        torch_thread.run(lambda: None)  # queued after it: done means the failing task is done
    [record] = [r for r in caplog.records if r.name == "chatbot.runtime.torch_thread"]
    assert record.fields == {"task": "a test task"} and "lost otherwise" in str(record.exc_info[1])


def test_while_a_long_task_runs_short_work_runs_here_on_one_thread() -> None:
    started, release = threading.Event(), threading.Event()

    def long_task() -> str:
        started.set()
        release.wait(30)
        return "done"

    seen: list[tuple[str, int]] = []
    caller = threading.Thread(target=lambda: seen.append(torch_thread.run(_where)), name="a-web-request")
    long = torch_thread.submit(long_task)
    assert started.wait(30)
    caller.start()
    caller.join(30)
    release.set()
    assert long.result(30) == "done"
    assert seen == [("a-web-request", 1)]  # it did not wait for the long task, and made no OpenMP team of its own


def test_queued_work_runs_between_the_steps_of_a_long_task() -> None:
    order: list[str] = []
    queued = threading.Event()

    def long_task() -> None:
        order.append("step 1")
        queued.wait(30)
        torch_thread.run_pending()
        order.append("step 2")

    long = torch_thread.submit(long_task)
    short = torch_thread.submit(lambda: order.append("short"))
    queued.set()
    long.result(30)
    short.result(30)
    assert order == ["step 1", "short", "step 2"]


def test_the_router_encoder_is_traced_and_gives_the_models_own_embeddings() -> None:
    import torch

    from chatbot.routing.encoder import Encoder, embed

    encoder = Encoder()
    texts = ["set a timer for ten minutes", "hi", "who painted the mona lisa, and when did they paint it?"]
    vectors = encoder.encode(texts, cache=False)
    assert encoder._hidden.traced is not None
    with torch.inference_mode():
        eager = embed(encoder.model, encoder.tokenizer, texts, encoder.max_length, "mean").numpy()
    assert np.array_equal(vectors, eager)


def test_work_apart_runs_on_a_thread_that_ends_with_it() -> None:
    ran: list[threading.Thread] = []

    def work() -> str:
        ran.append(threading.current_thread())
        return "trained"

    assert torch_thread.on_a_thread_of_its_own(work, name="fine-tuning-x") == "trained"
    assert ran[0].name == "fine-tuning-x" and ran[0] is not threading.current_thread() and not ran[0].is_alive()

    def fail() -> None:
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        torch_thread.on_a_thread_of_its_own(fail)
