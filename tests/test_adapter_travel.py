"""An adapter trained here loads elsewhere: its config names the base by origin, and its model card says how it was made."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from chatbot import registry as registry_io
from chatbot.runtime.base_models import base_origin
from chatbot.training.model_card import point_at_origin

ROWS = [{"prompt": f"When is shop number {i} open?\n\n###\n\n", "completion": f" From {i} to 6. END"} for i in range(8)]


def _trained(folder: Path, base: str) -> Path:
    from chatbot.training.hyperparams import Hyperparameters
    from chatbot.training.skill import train_skill

    data = folder / "shop.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    train_skill("shop", "qa", data, base=base, hyperparameters=Hyperparameters(n_epochs=20, batch_size=4, learning_rate_multiplier=1, lora_dropout=0.0), registry_path=folder / "models.yaml")
    return folder / "adapters" / "shop"


def test_plain_peft_loads_the_adapter_against_the_base_saved_in_another_folder(tiny_base: str, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from chatbot.backends.base import GenerationRequest
    from chatbot.backends.local import LocalBackend

    adapter = _trained(tmp_path, tiny_base)
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(Path(tiny_base).resolve())  # a local base: its folder
    elsewhere = shutil.copytree(tiny_base, tmp_path / "another-machine" / "base")
    tokenizer = AutoTokenizer.from_pretrained(elsewhere)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(elsewhere), adapter).eval()
    ids = tokenizer(ROWS[0]["prompt"], return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    theirs = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    ours = LocalBackend().complete(GenerationRequest(prompt=ROWS[0]["prompt"], base_model=tiny_base, adapter=str(adapter), max_tokens=6,
                                                     stop=[]))
    assert theirs == ours.text and theirs.startswith(" From")  # the adapter's answer, not the base's


def test_the_bundled_base_is_named_by_its_hugging_face_id(tmp_path: Path) -> None:
    assert base_origin("smollm2-135m") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert base_origin("Qwen/Qwen2.5-0.5B") == "Qwen/Qwen2.5-0.5B"  # a hub id stays one
    (tmp_path / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/root/.cache/chatbot/models/smollm2-135m"}))
    point_at_origin(tmp_path, "smollm2-135m")
    assert json.loads((tmp_path / "adapter_config.json").read_text())["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_the_model_card_tells_how_the_adapter_was_made_and_how_it_scored(tiny_base: str, tmp_path: Path) -> None:
    import yaml
    from typer.testing import CliRunner

    from chatbot.cli import app

    adapter = _trained(tmp_path, tiny_base)
    record = registry_io.load(tmp_path / "models.yaml").get("shop").training
    card = (adapter / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["base_model"] == str(Path(tiny_base).resolve()) and front["library_name"] == "peft"
    assert record.data_sha256 in card and f"{record.train_loss}" in card and '"n_epochs": 20' in card
    assert record.trained_tokens > 0 and f"trained tokens: {record.trained_tokens}" in card and "precision: fp32 on cpu" in card
    assert "## Evaluation" not in card
    result = CliRunner().invoke(app, ["eval", "shop", "--data", str(tmp_path / "shop.jsonl"), "--registry", str(tmp_path / "models.yaml")])
    assert result.exit_code == 0, result.output
    assert "## Evaluation" in (adapter / "README.md").read_text()
