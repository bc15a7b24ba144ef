"""Hostile files, generated: broken data files through every `chatbot data` command, broken models.yaml.

Hypothesis writes malformed and hostile training files (broken and deeply nested JSON, numbers,
lists and nulls where text belongs, huge lines, binary bytes, wrong encodings, lone surrogates,
byte order marks, CRLF, empty files, tables with any delimiter and quoting, odd workbooks and zip
archives), under every extension, and runs `data check` (text and --json), `data fix`,
`data template` and `data split` on each through the real command line. What must hold for every
one of them:

- no traceback: exit status 0, 1 (check: the file can't be used as is) or 2 (one `error:` line);
- every error names where: the file and line (``qa.txt:3``), or a field (``'prompt'``), or is about
  the whole file (empty, not a workbook, nothing left to write);
- the input is never modified (same bytes, same mtime), no temporary file is left behind, and
  whatever is written is valid UTF-8 JSON lines.

The same for models.yaml (``chatbot.registry.load`` and `chatbot registry list`): one ChatbotError
naming the file, the line and, where a value is wrong, its key path (``skills.faq.stop[1]``).

Runs are reproducible: ``derandomize=True`` and no example database.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
import zipfile
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import typer
import yaml
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from chatbot import registry
from chatbot.cli import app
from chatbot.data.check import Report
from chatbot.errors import ChatbotError
from chatbot.registry import key_path

COMMAND = typer.main.get_command(app)  # built once: what `chatbot` runs (typer rebuilds it on every invoke)
RUNNER = CliRunner()


def hostile(examples: int) -> Callable[[Any], Any]:
    """Hypothesis settings for these tests: reproducible, no database, no deadline, quiet about slow data."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


# ---------------------------------------------------------------- pieces of hostile content

ANY_CHAR = st.characters(exclude_categories=())  # surrogates and control characters included
SPECIAL = st.sampled_from(
    ["\n", "\r\n", "\r", ",", ";", "\t", "|", '"', "'", "{", "}", "[", "]", "\\", "\ufeff", "\x85", "\u2028",
     "\ud800", "\udfff", " END", "\n\n###\n\n", "prompt", "completion", "é", "😀", "[bold]", "[/]", "{name}", ""]
)
TEXT = st.lists(st.one_of(SPECIAL, st.text(ANY_CHAR, max_size=6), st.text("abc xyz?", max_size=10)), max_size=5).map("".join)
SCALAR = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT)
VALUE = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=6)
KEYS = st.sampled_from(["prompt", "completion", "Prompt", " completion", "text", "label", "name", "detail", "\ufeffprompt"])
LABEL = st.sampled_from([" yes", " no", " yes END", "maybe", " no\n", ""])
ROW = st.one_of(
    st.fixed_dictionaries({"prompt": TEXT, "completion": TEXT}, optional={"label": TEXT}),  # well typed, hostile text
    st.fixed_dictionaries({"prompt": TEXT, "completion": LABEL}),  # classification, for stratified splits
    st.fixed_dictionaries({"prompt": TEXT, "completion": VALUE}),  # numbers, lists, null where text belongs
    st.dictionaries(KEYS | TEXT, VALUE, max_size=4),  # any keys, any types
    VALUE,  # not an object at all
)
DEEP = st.sampled_from([10, 63, 70, 1_000, 100_000])
HUGE = st.sampled_from([10_000, 200_000, 1_000_000])
EXTENSIONS = st.sampled_from([".jsonl", ".jsonl", ".jsonlines", ".json", ".txt", ".txt", ".csv", ".csv", ".tsv", ".xlsx"])
BAD_BYTES = st.sampled_from([b"\xff", b"\xe9", b"\xed\xa0\x80", b"\x80", b"\xc3", b"\x00", b"\xef\xbb\xbf", b"\r", b""]) | st.binary(max_size=8)
ENCODINGS = st.sampled_from(["utf-8"] * 8 + ["utf-8-sig", "utf-16", "utf-16-le", "utf-32", "latin-1", "cp1252"])


def encode(text: str, encoding: str) -> bytes:
    """*text* in *encoding*, as an editor might save it: surrogates passed through where the codec can."""
    if encoding.startswith(("utf-8", "utf-16", "utf-32")):
        return text.encode(encoding, "surrogatepass")
    return text.encode(encoding, "replace")


