"""The web API answering through the local backend with the tiny base and two adapters: each skill's
answer comes from its own adapter, and usage and finish reasons are exact."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from bot_helpers import write_adapter_registry
from conftest import ADAPTER_ANSWERS, ADAPTER_PROMPTS
from transformers import AutoTokenizer
from web_server import running

from chatbot.bot import Bot
from chatbot.web import create_app

OPENING, REVIEW = (p.removesuffix("\n\n###\n\n") for p in ADAPTER_PROMPTS)


@pytest.fixture(scope="module")
def served(tiny_adapters: tuple[str, str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[openai.OpenAI, str]]:
    base, a, b = tiny_adapters
    folder = tmp_path_factory.mktemp("web-adapters")
    write_adapter_registry(folder, base, a, b, max_tokens=16)
    bot = Bot.from_registry(folder / "models.yaml", db=f"sqlite:///{folder / 'chat.db'}")
    with running(create_app(bot, fine_tuning=False)) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0), base


def tokens(base: str, text: str) -> int:
    return len(AutoTokenizer.from_pretrained(base)(text, add_special_tokens=False)["input_ids"])


def test_routed_chat_answers_with_each_skills_adapter(served: tuple[openai.OpenAI, str]) -> None:
    client, base = served
    opening = client.chat.completions.create(model="chatbot", messages=[{"role": "user", "content": OPENING}])
    assert opening.choices[0].message.content == ADAPTER_ANSWERS["a"][0].strip() and opening.model_extra["chatbot"]["skill"] == "shop"
    # the tokens the model read (the message and its separator) and wrote (the stop sequence too), as /v1/completions counts them
    assert (opening.usage.prompt_tokens, opening.usage.completion_tokens) == (tokens(base, OPENING + "\n\n###\n\n"),
                                                                              tokens(base, opening.choices[0].message.content + " END"))
    review = client.chat.completions.create(model="chatbot", messages=[{"role": "user", "content": REVIEW}])
    assert review.choices[0].message.content == ADAPTER_ANSWERS["b"][1].strip() and review.model_extra["chatbot"]["skill"] == "mood"


def test_completions_name_a_skill_and_report_exact_usage(served: tuple[openai.OpenAI, str]) -> None:
    client, base = served
    for skill, adapter in (("shop", "a"), ("mood", "b")):
        done = client.completions.create(model=skill, prompt=ADAPTER_PROMPTS, max_tokens=16)
        assert [c.text for c in sorted(done.choices, key=lambda c: c.index)] == ADAPTER_ANSWERS[adapter]
        assert all(c.finish_reason == "stop" for c in done.choices)
        assert done.usage.prompt_tokens == sum(tokens(base, p) for p in ADAPTER_PROMPTS)
        # every token generated is counted, the stop sequence's too (it is cut from the text, not from the work)
        assert done.usage.completion_tokens == sum(tokens(base, answer + " END") for answer in ADAPTER_ANSWERS[adapter])
    short = client.completions.create(model="shop", prompt=ADAPTER_PROMPTS[0], max_tokens=2)
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 2
    assert ADAPTER_ANSWERS["a"][0].startswith(short.choices[0].text) and short.choices[0].text


def test_streams_end_with_the_true_finish_reason_and_usage(served: tuple[openai.OpenAI, str]) -> None:
    client, base = served
    chunks = list(client.completions.create(model="shop", prompt=ADAPTER_PROMPTS[0], max_tokens=2, stream=True,
                                            stream_options={"include_usage": True}))
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length" and chunks[-1].choices == []
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (tokens(base, ADAPTER_PROMPTS[0]), 2)
    assert all(c.system_fingerprint and c.system_fingerprint == chunks[0].system_fingerprint for c in chunks)
    chat = list(client.chat.completions.create(model="chatbot", messages=[{"role": "user", "content": OPENING}], max_tokens=2, stream=True,
                                               stream_options={"include_usage": True}))
    assert [c.choices[0].finish_reason for c in chat if c.choices][-1] == "length"
    assert chat[-1].usage.completion_tokens == 2 and chat[-1].usage.prompt_tokens == tokens(base, ADAPTER_PROMPTS[0])
    whole = client.chat.completions.create(model="chatbot", messages=[{"role": "user", "content": OPENING}], max_tokens=2)
    assert whole.choices[0].finish_reason == "length" and whole.system_fingerprint == chat[0].system_fingerprint
