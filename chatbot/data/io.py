"""Reading example files in any of the formats people keep them in, and writing JSONL safely.

Every row read keeps the line (or spreadsheet row) the user sees it on, so that each problem
found later can name it. The formats: JSON Lines, JSON (an array of objects, or JSON lines), CSV,
TSV, XLSX (first sheet) and plain text (one prompt a line, completion empty).

The extension names the format, but the content decides where the two disagree (:func:`sniff`):
JSON lines in a ``.txt`` or ``.csv`` file are read as JSON Lines, a table with a header naming known
columns (``prompt``, ``completion``, ``text``, ``label``, …) in a ``.txt`` or JSON file as CSV,
a ``.csv`` whose header holds no comma but semicolons, tabs or bars is read with that delimiter
(:class:`csv.Sniffer` finds it), a ``.tsv`` holding commas as CSV, a zip archive as a workbook.
Text is UTF-8; a byte order mark is skipped, and UTF-16 or UTF-32 with one is decoded. :class:`Reading`
says what was read (:meth:`Reading.note`), and the reports of ``data check`` and ``data fix`` repeat it.

Nothing malformed gets past as an exception other than :class:`DataFormatError`: bytes that are not
UTF-8, NUL characters (binary data, UTF-16 without a byte order mark), JSON nested more than
:data:`MAX_DEPTH` levels, broken workbooks. Lone surrogates (``"\ud800"`` escapes in JSON) are read,
since a JSON parser accepts them, but :func:`invalid_text` finds them so that ``check`` reports
them, ``fix`` drops their rows and nothing tries to write them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import IO, Any

from chatbot.errors import ChatbotError
from chatbot.files import atomic_write

FIELDS = ("prompt", "completion")
SUFFIXES = (".jsonl", ".jsonlines", ".json", ".csv", ".tsv", ".xlsx", ".txt")
FIX_HINT = "run `chatbot data fix FILE -o OUT.jsonl` to fix it"
LIKELY_COLUMNS = {
    "prompt": {"text", "input", "question", "query", "source", "utterance"},
    "completion": {"label", "output", "answer", "target", "response", "intent"},
}
KNOWN_COLUMNS = frozenset(FIELDS) | LIKELY_COLUMNS["prompt"] | LIKELY_COLUMNS["completion"]
MAX_FILE_BYTES = 2 * 1024**3  # read whole into memory: beyond this, a mistake or an attack
MAX_XLSX_BYTES = 1024**3  # what the parts of a workbook may unpack to, in all (a zip bomb unpacks to far more)
MAX_DEPTH = 64  # JSON nesting: a row of training data needs a few levels, not hundreds
MAX_LINES_NAMED = 5  # lines an error message lists
SNIFF_CHARS = 2048  # csv.Sniffer is quadratic on quotes: sniff the head of the file only
DELIMITERS = (",", "\t", ";", "|")

FORMATS = {  # format: how a message names it
    "jsonl": "JSON Lines",
    "json": "JSON",
    "csv": "CSV",
    "tsv": "tab-separated values",
    "xlsx": "an Excel workbook",
    "txt": "plain text",
}
EXTENSIONS = {".jsonl": "jsonl", ".jsonlines": "jsonl", ".json": "json", ".csv": "csv", ".tsv": "tsv",
              ".xlsx": "xlsx", ".txt": "txt"}
DELIMITER_NAMES = {",": "commas", "\t": "tabs", ";": "semicolons", "|": "bars"}
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"  # .xls, and encrypted .xlsx
BOMS = (  # longest first: the UTF-32 LE mark starts with the UTF-16 LE one
    (b"\xff\xfe\x00\x00", "utf-32", "UTF-32"),
    (b"\x00\x00\xfe\xff", "utf-32", "UTF-32"),
    (b"\xef\xbb\xbf", "utf-8-sig", "UTF-8 with a byte order mark"),
    (b"\xff\xfe", "utf-16", "UTF-16"),
    (b"\xfe\xff", "utf-16", "UTF-16"),
)


class DataFormatError(ChatbotError):
    """The file exists and has a known type but its content cannot be read.

    ``line`` is the first line concerned where known, ``lines`` all of them (up to a limit), and
    ``note`` how the file was being read (see :meth:`Reading.note`) when that differs from its extension.
    """

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        lines: Iterable[int] = (),
        hint: str | None = None,
        note: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.line = line
        self.lines = sorted(set(lines) | ({line} if line else set()))
        self.note = note


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


@dataclass
class Reading:
    """How a file is read: the format its content has, the one its extension names, the encoding."""

    path: Path
    format: str
    expected: str
    delimiter: str | None = None
    encoding: str | None = None  # how a message names it, when not plain UTF-8
    text: str | None = field(default=None, repr=False)
    data: bytes | None = field(default=None, repr=False)

    def note(self) -> str | None:
        """``read qa.txt as JSON Lines (its content), not plain text (its extension)``; None when unremarkable."""
        what = self._what(self.format, self.delimiter)
        default = _default_delimiter(self.expected)
        parts = []
        if self.format != self.expected:
            parts.append(f"{what} (its content), not {self._what(self.expected, default)} (its extension)")
        elif self.delimiter != default:
            parts.append(f"{what} (its content), not by {DELIMITER_NAMES[default]} (its extension)")  # type: ignore[index]
        if self.encoding:
            parts.append(f"{what} in {self.encoding}" if not parts else f"in {self.encoding}")
        return f"read {self.path.name} as {', '.join(parts)}" if parts else None

    @staticmethod
    def _what(format: str, delimiter: str | None) -> str:
        if format == "csv" and delimiter not in (None, ","):
            return f"CSV separated by {DELIMITER_NAMES[delimiter]}"  # type: ignore[index]
        return FORMATS[format]


@dataclass
class DataFile:
    """The rows of a file and how it was read."""

    records: list[Record]
    reading: Reading

    @property
    def note(self) -> str | None:
        return self.reading.note()


# ---------------------------------------------------------------- reading


def read_records(path: str | Path) -> list[Record]:
    """The rows of *path*, whatever its format; ChatbotError when it cannot be read."""
    return read_file(path).records


def read_file(path: str | Path, *, note_in_errors: bool = True) -> DataFile:
    """The rows of *path* and how they were read; ChatbotError when it cannot be read.

    A missing file or an unknown extension is a plain ChatbotError; content that cannot be read
    is a :class:`DataFormatError` naming the line where there is one. When the content decided how
    to read the file, the error's ``note`` says how, and (with *note_in_errors*) so does its text.
    """
    reading = sniff(path)
    note = reading.note()
    try:
        records = _PARSERS[reading.format](reading)
        if not records:
            raise DataFormatError(f"{reading.path}: the file is empty", hint="add at least one example")
    except DataFormatError as exc:
        if note is None or not note_in_errors:
            exc.note = note
            raise
        raise DataFormatError(f"{exc.message} ({note})", line=exc.line, lines=exc.lines, hint=exc.hint, note=note) from None
    return DataFile(records, reading)


def describe(path: str | Path) -> str | None:
    """How *path* would be read, when that differs from what its extension says (see :meth:`Reading.note`)."""
    try:
        return sniff(path).note()
    except ChatbotError:
        return None


def sniff(path: str | Path) -> Reading:
    """How to read *path*: its extension, corrected by what its first bytes and lines hold."""
    path = Path(path)
    if not path.exists():
        raise ChatbotError(f"{path}: no such file")
    if path.is_dir():
        raise ChatbotError(f"{path}: is a directory, not a file")
    suffix = path.suffix.lower()
    expected = EXTENSIONS.get(suffix)
    if expected is None:
        hint = "save it as .xlsx" if suffix == ".xls" else f"use one of: {', '.join(SUFFIXES)}"
        raise ChatbotError(f"{path}: unknown file type {suffix or '(no extension)'!r}", hint=hint)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DataFormatError(f"{path}: {size:,} bytes, more than the {MAX_FILE_BYTES:,} a data file may have",
                                  hint="split it into smaller files")
        data = path.read_bytes()
    except OSError as exc:
        raise ChatbotError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if data.startswith(ZIP_MAGIC):
        return Reading(path, "xlsx", expected, data=data)
    if data.startswith(OLE_MAGIC):
        raise DataFormatError(
            f"{path}: an old Excel .xls workbook (or an encrypted one), not {FORMATS[expected]}",
            hint="save it as .xlsx without a password, or as CSV",
        )
    if not data.strip():
        raise DataFormatError(f"{path}: the file is empty", hint="add at least one example")
    try:
        text, encoding = _decode(path, data)
    except DataFormatError:
        if expected == "xlsx":
            raise DataFormatError(f"{path}: not a valid .xlsx workbook (not a zip archive)", hint="save it again as .xlsx") from None
        raise
    format, delimiter = _sniff_text(text, expected)
    if format == "xlsx":
        raise DataFormatError(
            f"{path}: not a valid .xlsx workbook: it holds text, but neither JSON nor a table with a header",
            hint="save it again as .xlsx",
        )
    return Reading(path, format, expected, delimiter, encoding, text=text)


def _default_delimiter(format: str) -> str | None:
    return {"csv": ",", "tsv": "\t"}.get(format)


def _sniff_text(text: str, expected: str) -> tuple[str, str | None]:
    """(format, delimiter) of *text*, whose extension names *expected*."""
    head = _head(text)
    if not head:
        return expected, _default_delimiter(expected)
    first = head[0]
    if all(line.startswith("{") for line in head) and any(_is_json_object(line) for line in head[:5]):
        return ("json" if expected == "json" else "jsonl"), None  # .json reads JSON lines too; a broken line gets its number
    if first.startswith("[") and _is_json_array_of_objects(text):
        return "json", None
    if expected in ("csv", "tsv"):
        default = _default_delimiter(expected)
        if default in first:
            return expected, default
        found = _sniff_delimiter(head, first)
        if found is None:
            return expected, default
        return ("tsv" if found == "\t" else "csv"), found
    if first.startswith(("{", "[")):  # JSON-like but not JSON: not a table either
        return expected, _default_delimiter(expected)
    found = _sniff_delimiter(head, first)
    if found is not None and _names_known_columns(first, found):
        return ("tsv" if found == "\t" else "csv"), found
    return expected, _default_delimiter(expected)


def _head(text: str, count: int = 20) -> list[str]:
    """The first non-blank lines of *text*, stripped: *count*, or fewer when they reach :data:`SNIFF_CHARS`."""
    lines: list[str] = []
    start = size = 0
    while start < len(text) and len(lines) < count and size < SNIFF_CHARS:
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        line = text[start:end].strip()
        if line:
            lines.append(line)
            size += len(line)
        start = end + 1
    return lines


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except (ValueError, RecursionError):
        return False


def _is_json_array_of_objects(text: str) -> bool:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return False
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _sniff_delimiter(head: list[str], first: str) -> str | None:
    """The delimiter :class:`csv.Sniffer` finds in *head*, if it splits the header *first* in two or more."""
    try:
        found = csv.Sniffer().sniff("\n".join(head)[:SNIFF_CHARS], delimiters="".join(DELIMITERS)).delimiter
    except csv.Error:
        found = None
    candidates = [found] if found else []
    candidates += [d for d in DELIMITERS if d != found]
    for delimiter in candidates:
        if delimiter in first and len(_cells(first, delimiter)) >= 2:
            return delimiter
    return None


def _cells(line: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return []


def _names_known_columns(header: str, delimiter: str) -> bool:
    """Whether *header* is a table's: no empty name, and known names only or two of them at least.

    ("text, please" is a prompt; "id;prompt;completion" a header.)
    """
    names = [cell.strip().lstrip("\ufeff").lower() for cell in _cells(header, delimiter)]
    known = sum(name in KNOWN_COLUMNS for name in names)
    return all(names) and known >= 1 and (known == len(names) or known >= 2)


def _decode(path: Path, data: bytes) -> tuple[str, str | None]:
    """The text of *data* and its encoding's name when not plain UTF-8: UTF-8, or UTF-16/32 with a BOM."""
    codec, name = "utf-8", None
    for bom, bom_codec, bom_name in BOMS:
        if data.startswith(bom):
            codec, name = bom_codec, bom_name
            break
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        raise _undecodable(path, data, codec, name, exc) from None
    if codec != "utf-8-sig":
        text = text.removeprefix("\ufeff")
    if "\x00" in text:
        lines = _lines_with(text, "\x00")
        raise DataFormatError(
            f"{path}:{lines[0]}: a NUL character: binary data, or UTF-16 text without a byte order mark"
            + _more_lines(lines),
            line=lines[0],
            lines=lines,
            hint="save the file as UTF-8 text",
        )
    return text, name


