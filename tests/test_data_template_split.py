"""Prompts from a table with a template; train/validation splits; the `template` and `split` commands."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from chatbot.cli.data import app
from chatbot.data.io import Example
from chatbot.data.split import split_examples, split_file
from chatbot.data.template import as_list, placeholders, render_table
from chatbot.errors import ChatbotError
from chatbot.skills import DEFAULT_SEPARATOR as SEP
from chatbot.skills import DEFAULT_STOP as STOP

TEMPLATE = "Write a description of {name}, mention {type} and {detail}"
runner = CliRunner()


def products(path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["name", "type", "detail", "description"])
        writer.writerow(["Aero", "a chair", '["its colour", "its price"]', "A light chair."])
        writer.writerow(["Brio", "a lamp", "['warm light']", "A warm lamp."])
        writer.writerow(["Cubo", "a desk", "its size", ""])
    return path


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------- template


def test_template_one_prompt_per_row_with_empty_completions(tmp_path: Path) -> None:
    out = tmp_path / "prompts.jsonl"
    assert render_table(products(tmp_path / "p.csv"), TEMPLATE, out=out) == 3
    rows = read(out)
    assert rows[2] == {"prompt": f"Write a description of Cubo, mention a desk and its size{SEP}", "completion": ""}
    assert rows[0]["prompt"].startswith("Write a description of Aero, mention a chair and ")


def test_template_explode_json_and_python_lists_with_completion_column(tmp_path: Path) -> None:
    out = tmp_path / "prompts.jsonl"
    count = render_table(products(tmp_path / "p.csv"), TEMPLATE, out=out, explode="detail", completion="description")
    assert count == 4
    rows = read(out)
    assert [r["prompt"].removesuffix(SEP).rsplit(" and ", 1)[1] for r in rows] == [
        "its colour",
        "its price",
        "warm light",
        "its size",
    ]
    assert rows[0]["completion"] == f" A light chair.{STOP}"
    assert rows[3]["completion"] == ""


def test_template_explodes_lists_from_jsonl(tmp_path: Path) -> None:
    table = write_jsonl(tmp_path / "t.jsonl", [{"name": "Aero", "tags": ["x", "y", "z"]}, {"name": "Brio", "tags": []}])
    out = tmp_path / "o.jsonl"
    assert render_table(table, "{name}: {tags}", out=out, explode="tags", separator=" ->") == 3
    assert [r["prompt"] for r in read(out)] == ["Aero: x ->", "Aero: y ->", "Aero: z ->"]
    assert render_table(table, "{name}: {tags}", out=tmp_path / "joined.jsonl")
    assert read(tmp_path / "joined.jsonl")[0]["prompt"] == f"Aero: x, y, z{SEP}"


def test_template_unknown_placeholder_lists_available_columns(tmp_path: Path) -> None:
    with pytest.raises(ChatbotError) as info:
        render_table(products(tmp_path / "p.csv"), "About {name} in {colour} and {size}", out=tmp_path / "o.jsonl")
    assert "no column named 'colour', 'size'" in info.value.message
    assert info.value.hint == "available columns: name, type, detail, description"
    assert not (tmp_path / "o.jsonl").exists()


def test_template_errors(tmp_path: Path) -> None:
    table = products(tmp_path / "p.csv")
    with pytest.raises(ChatbotError, match="invalid template"):
        render_table(table, "About {name", out=tmp_path / "o.jsonl")
    with pytest.raises(ChatbotError, match="names no column"):
        render_table(table, "About {}", out=tmp_path / "o.jsonl")
    with pytest.raises(ChatbotError, match="no column named 'tags'"):
        render_table(table, "About {name}", out=tmp_path / "o.jsonl", explode="tags")
    with pytest.raises(ChatbotError, match="is the input file"):
        render_table(table, "About {name}", out=table)


def test_placeholders_and_list_cells() -> None:
    assert placeholders("{a} {b.x} {c[0]} {a} {{literal}}") == ["a", "b", "c"]
    assert as_list('["a", "b"]') == ["a", "b"]
    assert as_list("['a', 'b']") == ["a", "b"]
    assert as_list("[not a list") == ["[not a list"]
    assert as_list("plain") == ["plain"]


# ---------------------------------------------------------------- split


def labelled(n_per_class: dict[str, int]) -> list[dict[str, str]]:
    rows = []
    for label, n in n_per_class.items():
        rows += [{"text": f"{label} query {i}", "label": label} for i in range(n)]
    return rows


def test_split_text_label_file_is_stratified_and_deterministic(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "intents.jsonl", labelled({"a": 50, "b": 30, "c": 20}))
    train_path, valid_path = split_file(source, valid=0.2, seed=7)
    assert (train_path.name, valid_path.name) == ("intents_train.jsonl", "intents_valid.jsonl")
    valid = read(valid_path)
    assert Counter(r["label"] for r in valid) == {"a": 10, "b": 6, "c": 4}
    assert len(read(train_path)) == 80
    first = valid_path.read_bytes()
    split_file(source, valid=0.2, seed=7, force=True)
    assert valid_path.read_bytes() == first
    split_file(source, valid=0.2, seed=8, force=True)
    assert valid_path.read_bytes() != first


def test_split_prompt_completion_classification_strips_stop(tmp_path: Path) -> None:
    rows = [{"prompt": f"q {i}{SEP}", "completion": f" {'yes' if i % 4 else 'no'}{STOP}"} for i in range(40)]
    _, valid_path = split_file(write_jsonl(tmp_path / "yn.jsonl", rows), valid=0.25, out_dir=tmp_path / "out")
    assert valid_path.parent == tmp_path / "out"
    assert Counter(r["completion"] for r in read(valid_path)) == {f" yes{STOP}": 7, f" no{STOP}": 3}


def test_split_refuses_to_overwrite_and_bad_fractions(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "d.jsonl", labelled({"a": 5, "b": 5}))
    split_file(source)
    with pytest.raises(ChatbotError, match="exists already"):
        split_file(source)
    with pytest.raises(ChatbotError, match="not between 0 and 1"):
        split_file(source, valid=1.5, force=True)


def test_split_examples_falls_back_to_random_only_when_asked() -> None:
    examples = [Example(i, f"p{i}", f" {'x' if i else 'y'}") for i in range(10)]
    train, valid = split_examples(examples, 0.2, 0, stratify=False)
    assert len(train) == 8 and len(valid) == 2
    assert sorted(e.line for e in train + valid) == list(range(10))
    with pytest.raises(ChatbotError, match="stratified"):
        split_examples(examples, 0.2, 0, stratify=True)  # class 'y' has one example


# ---------------------------------------------------------------- CLI


def test_cli_template(tmp_path: Path) -> None:
    table = products(tmp_path / "p.csv")
    out = tmp_path / "o.jsonl"
    result = runner.invoke(app, ["template", str(table), "-t", "{name}\\n{type}", "-o", str(out), "--explode", "detail"])
    assert result.exit_code == 0, result.output
    assert "wrote 4 prompts" in result.stdout and "completions are empty" in result.stdout
    assert read(out)[0]["prompt"] == f"Aero\na chair{SEP}"
    result = runner.invoke(app, ["template", str(table), "-t", "{nope}", "-o", str(tmp_path / "x.jsonl")])
    assert result.exit_code == 1 and "available columns: name, type" in result.stderr


def test_cli_split(tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "d.jsonl", labelled({"a": 10, "b": 10}))
    result = runner.invoke(app, ["split", str(source), "--valid", "0.3", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert "(14 rows)" in result.stdout and "(6 rows)" in result.stdout
    assert "stratified on 2 classes" in result.stdout
    result = runner.invoke(app, ["split", str(source)])
    assert result.exit_code == 1 and "exists already" in result.stderr


def test_cli_help_has_examples() -> None:
    for command in ("template", "split"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Example:" in result.stdout


def test_split_and_template_refuse_lone_surrogates_naming_line_and_field(tmp_path: Path) -> None:
    source = tmp_path / "s.jsonl"
    source.write_text('{"text": "a", "label": "x"}\n{"text": "b\\ud800", "label": "y"}\n', encoding="utf-8")
    with pytest.raises(ChatbotError, match=r"s\.jsonl:2: field 'text' holds a lone surrogate"):
        split_file(source, valid=0.5)
    with pytest.raises(ChatbotError, match=r"s\.jsonl:2: field 'text' holds a lone surrogate"):
        render_table(source, "{text}", out=tmp_path / "t.jsonl")
    assert render_table(source, "{label}", out=tmp_path / "t.jsonl") == 2  # the column used is fine
    result = runner.invoke(app, ["split", str(source), "--valid", "0.5"])
    assert result.exit_code == 1 and "s.jsonl:2: field 'text' holds a lone surrogate" in result.stderr


def test_split_and_template_say_how_the_file_was_read(tmp_path: Path) -> None:
    source = tmp_path / "d.txt"
    source.write_text("text;label\n" + "".join(f"q {i};{'ab'[i % 2]}\n" for i in range(10)), encoding="utf-8")
    result = runner.invoke(app, ["split", str(source)])
    assert result.exit_code == 0, result.output
    assert "read d.txt as CSV separated by semicolons (its content), not plain text (its extension)" in result.stdout
    assert "stratified on 2 classes" in result.stdout
    result = runner.invoke(app, ["template", str(source), "-t", "Say {text}", "-o", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 0, result.output
    assert "read d.txt as CSV separated by semicolons" in result.stdout and "wrote 10 prompts" in result.stdout
