"""Each skill answers with its own LoRA adapter: the local backend with the tiny base and two adapters,
through the Bot and the chat command (no scripted model)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import ADAPTER_ANSWERS, ADAPTER_PROMPTS
from typer.testing import CliRunner

from chatbot.backends.base import GenerationRequest
from chatbot.backends.local import LocalBackend
from chatbot.bot import Bot
from chatbot.cli import app

OPENING, REVIEW = (p.removesuffix("\n\n###\n\n") for p in ADAPTER_PROMPTS)


@pytest.fixture
def registry(tiny_adapters: tuple[str, str, str], tmp_path: Path) -> Path:
    """shop answers with adapter a, mood with adapter b: the same prompt gets a different answer from each."""
    base, a, b = tiny_adapters
    common = {"base_model": base, "separator": "\n\n###\n\n", "stop": [" END"], "generation": {"max_tokens": 16}}
    skills = {
        "shop": common | {"kind": "qa", "adapter": a, "routing_examples": [
            "What are your opening hours?", "When do you open?", "Are you open on Sundays?", "Where is the shop?", "Can I pay by card?"]},
        "mood": common | {"kind": "classify", "adapter": b, "routing_examples": [
            "The battery died after a week.", "Great bike, I love it.", "Terrible repair, the brakes squeak.", "The chain broke after a day.",
            "Very happy with my new helmet."]},
    }
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "skills": skills}))
    return path


def test_the_adapters_answer_differently(tiny_adapters: tuple[str, str, str]) -> None:
    base, a, b = tiny_adapters
    backend = LocalBackend()
    ask = lambda adapter, prompt: backend.complete(GenerationRequest(prompt=prompt, base_model=base, adapter=adapter, stop=[" END"])).text  # noqa: E731
    assert [ask(a, p) for p in ADAPTER_PROMPTS] == ADAPTER_ANSWERS["a"]
    assert [ask(b, p) for p in ADAPTER_PROMPTS] == ADAPTER_ANSWERS["b"]
    assert ask(None, ADAPTER_PROMPTS[0]) not in ADAPTER_ANSWERS["a"] + ADAPTER_ANSWERS["b"]


def test_the_bot_answers_each_skill_with_its_own_adapter(registry: Path, tmp_path: Path) -> None:
    bot = Bot.from_registry(registry, db=f"sqlite:///{tmp_path / 'c.db'}")
    opening = bot.reply("s", OPENING)
    assert opening.skill == "shop" and opening.text == ADAPTER_ANSWERS["a"][0].strip()  # adapter b would say "positive"
    review = bot.reply("s", REVIEW)
    assert review.skill == "mood" and review.label == ADAPTER_ANSWERS["b"][1].strip()  # adapter a would say "negative"
    assert "".join(bot.stream_once(OPENING)) == ADAPTER_ANSWERS["a"][0]  # streamed token by token, the same answer
    bot.close()


def test_piped_chat_answers_each_skill_with_its_own_adapter(registry: Path) -> None:
    result = CliRunner().invoke(app, ["chat", "--registry", str(registry)], input=f"{OPENING}\n{REVIEW}\n", catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [ADAPTER_ANSWERS["a"][0].strip(), ADAPTER_ANSWERS["b"][1].strip()]
