"""Real servers on loopback for the tests: uvicorn in a thread, or a server process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from environment import scaled

CHATBOT = str(Path(sys.executable).with_name("chatbot"))


def start_serve(folder: Path, port: int, *options: str) -> subprocess.Popen[bytes]:
    """`chatbot serve --port PORT OPTIONS…` in *folder*, one thread, once `/readyz` answers; the caller stops (or kills) it.

    Its stderr goes to ``serve-PORT.log`` there, appended across restarts."""
    log = folder / f"serve-{port}.log"
    process = subprocess.Popen([CHATBOT, "serve", "--port", str(port), *options], cwd=folder, stdout=subprocess.DEVNULL,
                               stderr=log.open("a"), env=os.environ | {"CHATBOT_THREADS": "1"})
    deadline = time.monotonic() + scaled(180)
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail("chatbot serve did not start: " + log.read_text()[-3000:])
        time.sleep(0.3)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def server_process(args: list[str], probe: str, log: Path, timeout: float = 120, **popen: Any) -> Iterator[None]:
    """Run *args* until *probe* answers 200; its output goes to *log* (a file: a full pipe would stall it)."""
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=log.open("w"), **popen)
    deadline = time.monotonic() + scaled(timeout)
    while True:
        try:
            if httpx.get(probe, timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{' '.join(args[:3])} did not start: {log.read_text()[-2000:]}")
        time.sleep(0.5)
    try:
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


@contextmanager
def running(app: Any) -> Iterator[str]:
    """Serve *app* on a free loopback port; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + scaled(30)
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
