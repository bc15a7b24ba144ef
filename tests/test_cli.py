"""The train / eval / ask / registry commands end to end, on a tiny model built by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from chatbot.cli import app

runner = CliRunner(env={"COLUMNS": "250"})
ROWS = [
    {"prompt": "The battery died after a day.\n\n###\n\n", "completion": " negative END"},
    {"prompt": "Great bike, rides like new!\n\n###\n\n", "completion": " positive END"},
    {"prompt": "Terrible service, still broken.\n\n###\n\n", "completion": " negative END"},
    {"prompt": "I love my new helmet.\n\n###\n\n", "completion": " positive END"},
]
FAST = ["--epochs", "40", "--batch-size", "2", "--learning-rate-multiplier", "1"]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def trained(tiny_base: str, tmp_path: Path) -> Path:
    data = write_jsonl(tmp_path / "mood.jsonl", ROWS)
    result = invoke("train", "mood", "--kind", "classify", "--data", str(data), "--valid", str(data), "--base", tiny_base, *FAST)
    assert result.exit_code == 0, result.output
    return tmp_path / "models.yaml"


def test_train_registers_skill_with_training_record(trained: Path, tmp_path: Path):
    skill = yaml.safe_load(trained.read_text())["skills"]["mood"]
    assert skill["kind"] == "classify" and skill["adapter"] == "adapters/mood"
    assert (tmp_path / "adapters" / "mood" / "adapter_config.json").exists()
    record = skill["training"]
    assert record["data_file"] == "mood.jsonl" and len(record["data_sha256"]) == 64
    assert record["hyperparameters"]["n_epochs"] == 40 and record["hyperparameters"]["prompt_loss_weight"] == 0.01
    assert len(record["train_loss"]) == 40 and len(record["valid_loss"]) == 40
    assert record["train_loss"][-1] < record["train_loss"][0]


def test_ask_eval_and_registry_commands(trained: Path, tmp_path: Path):
    answer = json.loads(invoke("ask", "mood", "The battery died after a day.", "--json").stdout)
    assert answer["label"] == "negative" and answer["completion"] == " negative"

    result = invoke("eval", "mood", "--data", str(tmp_path / "mood.jsonl"), "--baseline", "--json")
    scores = json.loads(result.stdout)
    assert scores["accuracy"] == 1.0 and scores["baseline"]["accuracy"] < 1.0
    assert scores["confusion_matrix"]["labels"][:2] == ["negative", "positive"]
    stored = yaml.safe_load(trained.read_text())["skills"]["mood"]["training"]["metrics"]
    assert stored["accuracy"] == 1.0 and "baseline" in stored

    listing = invoke("registry", "list").output
    assert "mood" in listing and "accuracy" in listing and "1.000" in listing
    assert "kind: classify" in invoke("registry", "show", "mood").output
    assert invoke("registry", "remove", "mood").exit_code == 0
    assert yaml.safe_load(trained.read_text())["skills"] == {}
    assert (tmp_path / "adapters" / "mood").exists()  # the user's adapter is kept


def test_retraining_needs_force(trained: Path, tmp_path: Path, tiny_base: str):
    before = trained.read_text()
    result = invoke("train", "mood", "--kind", "classify", "--data", str(tmp_path / "mood.jsonl"), "--base", tiny_base)
    assert result.exit_code == 1 and "exists already" in result.output and "--force" in result.output
    assert trained.read_text() == before


def test_retraining_with_force_keeps_what_the_user_set(trained: Path, tmp_path: Path, tiny_base: str):
    data = yaml.safe_load(trained.read_text())
    data["skills"]["mood"] |= {"routing_examples": ["how does this review sound?"], "history_turns": 2, "description": "my words"}
    trained.write_text(yaml.safe_dump(data))
    result = invoke("train", "mood", "--kind", "classify", "--data", str(tmp_path / "mood.jsonl"), "--base", tiny_base, "--force",
                    "--epochs", "1")
    assert result.exit_code == 0, result.output
    skill = yaml.safe_load(trained.read_text())["skills"]["mood"]
    assert skill["routing_examples"] == ["how does this review sound?"] and skill["history_turns"] == 2
    assert skill["description"] == "my words" and skill["training"]["hyperparameters"]["n_epochs"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "summarize"], "--kind: unknown skill kind 'summarize'"),
        (["--epochs", "0"], "--epochs: Input should be greater than or equal to 1"),
        (["--prompt-loss-weight", "3"], "--prompt-loss-weight: Input should be less than or equal to 1"),
        (["--data", "missing.jsonl"], "missing.jsonl: no such file"),
    ],
)
def test_bad_train_input_gets_one_clear_line(args: list[str], message: str, tmp_path: Path, tiny_base: str):
    write_jsonl(tmp_path / "mood.jsonl", ROWS)
    base = {"--kind": "classify", "--data": "mood.jsonl"}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    flat = [x for pair in base.items() for x in pair]
    result = invoke("train", "mood", *flat, "--base", tiny_base)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "models.yaml").exists()


def test_malformed_training_file_names_the_line(tmp_path: Path, tiny_base: str):
    (tmp_path / "bad.jsonl").write_text(json.dumps(ROWS[0]) + "\n{\"prompt\": \"x\",\n")
    result = invoke("train", "mood", "--kind", "classify", "--data", "bad.jsonl", "--base", tiny_base)
    assert result.exit_code == 1 and "bad.jsonl:2:" in result.output


def test_unknown_skill_and_missing_registry(tmp_path: Path):
    result = invoke("ask", "nope", "hello")
    assert result.exit_code == 1 and "models.yaml: no such registry" in result.output
    (tmp_path / "models.yaml").write_text("skills: {}\n")
    result = invoke("ask", "nope", "hello")
    assert result.exit_code == 1 and "no skill named 'nope'" in result.output


def test_every_command_has_help_with_an_example():
    for command in (["train"], ["eval"], ["ask"], ["registry", "list"], ["registry", "show"], ["registry", "remove"],
                    ["data", "check"], ["data", "fix"], ["data", "template"], ["data", "split"]):
        result = invoke(*command, "--help")
        assert result.exit_code == 0 and "Example:" in result.output, command


def test_data_check_counts_tokens_with_the_base_models_tokenizer(tmp_path: Path):
    # SmolLM2's context is 8192 tokens: 9000 words are too many for it
    write_jsonl(tmp_path / "long.jsonl", [{"prompt": "word " * 9000 + "\n\n###\n\n", "completion": " x END"}, *ROWS])
    report = json.loads(invoke("data", "check", "long.jsonl", "--json").stdout)
    codes = [f["code"] for f in report["findings"]]
    assert "approximate_tokens" not in codes
    assert next(f for f in report["findings"] if f["code"] == "too_long")["lines"] == [1]