def _undecodable(path: Path, data: bytes, codec: str, name: str | None, exc: UnicodeDecodeError) -> DataFormatError:
    if codec != "utf-8":  # UTF-16/32: the line is that of the text decoded before the error
        line = data[: exc.start].decode(codec, errors="replace").count("\n") + 1
        return DataFormatError(f"{path}:{line}: invalid {name} text ({exc.reason})", line=line, hint="save the file as UTF-8")
    lines = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            lines.append(number)
    line = data.count(b"\n", 0, exc.start) + 1
    col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
    try:
        data.decode("cp1252")
        hint = "save the file as UTF-8; it looks like Latin-1 or Windows-1252 text"
    except UnicodeDecodeError:
        hint = "save the file as UTF-8"
    return DataFormatError(
        f"{path}:{line}:{col}: not UTF-8 text (byte 0x{data[exc.start]:02x})" + _more_lines(lines),
        line=line,
        lines=lines,
        hint=hint,
    )


def _lines_with(text: str, char: str) -> list[int]:
    return [number for number, line in enumerate(text.split("\n"), start=1) if char in line]


def _more_lines(lines: list[int]) -> str:
    """`` (also lines 5 and 9)`` after the first line of an error, or nothing."""
    others = lines[1:]
    if not others:
        return ""
    shown = ", ".join(map(str, others[:MAX_LINES_NAMED]))
    more = f", … ({len(lines)} lines in all)" if len(others) > MAX_LINES_NAMED else ""
    return f" (also line{'s' if len(others) > 1 else ''} {shown}{more})"


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """Numbered lines, split on newlines only (JSON strings may hold U+2028 and the like)."""
    for number, line in enumerate(text.split("\n"), start=1):
        yield number, line.rstrip("\r")