@st.composite
def json_text(draw: st.DrawFn) -> str:
    """JSON lines or a JSON array of rows, with broken, deep and huge lines mixed in."""
    rows = draw(st.lists(ROW, max_size=12))
    ascii_only = draw(st.booleans())  # False: lone surrogates written raw (invalid UTF-8 once encoded)
    lines = [json.dumps(row, ensure_ascii=ascii_only) for row in rows]
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        extra = draw(st.sampled_from(["deep_list", "deep_object", "huge", "broken", "garbage"]))
        at = draw(st.integers(0, len(lines)))
        if extra == "deep_list":
            n = draw(DEEP)
            line = "[" * n + "]" * n
        elif extra == "deep_object":
            n = draw(DEEP)
            line = '{"prompt": ' + '{"a": ' * n + "1" + "}" * n + ', "completion": " b"}'
        elif extra == "huge":
            line = json.dumps({"prompt": "x" * draw(HUGE), "completion": " y"})
        elif extra == "broken":
            whole = json.dumps(draw(ROW))
            line = whole[: draw(st.integers(0, len(whole)))]
        else:
            line = draw(TEXT)
        lines.insert(at, line)
    newline = draw(st.sampled_from(["\n", "\r\n", "\n\n"]))
    if draw(st.booleans()):
        return newline.join(lines) + draw(st.sampled_from(["", newline]))
    return "[" + ("," + newline).join(lines) + draw(st.sampled_from(["]", "", "],", "]]"]))


@st.composite
def table_text(draw: st.DrawFn) -> str:
    """A table: a header (known names or any text), cells of any text, any delimiter, quoted or not."""
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    width = draw(st.integers(1, 4))
    header = draw(st.lists(KEYS | TEXT, min_size=width, max_size=width))
    body = draw(st.lists(st.lists(TEXT | st.integers().map(str), min_size=0, max_size=width + 1), max_size=8))
    if draw(st.booleans()):
        if draw(st.booleans()):
            body.append(["x" * draw(HUGE), "y"])
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=delimiter, quoting=draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))).writerows([header, *body])
        return buffer.getvalue()
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    return newline.join(delimiter.join(row) for row in [header, *body])


CELL = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**12), 10**12), st.floats(allow_nan=False, allow_infinity=False),
    st.dates(min_value=date(1900, 3, 1)), st.datetimes(min_value=datetime(1900, 3, 1)), TEXT,
)


def cell_value(value: Any) -> Any:
    """What openpyxl can store: text without control characters or surrogates (a sheet can't hold them)."""
    if isinstance(value, str):
        value = re.sub("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff]", "", value)
        return value[:1000] or None
    return value


