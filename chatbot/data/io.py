"""Reading example files in any of the formats people keep them in, and writing JSONL safely.

Every row read keeps the line (or spreadsheet row) the user sees it on, so that each problem
found later can name it. Formats go by extension: ``.jsonl``/``.jsonlines``, ``.json`` (an array
of objects, or JSON lines), ``.csv``, ``.tsv``, ``.xlsx`` (first sheet) and ``.txt`` (one prompt a
line, completion empty).
"""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import IO, Any

from chatbot.errors import ChatbotError
from chatbot.files import atomic_write

FIELDS = ("prompt", "completion")
SUFFIXES = (".jsonl", ".jsonlines", ".json", ".csv", ".tsv", ".xlsx", ".txt")
FIX_HINT = "run `chatbot data fix FILE -o OUT.jsonl` to fix it"


class DataFormatError(ChatbotError):
    """The file exists and has a known type but its content cannot be read; ``line`` where known."""

    def __init__(self, message: str, *, line: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.line = line


@dataclass
class Record:
    """One row of a file: the line the user sees it on and its fields."""

    line: int
    values: dict[str, Any]


@dataclass
class Example:
    """One prompt/completion pair and its line."""

    line: int
    prompt: str
    completion: str


# ---------------------------------------------------------------- reading


def read_records(path: str | Path) -> list[Record]:
    """The rows of *path*, whatever its format; ChatbotError when it cannot be read."""
    path = Path(path)
    if not path.exists():
        raise ChatbotError(f"{path}: no such file")
    if path.is_dir():
        raise ChatbotError(f"{path}: is a directory, not a file")
    suffix = path.suffix.lower()
    reader = _READERS.get(suffix)
    if reader is None:
        hint = "save it as .xlsx" if suffix == ".xls" else f"use one of: {', '.join(SUFFIXES)}"
        raise ChatbotError(f"{path}: unknown file type {suffix or '(no extension)'!r}", hint=hint)
    records = reader(path)
    if not records:
        raise DataFormatError(f"{path}: the file is empty", hint="add at least one example")
    return records


def _decode(path: Path) -> str:
    """The text of *path*: UTF-8 (BOM optional) or UTF-16 with a BOM."""
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DataFormatError(f"{path}: invalid UTF-16 text: {exc.reason}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataFormatError(
            f"{path}:{line}:{col}: not UTF-8 text (byte 0x{data[exc.start]:02x})",
            line=line,
            hint="save the file as UTF-8",
        ) from None


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """Numbered lines, split on newlines only (JSON strings may hold U+2028 and the like)."""
    for number, line in enumerate(text.split("\n"), start=1):
        yield number, line.rstrip("\r")


def _json_error(path: Path, exc: json.JSONDecodeError, line_offset: int = 0) -> DataFormatError:
    line = exc.lineno + line_offset
    return DataFormatError(f"{path}:{line}:{exc.colno}: invalid JSON: {exc.msg}", line=line)


def _object(path: Path, line: int, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DataFormatError(
            f"{path}:{line}: expected a JSON object like {{\"prompt\": ..., \"completion\": ...}}, "
            f"got {_type_name(value)}",
            line=line,
        )
    return value


def _parse_json_lines(path: Path, text: str) -> list[Record]:
    records = []
    for number, line in _lines(text):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _json_error(path, exc, number - 1) from None
        records.append(Record(number, _object(path, number, value)))
    return records


def _read_jsonl(path: Path) -> list[Record]:
    return _parse_json_lines(path, _decode(path))


def _read_json(path: Path) -> list[Record]:
    text = _decode(path)
    if not text.lstrip().startswith("["):
        return _read_json_not_array(path, text)
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _json_error(path, exc) from None
    starts = _array_item_lines(text)
    return [Record(line, _object(path, line, value)) for line, value in zip(starts, values, strict=True)]


def _read_json_not_array(path: Path, text: str) -> list[Record]:
    """A .json file that is not an array: JSON lines, or a single (maybe pretty-printed) object."""
    try:
        return _parse_json_lines(path, text)
    except DataFormatError as error:
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise error from None
        if isinstance(value, dict):
            return [Record(text.count("\n", 0, len(text) - len(text.lstrip())) + 1, value)]
        raise error from None


def _array_item_lines(text: str) -> list[int]:
    """The line on which each item of the (valid) JSON array in *text* starts."""
    decoder = json.JSONDecoder()
    index = text.index("[") + 1
    lines = []
    while True:
        index = _skip_space(text, index)
        if text[index] == "]":
            return lines
        lines.append(text.count("\n", 0, index) + 1)
        _, index = decoder.raw_decode(text, index)
        index = _skip_space(text, index)
        if text[index] == ",":
            index += 1


def _skip_space(text: str, index: int) -> int:
    while text[index] in " \t\r\n":
        index += 1
    return index


def _read_delimited(path: Path, delimiter: str) -> list[Record]:
    reader = csv.reader(io.StringIO(_decode(path), newline=""), delimiter=delimiter)
    try:
        return _table_records(path, reader)
    except csv.Error as exc:
        raise DataFormatError(f"{path}:{reader.line_num}: unreadable row: {exc}", line=reader.line_num) from None


def _read_csv(path: Path) -> list[Record]:
    return _read_delimited(path, ",")


def _read_tsv(path: Path) -> list[Record]:
    return _read_delimited(path, "\t")


def _read_xlsx(path: Path) -> list[Record]:
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(path, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise DataFormatError(f"{path}: not a valid .xlsx workbook ({exc})", hint="save it again as .xlsx") from None
    sheet = workbook.worksheets[0]
    rows = ([_cell_text(v) for v in row] for row in sheet.iter_rows(values_only=True))
    return _table_records(path, rows)


def _cell_text(value: Any) -> str:
    """A spreadsheet cell as the text it shows: integers without ``.0``, dates in ISO form."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).upper()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return str(value)


def _table_records(path: Path, rows: Iterable[list[str]]) -> list[Record]:
    """Records from rows of cells; the first non-blank row is the header; lines are row numbers."""
    header: list[str] | None = None
    header_row = 0
    body: list[tuple[int, list[str]]] = []
    for number, row in enumerate(rows, start=1):
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header, header_row = _header(path, number, row), number
            continue
        if len(row) > len(header) and any(cell.strip() for cell in row[len(header):]):
            raise DataFormatError(
                f"{path}:{number}: {len(row)} cells but the header (row {header_row}) names {len(header)} columns",
                line=number,
                hint="quote cells that contain the delimiter",
            )
        body.append((number, row + [""] * (len(header) - len(row))))
    if header is None:
        return []
    keep = [i for i, name in enumerate(header) if name or any(row[i].strip() for _, row in body)]
    names = [header[i] or f"column_{i + 1}" for i in range(len(header))]
    return [Record(number, {names[i]: row[i] for i in keep}) for number, row in body]


def _header(path: Path, number: int, row: list[str]) -> list[str]:
    names = [cell.strip() for cell in row]
    seen: set[str] = set()
    for name in names:
        if name and name in seen:
            raise DataFormatError(f"{path}:{number}: the header names column {name!r} twice", line=number)
        seen.add(name)
    return names


def _read_txt(path: Path) -> list[Record]:
    return [
        Record(number, {"prompt": line, "completion": ""})
        for number, line in _lines(_decode(path))
        if line.strip()
    ]


_READERS: dict[str, Callable[[Path], list[Record]]] = {
    ".jsonl": _read_jsonl,
    ".jsonlines": _read_jsonl,
    ".json": _read_json,
    ".csv": _read_csv,
    ".tsv": _read_tsv,
    ".xlsx": _read_xlsx,
    ".txt": _read_txt,
}


# ---------------------------------------------------------------- examples


def _type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def column_problem(records: list[Record], name: str) -> tuple[str | None, str | None]:
    """(mis-spelt column standing for *name*, None) or (None, None) when *name* is present."""
    columns = {key for record in records for key in record.values}
    if name in columns:
        return None, None
    for column in sorted(columns):
        if column.strip().lower() == name:
            return column, None
    return None, name


def load_examples(path: str | Path) -> list[Example]:
    """The prompt/completion pairs of *path*; ChatbotError naming file, line and field otherwise."""
    records = read_records(path)
    for name in FIELDS:
        wrong, missing = column_problem(records, name)
        if wrong is not None:
            raise ChatbotError(f"{path}: column {wrong!r} should be named {name!r}", hint=FIX_HINT)
        if missing is not None:
            columns = ", ".join(sorted({k for r in records for k in r.values})) or "none"
            raise ChatbotError(
                f"{path}: no {name!r} column (columns: {columns})",
                hint="rename the column, or build prompts with `chatbot data template`",
            )
    return [Example(r.line, _text(path, r, "prompt"), _text(path, r, "completion")) for r in records]


def _text(path: str | Path, record: Record, field: str) -> str:
    if field not in record.values:
        raise ChatbotError(f"{path}:{record.line}: no {field!r} field", hint="add it or remove the row")
    value = record.values[field]
    if not isinstance(value, str):
        raise ChatbotError(
            f"{path}:{record.line}: field {field!r} is {_type_name(value)}, not text",
            hint="write it as a JSON string, or " + FIX_HINT,
        )
    return value


# ---------------------------------------------------------------- writing


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write *rows* as UTF-8 JSON lines, atomically: a temporary file in the same folder, then rename."""
    def write(handle: IO[bytes]) -> None:
        for row in rows:
            handle.write((json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8"))

    atomic_write(path, write)


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether *a* and *b* name the same file (existing or not)."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_outputs(inputs: Iterable[str | Path], outputs: Iterable[str | Path], *, force: bool) -> None:
    """Refuse outputs that are an input, or that exist already unless *force*."""
    inputs = list(inputs)
    for out in outputs:
        for source in inputs:
            if same_file(source, out):
                raise ChatbotError(f"{out}: is the input file; refusing to overwrite it", hint="choose another name")
        if Path(out).exists() and not force:
            raise ChatbotError(f"{out}: exists already", hint="choose another name or pass --force to overwrite it")
