"""`fix_file`: necessary fixes always, recommended ones when accepted; the `fix` command."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from chatbot.cli.data import app
from chatbot.data.check import check_file
from chatbot.data.fix import fix_file
from chatbot.errors import ChatbotError
from chatbot.skills import DEFAULT_SEPARATOR as SEP
from chatbot.skills import DEFAULT_STOP as STOP

WORDS = ["apple", "brick", "cloud", "drum", "eagle", "flute", "grape", "harp", "igloo", "jelly", "kite", "lemon"]


def yes(name: str, description: str) -> bool:
    return True


def no(name: str, description: str) -> bool:
    return False


def messy_csv(path: Path) -> Path:
    """Mis-cased columns, an extra column, no separator/space/stop, an empty, a duplicate, a long row."""
    rows = [["Prompt", "Completion", "id"]]
    rows += [[f"About {WORDS[i % 12]} {i}", f"{WORDS[(i + 3) % 12]} number {i}", str(i)] for i in range(110)]
    rows += [["no answer here", "", "110"], rows[5], ["long " * 3000, "x", "112"]]
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return path


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fix_produces_a_file_that_checks_clean(tmp_path: Path) -> None:
    source = messy_csv(tmp_path / "messy.csv")
    before = digest(source)
    assert not check_file(source).ok
    result = fix_file(source, tmp_path / "fixed.jsonl", accept=yes)
    assert digest(source) == before  # the input is never modified
    assert (result.rows_before, result.rows_after) == (113, 110)
    names = [line.split(":")[0] for line in result.applied]
    for name in ("convert", "rename_columns", "drop_columns", "drop_empty", "drop_duplicates", "drop_long"):
        assert name in names
    for name in ("add_separator", "add_space", "add_stop"):
        assert name in names
    report = check_file(tmp_path / "fixed.jsonl")
    assert report.ok
    assert report.codes("warning") == []
    assert (report.separator, report.stop) == (SEP, STOP)
    rows = read(tmp_path / "fixed.jsonl")
    assert rows[0] == {"prompt": f"About apple 0{SEP}", "completion": f" drum number 0{STOP}"}
    assert (result.separator, result.stop, result.task_type) == (SEP, STOP, "conditional_generation")


def test_declined_fixes_are_skipped_but_necessary_ones_applied(tmp_path: Path) -> None:
    asked: list[str] = []

    def accept(name: str, description: str) -> bool:
        asked.append(name)
        return False

    result = fix_file(messy_csv(tmp_path / "messy.csv"), tmp_path / "fixed.jsonl", accept=accept)
    assert asked == ["add_separator", "add_space", "add_stop"]
    assert [s.split(":")[0] for s in result.skipped] == asked
    assert "Append the separator '\\n\\n###\\n\\n' to 110 prompts" in result.skipped[0]
    assert result.rows_after == 110
    rows = read(tmp_path / "fixed.jsonl")
    assert set(rows[0]) == {"prompt", "completion"} and rows[0]["completion"] == "drum number 0"
    report = check_file(tmp_path / "fixed.jsonl")
    assert report.ok and "missing_separator" in report.codes()


def test_custom_separator_and_stop(tmp_path: Path) -> None:
    fix_file(messy_csv(tmp_path / "m.csv"), tmp_path / "f.jsonl", accept=yes, separator="\n->", stop="\n")
    row = read(tmp_path / "f.jsonl")[0]
    assert row["prompt"].endswith("\n->") and row["completion"] == " drum number 0\n"


def test_inconsistent_separator_is_completed_with_the_one_in_use(tmp_path: Path) -> None:
    rows = [{"prompt": f"{w} {i}\n\n---\n\n", "completion": f" {i} {w}{STOP}"} for i, w in enumerate(WORDS * 10)]
    rows[3]["prompt"] = "no separator here"
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = fix_file(source, tmp_path / "out.jsonl", accept=yes)
    assert read(tmp_path / "out.jsonl")[3]["prompt"] == "no separator here\n\n---\n\n"
    assert result.separator == "\n\n---\n\n"


def test_lowercase_prefix_strip_and_stringify(tmp_path: Path) -> None:
    rows = [{"prompt": f"CLASSIFY THIS TEXT PLEASE: {w.upper()} {i}", "completion": i} for i, w in enumerate(WORDS * 10)]
    source = tmp_path / "in.json"
    source.write_text(json.dumps(rows), encoding="utf-8")
    result = fix_file(source, tmp_path / "out.jsonl", accept=yes)
    names = [a.split(":")[0] for a in result.applied]
    assert {"stringify", "lowercase_prompt", "strip_prompt_prefix"} <= set(names)
    first = read(tmp_path / "out.jsonl")[0]
    assert first == {"prompt": f"apple 0{SEP}", "completion": f" 0{STOP}"}


def test_classification_split_is_stratified(tmp_path: Path) -> None:
    labels = ["spam"] * 60 + ["ham"] * 40
    rows = [{"prompt": f"message {i} about {WORDS[i % 12]}", "completion": label} for i, label in enumerate(labels)]
    source = tmp_path / "mail.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = fix_file(source, tmp_path / "prepared.jsonl", accept=yes, seed=3)
    assert result.task_type == "classification" and result.stop is None  # classification needs no stop
    assert result.outputs == [str(tmp_path / n) for n in ("prepared.jsonl", "prepared_train.jsonl", "prepared_valid.jsonl")]
    valid = read(tmp_path / "prepared_valid.jsonl")
    assert len(valid) == 20 and sum(r["completion"] == " spam" for r in valid) == 12
    assert len(read(tmp_path / "prepared_train.jsonl")) == 80
    assert len(read(tmp_path / "prepared.jsonl")) == 100


def test_refuses_to_overwrite_the_input(tmp_path: Path) -> None:
    source = tmp_path / "data.jsonl"
    source.write_text('{"prompt": "a", "completion": "b"}\n', encoding="utf-8")
    before = digest(source)
    with pytest.raises(ChatbotError, match="is the input file"):
        fix_file(source, tmp_path / "." / "data.jsonl", accept=yes, force=True)
    assert digest(source) == before


def test_refuses_existing_output_unless_forced(tmp_path: Path) -> None:
    source = messy_csv(tmp_path / "m.csv")
    out = tmp_path / "out.jsonl"
    out.write_text("keep me\n", encoding="utf-8")
    with pytest.raises(ChatbotError, match="exists already"):
        fix_file(source, out, accept=yes)
    assert out.read_text(encoding="utf-8") == "keep me\n"
    fix_file(source, out, accept=yes, force=True)
    assert len(read(out)) == 110


def test_unfixable_files(tmp_path: Path) -> None:
    source = tmp_path / "t.jsonl"
    source.write_text('{"text": "a", "label": "b"}\n', encoding="utf-8")
    with pytest.raises(ChatbotError, match="no 'prompt' column"):
        fix_file(source, tmp_path / "o.jsonl", accept=yes)
    source.write_text('{"prompt": "a", "completion": ""}\n', encoding="utf-8")
    with pytest.raises(ChatbotError, match="no usable rows left"):
        fix_file(source, tmp_path / "o.jsonl", accept=yes)
    with pytest.raises(ChatbotError, match="must be a .jsonl file"):
        fix_file(source, tmp_path / "o.csv", accept=yes)
    assert not (tmp_path / "o.jsonl").exists()


# ---------------------------------------------------------------- CLI

runner = CliRunner()


def test_cli_fix_yes_applies_everything(tmp_path: Path) -> None:
    source = messy_csv(tmp_path / "m.csv")
    result = runner.invoke(app, ["fix", str(source), "-o", str(tmp_path / "o.jsonl"), "--yes", "--stop", "\\n", "--approximate"])
    assert result.exit_code == 0, result.output
    assert "read 113 rows, wrote 110" in result.stdout and "applied" in result.stdout
    assert read(tmp_path / "o.jsonl")[0]["completion"].endswith(" number 0\n")


def test_cli_fix_without_terminal_or_yes_applies_no_recommended_fix(tmp_path: Path) -> None:
    source = messy_csv(tmp_path / "m.csv")
    result = runner.invoke(app, ["fix", str(source), "-o", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 0, result.output
    assert "no terminal to ask on and no --yes: 3 recommended fixes not applied" in result.stdout
    assert not read(tmp_path / "o.jsonl")[0]["prompt"].endswith(SEP)


def test_cli_fix_errors_exit_1_with_one_line(tmp_path: Path) -> None:
    source = messy_csv(tmp_path / "m.csv")
    result = runner.invoke(app, ["fix", str(source), "-o", str(source.with_suffix(".jsonl"))])
    assert result.exit_code == 0
    result = runner.invoke(app, ["fix", str(source), "-o", str(source.with_suffix(".jsonl"))])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "exists already" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Example:" in runner.invoke(app, ["fix", "--help"]).stdout


def prefixed_jsonl(path: Path) -> Path:
    """A long common prefix on every prompt, no separator, space or stop: every text fix applies."""
    rows = [{"prompt": f"Please answer this question from a customer: about {WORDS[i % 12]} {i}", "completion": f"{WORDS[(i + 5) % 12]} {i}"}
            for i in range(60)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("make", [messy_csv, prefixed_jsonl])
def test_fixing_its_own_output_applies_nothing_and_writes_the_same_bytes(tmp_path: Path, make) -> None:  # noqa: ANN001
    source = make(tmp_path / ("messy.csv" if make is messy_csv else "prefixed.jsonl"))
    first = fix_file(source, tmp_path / "once.jsonl", accept=yes)
    assert first.applied
    again = fix_file(tmp_path / "once.jsonl", tmp_path / "twice.jsonl", accept=yes)
    assert again.applied == [] and again.skipped == []
    assert (tmp_path / "twice.jsonl").read_bytes() == (tmp_path / "once.jsonl").read_bytes()


# ---------------------------------------------------------------- files as users have them


def test_fix_reads_json_lines_in_a_txt_file(tmp_path: Path) -> None:
    source = tmp_path / "qa.txt"
    rows = [{"prompt": f"question {i}?", "completion": f"answer {i}"} for i in range(144)]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    result = fix_file(source, tmp_path / "o.jsonl", accept=yes)
    assert result.rows_after == 144 and not any(line.startswith("convert") for line in result.applied)
    assert result.read_as == "read qa.txt as JSON Lines (its content), not plain text (its extension)"
    assert read(tmp_path / "o.jsonl")[0]["prompt"].startswith("question 0?")  # not '{"prompt": ...' as one prompt
    cli = runner.invoke(app, ["fix", str(source), "-o", str(tmp_path / "p.jsonl"), "--yes", "--approximate"])
    assert cli.exit_code == 0, cli.output
    assert cli.stdout.startswith("read qa.txt as JSON Lines (its content), not plain text (its extension)\n")


def test_fix_drops_rows_with_lone_surrogates_and_says_so(tmp_path: Path) -> None:
    source = tmp_path / "s.jsonl"
    rows = [{"prompt": f"p {i}", "completion": f"c {i}"} for i in range(5)]
    rows[1]["prompt"] = "bad \ud800"
    rows[3]["x\udfff"] = "only an extra column"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    before = source.read_bytes()
    result = fix_file(source, tmp_path / "o.jsonl", accept=yes)
    assert "drop_invalid_text: dropped 1 row holding a lone surrogate, not valid Unicode (line 2)" in result.applied
    assert result.rows_after == 4 and len(read(tmp_path / "o.jsonl")) == 4
    assert any(line.startswith("drop_columns: dropped column 'x\\udfff'") for line in result.applied)
    assert source.read_bytes() == before
    cli = runner.invoke(app, ["fix", str(source), "-o", str(tmp_path / "p.jsonl"), "--yes", "--approximate"])
    assert cli.exit_code == 0 and "drop_invalid_text" in cli.stdout


def test_fix_error_says_how_the_file_was_read(tmp_path: Path) -> None:
    source = tmp_path / "qa.txt"
    source.write_text('{"prompt": "a", "completion": " b"}\n{"prompt": "c", "completion": \n', encoding="utf-8")
    result = runner.invoke(app, ["fix", str(source), "-o", str(tmp_path / "o.jsonl"), "--yes", "--approximate"])
    assert result.exit_code != 0 and result.stderr.startswith(f"error: {source}:2:")
    assert "(read qa.txt as JSON Lines (its content), not plain text (its extension))" in result.stderr