@st.composite
def workbook_bytes(draw: st.DrawFn) -> bytes:
    """Odd workbooks: empty, a first sheet empty or headerless, merged headers, numbers, dates; zips that aren't one."""
    kind = draw(st.sampled_from(["sheet", "sheet", "sheet", "no_rows", "truncated", "other_zip", "empty_zip"]))
    if kind in ("other_zip", "empty_zip"):
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name in draw(st.lists(st.sampled_from(["[Content_Types].xml", "xl/workbook.xml", "a.txt", "xl/worksheets/sheet1.xml"]), max_size=3 if kind == "other_zip" else 0, unique=True)):
                archive.writestr(name, draw(st.binary(max_size=60)))
        return buffer.getvalue()
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    if kind != "no_rows":
        width = draw(st.integers(1, 4))
        if draw(st.booleans()):
            sheet.append([cell_value(v) for v in draw(st.lists(KEYS | TEXT | st.integers(), min_size=width, max_size=width))])
        for row in draw(st.lists(st.lists(CELL, max_size=width + 1), max_size=6)):
            sheet.append([cell_value(v) for v in row])
        if draw(st.booleans()) and width > 1:
            sheet.merge_cells(start_row=1, start_column=1, end_row=1, end_column=2)
    if draw(st.booleans()):
        workbook.create_sheet("second", index=0 if kind == "no_rows" else 1).append(["prompt", "completion"])
    buffer = io.BytesIO()
    workbook.save(buffer)
    data = buffer.getvalue()
    # Where to cut is drawn as a share of the length: a saved workbook's length varies with the clock (openpyxl
    # stamps the save time), and a bound that varies between runs makes hypothesis call the strategy flaky.
    return data[: len(data) * draw(st.integers(0, 1000)) // 1000] if kind == "truncated" else data


@st.composite
def data_file(draw: st.DrawFn, content: st.SearchStrategy[str] | None = None) -> tuple[str, bytes]:
    """(extension, bytes): text content in some encoding, maybe with a BOM and damaged bytes."""
    extension = draw(EXTENSIONS)
    text = draw(content if content is not None else json_text() | table_text() | TEXT)
    data = encode(text, draw(ENCODINGS))
    if draw(st.integers(0, 4)) == 0:  # damage: the end cut off (and bytes put there), or bytes inserted
        at = draw(st.integers(0, len(data)))
        cut = draw(st.booleans())
        data = data[:at] + draw(BAD_BYTES) + (b"" if cut else data[at:])
    return extension, data


# ---------------------------------------------------------------- running every command on a file

FILE_LEVEL = (  # errors about the whole file, which have no line to name
    "the file is empty", "workbook", "a zip archive", "no usable rows left", "cannot be split",
    "the template gave no prompts", "a data file may have",
)


def names_where(message: str, path: Path) -> bool:
    """Whether an error names its line (``name:3``), a field (``'prompt'``), or is about the whole file."""
    return bool(re.search(rf"{re.escape(path.name)}:\d+", message) or re.search(r"'[^']*'", message)
                or any(phrase in message for phrase in FILE_LEVEL))


def invoke(args: list[str]) -> Result:
    return RUNNER.invoke(COMMAND, args, catch_exceptions=True)


def assert_clean(what: str, result: Result, path: Path) -> None:
    """No traceback; exit 0, 1 or 2; a failure other than check's report is one `error:` line naming where."""
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        trace = "".join(traceback.format_exception(result.exception))
        pytest.fail(f"{what} crashed on {path.name}:\n{trace}")
    assert result.exit_code in (0, 1, 2), (what, result.exit_code, result.output)
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    if result.exit_code == 0 or (what.startswith("check") and not errors):
        return  # check's exit 1: the report, on stdout
    assert len(errors) == 1 and errors[0].startswith("error: "), (what, result.stderr)
    assert str(path) in errors[0] or "--" in errors[0], (what, errors[0])
    assert names_where(errors[0], path), (what, errors[0])


def assert_report(result: Result, path: Path) -> None:
    """The --json report parses; each error names its lines or field, or (unreadable) says where in its message."""
    if result.stderr.strip():
        return  # an error line instead of a report: checked by assert_clean
    report = Report.model_validate_json(result.stdout)
    assert report.ok == (result.exit_code == 0)
    for finding in report.findings:
        if finding.severity != "error":
            continue
        if finding.code == "unreadable":
            assert names_where(finding.message, path), finding
            assert not finding.lines or re.search(rf"{re.escape(path.name)}:{finding.lines[0]}\b", finding.message), finding
        else:
            assert finding.lines or finding.field, finding


def assert_jsonl(path: Path) -> None:
    """A file the commands wrote: UTF-8 JSON lines, one object a line."""
    for line in path.read_bytes().decode("utf-8").split("\n")[:-1]:  # not splitlines: U+2028 may be in a string
        assert isinstance(json.loads(line), dict)


OUTPUTS = {"fix": "fixed", "template": "prompts", "split": "data_"}  # what each command writes in out/


def run_every_command(extension: str, data: bytes) -> None:
    """check (text and --json), fix, template and split on a file holding *data*; see the module docstring."""
    note(f"data{extension}: {len(data)} bytes, {data[:300]!r}")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        path = root / f"data{extension}"
        path.write_bytes(data)
        before = (path.read_bytes(), path.stat().st_mtime_ns)
        out = root / "out"
        runs = {
            "check": ["data", "check", str(path), "--approximate"],
            "check --json": ["data", "check", str(path), "--approximate", "--json"],
            "fix": ["data", "fix", str(path), "-o", str(out / "fixed.jsonl"), "--yes", "--approximate"],
            "template": ["data", "template", str(path), "-t", "Say {prompt}", "--completion", "completion",
                         "-o", str(out / "prompts.jsonl")],
            "split": ["data", "split", str(path), "--out-dir", str(out)],
        }
        for what, args in runs.items():
            result = invoke(args)
            assert_clean(what, result, path)
            if what == "check --json":
                assert_report(result, path)
            if result.exit_code != 0 and what in OUTPUTS:  # a failed command writes nothing, not even half
                assert not out.exists() or not [p for p in out.iterdir() if p.name.startswith(OUTPUTS[what])], what
        assert (path.read_bytes(), path.stat().st_mtime_ns) == before, "the input was modified"
        assert sorted(p.name for p in root.iterdir()) == sorted(["out", path.name] if out.exists() else [path.name])
        for written in out.iterdir() if out.exists() else []:
            assert not written.name.endswith(".tmp"), written
            assert_jsonl(written)


# ---------------------------------------------------------------- data files


@hostile(350)
@given(data_file(json_text()))
def test_hostile_json_files_through_every_command(file: tuple[str, bytes]) -> None:
    run_every_command(*file)


@hostile(300)
@given(data_file(table_text() | TEXT))
def test_hostile_tables_and_text_through_every_command(file: tuple[str, bytes]) -> None:
    run_every_command(*file)


@hostile(250)
@given(EXTENSIONS, st.one_of(
    st.binary(max_size=400),
    st.sampled_from([b"", b"\n\n", b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff\x00", b"\x00" * 40, b"PK\x03\x04",
                     b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), b"\r\n\r\n", b"\xef\xbb\xbf\xef\xbb\xbf{}"]),
))
def test_binary_and_empty_files_through_every_command(extension: str, data: bytes) -> None:
    run_every_command(extension, data)


