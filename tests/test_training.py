import json
from pathlib import Path

import pytest

from chatbot.training.hyperparams import REFERENCE_LEARNING_RATE, Hyperparameters
from chatbot.training.trainer import Epoch, _batch_loss, encode, micro_batch, replay, train_lora

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


def test_a_micro_batch_of_one_example_a_pass_gives_the_padded_batchs_loss(tiny_base: str):
    """On a CPU each example is a forward pass of its own (no padding computed); the loss summed over them is the
    padded batch's, so the gradient of a step is the same."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_base)
    model = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    batch = [encode(tokenizer, p, c, 512, 0.01) for p, c in PAIRS]
    assert len({len(ids) for ids, _ in batch}) > 1  # rows of several lengths: the padded batch pads
    with torch.no_grad():
        padded, padded_weight = _batch_loss(model, batch, tokenizer.pad_token_id, "cpu")
        apart = [_batch_loss(model, [row], tokenizer.pad_token_id, "cpu") for row in batch]
    assert float(padded) == pytest.approx(sum(float(loss) for loss, _ in apart), rel=1e-4)
    assert padded_weight == pytest.approx(sum(weight for _, weight in apart))
    assert micro_batch("cpu") == 1 and micro_batch("cuda:0") > 1


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



# validation answers that contradict the training ones: the longer it trains, the worse it validates
CONTRADICTED = [(p, " something else entirely END") for p, _ in PAIRS]
OVERFIT = dict(batch_size=2, learning_rate_multiplier=1, lora_r=8, lora_dropout=0.0)


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


def test_the_best_epoch_is_registered_and_the_best_and_last_are_kept(tiny_base: str, tmp_path: Path):
    import torch

    out = tmp_path / "adapter"
    result = train_lora(PAIRS, out, base_model=tiny_base, valid_examples=CONTRADICTED,
                        hyperparameters=Hyperparameters(n_epochs=6, select="best-loss", early_stopping_patience=0, **OVERFIT))
    assert len(result.epochs) == 6 and not result.stopped_early
    best = min(result.epochs, key=lambda e: e.valid_loss)
    assert result.best_epoch == best.epoch < 6 and result.selected_epoch == best.epoch  # the best is not the last
    assert result.checkpoints == [best.epoch, 6]
    registered, kept_best, kept_last = _weights(out), _weights(out / "checkpoints" / f"epoch-{best.epoch}"), _weights(out / "checkpoints" / "epoch-6")
    assert all(torch.equal(registered[k], kept_best[k]) for k in registered)
    assert not all(torch.equal(registered[k], kept_last[k]) for k in registered)

    last = train_lora(PAIRS, tmp_path / "last", base_model=tiny_base, valid_examples=CONTRADICTED,  # the default: the last epoch
                      hyperparameters=Hyperparameters(n_epochs=6, **OVERFIT))
    assert last.hyperparameters.select == "last" and len(last.epochs) == 6 and last.selected_epoch == 6 and all(torch.equal(_weights(tmp_path / "last")[k], kept_last[k]) for k in kept_last)


def test_training_stops_when_validation_stops_improving(tiny_base: str, tmp_path: Path):
    result = train_lora(PAIRS, tmp_path / "adapter", base_model=tiny_base, valid_examples=CONTRADICTED,
                        hyperparameters=Hyperparameters(n_epochs=30, select="best-loss", early_stopping_patience=2, **OVERFIT))
    assert result.stopped_early and len(result.epochs) == result.best_epoch + 2 < 30
    assert result.selected_epoch == result.best_epoch
    assert result.trained_tokens == sum(len(encode_ids) for encode_ids in _token_counts(tiny_base)) * len(result.epochs)


def test_replaying_a_full_run_gives_what_early_stopping_would_have(tiny_base: str, tmp_path: Path):
    full = train_lora(PAIRS, tmp_path / "full", base_model=tiny_base, valid_examples=CONTRADICTED,
                      hyperparameters=Hyperparameters(n_epochs=12, early_stopping_patience=0, select="last", **OVERFIT), keep_last=12)
    stopped = train_lora(PAIRS, tmp_path / "stopped", base_model=tiny_base, valid_examples=CONTRADICTED,
                         hyperparameters=Hyperparameters(n_epochs=12, select="best-loss", early_stopping_patience=2, **OVERFIT))
    assert full.checkpoints == list(range(1, 13))  # every epoch kept: each policy's pick can be scored afterwards
    assert [e.valid_loss for e in full.epochs[: len(stopped.epochs)]] == [e.valid_loss for e in stopped.epochs]
    assert replay(full.epochs, "best-loss", 2) == (stopped.selected_epoch, stopped.epochs[-1].epoch)
    assert replay(full.epochs, "last", 2) == (12, 12)


def test_replay_stops_after_patience_epochs_without_a_better_one():
    losses = [3.0, 2.0, 2.5, 1.5, 1.6, 1.7, 1.8, 1.0]
    epochs = [Epoch(i + 1, 0, 0.0, loss, metric=-loss) for i, loss in enumerate(losses)]
    assert replay(epochs, "best-loss", 3) == (4, 7)
    assert replay(epochs, "best-loss", 0) == (8, 8)
    assert replay(epochs, "best-metric", 2) == (4, 6)
    assert replay(epochs, "last", 3) == (8, 8)


def _token_counts(base: str) -> list[list[int]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    return [encode(tokenizer, p, c, 1024, 0.01)[0] for p, c in PAIRS]


def test_without_validation_data_the_last_epoch_is_registered(tiny_base: str, tmp_path: Path):
    result = train_lora(PAIRS, tmp_path / "adapter", base_model=tiny_base, hyperparameters=Hyperparameters(n_epochs=3, **OVERFIT))
    assert result.selected_epoch == 3 and result.best_epoch is None and result.checkpoints == []
    assert not (tmp_path / "adapter" / "checkpoints").exists()


def test_best_metric_scores_the_skill_on_the_validation_file(tiny_base: str, tmp_path: Path):
    from chatbot import registry as registry_io
    from chatbot.training.skill import train_skill

    rows = [{"prompt": p, "completion": c} for p, c in PAIRS]
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    skill = train_skill("shop", "qa", data, valid=data, base=tiny_base, registry_path=tmp_path / "models.yaml",
                        hyperparameters=Hyperparameters(n_epochs=8, select="best-metric", early_stopping_patience=0, **OVERFIT))
    record = registry_io.load(tmp_path / "models.yaml").get("shop").training
    assert record == skill.training and all(e.metric is not None for e in record.epochs)
    best = max(record.epochs, key=lambda e: (e.metric, -e.epoch))
    assert record.selected_epoch == best.epoch and best.metric > record.epochs[0].metric  # it learned the answers
    kept = [e for e in record.epochs if e.checkpoint]
    assert {e.epoch for e in kept} == {best.epoch, 8} and all((tmp_path / e.checkpoint / "adapter_config.json").exists() for e in kept)


def test_a_kept_checkpoint_can_be_registered_as_a_skill(tiny_base: str, tmp_path: Path):
    import torch
    from typer.testing import CliRunner

    from chatbot import registry as registry_io
    from chatbot.cli import app
    from chatbot.training.skill import train_skill

    data, valid = tmp_path / "train.jsonl", tmp_path / "valid.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in PAIRS))
    valid.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in CONTRADICTED))
    path = tmp_path / "models.yaml"
    trained = train_skill("shop", "qa", data, valid=valid, base=tiny_base, registry_path=path,
                          hyperparameters=Hyperparameters(n_epochs=5, select="best-loss", early_stopping_patience=0, **OVERFIT))
    assert trained.training.selected_epoch < 5
    runner = CliRunner()
    missing = runner.invoke(app, ["registry", "checkpoint", "shop", "4", "--as", "shop-e4", "--registry", str(path)])
    assert missing.exit_code != 0 and "no checkpoint of epoch 4" in missing.output
    done = runner.invoke(app, ["registry", "checkpoint", "shop", "5", "--as", "shop-e5", "--registry", str(path)])
    assert done.exit_code == 0, done.output
    skill = registry_io.load(path).get("shop-e5")
    assert skill.training.selected_epoch == 5 and not skill.routing and skill.kind == "qa"
    folder = tmp_path / "adapters" / "shop-e5"
    assert all(torch.equal(a, b) for a, b in zip(_weights(folder).values(), _weights(tmp_path / "adapters" / "shop" / "checkpoints" / "epoch-5").values()))
    assert "epoch 5" in (folder / "README.md").read_text()

    from chatbot.backends.base import GenerationRequest
    from chatbot.backends.local import LocalBackend

    answer = LocalBackend().complete(GenerationRequest(prompt=PAIRS[0][0], base_model=tiny_base, adapter=str(folder), max_tokens=4, stop=[]))
    assert answer.completion_tokens > 0


def test_counting_and_training_load_a_bases_tokenizer_once(tiny_base: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from chatbot.runtime import base_models
    from chatbot.training.skill import train_skill

    loads: list[str] = []
    real = base_models.load_tokenizer
    monkeypatch.setattr(base_models, "load_tokenizer", lambda name: loads.append(name) or real(name))
    monkeypatch.setattr(base_models, "_TRAINING_TOKENIZERS", {})
    data = tmp_path / "train.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "completion": c}) + "\n" for p, c in PAIRS))
    for name in ("one", "two"):  # two jobs of a server on the same base
        train_skill(name, "qa", data, base=tiny_base, registry_path=tmp_path / "models.yaml", hyperparameters=Hyperparameters(n_epochs=1))
    assert loads == [tiny_base]  # each load holds the GIL a few hundred ms in a server: once per base
