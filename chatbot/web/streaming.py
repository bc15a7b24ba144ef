"""Running the model off the event loop: a blocking token iterator drained in a worker thread."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
_DONE = object()


async def in_thread(executor: ThreadPoolExecutor, func: Callable[[], T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(executor, func)


async def iterate_in_thread(executor: ThreadPoolExecutor, make: Callable[[], Iterator[str]]) -> AsyncIterator[str]:
    """Yield what ``make()`` yields, produced in a worker thread.

    If the client goes away, the worker still runs to the end, so a turn that was started is stored.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()

    def run() -> None:
        try:
            for item in make():
                loop.call_soon_threadsafe(queue.put_nowait, item)
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the event loop, raised there
            loop.call_soon_threadsafe(queue.put_nowait, exc)

    work = loop.run_in_executor(executor, run)
    while True:
        item = await queue.get()
        if item is _DONE:
            break
        if isinstance(item, BaseException):
            raise item
        yield item  # type: ignore[misc]
    await work


def sse(data: str, event: str | None = None) -> str:
    """One server-sent event."""
    head = f"event: {event}\n" if event else ""
    return head + "".join(f"data: {line}\n" for line in data.split("\n")) + "\n"
