"""The web app on a real uvicorn on loopback, called with the official openai client and httpx."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from bot_helpers import ScriptedBackend, write_registry
from environment import scaled
from web_server import running

from chatbot.bot import Bot
from chatbot.web import create_app


class GatedBackend(ScriptedBackend):
    """Holds generations about opening hours until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.entered = threading.Event()

    def stream(self, request):  # noqa: ANN001, ANN201
        if "open" in request.prompt:
            self.entered.set()
            self.gate.wait(timeout=scaled(30))
        return (yield from super().stream(request))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Bot, ScriptedBackend]]:
    folder = tmp_path_factory.mktemp("web")
    write_registry(folder)
    backend = ScriptedBackend()
    bot = Bot.from_registry(folder / "models.yaml", db=f"sqlite:///{folder / 'chat.db'}", backends={"local": backend})
    with running(create_app(bot)) as url:
        yield url, bot, backend


@pytest.fixture
def client(server: tuple[str, Bot, ScriptedBackend]) -> openai.OpenAI:
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="unused", max_retries=0)


def test_models_lists_the_bot_and_its_skills(client: openai.OpenAI) -> None:
    models = list(client.models.list())
    ids = [m.id for m in models]
    assert ids[0] == "chatbot" and sorted(ids[1:-1]) == ["booking", "mood", "shop"]
    assert ids[-1] == "smollm2-135m" and models[-1].model_extra["kind"] == "base"  # what fine-tuning jobs start from
    assert client.models.retrieve("mood").id == "mood"
    mood = client.models.retrieve("mood").model_extra
    assert mood["parent"] == "smollm2-135m" and mood["root"] == "HuggingFaceTB/SmolLM2-135M-Instruct"  # a child of its base, as vLLM lists LoRAs
    base = client.models.retrieve("smollm2-135m")
    assert base.model_extra["kind"] == "base" and base.model_extra["root"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "parent" not in base.model_extra
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_chat_with_a_session_routes_and_remembers(client: openai.OpenAI, server: tuple[str, Bot, ScriptedBackend]) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="chatbot", user="web-alice", messages=[{"role": "user", "content": "Can I bring my Trek in on Friday?"}])
    assert raw.headers["x-chatbot-skill"] == "booking"
    reply = raw.parse()
    assert reply.object == "chat.completion" and reply.choices[0].message.content == "bike: Trek\nday: Friday"
    about = reply.model_extra["chatbot"]
    assert about["skill"] == "booking" and about["session_id"] == "web-alice" and about["entities"]["day"] == ["Friday"]
    # usage counts what the model read and wrote (the scripted backend's tokens are words): the prompt with its separator, and
    # " bike:['Trek']\nday:['Friday']", one word, not the reply shown
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (len(server[2].requests[-1].prompt.split()), 1)
    assert reply.choices[0].finish_reason == "stop" and reply.system_fingerprint.startswith("fp_")

    fallback = client.chat.completions.create(model="chatbot", messages=[{"role": "user", "content": "Who painted the Mona Lisa?"}],
                                              extra_headers={"X-Session-Id": "web-alice"})
    assert fallback.choices[0].message.content == "Sorry, I only know about bikes." and fallback.model_extra["chatbot"]["fallback"]
    assert fallback.usage.total_tokens == 0  # no model read or wrote anything
    assert [t.user for t in server[1].session("web-alice").history] == ["Can I bring my Trek in on Friday?", "Who painted the Mona Lisa?"]


def test_chat_streams_in_openai_chunks(client: openai.OpenAI, server: tuple[str, Bot, ScriptedBackend]) -> None:
    chunks = list(client.chat.completions.create(model="chatbot", user="web-stream", stream=True, stream_options={"include_usage": True},
                                                  messages=[{"role": "user", "content": "When are you open?"}]))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == " We are open 9 to 6."
    assert chunks[0].choices[0].delta.role == "assistant"
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason == "stop"]
    assert len(finals) == 1 and finals[0].model_extra["chatbot"]["skill"] == "shop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert server[1].session("web-stream").history[0].reply == "We are open 9 to 6."

    with httpx.stream("POST", server[0] + "/v1/chat/completions", json={"model": "chatbot", "stream": True,
                      "messages": [{"role": "user", "content": "Where is the shop?"}]}) as response:
        lines = [line for line in response.iter_lines() if line]
    assert response.headers["x-chatbot-skill"] == "shop" and lines[-1] == "data: [DONE]"


def test_without_a_session_the_messages_are_the_history(client: openai.OpenAI, server: tuple[str, Bot, ScriptedBackend]) -> None:
    backend = server[2]
    before = len(server[1].sessions())
    client.chat.completions.create(model="chatbot", messages=[
        {"role": "system", "content": "be nice"}, {"role": "user", "content": "When are you open?"},
        {"role": "assistant", "content": "9 to 6."}, {"role": "user", "content": "Where is the shop?"}])
    assert backend.requests[-1].prompt == "User: When are you open?\nAssistant: 9 to 6.\nUser: Where is the shop?\n\n###\n\n"
    assert len(server[1].sessions()) == before  # nothing stored


def test_a_skill_name_calls_that_skill_directly(client: openai.OpenAI, server: tuple[str, Bot, ScriptedBackend]) -> None:
    reply = client.chat.completions.create(model="mood", messages=[{"role": "user", "content": "Where is the shop?"}], max_tokens=3,
                                           temperature=0.5, stop=["\n"])
    assert reply.model_extra["chatbot"]["skill"] == "mood"  # not what the router would pick
    request = server[2].requests[-1]
    assert request.max_tokens == 3 and request.temperature == 0.5 and request.stop == ["\n"]


