"""Several `chatbot serve` replicas on one PostgreSQL database and one folder behave as one server:
a session's turns stay in order whichever replica takes them, even at the same moment; each
fine-tuning job runs exactly once, on one replica, and its model then answers on every replica; a
cancel sent to one replica stops a job that another one trains."""

from __future__ import annotations

import json
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
import yaml
from bot_helpers import write_adapter_registry
from environment import scaled
from web_server import free_port, start_serve

pytestmark = pytest.mark.slow
REPLICAS = 2
ROWS = [{"prompt": f"{text}\n\n###\n\n", "completion": f" {label} END"} for text, label in [
    ("The battery died after a day.", "negative"), ("Great bike, rides like new!", "positive"),
    ("Terrible service, still broken.", "negative"), ("I love my new helmet.", "positive")]]


@pytest.fixture
def replicas(postgres_url: str, tiny_adapters: tuple[str, str, str], tmp_path: Path):  # noqa: ANN201
    from postgres import fresh_database

    base, a, b = tiny_adapters
    write_adapter_registry(tmp_path, base, a, b, max_tokens=4)
    db = fresh_database(postgres_url, f"t_{uuid.uuid4().hex[:12]}")
    ports = [free_port() for _ in range(REPLICAS)]
    servers = []
    try:
        for port in ports:
            servers.append(start_serve(tmp_path, port, "--db", db, "--base-model", base))
        yield [f"http://127.0.0.1:{port}" for port in ports], base, tmp_path, [server.pid for server in servers]
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=60)


def test_one_sessions_turns_stay_in_order_across_replicas(replicas) -> None:  # noqa: ANN001
    urls = replicas[0]
    sent: list[str] = []
    lock = threading.Lock()

    def say(n: int) -> dict:
        text = f"When do you open? ({n})"
        reply = httpx.post(f"{urls[n % REPLICAS]}/sessions/shared/messages", json={"text": text}, timeout=120)
        assert reply.status_code == 200, reply.text
        with lock:
            sent.append(text)
        return reply.json()

    for n in range(4):  # one after another, alternating replicas
        assert say(n)["turn"] == n
    with ThreadPoolExecutor(8) as pool:  # at the same moment, on both replicas
        answered = list(pool.map(say, range(4, 16)))
    history = httpx.get(f"{urls[1]}/sessions/shared", timeout=30).json()["history"]
    assert [t["index"] for t in history] == list(range(16))  # no gap, no turn twice
    assert sorted(t["user"] for t in history) == sorted(sent) and [t["user"] for t in history[:4]] == sent[:4]
    assert sorted(r["turn"] for r in answered) == list(range(4, 16))  # each turn numbered by the one store


def test_each_job_runs_once_and_its_model_answers_on_every_replica(replicas) -> None:  # noqa: ANN001
    urls, base, folder, _ = replicas
    clients = [openai.OpenAI(base_url=f"{url}/v1", api_key="any", max_retries=0, timeout=120) for url in urls]
    upload = clients[0].files.create(file=("mood.jsonl", "".join(json.dumps(r) + "\n" for r in ROWS).encode()), purpose="fine-tune")
    jobs = [clients[n % REPLICAS].fine_tuning.jobs.create(model=base, training_file=upload.id, hyperparameters={"n_epochs": 1},
                                                         metadata={"kind": "classify"}) for n in range(4)]
    deadline = time.monotonic() + scaled(600)
    while True:
        done = [clients[1].fine_tuning.jobs.retrieve(job.id) for job in jobs]
        if all(job.status in ("succeeded", "failed", "cancelled") for job in done) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert [job.status for job in done] == ["succeeded"] * len(jobs), [job.error for job in done]
    for job in done:
        events = [e.message for e in clients[0].fine_tuning.jobs.list_events(job.id, limit=100).data]
        assert events.count("Fine-tuning job started") == 1 and events.count("The job has successfully completed") == 1, events
    registered = yaml.safe_load((folder / "models.yaml").read_text())["skills"]
    assert {job.fine_tuned_model for job in done} <= set(registered)
    for job in done:  # trained on one replica, served by all (each reloads models.yaml when it changes)
        for client in clients:
            found = _until(lambda c=client, j=job: j.fine_tuned_model in [m.id for m in c.models.list()])
            assert found, f"{job.fine_tuned_model} not served by {client.base_url}"
            answer = client.completions.create(model=job.fine_tuned_model, prompt=ROWS[0]["prompt"], max_tokens=2)
            assert answer.model == job.fine_tuned_model


def test_a_cancel_sent_to_one_replica_stops_a_job_another_trains(replicas) -> None:  # noqa: ANN001
    urls, base, folder, pids = replicas
    clients = [openai.OpenAI(base_url=f"{url}/v1", api_key="any", max_retries=0, timeout=120) for url in urls]
    upload = clients[0].files.create(file=("mood.jsonl", "".join(json.dumps(r) + "\n" for r in ROWS * 50).encode()), purpose="fine-tune")
    job = clients[0].fine_tuning.jobs.create(model=base, training_file=upload.id, hyperparameters={"n_epochs": 50},
                                             metadata={"kind": "classify"})
    assert _until(lambda: clients[1].fine_tuning.jobs.retrieve(job.id).status == "running")
    trainer = _trainer(clients[0], job.id, pids)
    other = clients[1 - trainer]
    assert other.fine_tuning.jobs.cancel(job.id).status == "cancelled"
    assert _until(lambda: any(e.message == "Job cancelled" for e in other.fine_tuning.jobs.list_events(job.id).data))
    name = f"-{job.id[-6:]}"
    assert _until(lambda: not any(name in p.name for p in (folder / "adapters").glob("*")), 60)  # the trainer stopped and cleaned up
    assert not any(name in skill for skill in yaml.safe_load((folder / "models.yaml").read_text())["skills"])
    assert clients[trainer].fine_tuning.jobs.retrieve(job.id).status == "cancelled"


def _trainer(client: openai.OpenAI, job_id: str, pids: list[int]) -> int:
    """Which replica trains *job_id*: the job's start event names its worker (host:pid:…). The event comes once the
    training process has started, a few seconds after the job turns "running"."""
    def started() -> list:
        return [e for e in client.fine_tuning.jobs.list_events(job_id, limit=100).data if e.message == "Fine-tuning job started"]

    assert _until(lambda: bool(started())), "no start event"
    return pids.index(int(started()[0].data["worker"].split(":")[1]))


def _until(check, seconds: float = 30) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + scaled(seconds)
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()
