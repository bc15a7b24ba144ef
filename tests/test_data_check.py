"""Each check fires on a crafted file and stays quiet on a clean one; the `check` command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from environment import shared_data

from chatbot.cli.data import app
from chatbot.data.check import Finding, Report, check_examples, check_file
from chatbot.data.io import Record
from chatbot.errors import ChatbotError
from chatbot.skills import DEFAULT_SEPARATOR as SEP
from chatbot.skills import DEFAULT_STOP as STOP

ANIMALS = ["cat", "dog", "owl", "yak", "emu", "cow", "bat", "elk", "fox", "gnu", "hen", "pig"]
FOODS = ["fish", "bones", "mice", "grass", "seeds", "hay", "fruit", "leaves", "berries", "roots", "corn", "slop"]


def clean_rows(n: int = 120) -> list[dict[str, Any]]:
    """Conditional generation data with nothing to report."""
    return [
        {
            "prompt": f"{ANIMALS[i % 12]} {i} likes {FOODS[i % 11]}{SEP}",
            "completion": f" {i} portions of {FOODS[(i * 5) % 12]}{STOP}",
        }
        for i in range(n)
    ]


def records(rows: list[dict[str, Any]]) -> list[Record]:
    return [Record(i + 1, row) for i, row in enumerate(rows)]


def check(rows: list[dict[str, Any]], **kwargs: Any) -> Report:
    return check_examples(records(rows), "data.jsonl", **kwargs)


def get(report: Report, code: str) -> Finding:
    found = [f for f in report.findings if f.code == code]
    assert found, f"no {code} in {report.codes()}"
    return found[0]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_clean_data_has_nothing_to_report() -> None:
    report = check(clean_rows())
    assert report.codes() == ["approximate_tokens"]
    assert report.ok and report.rows == 120
    assert report.task_type == "conditional_generation"
    assert (report.separator, report.stop) == (SEP, STOP)
    assert report.label_counts is None


def test_given_token_counter_replaces_the_approximation_and_finds_long_examples() -> None:
    rows = clean_rows()
    rows[7]["completion"] = " word" * 50 + STOP
    report = check(rows, count_tokens=lambda text: len(text.split()), max_tokens=40)
    assert "approximate_tokens" not in report.codes()
    too_long = get(report, "too_long")
    assert too_long.severity == "error" and too_long.lines == [8] and too_long.fix == "drop_long"
    assert not report.ok


def test_approximate_tokens_find_long_examples() -> None:
    rows = clean_rows()
    rows[2]["prompt"] = "x" * 9000 + SEP
    assert get(check(rows), "too_long").lines == [3]


def test_miscased_columns_are_errors_that_suggest_the_rename() -> None:
    rows = [{"Prompt": r["prompt"], "completion ": r["completion"]} for r in clean_rows()]
    report = check(rows)
    found = [f for f in report.findings if f.code == "miscased_column"]
    assert [f.field for f in found] == ["Prompt", "completion "]
    assert "must be named 'prompt'" in found[0].message and found[0].fix == "rename_columns"
    assert found[0].count == 120 and len(found[0].lines) == 50
    assert not report.ok
    assert "extra_columns" not in report.codes()
    assert report.task_type == "conditional_generation"  # the content is still checked


def test_missing_column_is_an_error_and_names_a_likely_column() -> None:
    report = check([{"text": "hi", "label": "greet"}] * 3)
    assert report.codes("error") == ["missing_column", "missing_column"]
    assert "rename 'text' to 'prompt'" in report.findings[0].message
    assert report.task_type == "unknown" and not report.ok


def test_extra_columns_are_warnings() -> None:
    rows = clean_rows()
    rows[4]["id"] = 4
    found = get(check(rows), "extra_columns")
    assert (found.severity, found.field, found.lines, found.fix) == ("warning", "id", [5], "drop_columns")
    assert check(rows).ok


def test_non_string_values_name_line_and_field() -> None:
    rows = clean_rows()
    rows[9]["completion"] = 42
    rows[11]["prompt"] = ["a", "list"]
    report = check(rows)
    found = {f.field: f for f in report.findings if f.code == "non_string"}
    assert found["completion"].lines == [10] and found["completion"].fix == "stringify"
    assert found["prompt"].lines == [12] and found["prompt"].fix is None
    assert "line 12" in found["prompt"].message
    assert not report.ok


def test_empty_prompts_and_completions() -> None:
    rows = clean_rows()
    rows[0]["prompt"] = "  "
    rows[5]["completion"] = ""
    del rows[6]["completion"]
    report = check(rows)
    assert get(report, "empty_prompt").lines == [1]
    assert get(report, "empty_completion").lines == [6, 7]
    assert get(report, "empty_completion").severity == "error"


def test_duplicate_rows() -> None:
    rows = clean_rows()
    rows[10] = dict(rows[3])
    found = get(check(rows), "duplicate_rows")
    assert found.lines == [11] and "line 11 repeats line 4" in found.message


def test_few_examples_is_a_warning_only() -> None:
    report = check(clean_rows(99))
    assert get(report, "few_examples").severity == "warning"
    assert report.ok
    assert "few_examples" not in check(clean_rows(100)).codes()


def test_missing_separator_recommends_the_default() -> None:
    rows = [{**r, "prompt": r["prompt"].removesuffix(SEP)} for r in clean_rows()]
    report = check(rows)
    found = get(report, "missing_separator")
    assert repr(SEP) in found.message and found.fix == "add_separator"
    assert report.separator is None


def test_inconsistent_separator_names_the_lines_lacking_it() -> None:
    rows = clean_rows()
    rows[2]["prompt"] = rows[2]["prompt"].removesuffix(SEP)
    rows[8]["prompt"] = rows[8]["prompt"].removesuffix(SEP) + "\n"
    report = check(rows)
    assert get(report, "inconsistent_separator").lines == [3, 9]
    assert report.separator == SEP


def test_separator_inside_a_prompt() -> None:
    rows = clean_rows()
    rows[4]["prompt"] = f"one{SEP}two{SEP}"
    found = get(check(rows), "separator_inside")
    assert found.lines == [5] and found.field == "prompt"


def test_common_suffix_is_reduced_to_the_known_separator() -> None:
    rows = [{**r, "prompt": r["prompt"].replace(SEP, f"!{SEP}")} for r in clean_rows()]
    assert check(rows).separator == SEP


def test_completion_without_leading_space() -> None:
    rows = clean_rows()
    rows[1]["completion"] = rows[1]["completion"].lstrip()
    found = get(check(rows), "completion_no_space")
    assert found.lines == [2] and found.fix == "add_space"


def test_missing_stop_for_generation() -> None:
    rows = [{**r, "completion": r["completion"].removesuffix(STOP)} for r in clean_rows()]
    report = check(rows)
    assert repr(STOP) in get(report, "missing_stop").message
    assert report.stop is None


def test_inconsistent_stop_and_stop_inside() -> None:
    rows = clean_rows()
    rows[3]["completion"] = rows[3]["completion"].removesuffix(STOP)
    rows[6]["completion"] = f" it ends{STOP} early{STOP}"
    report = check(rows)
    assert get(report, "inconsistent_stop").lines == [4]
    rows[3]["completion"] += STOP
    assert get(check(rows), "stop_inside").lines == [7]


def test_long_common_prefixes() -> None:
    rows = [
        {"prompt": "Answer the following question: " + r["prompt"], "completion": " The answer is:" + r["completion"]}
        for r in clean_rows()
    ]
    report = check(rows)
    assert "'Answer the following question: '" in get(report, "prompt_prefix").message
    assert "'The answer is:" in get(report, "completion_prefix").message
    assert "prompt_prefix" not in check(clean_rows()).codes()


def test_uppercase_text() -> None:
    rows = [{**r, "prompt": r["prompt"].upper()} for r in clean_rows()]
    found = get(check(rows), "uppercase")
    assert found.field == "prompt" and found.count == 120 and found.fix == "lowercase_prompt"


def test_uppercase_ignores_the_stop_sequence() -> None:
    rows = [{"prompt": f"{a} {i}{SEP}", "completion": " yes END" if i % 2 else " no END"} for i, a in enumerate(ANIMALS * 10)]
    report = check(rows)
    assert report.task_type == "classification"
    assert "uppercase" not in report.codes()


def classification_rows() -> list[dict[str, str]]:
    labels = ["sport"] * 40 + ["music"] * 40 + ["news"] * 40
    return [{"prompt": f"headline {i} about {ANIMALS[i % 12]}{SEP}", "completion": f" {label}"} for i, label in enumerate(labels)]


def test_classification_needs_no_stop_and_counts_labels() -> None:
    report = check(classification_rows())
    assert report.task_type == "classification"
    assert report.label_counts == {"sport": 40, "music": 40, "news": 40}
    assert report.codes("warning") == []
    assert get(report, "no_validation").fix == "split"
    assert "no_validation" not in check(classification_rows(), valid_records=[]).codes()


def test_label_imbalance_and_rare_labels() -> None:
    rows = classification_rows()[:90]  # sport 40, music 40, news 10
    rows[-1]["completion"] = " weather"
    report = check(rows)
    imbalance = get(report, "label_imbalance")
    assert "'weather' only 1" in imbalance.message and imbalance.lines == [90]
    assert get(report, "rare_label").lines == [90]


def test_task_types() -> None:
    open_ended = [{"prompt": "", "completion": f" story {i}{STOP}"} for i in range(5)]
    report = check(open_ended)
    assert report.task_type == "open_ended_generation"
    assert "empty_prompt" not in report.codes() and "missing_separator" not in report.codes()
    same = [{"prompt": f"Tell a story{SEP}", "completion": f" story {i}{STOP}"} for i in range(5)]
    assert check(same).task_type == "open_ended_generation"
    assert "identical_prompts" in check(same).codes()
    assert check(classification_rows(), kind="qa").task_type == "conditional_generation"
    assert check(clean_rows(), kind="classify").task_type == "classification"
    with pytest.raises(ChatbotError, match="unknown skill kind"):
        check(clean_rows(), kind="poetry")


def test_identical_completions() -> None:
    rows = [{**r, "completion": f" same{STOP}"} for r in clean_rows(10)]
    assert get(check(rows), "identical_completions").count == 10


def test_near_duplicate_prompts_with_different_completions() -> None:
    rows = clean_rows()
    rows[20]["prompt"] = rows[2]["prompt"].upper().replace(" likes", ", likes!")
    found = get(check(rows), "conflicting_duplicates")
    assert found.lines == [3, 21] and "lines 3 and 21" in found.message


def test_leakage_between_train_and_valid_files(tmp_path: Path) -> None:
    rows = clean_rows()
    valid = [{"prompt": "a new prompt" + SEP, "completion": " x" + STOP}, rows[5], {**rows[9], "prompt": rows[9]["prompt"].lower()}]
    valid_path = write_jsonl(tmp_path / "valid.jsonl", valid)
    found = get(check(rows, valid_path=valid_path), "leakage")
    assert found.lines == [6, 10] and f"{valid_path} line 2 = line 6" in found.message
    assert "leakage" not in check(rows, valid_path=write_jsonl(tmp_path / "v2.jsonl", valid[:1])).codes()


def test_unreadable_file_is_an_error_finding(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a", "completion": " b"}\n{"prompt": \n', encoding="utf-8")
    report = check_file(path)
    assert report.codes() == ["unreadable"] and report.findings[0].lines == [2]
    assert f"{path}:2:12: invalid JSON" in report.findings[0].message
    assert not report.ok
    with pytest.raises(ChatbotError, match="no such file"):
        check_file(tmp_path / "missing.jsonl")


def test_real_job_ner_file_has_no_errors() -> None:
    report = check_file(shared_data("job-ner/train.jsonl"))
    assert report.ok, report.codes("error")
    assert report.rows == 60 and report.task_type == "conditional_generation"
    assert (report.separator, report.stop) == (SEP, STOP)
    assert report.codes("warning") == ["few_examples"]


# ---------------------------------------------------------------- CLI


runner = CliRunner()


def test_cli_check_clean_file_exits_0(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "clean.jsonl", clean_rows())
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert "120 rows" in result.stdout and "conditional_generation" in result.stdout
    assert "usable as is" in result.stdout


def test_cli_check_errors_exit_1_and_json_is_the_report(tmp_path: Path) -> None:
    rows = clean_rows()
    rows[3]["completion"] = ""
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 1 and "empty_completion" in result.stdout
    result = runner.invoke(app, ["check", str(path), "--json", "--max-tokens", "10"])
    assert result.exit_code == 1
    report = Report.model_validate_json(result.stdout)
    assert "empty_completion" in report.codes() and "too_long" in report.codes()
    assert json.loads(result.stdout)["ok"] is False


def test_cli_check_unreadable_exits_1_missing_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[{]", encoding="utf-8")
    result = runner.invoke(app, ["check", str(bad)])
    assert result.exit_code == 1 and "invalid JSON" in result.stdout
    result = runner.invoke(app, ["check", str(tmp_path / "missing.jsonl")])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'missing.jsonl'}: no such file"


def test_cli_check_help_has_an_example() -> None:
    result = runner.invoke(app, ["check", "--help"])
    assert result.exit_code == 0 and "Example:" in result.stdout


# ---------------------------------------------------------------- files as users have them


def qa_txt(path: Path, n: int = 144) -> Path:
    """The issue's qa.txt: JSON lines, saved with a .txt extension."""
    return write_jsonl(path, [{"prompt": f"question {i}?{SEP}", "completion": f" answer {i}{STOP}"} for i in range(n)])


