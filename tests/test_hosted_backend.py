"""The openai backend against a real OpenAI-compatible server on loopback (ours, serving a scripted bot)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from bot_helpers import REGISTRY, ScriptedBackend, write_registry
from web_server import free_port, running

from chatbot.backends.base import GenerationRequest
from chatbot.backends.hosted import OpenAIBackend
from chatbot.bot import Bot
from chatbot.errors import ChatbotError
from chatbot.web import create_app


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("hosted")
    write_registry(folder)
    bot = Bot.from_registry(folder / "models.yaml", db=f"sqlite:///{folder / 'c.db'}", backends={"local": ScriptedBackend()})
    with running(create_app(bot)) as url:
        yield url + "/v1"


def test_completions_and_chat_through_the_sdk(server: str) -> None:
    request = GenerationRequest(prompt="I love it!\n\n###\n\n", base_model="mood", max_tokens=5, stop=[" END"], skill="hosted-mood")
    legacy = OpenAIBackend(base_url=server)
    assert "".join(legacy.stream(request)) == " positive"
    done = legacy.complete(request)
    assert done.text == " positive" and done.finish_reason == "stop" and done.completion_tokens > 0
    chat = OpenAIBackend(base_url=server, api="chat")
    assert "".join(chat.stream(request.model_copy(update={"prompt": "I love it!"}))) == "positive"  # a label streams parsed
    assert chat.complete(request.model_copy(update={"prompt": "I love it!"})).text == "positive"


def test_a_mixed_bot_answers_with_local_and_hosted_skills(server: str, tmp_path: Path) -> None:
    skills = dict(REGISTRY["skills"])
    skills["mood"] = skills["mood"] | {"backend": "openai", "model": "mood", "base_url": server}
    write_registry(tmp_path, skills=skills)
    local = ScriptedBackend()
    bot = Bot.from_registry(tmp_path / "models.yaml", db=f"sqlite:///{tmp_path / 'c.db'}", backends={"local": local})
    hosted = bot.reply("m", "I love my new helmet, excellent quality!")
    assert hosted.skill == "mood" and hosted.label == "positive" and local.requests == []
    stream = bot.stream("m", "Where is the shop?")
    assert "".join(stream) == " We are open 9 to 6." and stream.reply.skill == "shop" and len(local.requests) == 1


def test_clear_errors_name_the_skill_and_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()  # nothing listens there once closed
    request = GenerationRequest(prompt="hi", base_model="m", skill="faq")
    down = OpenAIBackend(base_url=f"http://127.0.0.1:{port}/v1", max_retries=0, timeout=5)
    with pytest.raises(ChatbotError, match=rf"skill 'faq': cannot reach http://127.0.0.1:{port}/v1"):
        list(down.stream(request))
    monkeypatch.delenv("MY_KEY", raising=False)
    with pytest.raises(ChatbotError, match=r"skill 'faq': https://api.openai.com/v1 needs an API key: \$MY_KEY is not set"):
        OpenAIBackend(api_key_env="MY_KEY").complete(request)


def test_unknown_hosted_model_and_registry_check(server: str, tmp_path: Path) -> None:
    with pytest.raises(ChatbotError, match="has no model 'nope'"):
        OpenAIBackend(base_url=server).complete(GenerationRequest(prompt="hi", base_model="nope"))
    write_registry(tmp_path, skills={"x": {"kind": "qa", "backend": "openai"}})
    from chatbot import registry as registry_io

    with pytest.raises(ChatbotError, match="needs `model:`"):
        registry_io.load(tmp_path / "models.yaml")
