"""Retraining a skill keeps what its user set by hand, on the local and on the hosted path alike."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from chatbot import registry as registry_io
from chatbot.registry import HAND_SET, Skill

HAND = {"routing_examples": ["book my bike in", "a brake service on friday"], "history_turns": 3, "ground_entities": False,
        "description": "my own words", "routing": False, "reply": "Booked: your {bike} on {day}.",
        "ask_for": {"day": "Which day?"}, "ask_as": "book a repair"}


def _registry_with_hand_set_skill(folder: Path, **fields: object) -> Path:
    path = folder / "models.yaml"
    registry_io.register(Skill(name="booking", kind="extract", **(HAND | fields)), path)
    return path


def test_the_hand_set_fields_are_the_ones_a_user_edits():
    assert set(HAND_SET) == set(HAND)


def test_local_retraining_keeps_the_hand_set_fields(tiny_base: str, tmp_path: Path):
    from chatbot.training.hyperparams import Hyperparameters
    from chatbot.training.skill import train_skill

    path = _registry_with_hand_set_skill(tmp_path)
    data = tmp_path / "booking.jsonl"
    rows = [{"prompt": f"book my bike number {i} on friday\n\n###\n\n", "completion": f" bike:['bike number {i}'] END"} for i in range(8)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    hp = Hyperparameters(n_epochs=1, batch_size=4)
    skill = train_skill("booking", "extract", data, base=tiny_base, hyperparameters=hp, registry_path=path, force=True)
    stored = registry_io.load(path).get("booking")
    for found in (skill, stored):
        assert {key: getattr(found, key) for key in HAND} == HAND
        assert found.training is not None and found.training.data_sha256
    renamed = train_skill("booking", "extract", data, base=tiny_base, hyperparameters=hp, registry_path=path, force=True,
                          description="a new description")
    assert renamed.description == "a new description" and renamed.ground_entities is False


def _succeeded_job(**metadata: str) -> SimpleNamespace:
    return SimpleNamespace(id="ftjob-1", status="succeeded", fine_tuned_model="ft:booking-1", model="smollm2-135m", created_at=100,
                           finished_at=160, error=None, hyperparameters=SimpleNamespace(model_dump=lambda: {"n_epochs": 2}),
                           metadata={"skill": "booking", "kind": "extract", "separator": "\n\n###\n\n", "stop": " END", **metadata})


@pytest.mark.parametrize("description", ["", "from the job"])
def test_hosted_retraining_keeps_the_hand_set_fields(tmp_path: Path, description: str):
    from chatbot.training.hosted import register

    path = _registry_with_hand_set_skill(tmp_path)
    skill = register(_succeeded_job(description=description), base_url="http://127.0.0.1:9/v1", api_key_env="KEY", registry_path=path)
    stored = registry_io.load(path).get("booking")
    for found in (skill, stored):
        assert found.backend == "openai" and found.model == "ft:booking-1"
        expected = HAND | ({"description": description} if description else {})
        assert {key: getattr(found, key) for key in HAND} == expected


QUESTIONS = ["What are your opening hours?", "Where is the shop?", "Do you repair e-bikes?", "Can I pay by card?"]


def _write(path: Path, answers: list[str]) -> Path:
    path.write_text("".join(json.dumps({"prompt": q + "\n\n###\n\n", "completion": f" {a} END"}) + "\n" for q, a in zip(QUESTIONS, answers)))
    return path


def test_retraining_while_a_bot_holds_the_skill_serves_the_new_adapter(tiny_base: str, tmp_path: Path):
    """The next reply comes from the new weights, no request fails meanwhile, and the old weights leave memory."""
    import threading

    from chatbot.bot import Bot
    from chatbot.training.hyperparams import Hyperparameters
    from chatbot.training.skill import train_skill

    hp = Hyperparameters(n_epochs=40, batch_size=2, learning_rate_multiplier=1, lora_r=8, lora_dropout=0.0)
    path = tmp_path / "models.yaml"
    old = _write(tmp_path / "old.jsonl", ["We open at 9am", "On the high street", "Yes we do", "Yes by card"])
    new = _write(tmp_path / "new.jsonl", ["positive", "negative", "a red mug", "no entity"])
    train_skill("shop", "qa", old, base=tiny_base, hyperparameters=hp, registry_path=path)
    bot = Bot.from_registry(path, router=SimpleNamespace(route=None))  # asked by name: no router needed
    assert bot.reply_once(QUESTIONS[0], skill="shop").text == "We open at 9am"

    failures: list[BaseException] = []
    stop = threading.Event()

    def keep_asking() -> None:
        while not stop.is_set():
            try:
                bot.reply_once(QUESTIONS[1], skill="shop")
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                failures.append(exc)

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        train_skill("shop", "qa", new, base=tiny_base, hyperparameters=hp, registry_path=path, force=True)
        bot.reload()
        assert bot.reply_once(QUESTIONS[0], skill="shop").text == "positive"
    finally:
        stop.set()
        asker.join()
    assert not failures
    slots = bot.backend_for(bot.registry.get("shop"))._bases[tiny_base].slots
    assert len(slots.resident()) == 1  # the new weights took the old adapter's slot, not a second one
