"""`chatbot serve` killed (SIGKILL) under load and started again: no turn a client got a reply for is lost.

20 clients hold conversations at once (half of them streamed) while an upload is on its way; the
server is killed mid-load, on SQLite and on PostgreSQL. After the restart every session holds, in
order and without a gap, the messages its client sent, at least every one it got a reply for, with
that reply; the files folder holds no half-written upload; the conversations go on where they were.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml
from bot_helpers import REGISTRY
from environment import scaled
from web_server import free_port, start_serve

pytestmark = pytest.mark.slow
CLIENTS = 20
KILL_AFTER_REPLIES = 60
MESSAGES = [m for skill in REGISTRY["skills"].values() for m in skill["routing_examples"]] + REGISTRY["router"]["out_of_scope"]


class _Conversation(threading.Thread):
    """One client: turns one after another in its own session; what it sent and what it got back."""

    def __init__(self, url: str, number: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.session, self.stop = url, f"load-{number}", stop
        self.streamed = number % 2 == 1
        self.sent: list[str] = []
        self.replies: dict[int, str] = {}  # turn index -> reply text, for every reply received whole

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self.stop.is_set():
                text = f"{MESSAGES[len(self.sent) % len(MESSAGES)]} (#{len(self.sent)} of {self.session})"
                self.sent.append(text)
                try:
                    reply = self._stream(client, text) if self.streamed else client.post(f"/sessions/{self.session}/messages",
                                                                                          json={"text": text}).json()
                except (httpx.TransportError, json.JSONDecodeError, KeyError):
                    return  # the server is gone mid-turn: this turn may or may not be stored
                self.replies[reply["turn"]] = reply["text"]

    def _stream(self, client: httpx.Client, text: str) -> dict:
        with client.stream("POST", f"/sessions/{self.session}/messages", json={"text": text},
                           headers={"Accept": "text/event-stream"}) as response:
            event = None
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "reply":
                    return json.loads(line[6:])
        raise KeyError("no reply event")


class _SlowUpload(threading.Thread):
    """An upload whose body trickles in, so that the kill finds it half-written."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url

    def run(self) -> None:
        class Trickle:
            sent = 0

            def read(self, size: int = -1) -> bytes:
                if self.sent > 200:
                    return b""
                self.sent += 1
                time.sleep(0.05)
                return b'{"prompt": "a question?\\n\\n###\\n\\n", "completion": " an answer END"}\n' * 500

        try:
            httpx.post(f"{self.url}/v1/files", files={"file": ("big.jsonl", Trickle())}, data={"purpose": "fine-tune"}, timeout=120)
        except httpx.TransportError:
            pass


def test_a_server_killed_under_load_loses_no_turn_it_answered(db_url: str, tmp_path: Path, tiny_adapters: tuple[str, str, str]) -> None:
    base, adapter_a, adapter_b = tiny_adapters
    registry = yaml.safe_load(yaml.safe_dump(REGISTRY))
    for skill, adapter in zip(registry["skills"].values(), (adapter_a, adapter_b, adapter_a)):
        skill.update(base_model=base, adapter=adapter, generation={"max_tokens": 6})
    (tmp_path / "models.yaml").write_text(yaml.safe_dump(registry))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_serve(tmp_path, port, "--db", db_url)
    stop = threading.Event()
    clients = [_Conversation(url, n, stop) for n in range(CLIENTS)]
    try:
        for client in clients:
            client.start()
        upload = _SlowUpload(url)
        deadline = time.monotonic() + scaled(300)
        while sum(len(c.replies) for c in clients) < KILL_AFTER_REPLIES:
            assert time.monotonic() < deadline and server.poll() is None, "the load never got going"
            if upload.ident is None and sum(len(c.replies) for c in clients) > KILL_AFTER_REPLIES // 2:
                upload.start()  # still on its way at the kill
            time.sleep(0.05)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
        stop.set()
        for client in clients:
            client.join(timeout=60)
        upload.join(timeout=60)
    finally:
        stop.set()
        if server.poll() is None:
            server.kill()

    server = start_serve(tmp_path, port, "--db", db_url)
    try:
        answered = 0
        for client in clients:
            stored = httpx.get(f"{url}/sessions/{client.session}", timeout=30)
            turns = stored.json()["history"] if stored.status_code == 200 else []
            assert [t["index"] for t in turns] == list(range(len(turns)))
            assert [t["user"] for t in turns] == client.sent[: len(turns)], client.session  # in order, no gap, nothing made up
            assert len(turns) >= len(client.replies)  # every turn answered is there: at most the one in flight is not
            for index, reply in client.replies.items():
                assert turns[index]["reply"] == reply
            answered += len(client.replies)
        assert answered >= KILL_AFTER_REPLIES
        files = tmp_path / ".chatbot" / "files"
        listed = {f["id"] for f in httpx.get(f"{url}/v1/files", timeout=30).json()["data"]}
        assert {p.stem for p in files.glob("file-*")} == listed and not list(files.glob(".*"))  # no half-written upload
        going_on = httpx.post(f"{url}/sessions/{clients[0].session}/messages", json={"text": "When are you open?"}, timeout=60).json()
        assert going_on["turn"] == len(httpx.get(f"{url}/sessions/{clients[0].session}", timeout=30).json()["history"]) - 1
    finally:
        server.terminate()
        server.wait(timeout=30)
