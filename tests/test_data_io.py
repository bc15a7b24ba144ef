"""Reading every supported format, the errors for bad files, and atomic JSONL writing."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import openpyxl
import pytest

from chatbot.data.io import (
    DataFormatError,
    Example,
    holds_surrogate,
    invalid_text,
    load_examples,
    read_file,
    read_records,
    require_valid_text,
    write_jsonl,
)
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


# ---------------------------------------------------------------- files as users have them: the content decides


QA_ROWS = [{"prompt": f"question {i}?\n\n###\n\n", "completion": f" answer {i} END"} for i in range(3)]
QA_JSONL = "".join(json.dumps(row) + "\n" for row in QA_ROWS)


def test_json_lines_in_a_txt_file_are_read_as_json_lines(tmp_path: Path) -> None:
    data = read_file(write(tmp_path / "qa.txt", QA_JSONL))
    assert [r.values for r in data.records] == QA_ROWS
    assert data.reading.format == "jsonl"
    assert data.note == "read qa.txt as JSON Lines (its content), not plain text (its extension)"


def test_json_lines_in_a_txt_file_with_a_broken_line_name_it(tmp_path: Path) -> None:
    path = write(tmp_path / "qa.txt", QA_JSONL + '{"prompt": "a", "completion": \n')
    with pytest.raises(DataFormatError, match=r"qa\.txt:4:\d+: invalid JSON") as info:
        read_records(path)
    assert info.value.note == "read qa.txt as JSON Lines (its content), not plain text (its extension)"


@pytest.mark.parametrize("first", ["Hello, how are you?", "text, please", "{not json}", "[1, 2]", "label;it;was"])
def test_a_txt_file_of_prompts_stays_plain_text(tmp_path: Path, first: str) -> None:
    data = read_file(write(tmp_path / "p.txt", f"{first}\n{{not json}}\nWhat is 2, 3 and 4?\n"))
    assert data.reading.format == "txt" and data.note is None
    assert [r.values["prompt"] for r in data.records][0] == first


@pytest.mark.parametrize(
    ("text", "note"),
    [
        ("prompt,completion\nhello,yes\n", "read t.txt as CSV (its content), not plain text (its extension)"),
        ("text\tlabel\nhello\tgreet\n", "read t.txt as tab-separated values (its content), not plain text (its extension)"),
        ("Question;Answer\nhello, you;hi\n", "read t.txt as CSV separated by semicolons (its content), not plain text (its extension)"),
        ("id|prompt|completion\n1|hi\n", "read t.txt as CSV separated by bars (its content), not plain text (its extension)"),
    ],
)
def test_a_table_in_a_txt_file_is_read_as_a_table(tmp_path: Path, text: str, note: str) -> None:
    data = read_file(write(tmp_path / "t.txt", text))
    assert data.note == note
    assert len(data.records) == 1 and len(data.records[0].values) >= 2 and data.records[0].line == 2


def test_a_table_in_a_txt_file_with_a_cell_too_many_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match=r"t\.txt:3: 4 cells but the header") as info:
        read_records(write(tmp_path / "t.txt", "prompt,completion\nhi,yes\nhi, there, you, yes\n"))
    assert info.value.note == "read t.txt as CSV (its content), not plain text (its extension)"


@pytest.mark.parametrize(
    ("name", "text", "values", "note"),
    [
        ("s.csv", "prompt;completion\nhello, world;yes\n", {"prompt": "hello, world", "completion": "yes"},
         "read s.csv as CSV separated by semicolons (its content), not by commas (its extension)"),
        ("t.csv", "prompt\tcompletion\nhello, world\tyes\n", {"prompt": "hello, world", "completion": "yes"},
         "read t.csv as tab-separated values (its content), not CSV (its extension)"),
        ("c.tsv", 'prompt,completion\n"a\tb",yes\n', {"prompt": "a\tb", "completion": "yes"},
         "read c.tsv as CSV (its content), not tab-separated values (its extension)"),
        ("q.csv", 'prompt;completion\n"a;b";"c, d"\n', {"prompt": "a;b", "completion": "c, d"},
         "read q.csv as CSV separated by semicolons (its content), not by commas (its extension)"),
        ("j.csv", QA_JSONL, QA_ROWS[0], "read j.csv as JSON Lines (its content), not CSV (its extension)"),
        ("a.jsonl", "prompt,completion\nhello,yes\n", {"prompt": "hello", "completion": "yes"},
         "read a.jsonl as CSV (its content), not JSON Lines (its extension)"),
        ("a.txt", json.dumps(QA_ROWS, indent=1), QA_ROWS[0], "read a.txt as JSON (its content), not plain text (its extension)"),
    ],
)
def test_delimiter_and_format_come_from_the_content(tmp_path: Path, name: str, text: str, values: dict, note: str) -> None:
    data = read_file(write(tmp_path / name, text))
    assert data.records[0].values == values
    assert data.note == note


def test_comma_csv_keeps_commas_though_cells_hold_semicolons(tmp_path: Path) -> None:
    data = read_file(write(tmp_path / "a.csv", "prompt,completion\na;b;c,yes\nd;e,no\n"))
    assert data.records[0].values == {"prompt": "a;b;c", "completion": "yes"} and data.note is None


@pytest.mark.parametrize("name", ["qa.txt", "qa.jsonl", "qa.json", "qa.csv"])
def test_a_utf8_byte_order_mark_is_skipped_in_any_format(tmp_path: Path, name: str) -> None:
    text = "prompt;completion\nhi;yes\n" if name == "qa.csv" else QA_JSONL
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    data = read_file(path)
    assert "prompt" in data.records[0].values  # not "\ufeffprompt"
    assert data.note is not None and data.note.endswith("in UTF-8 with a byte order mark")


def test_a_byte_order_mark_in_a_workbook_header_is_dropped(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    workbook.active.append(["\ufeffprompt", "completion"])
    workbook.active.append(["a", "b"])
    workbook.save(tmp_path / "a.xlsx")
    assert read_records(tmp_path / "a.xlsx")[0].values == {"prompt": "a", "completion": "b"}


def test_utf16_with_a_byte_order_mark_is_decoded_and_said(tmp_path: Path) -> None:
    path = tmp_path / "qa.txt"
    path.write_bytes(QA_JSONL.encode("utf-16"))
    data = read_file(path)
    assert [r.values for r in data.records] == QA_ROWS
    assert data.note == "read qa.txt as JSON Lines (its content), not plain text (its extension), in UTF-16"


def test_workbook_saved_as_csv_and_csv_saved_as_xlsx(tmp_path: Path) -> None:
    workbook = openpyxl.Workbook()
    workbook.active.append(["prompt", "completion"])
    workbook.active.append(["a", 1])
    workbook.save(tmp_path / "w.csv")
    data = read_file(tmp_path / "w.csv")
    assert data.records[0].values == {"prompt": "a", "completion": "1"}
    assert data.note == "read w.csv as an Excel workbook (its content), not CSV (its extension)"
    data = read_file(write(tmp_path / "t.xlsx", "prompt,completion\na,b\n"))
    assert data.note == "read t.xlsx as CSV (its content), not an Excel workbook (its extension)"


# ---------------------------------------------------------------- hostile content: errors with lines, never a crash


@pytest.mark.parametrize(
    "line",
    [
        "[" * 100_000 + "]" * 100_000,
        '{"prompt": ' + '{"a": ' * 100_000 + "1" + "}" * 100_000 + ', "completion": " b"}',
        '{"prompt": ' + "[" * 200 + "]" * 200 + ', "completion": " b"}',  # parses, but too deep to be data
    ],
)
def test_deeply_nested_json_is_an_invalid_line(tmp_path: Path, line: str) -> None:
    path = write(tmp_path / "deep.jsonl", '{"prompt": "a", "completion": " b"}\n' + line + "\n")
    with pytest.raises(DataFormatError, match=r"deep\.jsonl:2: invalid JSON: nested more than 64 levels deep") as info:
        read_records(path)
    assert info.value.lines == [2]
    json_path = write(tmp_path / "deep.json", "[\n" + '{"prompt": "a", "completion": " b"},\n' + line + "\n]")
    with pytest.raises(DataFormatError, match=r"deep\.json:3: invalid JSON: nested more than"):
        read_records(json_path)


def test_every_line_with_bad_bytes_is_named(tmp_path: Path) -> None:
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"prompt": "caf\xe9"}\n{"prompt": "ok"}\n{"prompt": "\xe0 la"}\n')
    with pytest.raises(DataFormatError, match=r"latin\.jsonl:1:16: not UTF-8 text \(byte 0xe9\) \(also line 3\)") as info:
        read_records(path)
    assert info.value.lines == [1, 3] and "Latin-1" in (info.value.hint or "")


def test_nul_bytes_and_utf16_without_a_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    path.write_bytes(QA_JSONL.encode("utf-16-le"))
    with pytest.raises(DataFormatError, match=r"u\.jsonl:1: a NUL character: binary data, or UTF-16 text without"):
        read_records(path)


def test_broken_utf16_names_the_encoding(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_bytes(b"\xff\xfe" + "prompt,completion\n".encode("utf-16-le") + b"\x00\xd8a\x00")
    with pytest.raises(DataFormatError, match=r"u\.csv:2: invalid UTF-16 text"):
        read_records(path)


def test_lone_surrogates_are_read_and_found_by_field(tmp_path: Path) -> None:
    path = write(tmp_path / "s.jsonl", '{"prompt": "a\\ud800", "completion": " b"}\n{"prompt": "c", "x\\udfff": [" d"]}\n')
    records = read_records(path)
    assert [invalid_text(r) for r in records] == [["prompt"], ["x\udfff"]]
    assert holds_surrogate({"a": ["\ud83d"]}) and not holds_surrogate("\U0001f600")
    with pytest.raises(ChatbotError, match=r"s\.jsonl:1: field 'prompt' holds a lone surrogate"):
        require_valid_text(path, records)
    with pytest.raises(ChatbotError, match=r"s\.jsonl:1: field 'prompt' holds a lone surrogate"):
        load_examples(path)


def test_write_jsonl_refuses_a_lone_surrogate_with_an_error(tmp_path: Path) -> None:
    with pytest.raises(ChatbotError, match=r"out\.jsonl: row 2 holds '\\ud800'"):
        write_jsonl(tmp_path / "out.jsonl", [{"a": "b"}, {"a": "\ud800"}])
    assert not (tmp_path / "out.jsonl").exists()


def test_odd_workbooks(tmp_path: Path) -> None:
    import zipfile

    with zipfile.ZipFile(tmp_path / "z.xlsx", "w") as archive:
        archive.writestr("hello.txt", "not a workbook")
    with pytest.raises(DataFormatError, match=r"z\.xlsx: not a valid \.xlsx workbook"):
        read_records(tmp_path / "z.xlsx")
    (tmp_path / "old.xlsx").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(500))
    with pytest.raises(DataFormatError, match=r"old\.xlsx: an old Excel \.xls workbook"):
        read_records(tmp_path / "old.xlsx")
    (tmp_path / "bin.xlsx").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataFormatError, match=r"bin\.xlsx: not a valid \.xlsx workbook"):
        read_records(tmp_path / "bin.xlsx")
    workbook = openpyxl.Workbook()
    workbook.save(tmp_path / "empty.xlsx")
    with pytest.raises(DataFormatError, match="the file is empty"):
        read_records(tmp_path / "empty.xlsx")
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["prompt", None, "completion"])
    sheet.merge_cells("A1:B1")
    sheet.append(["a", None, 3])
    workbook.save(tmp_path / "merged.xlsx")
    assert read_records(tmp_path / "merged.xlsx")[0].values == {"prompt": "a", "completion": "3"}