def _json_error(path: Path, exc: json.JSONDecodeError, line_offset: int = 0) -> DataFormatError:
    line = exc.lineno + line_offset
    return DataFormatError(f"{path}:{line}:{exc.colno}: invalid JSON: {exc.msg}", line=line)


def _too_deep_error(path: Path, line: int) -> DataFormatError:
    return DataFormatError(
        f"{path}:{line}: invalid JSON: nested more than {MAX_DEPTH} levels deep", line=line,
        hint="a row is an object of texts like {\"prompt\": ..., \"completion\": ...}",
    )


def depth(value: Any) -> int:
    """How deeply lists and objects nest in *value* (0 for a scalar), without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, level)
            if deepest > MAX_DEPTH:
                return deepest
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _load_json(path: Path, text: str, line: int, line_offset: int = 0) -> Any:
    """One JSON value, at most :data:`MAX_DEPTH` deep; DataFormatError naming the line otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _json_error(path, exc, line_offset) from None
    except RecursionError:
        raise _too_deep_error(path, line) from None
    if depth(value) > MAX_DEPTH:
        raise _too_deep_error(path, line)
    return value


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
        records.append(Record(number, _object(path, number, _load_json(path, line, number, number - 1))))
    return records


def _read_jsonl(reading: Reading) -> list[Record]:
    return _parse_json_lines(reading.path, reading.text or "")


