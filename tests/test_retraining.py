"""Retraining a skill keeps what its user set by hand, on the local and on the hosted path alike."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from chatbot import registry as registry_io
from chatbot.registry import HAND_SET, Skill

HAND = {"routing_examples": ["book my bike in", "a brake service on friday"], "history_turns": 3, "ground_entities": False,
        "description": "my own words"}


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
