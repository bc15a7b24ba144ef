"""Hosted fine-tuning end to end, on SmolLM2: `chatbot serve` on loopback trains 40 rows of job-ner.

First with the official openai client (files, job, events, a completion from the new model), then
with `chatbot train --hosted`, after which the skill answers in `chatbot chat`. Slow: run by `.ci/run`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from environment import scaled, shared_data
from web_server import free_port, server_process

from chatbot.backends.base import GenerationRequest
from chatbot.backends.local import LocalBackend
from chatbot.skills.metrics import extract_metrics

pytestmark = pytest.mark.slow
CHATBOT = str(Path(sys.executable).with_name("chatbot"))


def chatbot(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CHATBOT, *args], cwd=cwd, text=True, capture_output=True, timeout=scaled(1800), input=stdin,
                          env=os.environ | {"CHATBOT_THREADS": str(os.cpu_count() or 1)})


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lines = shared_data("job-ner/train.jsonl").read_text(encoding="utf-8").splitlines()
    path = tmp_path_factory.mktemp("data") / "job_ner_40.jsonl"
    path.write_text("\n".join(lines[:40]) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("server")
    url = f"http://127.0.0.1:{free_port()}"
    with server_process([CHATBOT, "serve", "--port", url.rsplit(":", 1)[1]], url + "/readyz", folder / "serve.log", cwd=folder,
                        env=os.environ | {"CHATBOT_THREADS": str(os.cpu_count() or 1)}):
        yield url + "/v1"


def test_the_openai_client_fine_tunes_and_uses_a_model(server: str, rows: Path) -> None:
    client = openai.OpenAI(base_url=server, api_key="unused", max_retries=0)
    file = client.files.create(file=rows.open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="smollm2-135m", training_file=file.id, hyperparameters={"n_epochs": 1},
                                         metadata={"kind": "extract"})
    deadline = time.monotonic() + scaled(1500)
    while (job := client.fine_tuning.jobs.retrieve(job.id)).status not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline, "the job did not end in time"
        time.sleep(3)
    assert job.status == "succeeded", job.error
    events = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert events[0] == "The job has successfully completed" and "Fine-tuning job started" in events
    assert any(m.startswith("Epoch 1 done") for m in events)
    assert job.fine_tuned_model in [m.id for m in client.models.list()]
    # the 20 rows it did not see, answered by the new model through the server and by the untuned base here
    held_out = [json.loads(line) for line in shared_data("job-ner/train.jsonl").read_text(encoding="utf-8").splitlines()[40:]]
    prompts, references = [r["prompt"] for r in held_out], [r["completion"] for r in held_out]
    answers = []
    for start in range(0, len(prompts), 10):  # at most 16 completions a request
        tuned = client.completions.create(model=job.fine_tuned_model, prompt=prompts[start:start + 10], max_tokens=120, stop=[" END"],
                                          temperature=0)
        answers += [c.text for c in sorted(tuned.choices, key=lambda c: c.index)]
    base = LocalBackend()
    untuned = [base.complete(GenerationRequest(prompt=p, base_model="smollm2-135m", max_tokens=120, stop=[" END"])).text for p in prompts]
    f1, base_f1 = (extract_metrics(a, references, [" END"], prompts)["micro_f1"] for a in (answers, untuned))
    assert f1 > base_f1 + 0.1, (f1, base_f1)


def test_train_hosted_then_chat(server: str, rows: Path, tmp_path: Path) -> None:
    trained = chatbot("train", "job-ner", "--hosted", "--base-url", server, "--base", "smollm2-135m", "--kind", "extract",
                      "--data", str(rows), "--epochs", "1", cwd=tmp_path)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "registered as skill job-ner" in trained.stdout
    message = json.loads(shared_data("job-ner/train.jsonl").read_text(encoding="utf-8").splitlines()[50])["prompt"].split("\n\n###")[0].replace("\n", " ")
    chat = chatbot("chat", "--session", "hosted", cwd=tmp_path, stdin=message + "\n")
    assert chat.returncode == 0, chat.stderr
    assert len(chat.stdout.splitlines()) == 1
    session = json.loads(chatbot("sessions", "show", "hosted", "--json", cwd=tmp_path).stdout)
    assert session["history"][0]["skill"] == "job-ner"
