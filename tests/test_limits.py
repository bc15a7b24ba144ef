"""Limits and client input that must never give a 500: each answered 4xx in OpenAI's error shape; the
server's own faults answered 5xx with a generic message; a stream that fails ends with an error event."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from bot_helpers import ScriptedBackend, write_registry
from environment import scaled
from web_server import running

from chatbot.backends.base import GenerationRequest
from chatbot.bot import Bot
from chatbot.defaults import MAX_BODY_BYTES, MAX_CHOICES, MAX_EXAMPLES_SEEN, MAX_MESSAGES
from chatbot.errors import ServerFault
from chatbot.web import create_app
from chatbot.web.errors import INTERNAL, UNAVAILABLE


class Failing(ScriptedBackend):
    """Fails on cue: 'crash' in a prompt is a bug of ours, 'down' a model that can't be reached; after one token when streamed."""

    def stream(self, request: GenerationRequest) -> Iterator[str]:
        if "crash" in request.prompt or "down" in request.prompt:
            yield " half"
            if "crash" in request.prompt:
                raise RuntimeError("secret internals: /srv/models/x.bin")
            raise ServerFault("skill 'shop': cannot reach http://10.0.0.7:8080/v1")
        return (yield from super().stream(request))


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("limits")
    write_registry(folder)
    bot = Bot.from_registry(folder / "models.yaml", db=f"sqlite:///{folder / 'c.db'}", backends={"local": Failing()})
    with running(create_app(bot)) as base:
        yield base


def post(url: str, path: str, body: object = None, **kw: object) -> httpx.Response:
    return httpx.post(url + path, timeout=scaled(30), **({"json": body} if body is not None else {}), **kw)  # type: ignore[arg-type]


