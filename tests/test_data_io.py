"""Reading every supported format, the errors for bad files, and atomic JSONL writing."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest

from chatbot.data.io import DataFormatError, Example, load_examples, read_records, write_jsonl
from chatbot.errors import ChatbotError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_jsonl_keeps_line_numbers_and_skips_blank_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", '{"prompt": "a", "completion": " b"}\n\n{"prompt": "c", "completion": " d"}\n')
    records = read_records(path)
    assert [r.line for r in records] == [1, 3]
    assert records[1].values == {"prompt": "c", "completion": " d"}


def test_jsonlines_extension_and_unicode_line_separator(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonlines", json.dumps({"prompt": "x\u2028y", "completion": " é"}, ensure_ascii=False) + "\n")
    assert read_records(path)[0].values["prompt"] == "x\u2028y"


def test_json_array_lines_are_where_objects_start(tmp_path: Path) -> None:
    text = '[\n  {"prompt": "a",\n   "completion": " b"},\n\n  {"prompt": "c", "completion": " d"}\n]\n'
    records = read_records(write(tmp_path / "a.json", text))
    assert [r.line for r in records] == [2, 5]
    assert records[1].values["prompt"] == "c"


def test_json_file_holding_json_lines(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", '{"prompt": "a", "completion": " b"}\n{"prompt": "c", "completion": " d"}\n')
    assert [r.line for r in read_records(path)] == [1, 2]


def test_json_file_holding_one_pretty_object(tmp_path: Path) -> None:
    path = write(tmp_path / "a.json", '\n{\n  "prompt": "a",\n  "completion": " b"\n}\n')
    records = read_records(path)
    assert len(records) == 1 and records[0].line == 2


def test_csv_lines_are_spreadsheet_rows(tmp_path: Path) -> None:
    text = 'prompt,completion\n"multi\nline",yes\n\nhello,no\n'
    records = read_records(write(tmp_path / "a.csv", text))
    assert [r.line for r in records] == [2, 4]
    assert records[0].values == {"prompt": "multi\nline", "completion": "yes"}


def test_csv_with_bom_short_rows_and_too_many_cells(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes("\ufeffprompt,completion\nonly prompt\n".encode())
    assert read_records(path)[0].values == {"prompt": "only prompt", "completion": ""}
    write(path, "prompt,completion\na,b,c\n")
    with pytest.raises(DataFormatError, match=r"a\.csv:2: 3 cells"):
        read_records(path)


def test_tsv(tmp_path: Path) -> None:
    records = read_records(write(tmp_path / "a.tsv", "prompt\tcompletion\nhi, there\t yes\n"))
    assert records[0].values == {"prompt": "hi, there", "completion": " yes"}
    assert records[0].line == 2


def test_tsv_in_utf16(tmp_path: Path) -> None:
    path = tmp_path / "a.tsv"
    path.write_bytes("prompt\tcompletion\nçà\tx\n".encode("utf-16"))
    assert read_records(path)[0].values["prompt"] == "çà"


def test_xlsx_first_sheet_with_numbers_as_text(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["prompt", "completion"])
    sheet.append(["two plus two", 4])
    sheet.append([None, None])
    sheet.append(["pi", 3.5])
    workbook.create_sheet("other").append(["ignored"])
    workbook.save(tmp_path / "a.xlsx")
    records = read_records(tmp_path / "a.xlsx")
    assert [(r.line, r.values["completion"]) for r in records] == [(2, "4"), (4, "3.5")]


def test_txt_is_one_prompt_per_line(tmp_path: Path) -> None:
    records = read_records(write(tmp_path / "a.txt", "first\r\n\nsecond\n"))
    assert [(r.line, r.values) for r in records] == [
        (1, {"prompt": "first", "completion": ""}),
        (3, {"prompt": "second", "completion": ""}),
    ]


def test_jsonl_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.jsonl", '{"prompt": "a", "completion": " b"}\n{"prompt": "a" "completion": 1}\n')
    with pytest.raises(DataFormatError) as info:
        read_records(path)
    assert info.value.message == f"{path}:2:16: invalid JSON: Expecting ',' delimiter"
    assert info.value.line == 2


def test_json_array_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.json", '[\n {"prompt": "a"},\n {"prompt": }\n]')
    with pytest.raises(DataFormatError, match=r"bad\.json:3:13: invalid JSON: Expecting value"):
        read_records(path)


def test_jsonl_line_not_an_object(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", '{"prompt": "a", "completion": "b"}\n["a", "b"]\n')
    with pytest.raises(DataFormatError, match=r"a\.jsonl:2: expected a JSON object.*got a list"):
        read_records(path)


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.csv", "empty.txt", "empty.json"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    with pytest.raises(DataFormatError, match="the file is empty"):
        read_records(write(tmp_path / name, "\n  \n" if name != "empty.json" else "[]"))


def test_undecodable_bytes_name_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"prompt": "a", "completion": "b"}\n{"prompt": "caf\xe9"}\n')
    with pytest.raises(DataFormatError, match=r"latin\.jsonl:2:16: not UTF-8 text \(byte 0xe9\)") as info:
        read_records(path)
    assert "UTF-8" in (info.value.hint or "")


def test_missing_file_and_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(ChatbotError, match="no such file") as info:
        read_records(tmp_path / "nope.jsonl")
    assert not isinstance(info.value, DataFormatError)
    with pytest.raises(ChatbotError, match="unknown file type '.parquet'"):
        read_records(write(tmp_path / "a.parquet", "x"))


def test_load_examples(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", '{"prompt": "p", "completion": " c"}\n')
    assert load_examples(path) == [Example(1, "p", " c")]


def test_load_examples_miscased_column_says_to_fix(tmp_path: Path) -> None:
    path = write(tmp_path / "a.csv", "Prompt,completion\na,b\n")
    with pytest.raises(ChatbotError) as info:
        load_examples(path)
    assert "'Prompt' should be named 'prompt'" in info.value.message
    assert "chatbot data fix" in (info.value.hint or "")


def test_load_examples_missing_column_lists_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", '{"text": "hi", "label": "greet"}\n')
    with pytest.raises(ChatbotError, match=r"no 'prompt' column \(columns: label, text\)"):
        load_examples(path)


def test_load_examples_non_string_names_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path / "a.jsonl", '{"prompt": "a", "completion": " b"}\n{"prompt": "a", "completion": 3}\n')
    with pytest.raises(ChatbotError, match=r"a\.jsonl:2: field 'completion' is a number, not text"):
        load_examples(path)


def test_write_jsonl_is_atomic_utf8_and_leaves_no_temp(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out.jsonl"
    write_jsonl(path, [{"prompt": "café", "completion": " ✓"}])
    assert path.read_text(encoding="utf-8") == '{"prompt": "café", "completion": " ✓"}\n'

    def broken() -> Iterator[dict[str, str]]:
        yield {"prompt": "new"}
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_jsonl(path, broken())
    assert "café" in path.read_text(encoding="utf-8")  # the old file is untouched
    assert [p.name for p in path.parent.iterdir()] == ["out.jsonl"]


def test_write_jsonl_gives_new_files_normal_permissions(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [{"a": 1}])
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