def test_json_lines_in_a_txt_file_are_checked_as_json_lines(tmp_path: Path) -> None:
    report = check_file(qa_txt(tmp_path / "qa.txt"))
    assert report.read_as == "read qa.txt as JSON Lines (its content), not plain text (its extension)"
    assert report.ok, report.codes("error")
    assert "empty_completion" not in report.codes() and (report.separator, report.stop) == (SEP, STOP)
    result = runner.invoke(app, ["check", str(tmp_path / "qa.txt"), "--approximate"])
    assert result.exit_code == 0, result.output
    assert "read qa.txt as JSON Lines (its content), not plain text (its extension)" in result.stdout
    result = runner.invoke(app, ["check", str(tmp_path / "qa.txt"), "--approximate", "--json"])
    assert Report.model_validate_json(result.stdout).read_as == report.read_as


def test_semicolon_csv_is_checked_with_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    path.write_bytes(b"\xef\xbb\xbfprompt;completion\n" + "".join(f"q {i}, please{SEP!r};yes\n" for i in range(5)).encode())
    report = check_file(path)
    assert "missing_column" not in report.codes() and report.rows == 5
    assert report.read_as == (
        "read s.csv as CSV separated by semicolons (its content), not by commas (its extension), "
        "in UTF-8 with a byte order mark"
    )