def _read_json(reading: Reading) -> list[Record]:
    path, text = reading.path, reading.text or ""
    if not text.lstrip().startswith("["):
        return _read_json_not_array(path, text)
    return _parse_json_array(path, text)


def _read_json_not_array(path: Path, text: str) -> list[Record]:
    """A .json file that is not an array: JSON lines, or a single (maybe pretty-printed) object."""
    try:
        return _parse_json_lines(path, text)
    except DataFormatError as error:
        line = text.count("\n", 0, len(text) - len(text.lstrip())) + 1
        try:
            value = _load_json(path, text, line)
        except DataFormatError:
            raise error from None
        if isinstance(value, dict):
            return [Record(line, value)]
        raise error from None


def _parse_json_array(path: Path, text: str) -> list[Record]:
    """The objects of the JSON array in *text*, each with the line it starts on, decoded one by one."""
    decoder = json.JSONDecoder()
    index = _skip_space(text, text.index("[") + 1)
    line, counted = 1, 0
    records: list[Record] = []
    try:
        if text[index : index + 1] == "]":
            return _end_of_array(text, index, records)
        while True:
            line += text.count("\n", counted, index)
            counted = index
            try:
                value, index = decoder.raw_decode(text, index)
            except RecursionError:
                raise _too_deep_error(path, line) from None
            if depth(value) > MAX_DEPTH:
                raise _too_deep_error(path, line)
            records.append(Record(line, _object(path, line, value)))
            index = _skip_space(text, index)
            if text[index : index + 1] == "]":
                return _end_of_array(text, index, records)
            if text[index : index + 1] != ",":
                raise json.JSONDecodeError("Expecting ',' delimiter", text, index)
            index = _skip_space(text, index + 1)
    except json.JSONDecodeError as exc:
        raise _json_error(path, exc) from None


def _end_of_array(text: str, index: int, records: list[Record]) -> list[Record]:
    """*records*, the array closing at *index*; a JSONDecodeError when anything but space follows."""
    index = _skip_space(text, index + 1)
    if index < len(text):
        raise json.JSONDecodeError("Extra data", text, index)
    return records


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def _read_delimited(reading: Reading) -> list[Record]:
    path = reading.path
    delimiter = reading.delimiter or _default_delimiter(reading.format) or ","
    reader = csv.reader(io.StringIO(reading.text or "", newline=""), delimiter=delimiter)
    try:
        return _table_records(path, reader)
    except csv.Error as exc:
        raise DataFormatError(f"{path}:{reader.line_num}: unreadable row: {exc}", line=reader.line_num) from None