def test_legacy_completions_with_n_echo_and_streaming(client: openai.OpenAI, server: tuple[str, Bot, ScriptedBackend]) -> None:
    prompt = "The staff were great!\n\n###\n\n"
    done = client.completions.create(model="mood", prompt=prompt, n=2, echo=True, max_tokens=5)
    assert [c.index for c in done.choices] == [0, 1] and all(c.text == prompt + " positive" for c in done.choices)
    assert server[2].requests[-1].prompt == prompt and server[2].requests[-1].max_tokens == 5
    streamed = "".join(c.choices[0].text for c in client.completions.create(model="mood", prompt=prompt, stream=True))
    assert streamed == " positive"


def test_errors_come_in_openais_shape(client: openai.OpenAI, server: tuple[str, Bot, ScriptedBackend]) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-9", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.body["code"] == "model_not_found" and missing.value.body["param"] == "model"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="chatbot", messages=[{"role": "user", "content": "hi"}], temperature=7)
    assert bad.value.status_code == 400 and bad.value.body["param"] == "temperature" and bad.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError, match="last message must be a non-empty user message"):
        client.chat.completions.create(model="chatbot", messages=[{"role": "assistant", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="use /v1/chat/completions"):
        client.completions.create(model="chatbot", prompt="hi")
    response = httpx.post(server[0] + "/v1/chat/completions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and set(response.json()["error"]) == {"message", "type", "param", "code"}


def test_rest_api_json_sse_history_and_delete(server: tuple[str, Bot, ScriptedBackend]) -> None:
    url = server[0]
    reply = httpx.post(f"{url}/sessions/rest-1/messages", json={"text": "Please book my Giant in for a service."}).json()
    assert reply["skill"] == "booking" and reply["entities"] == {"bike": ["Giant"]} and reply["turn"] == 0
    with httpx.stream("POST", f"{url}/sessions/rest-1/messages", json={"text": "When are you open?"},
                      headers={"Accept": "text/event-stream"}) as response:
        body = "".join(response.iter_text())
    events = [block for block in body.strip().split("\n\n")]
    tokens = [json.loads(e.split("data: ", 1)[1])["text"] for e in events if e.startswith("event: token")]
    final = json.loads(events[-1].split("data: ", 1)[1])
    assert "".join(tokens) == " We are open 9 to 6." and events[-1].startswith("event: reply") and final["turn"] == 1
    session = httpx.get(f"{url}/sessions/rest-1").json()
    assert [t["user"] for t in session["history"]] == ["Please book my Giant in for a service.", "When are you open?"]
    assert "rest-1" in [s["id"] for s in httpx.get(f"{url}/sessions").json()]
    assert httpx.delete(f"{url}/sessions/rest-1").status_code == 204
    missing = httpx.get(f"{url}/sessions/rest-1")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "session_not_found"
    assert httpx.post(f"{url}/sessions/rest-1/messages", json={"text": ""}).status_code == 400


def test_health_docs_and_page(server: tuple[str, Bot, ScriptedBackend]) -> None:
    url = server[0]
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{url}/readyz")
    assert ready.status_code == 200 and sorted(ready.json()["skills"]) == ["booking", "mood", "shop"]
    assert "/v1/chat/completions" in httpx.get(f"{url}/openapi.json").json()["paths"]
    assert httpx.get(f"{url}/docs").status_code == 200
    assert "<title>chatbot</title>" in httpx.get(f"{url}/").text


def test_the_event_loop_stays_free_while_a_reply_is_generated(tmp_path: Path) -> None:
    write_registry(tmp_path)
    backend = GatedBackend()
    bot = Bot.from_registry(tmp_path / "models.yaml", db=f"sqlite:///{tmp_path / 'c.db'}", backends={"local": backend})
    with running(create_app(bot)) as url:
        result: dict = {}
        slow = threading.Thread(target=lambda: result.update(httpx.post(f"{url}/sessions/a/messages", json={"text": "When are you open?"},
                                                                       timeout=scaled(30)).json()))
        slow.start()
        assert backend.entered.wait(10)  # the model is busy with session a ...
        assert httpx.get(f"{url}/healthz", timeout=scaled(15)).status_code == 200  # ... and the server still answers
        other = httpx.post(f"{url}/sessions/b/messages", json={"text": "I love my new helmet!"}, timeout=scaled(15)).json()
        assert other["text"] == "positive"  # another session is answered meanwhile
        backend.gate.set()
        slow.join(timeout=scaled(30))
    assert result["text"] == "We are open 9 to 6."


def test_the_app_mounts_inside_another_app(tmp_path: Path) -> None:
    from fastapi import FastAPI

    write_registry(tmp_path)
    bot = Bot.from_registry(tmp_path / "models.yaml", db=f"sqlite:///{tmp_path / 'c.db'}", backends={"local": ScriptedBackend()})
    host = FastAPI()

    @host.get("/")
    def home() -> dict[str, str]:
        return {"app": "mine"}

    host.mount("/bot", create_app(bot))
    with running(host) as url:
        assert httpx.get(url + "/").json() == {"app": "mine"}
        client = openai.OpenAI(base_url=url + "/bot/v1", api_key="unused", max_retries=0)
        assert client.chat.completions.create(model="chatbot", messages=[{"role": "user", "content": "Where is the shop?"}]).choices[0].message.content
        assert httpx.post(url + "/bot/sessions/m/messages", json={"text": "Where is the shop?"}).json()["skill"] == "shop"
        assert "<title>chatbot</title>" in httpx.get(url + "/bot/").text