@hostile(100)
@given(st.sampled_from([".xlsx", ".xlsx", ".csv", ".txt"]), workbook_bytes())
def test_odd_workbooks_through_every_command(extension: str, data: bytes) -> None:
    run_every_command(extension, data)


# ---------------------------------------------------------------- models.yaml

VALID_REGISTRY: dict[str, Any] = {
    "version": 1,
    "router": {"encoder": "all-MiniLM-L6-v2", "threshold": 0.3, "out_of_scope": ["hi"], "examples_per_skill": 10},
    "fallback": {"reply": "Sorry."},
    "skills": {
        "faq": {
            "kind": "qa", "description": "answers", "backend": "local", "base_model": "smollm2-135m", "adapter": "adapters/faq",
            "separator": "\n\n###\n\n", "stop": [" END"], "generation": {"max_tokens": 40, "temperature": 0.0, "top_p": 1.0},
            "routing": True, "routing_examples": ["when do you open?"], "history_turns": 0,
            "training": {"data_file": "a.jsonl", "data_sha256": "00", "base_model": "smollm2-135m", "hyperparameters": {"n_epochs": 3},
                         "train_loss": [1.0], "metrics": {"f1": 0.5}, "duration_s": 1.0},
        },
        "mood": {"kind": "classify", "stop": [" END"]},
    },
}


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path in *value*, to its leaves and to what holds them."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += paths(item, (*prefix, index))
    return found


REGISTRY_PATHS = paths(VALID_REGISTRY)
YAML_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT | st.dates(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT | KEYS, inner, max_size=3),
    max_leaves=6,
)