def _read_xlsx(reading: Reading) -> list[Record]:
    import openpyxl

    path = reading.path
    what = "a zip archive, but not an Excel workbook" if reading.expected != "xlsx" else "not a valid .xlsx workbook"
    data = io.BytesIO(reading.data or b"")
    try:
        with zipfile.ZipFile(data) as archive:
            unpacked = sum(info.file_size for info in archive.infolist())
        if unpacked > MAX_XLSX_BYTES:
            raise DataFormatError(f"{path}: {what}: its parts unpack to {unpacked:,} bytes, more than the {MAX_XLSX_BYTES:,} allowed",
                                  hint="save a smaller workbook, or the table as CSV")
        workbook = openpyxl.load_workbook(data, data_only=True)
    except DataFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - a parser of users' files: whatever it raises means a broken file
        raise DataFormatError(f"{path}: {what} ({_reason(exc)})", hint="save it again as .xlsx") from None
    try:
        if not workbook.worksheets:
            raise DataFormatError(f"{path}: the workbook has no sheet", hint="save it again as .xlsx")
        sheet = workbook.worksheets[0]
        rows = ([_cell_text(v) for v in row] for row in sheet.iter_rows(values_only=True))
        return _table_records(path, rows)
    except DataFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - as above, for the sheet's content
        raise DataFormatError(f"{path}: {what}: its first sheet cannot be read ({_reason(exc)})",
                              hint="save it again as .xlsx") from None
    finally:
        workbook.close()


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


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
    names = [cell.strip().lstrip("\ufeff").strip() for cell in row]
    seen: set[str] = set()
    for name in names:
        if name and name in seen:
            raise DataFormatError(f"{path}:{number}: the header names column {name!r} twice", line=number)
        seen.add(name)
    return names


def _read_txt(reading: Reading) -> list[Record]:
    return [
        Record(number, {"prompt": line, "completion": ""})
        for number, line in _lines(reading.text or "")
        if line.strip()
    ]


_PARSERS: dict[str, Callable[[Reading], list[Record]]] = {
    "jsonl": _read_jsonl,
    "json": _read_json,
    "csv": _read_delimited,
    "tsv": _read_delimited,
    "xlsx": _read_xlsx,
    "txt": _read_txt,
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
    require_valid_text(path, [record], [field])
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")


def holds_surrogate(value: Any) -> bool:
    """Whether a lone surrogate (``"\\ud800"`` in JSON: half of a UTF-16 pair, no character) is anywhere in *value*.

    Python strings can hold one, but no UTF encoding can write it: it would fail every later step.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def invalid_text(record: Record, fields: Iterable[str] | None = None) -> list[str]:
    """The fields of *record* (of *fields* when given) whose name or value holds a lone surrogate."""
    names = record.values if fields is None else [f for f in fields if f in record.values]
    return [name for name in names if holds_surrogate(name) or holds_surrogate(record.values[name])]


def printable(text: str) -> str:
    """*text* with lone surrogates written as escapes (``\\ud800``), so that it can be printed or written."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def show_name(name: str) -> str:
    """A column name in a one-line message: as it is when plain, quoted with escapes otherwise."""
    return name if name and name.isprintable() and name == name.strip() else repr(name)


SURROGATE_HINT = "a lone surrogate such as \\ud800 is half of a character, not valid Unicode"


def require_valid_text(path: str | Path, records: Iterable[Record], fields: Iterable[str] | None = None) -> None:
    """ChatbotError naming the first line and field (of *fields*, else any) holding a lone surrogate."""
    fields = None if fields is None else list(fields)
    for record in records:
        bad = invalid_text(record, fields)
        if bad:
            raise ChatbotError(
                f"{path}:{record.line}: field {bad[0]!r} holds a lone surrogate ({SURROGATE_HINT})",
                hint="fix the row, or run `chatbot data fix FILE -o OUT.jsonl`, which drops it",
            )


# ---------------------------------------------------------------- writing


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Write *rows* as UTF-8 JSON lines, atomically: a temporary file in the same folder, then rename."""
    def write(handle: IO[bytes]) -> None:
        for number, row in enumerate(rows, start=1):
            text = json.dumps(row, ensure_ascii=False) + "\n"
            try:
                handle.write(text.encode("utf-8"))
            except UnicodeEncodeError as exc:
                bad = exc.object[exc.start : exc.end]
                raise ChatbotError(f"{path}: row {number} holds {bad!r}, which cannot be written ({SURROGATE_HINT})") from None

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
