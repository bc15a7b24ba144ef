import json
from pathlib import Path

import pytest

from chatbot.training.hyperparams import REFERENCE_LEARNING_RATE, Hyperparameters
from chatbot.training.trainer import encode, train_lora

PAIRS = [
    ("What are your opening hours?\n\n###\n\n", " We open at 9am END"),
    ("The battery died after a day.\n\n###\n\n", " negative END"),
    ("hello world\n\n###\n\n", " no entity END"),
    ("Write a description of a red mug\n\n###\n\n", " a red ceramic mug END"),
]


def test_defaults_follow_data_size():
    small = Hyperparameters().resolved(40)
    assert small.n_epochs == 6 and small.batch_size == 4 and small.learning_rate_multiplier == 0.2
    big = Hyperparameters().resolved(100_000)
    assert big.n_epochs == 1 and big.batch_size == 200 and big.learning_rate_multiplier == 0.05
    mid = Hyperparameters().resolved(5_000)
    assert mid.n_epochs == 3 and mid.batch_size == 10 and mid.learning_rate_multiplier == 0.1
    assert Hyperparameters(n_epochs=2, batch_size=64).resolved(10).batch_size == 10  # never above the data
    assert Hyperparameters(learning_rate_multiplier=0.5).learning_rate == 0.5 * REFERENCE_LEARNING_RATE


def test_bad_hyperparameter_is_rejected():
    with pytest.raises(ValueError, match="n_epochs"):
        Hyperparameters(n_epochs=0)
    with pytest.raises(ValueError, match="prompt_loss_weight"):
        Hyperparameters(prompt_loss_weight=2)


def test_prompt_loss_weight_applies_to_prompt_predictions(tiny_base: str):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    ids, weights = encode(tokenizer, "hello world\n\n###\n\n", " no entity END", 512, 0.01)
    n_prompt = len(tokenizer("hello world\n\n###\n\n", add_special_tokens=False)["input_ids"])
    assert ids[-1] == tokenizer.eos_token_id and len(ids) == len(weights)
    # weight i is for predicting token i+1: prompt tokens after the first get 0.01, completion tokens 1
    assert weights[: n_prompt - 1] == [0.01] * (n_prompt - 1)
    assert weights[n_prompt - 1 : -1] == [1.0] * (len(ids) - n_prompt) and weights[-1] == 0.0
    short, _ = encode(tokenizer, "hello world " * 50 + "\n\n###\n\n", " no entity END", 32, 0.0)
    assert len(short) == 32 and tokenizer.decode(short).endswith("###\n\n no entity END<|endoftext|>")


def test_lora_training_learns_and_saves_a_peft_adapter(tiny_base: str, tmp_path: Path):
    epochs = []
    result = train_lora(
        PAIRS, tmp_path / "adapter", base_model=tiny_base,
        hyperparameters=Hyperparameters(n_epochs=30, batch_size=2, learning_rate_multiplier=1, lora_r=8, lora_dropout=0.0),
        valid_examples=PAIRS[:2], on_epoch=lambda e, t, v: epochs.append((e, t, v)),
    )
    assert len(result.train_loss) == 30 and len(result.valid_loss) == 30 and len(epochs) == 30
    assert result.train_loss[-1] < 0.25 * result.train_loss[0]
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8
    assert (tmp_path / "adapter" / "adapter_model.safetensors").exists()

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # the standard format: plain peft loads it, and the loaded model predicts the trained answer's first token
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), tmp_path / "adapter").eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    prompt, completion = PAIRS[0]
    with torch.no_grad():
        logits = loaded(input_ids=tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]).logits
    assert int(logits[0, -1].argmax()) == tokenizer(completion, add_special_tokens=False)["input_ids"][0]