def test_unreadable_file_says_how_it_was_read(tmp_path: Path) -> None:
    path = qa_txt(tmp_path / "qa.txt", 3)
    path.write_text(path.read_text() + '{"prompt": "a" "completion": " b"}\n', encoding="utf-8")
    report = check_file(path)
    assert report.codes() == ["unreadable"] and report.findings[0].lines == [4]
    assert report.read_as is not None and "JSON Lines (its content)" in report.read_as


def test_deeply_nested_json_is_an_unreadable_line_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text('{"prompt": "a", "completion": " b"}\n' + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    result = runner.invoke(app, ["check", str(path), "--approximate", "--json"])
    assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit)
    report = Report.model_validate_json(result.stdout)
    assert report.codes() == ["unreadable"] and report.findings[0].lines == [2]
    assert "nested more than 64 levels" in report.findings[0].message


def test_lone_surrogates_are_reported_by_line_and_field(tmp_path: Path) -> None:
    rows = clean_rows()
    path = write_jsonl(tmp_path / "s.jsonl", rows)
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[2] = json.dumps({"prompt": "x\ud800" + SEP, "completion": " y" + STOP})  # json.dumps writes "\ud800"
    lines[4] = json.dumps({"prompt": "z" + SEP, "completion": " \udfff" + STOP, "n\udc00te": 1})
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = check_file(path)
    bad = {f.field: f.lines for f in report.findings if f.code == "invalid_unicode"}
    assert bad == {"prompt": [3], "completion": [5], "n\\udc00te": [5]}
    assert not report.ok and report.rows == 120
    result = runner.invoke(app, ["check", str(path), "--approximate", "--json"])
    assert result.exit_code == 1, result.output  # the report is written, escapes and all
    assert "invalid_unicode" in Report.model_validate_json(result.stdout).codes()
    result = runner.invoke(app, ["check", str(path), "--approximate"])
    assert result.exit_code == 1 and "'prompt' holds a lone surrogate on line 3" in result.stdout