def error_of(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def chat(text: object, **extra: object) -> dict:
    return {"model": "chatbot", "messages": [{"role": "user", "content": text}], **extra}


def test_bodies_past_the_limit_are_413_with_or_without_a_length(url: str) -> None:
    big = json.dumps(chat("x" * (MAX_BODY_BYTES + 10))).encode()
    assert "larger than" in error_of(post(url, "/v1/chat/completions", content=big, headers={"Content-Type": "application/json"}), 413)["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent chunked
        for start in range(0, len(big), 65536):
            yield big[start:start + 65536]

    error_of(post(url, "/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"}), 413)


def test_too_many_or_too_long_messages_and_prompts(url: str) -> None:
    many = {"model": "chatbot", "messages": [{"role": "user", "content": "hi"}] * (MAX_MESSAGES + 1)}
    assert error_of(post(url, "/v1/chat/completions", many), 400)["param"] == "messages"
    error_of(post(url, "/v1/chat/completions", chat("word " * 7000)), 400)  # 35,000 characters in all
    prompts = {"model": "shop", "prompt": ["hi\n\n###\n\n"] * 4, "n": MAX_CHOICES // 4 + 1}
    assert "prompts × n" in error_of(post(url, "/v1/completions", prompts), 400)["message"]
    error_of(post(url, "/v1/completions", {"model": "shop", "prompt": "x" * 40_000}), 400)
    error_of(post(url, "/v1/completions", {"model": "shop", "prompt": "hi", "max_tokens": 100_000}), 400)


@pytest.mark.parametrize("body", [
    chat([{"type": "text", "text": 5}]),  # a content part of the wrong type
    chat([{"type": "text"}]),  # a text part without text
    chat("hi", seed=2**64),  # beyond a generator's seed
])
def test_bad_values_are_400_not_500(url: str, body: dict) -> None:
    error_of(post(url, "/v1/chat/completions", body), 400)


def test_a_lone_surrogate_in_a_message_with_a_session_is_400(url: str) -> None:
    raw = b'{"model": "chatbot", "user": "s", "messages": [{"role": "user", "content": "hi \\ud800"}]}'
    assert "lone surrogate" in error_of(post(url, "/v1/chat/completions", content=raw, headers={"Content-Type": "application/json"}), 400)["message"]
    rest = b'{"text": "hi \\udfff"}'
    error_of(post(url, "/sessions/s/messages", content=rest, headers={"Content-Type": "application/json"}), 400)


def test_the_servers_faults_are_5xx_with_a_generic_message(url: str) -> None:
    crash = error_of(post(url, "/v1/chat/completions", chat("When are you open? crash please", user="x")), 500)
    assert crash["message"] == INTERNAL and "secret" not in crash["message"]
    down = error_of(post(url, "/v1/chat/completions", chat("When are you open? is the model down?", user="y")), 503)
    assert down["message"] == UNAVAILABLE and "10.0.0.7" not in down["message"]


def test_a_stream_that_fails_after_it_started_ends_with_an_error_event(url: str) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    pieces = []
    with pytest.raises(openai.APIError, match="unavailable"):
        for chunk in client.chat.completions.create(stream=True, **chat("is the model down?")):
            pieces.append(chunk.choices[0].delta.content if chunk.choices else "")
    assert " half" in pieces  # the tokens before the failure came through
    with httpx.stream("POST", url + "/sessions/z/messages", json={"text": "When are you open? crash"}, headers={"Accept": "text/event-stream"},
                      timeout=scaled(30)) as response:
        text = "".join(response.iter_text())
    assert "event: token" in text and "event: error" in text and INTERNAL in text


def test_fine_tuning_jobs_are_checked_when_created(url: str) -> None:
    rows = "".join(json.dumps({"prompt": f"q{i}\n\n###\n\n", "completion": f" a{i} END"}) + "\n" for i in range(5000))
    file_id = httpx.post(url + "/v1/files", files={"file": ("t.jsonl", rows.encode())}, data={"purpose": "fine-tune"},
                         timeout=scaled(30)).json()["id"]
    job = {"model": "smollm2-135m", "training_file": file_id}
    for hyper, param in (({"n_epochs": 10**6}, "n_epochs"), ({"batch_size": 0}, "batch_size"), ({"learning_rate_multiplier": -1}, "learning_rate")):
        assert param in error_of(post(url, "/v1/fine_tuning/jobs", job | {"hyperparameters": hyper}), 400)["param"]
    assert "hyperparameters" in error_of(post(url, "/v1/fine_tuning/jobs", job | {"method": {"type": "supervised", "supervised": {
        "hyperparameters": {"n_epochs": "lots"}}}}), 400)["param"]
    seen = error_of(post(url, "/v1/fine_tuning/jobs", job | {"hyperparameters": {"n_epochs": 50}}), 400)
    assert f"more than {MAX_EXAMPLES_SEEN:,} examples seen" in seen["message"]  # 50 × 5,000 rows
    for model in ("chatbot", "/etc", str(Path(__file__).parent)):  # never says whether a path exists
        refused = error_of(post(url, "/v1/fine_tuning/jobs", job | {"model": model}), 400)
        assert refused["code"] == "model_not_available" and refused["message"].startswith(f"model '{model}' is not a base model")


def test_uploads_past_the_limit_are_413(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import chatbot.web.fine_tuning_api as api

    monkeypatch.setattr(api, "MAX_UPLOAD_BYTES", 1000)
    big = b'{"prompt": "q\\n\\n###\\n\\n", "completion": " a END"}\n' * 100
    response = httpx.post(url + "/v1/files", files={"file": ("t.jsonl", big)}, data={"purpose": "fine-tune"}, timeout=scaled(30))
    assert "larger than 1,000 bytes" in error_of(response, 413)["message"]


def test_lists_page_in_order(url: str) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    file = client.files.create(file=("t.jsonl", b'{"prompt": "q\\n\\n###\\n\\n", "completion": " a END"}\n'), purpose="fine-tune")
    made = [client.fine_tuning.jobs.create(model="smollm2-135m", training_file=file.id).id for _ in range(3)]
    for job in made:
        client.fine_tuning.jobs.cancel(job)
    everything = [j.id for j in client.fine_tuning.jobs.list(limit=100).data]  # newest first; one second's jobs by id
    first = client.fine_tuning.jobs.list(limit=2)
    second = client.fine_tuning.jobs.list(limit=2, after=first.data[-1].id)
    assert sorted(everything) == sorted(made) and first.has_more and not second.has_more
    assert [j.id for j in first.data + second.data] == everything
    all_events = [e.id for e in client.fine_tuning.jobs.list_events(made[0], limit=100).data]
    events = client.fine_tuning.jobs.list_events(made[0], limit=1)
    rest = client.fine_tuning.jobs.list_events(made[0], limit=100, after=events.data[0].id)
    assert [e.id for e in events.data + rest.data] == all_events and events.has_more and not rest.has_more
    assert rest.data[-1].message == f"Created fine-tuning job: {made[0]}"  # the oldest last