def replaced(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of *document* with the value at *path* replaced."""
    copy = json.loads(json.dumps(document))
    holder = copy
    for key in path[:-1]:
        holder = holder[key]
    holder[path[-1]] = value
    return copy


def load_or_error(content: bytes) -> tuple[registry.Registry | None, str | None, Path]:
    """Load *content* as models.yaml: the registry or the ChatbotError's message; never anything else.

    The file must come out unchanged, and `chatbot registry list` must give the same outcome.
    """
    note(f"models.yaml: {len(content)} bytes, {content[:300]!r}")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "models.yaml"
        path.write_bytes(content)
        before = (path.read_bytes(), path.stat().st_mtime_ns)
        try:
            loaded, message = registry.load(path), None
        except ChatbotError as exc:
            loaded, message = None, str(exc)
        result = invoke(["registry", "list", "--registry", str(path)])
        assert_clean("registry list", result, path)
        assert (result.exit_code == 0) == (loaded is not None), (result.output, message)
        assert (path.read_bytes(), path.stat().st_mtime_ns) == before, "models.yaml was modified"
        return loaded, message, path


@hostile(250)
@given(st.sampled_from(REGISTRY_PATHS), YAML_VALUE | st.sampled_from(["openai", "[bold]", "[/]", "x" * 70, -1, 10**6, 2.5]))
def test_a_wrong_value_in_models_yaml_is_named_by_its_key_path(path: tuple[Any, ...], value: Any) -> None:
    document = replaced(VALID_REGISTRY, path, value)
    text = yaml.safe_dump(document, allow_unicode=False)  # lone surrogates become "\ud800" escapes
    loaded, message, file = load_or_error(text.encode())
    if message is None:
        return
    assert message.startswith(f"{file}:"), message
    where = re.match(rf"{re.escape(str(file))}:\d+(?::\d+)?: ", message)
    assert where, message
    said = message[where.end() :]
    # the key itself or one inside the value put there, or the skill holding it (backend: openai needs a model)
    holders = [key_path(path[:i]) + ": " for i in range(1, len(path))]
    assert said.startswith(key_path(path)) or said.startswith(tuple(holders)), (key_path(path), message)


@st.composite
def hostile_yaml(draw: st.DrawFn) -> bytes:
    """YAML that is broken, deep, self-referential, a billion laughs, binary, or in another encoding."""
    kind = draw(st.sampled_from(["dump", "dump", "laughs", "deep_flow", "deep_block", "self_alias", "tags", "text", "binary"]))
    if kind == "dump":
        text = yaml.safe_dump(draw(YAML_VALUE | st.dictionaries(st.sampled_from(["skills", "router", "fallback", "version"]), YAML_VALUE)), allow_unicode=draw(st.booleans()))
    elif kind == "laughs":
        levels, fanout = draw(st.integers(2, 9)), draw(st.integers(2, 12))
        text = "a0: &a0 [lol]\n" + "".join(
            f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fanout)}]\n" for i in range(1, levels + 1)
        ) + draw(st.sampled_from(["skills: {}\n", f"skills: {{faq: {{kind: qa, routing_examples: *a{levels}}}}}\n"]))
    elif kind == "deep_flow":
        n = draw(DEEP)
        text = "skills: " + "[" * n + "]" * n + "\n"
    elif kind == "deep_block":
        n = draw(st.sampled_from([10, 40, 200]))
        text = "".join("  " * i + "a:\n" for i in range(n)) + "  " * n + "b: 1\n"
    elif kind == "self_alias":
        text = draw(st.sampled_from(["a: &a [*a]\n", "skills: &s {faq: *s}\n", "a: &a {b: *a}\nskills: {}\n"]))
    elif kind == "tags":
        text = draw(st.sampled_from([
            "a: !!python/object/apply:os.system [echo]\n", "skills: !!binary aGVsbG8=\n", "skills: !!set {a, b}\n",
            "version: !!int 0x1\n", "skills:\n  faq:\n    kind: qa\n    training: {data_file: a, data_sha256: b, base_model: c, hyperparameters: {}, trained_at: 2024-02-30}\n",
            "skills: {faq: {kind: qa, history_turns: " + "9" * 5000 + "}}\n", "? [a, b]\n: c\n", "skills: {faq: {kind: qa}}\n---\nb: 2\n",
        ]))
    elif kind == "text":
        text = draw(st.text(st.sampled_from(list(":-[]{}&*!|>'\"#%@`,?\n \tabskil\\ud800")) | ANY_CHAR, max_size=80))
    else:
        return draw(st.binary(max_size=200))
    return encode(text, draw(ENCODINGS))


@hostile(150)
@given(hostile_yaml())
def test_hostile_models_yaml_is_one_error_naming_file_and_line(content: bytes) -> None:
    _, message, file = load_or_error(content)
    if message is not None:
        assert re.match(rf"{re.escape(str(file))}:\d+[: ]", message), message
