"""Prompts from a table: one prompt per row, made from a template with ``{column}`` placeholders.

``render_table("products.csv", "Write a description of {name}, mention {type} and {detail}",
out="prompts.jsonl")`` writes one ``{"prompt", "completion"}`` row per table row, the separator
appended to each prompt. With ``explode="detail"`` a cell holding a list (a JSON list such as
``["a", "b"]``, a Python-style list such as ``['a', 'b']``, or a list in a JSONL row) gives one prompt
per item. With ``completion="description"`` completions come from that column (a leading space and
the stop sequence added); without it they are left empty, to be written later.
"""

from __future__ import annotations

import ast
import json
import re
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from chatbot.data.io import Record, check_outputs, read_records, require_valid_text, show_name, write_jsonl
from chatbot.errors import ChatbotError
from chatbot.skills import DEFAULT_SEPARATOR, DEFAULT_STOP, format_completion


def placeholders(template: str) -> list[str]:
    """The column names the template refers to, in order; ChatbotError on a malformed template."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ChatbotError(f"invalid template: {exc}", hint="write {{ and }} for literal braces") from None
    names = []
    for _, field, _, _ in parsed:
        if field is None:
            continue
        name = re.split(r"[.\[]", field, maxsplit=1)[0]
        if not name or name.isdigit():
            raise ChatbotError(f"template placeholder {{{field}}} names no column", hint="write e.g. {name}")
        if name not in names:
            names.append(name)
    return names


def as_list(value: Any) -> list[Any]:
    """The items of a list cell: a list, a JSON or Python list literal; anything else is one item."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str) and value.strip().startswith("["):
        for parse in (json.loads, ast.literal_eval):
            try:
                parsed = parse(value)
            except (ValueError, SyntaxError, TypeError, RecursionError, MemoryError):
                continue
            if isinstance(parsed, list):
                return parsed
    return [value]


def cell_text(value: Any) -> str:
    """A cell as text: lists joined with commas, null as empty."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ", ".join(cell_text(v) for v in value)
    return str(value)


def _value(value: Any) -> Any:
    """A cell as given to the template: lists joined into text, null empty, anything else as is."""
    return cell_text(value) if value is None or isinstance(value, (list, tuple)) else value


def _format(path: str | Path, record: Record, template: str, values: dict[str, Any]) -> str:
    try:
        return template.format_map(values)
    except (ValueError, KeyError, IndexError, AttributeError, TypeError) as exc:
        raise ChatbotError(f"{path}:{record.line}: cannot fill the template: {exc}") from None


def _rows(records: list[Record], explode: str | None) -> Iterator[tuple[Record, dict[str, Any]]]:
    """(record, values) per prompt to render: one per item of the *explode* cell, else one per record."""
    for record in records:
        if explode is None:
            yield record, record.values
            continue
        for item in as_list(record.values.get(explode)):
            yield record, {**record.values, explode: item}


def _check_columns(path: str | Path, records: list[Record], names: list[str], *extra: str | None) -> None:
    columns = list(dict.fromkeys(k for r in records for k in r.values))
    unknown = [n for n in [*names, *(e for e in extra if e)] if n not in columns]
    if unknown:
        raise ChatbotError(
            f"{path}: no column named {', '.join(map(repr, unknown))}",
            hint=f"available columns: {', '.join(map(show_name, columns)) or 'none'}",
        )


def render_table(
    table_path: str | Path,
    template: str,
    *,
    out: str | Path,
    explode: str | None = None,
    completion: str | None = None,
    separator: str = DEFAULT_SEPARATOR,
    stop: str = DEFAULT_STOP,
    force: bool = False,
) -> int:
    """Write one prompt per table row (or per list item) to *out*; returns the rows written."""
    names = placeholders(template)
    check_outputs([table_path], [out], force=force)
    records = read_records(table_path)
    _check_columns(table_path, records, names, explode, completion)
    require_valid_text(table_path, records, [*names, *(c for c in (explode, completion) if c)])
    rows = []
    for record, values in _rows(records, explode):
        missing = [n for n in names if n not in values]
        if missing:
            raise ChatbotError(f"{table_path}:{record.line}: no value for {', '.join(map(repr, missing))}")
        text = _format(table_path, record, template, {n: _value(values[n]) for n in names})
        answer = cell_text(values.get(completion)) if completion else ""
        answer = format_completion(answer, stop) if answer.strip() else ""
        rows.append({"prompt": text.strip() + separator, "completion": answer})
    if not rows:
        raise ChatbotError(f"{table_path}: the template gave no prompts", hint=f"the {explode!r} lists are all empty")
    write_jsonl(out, rows)
    return len(rows)
