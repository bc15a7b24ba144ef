"""Fixes for fine-tuning data: what ``chatbot data check`` reports, turned into a clean JSONL file.

Necessary fixes are always applied: convert to JSONL, rename mis-cased columns, drop extra columns,
turn numbers into text, drop rows with an empty prompt or completion, drop exact duplicates, drop
over-long examples. Recommended fixes are applied only when ``accept(name, description)`` says so:
lower-case prompts or completions, strip a long common prefix, add the separator, add the leading
space, add the stop sequence and, for classification, write a stratified train/validation split.

Where most rows already end with a separator (or stop sequence) the others lack, that one is added
for consistency; where there is none, the ``separator`` (or ``stop``) argument is.
The input file is never modified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from pydantic import BaseModel

from chatbot.data.check import (
    MAX_COMPLETION_PREFIX,
    MAX_PROMPT_PREFIX,
    SEPARATOR_OPTIONS,
    STOP_OPTIONS,
    TokenCounter,
    TaskType,
    as_text,
    detect_suffix,
    example_tokens,
    infer_task_type,
    label_of,
    mostly_upper,
    plural,
    removable_prefix,
    show,
    show_lines,
    strip_suffix,
)
from chatbot.data.io import (
    FIELDS,
    FORMATS,
    Example,
    Record,
    check_outputs,
    column_problem,
    invalid_text,
    read_file,
    write_jsonl,
)
from chatbot.data.split import can_stratify, split_examples
from chatbot.errors import ChatbotError
from chatbot.skills import DEFAULT_SEPARATOR, DEFAULT_STOP

Accept = Callable[[str, str], bool]
Plan = tuple[str, Callable[[list[Example]], list[Example]]]


@dataclass(frozen=True)
class Recommended:
    """A recommended fix: *plan* proposes (description, apply) for the examples, or None when not needed."""

    name: str
    plan: Callable[[list[Example]], Plan | None]


class FixResult(BaseModel):
    """What :func:`fix_file` did: ``name: description`` of each fix applied or declined."""

    rows_before: int
    rows_after: int
    applied: list[str]
    skipped: list[str]
    outputs: list[str]
    task_type: TaskType = "unknown"
    separator: str | None = None
    stop: str | None = None
    read_as: str | None = None  # how the input was read, when its content and extension disagree


def fix_file(
    path: str | Path,
    out: str | Path,
    *,
    accept: Accept,
    separator: str = DEFAULT_SEPARATOR,
    stop: str = DEFAULT_STOP,
    valid_fraction: float = 0.2,
    seed: int = 0,
    count_tokens: TokenCounter | None = None,
    max_tokens: int = 2048,
    force: bool = False,
) -> FixResult:
    """Write the fixed examples of *path* to *out* (and, for an accepted split, its two halves)."""
    out = Path(out)
    if out.suffix.lower() not in (".jsonl", ".jsonlines"):
        raise ChatbotError(f"{out}: the output must be a .jsonl file", hint="name it e.g. prepared.jsonl")
    check_outputs([path], [out], force=force)
    data = read_file(path)
    records = data.records
    applied: list[str] = []
    if data.reading.format != "jsonl":
        applied.append(f"convert: read {FORMATS[data.reading.format]} and wrote JSONL")
    examples = _drop_rows(_necessary(path, records, applied), applied, count_tokens, max_tokens)
    if not examples:
        raise ChatbotError(f"{path}: no usable rows left after the necessary fixes", hint="see `chatbot data check`")
    skipped: list[str] = []
    for fix in recommended_fixes(separator, stop):
        examples = _offer(fix, examples, accept, applied, skipped)
    examples = _drop_rows(examples, applied, count_tokens, max_tokens)  # fixes can make rows equal or longer
    if not examples:
        raise ChatbotError(f"{path}: no usable rows left after the fixes", hint="see `chatbot data check`")
    outputs = _outputs(out, examples, accept, applied, skipped, valid_fraction, seed)
    check_outputs([path], outputs, force=force)
    _write(outputs, examples, valid_fraction, seed)
    prompts, completions = [e.prompt for e in examples], [e.completion for e in examples]
    final_stop, _ = detect_suffix(completions, STOP_OPTIONS)
    task = infer_task_type(prompts, [label_of(c, final_stop) for c in completions])
    return FixResult(
        rows_before=len(records),
        rows_after=len(examples),
        applied=applied,
        skipped=skipped,
        outputs=[str(p) for p in outputs],
        task_type=task,
        separator=None if task == "open_ended_generation" else detect_suffix(prompts, SEPARATOR_OPTIONS)[0],
        stop=final_stop,
        read_as=data.note,
    )


# ---------------------------------------------------------------- necessary


def _necessary(path: str | Path, records: list[Record], applied: list[str]) -> list[Example]:
    keys = _columns(path, records, applied)
    records = _drop_invalid_text(records, keys, applied)
    examples = [_example(path, r, keys) for r in records]
    converted = sum(1 for r in records for k in keys.values() if not isinstance(r.values.get(k, ""), str))
    if converted:
        applied.append(f"stringify: turned {plural(converted, 'number or null', 'numbers or nulls')} into text")
    return _drop_empty(examples, applied)


def _drop_rows(
    examples: list[Example], applied: list[str], count_tokens: TokenCounter | None, max_tokens: int
) -> list[Example]:
    return _drop_long(_drop_duplicates(examples, applied), applied, count_tokens, max_tokens)


def _columns(path: str | Path, records: list[Record], applied: list[str]) -> dict[str, str]:
    """The key holding each field; renames and dropped columns noted in *applied*."""
    keys = {}
    for name in FIELDS:
        wrong, missing = column_problem(records, name)
        if missing is not None:
            raise ChatbotError(
                f"{path}: no {name!r} column to fix", hint=f"rename the column holding them to {name!r} first"
            )
        if wrong is not None:
            applied.append(f"rename_columns: renamed column {wrong!r} to {name!r}")
        keys[name] = wrong or name
    extra = sorted({k for r in records for k in r.values} - set(keys.values()))
    if extra:
        applied.append(f"drop_columns: dropped column{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))}")
    return keys


def _drop_invalid_text(records: list[Record], keys: dict[str, str], applied: list[str]) -> list[Record]:
    """*records* without the rows whose prompt or completion holds a lone surrogate (no encoding writes one)."""
    bad = [r.line for r in records if invalid_text(r, keys.values())]
    if bad:
        rows = plural(len(bad), "row")
        applied.append(
            f"drop_invalid_text: dropped {rows} holding a lone surrogate, not valid Unicode ({show_lines(bad)})"
        )
    dropped = set(bad)
    return [r for r in records if r.line not in dropped]


def _example(path: str | Path, record: Record, keys: dict[str, str]) -> Example:
    values = {}
    for name, key in keys.items():
        value = record.values.get(key)
        if isinstance(value, (list, dict)):
            raise ChatbotError(
                f"{path}:{record.line}: {key!r} is a {type(value).__name__}, not text; cannot fix it",
                hint="write it as text, or build prompts from lists with `chatbot data template --explode`",
            )
        values[name] = as_text(value)
    return Example(record.line, values["prompt"], values["completion"])


def _drop_empty(examples: list[Example], applied: list[str]) -> list[Example]:
    open_ended = all(not e.prompt.strip() for e in examples)
    empty = [e.line for e in examples if not e.completion.strip() or (not open_ended and not e.prompt.strip())]
    if empty:
        rows = plural(len(empty), "row")
        applied.append(f"drop_empty: dropped {rows} with an empty prompt or completion ({show_lines(empty)})")
    dropped = set(empty)
    return [e for e in examples if e.line not in dropped]


def _drop_duplicates(examples: list[Example], applied: list[str]) -> list[Example]:
    seen: set[tuple[str, str]] = set()
    kept, dropped = [], []
    for e in examples:
        key = (e.prompt, e.completion)
        (dropped if key in seen else kept).append(e)
        seen.add(key)
    if dropped:
        lines = [e.line for e in dropped]
        applied.append(f"drop_duplicates: dropped {plural(len(dropped), 'repeated row')} ({show_lines(lines)})")
    return kept


def _drop_long(
    examples: list[Example], applied: list[str], count_tokens: TokenCounter | None, max_tokens: int
) -> list[Example]:
    long = {e.line for e in examples if example_tokens(e, count_tokens) > max_tokens}
    if long:
        rows = plural(len(long), "example")
        applied.append(f"drop_long: dropped {rows} over {max_tokens} tokens ({show_lines(sorted(long))})")
    return [e for e in examples if e.line not in long]


# ---------------------------------------------------------------- recommended


def recommended_fixes(separator: str = DEFAULT_SEPARATOR, stop: str = DEFAULT_STOP) -> list[Recommended]:
    """The recommended fixes, in the order they are offered (the split comes last, see fix_file)."""
    return [
        _lowercase("prompt"),
        _lowercase("completion"),
        _strip_prefix("prompt"),
        _strip_prefix("completion"),
        _add_separator(separator),
        Recommended("add_space", _add_space),
        _add_stop(stop),
    ]


def _offer(
    fix: Recommended, examples: list[Example], accept: Accept, applied: list[str], skipped: list[str]
) -> list[Example]:
    """Ask about *fix* if the examples need it; apply it when accepted."""
    plan = fix.plan(examples)
    if plan is None:
        return examples
    description, apply = plan
    if accept(fix.name, description):
        applied.append(f"{fix.name}: {description}")
        return apply(examples)
    skipped.append(f"{fix.name}: {description}")
    return examples


def _suffixes(examples: list[Example]) -> tuple[str | None, str | None]:
    separator, _ = detect_suffix([e.prompt for e in examples], SEPARATOR_OPTIONS)
    stop, _ = detect_suffix([e.completion for e in examples], STOP_OPTIONS)
    return separator, stop


def _lowercase(field: str) -> Recommended:
    def plan(examples: list[Example]) -> Plan | None:
        suffix = _suffixes(examples)[0 if field == "prompt" else 1]
        if not mostly_upper("".join(strip_suffix(getattr(e, field), suffix) for e in examples)):
            return None

        def apply(rows: list[Example]) -> list[Example]:
            return [replace(e, **{field: _lower_keeping(getattr(e, field), suffix)}) for e in rows]

        return f"Lower-case all {field}s (more than a third of their letters are upper case)", apply

    return Recommended(f"lowercase_{field}", plan)


def _lower_keeping(text: str, suffix: str | None) -> str:
    body = strip_suffix(text, suffix)
    return body.lower() + text[len(body) :]


def _strip_prefix(field: str) -> Recommended:
    def plan(examples: list[Example]) -> Plan | None:
        texts = [getattr(e, field) for e in examples]
        keep_space = field == "completion"
        prefix = removable_prefix(texts, keep_space=keep_space)
        limit = MAX_PROMPT_PREFIX if field == "prompt" else MAX_COMPLETION_PREFIX
        if len(prefix) <= limit or (field == "prompt" and _open_ended(examples)):
            return None
        start = 1 if keep_space and texts[0][:1].isspace() else 0

        def apply(rows: list[Example]) -> list[Example]:
            return [replace(e, **{field: _cut(getattr(e, field), start, len(prefix))}) for e in rows]

        return f"Remove the prefix {show(prefix)} every {field} starts with", apply

    return Recommended(f"strip_{field}_prefix", plan)


def _cut(text: str, start: int, length: int) -> str:
    return text[:start] + text[start + length :]


def _open_ended(examples: list[Example]) -> bool:
    prompts = [e.prompt for e in examples]
    return infer_task_type(prompts, [e.completion for e in examples]) == "open_ended_generation"


def _add_separator(default: str) -> Recommended:
    def plan(examples: list[Example]) -> Plan | None:
        if _open_ended(examples):
            return None
        prompts = [e.prompt for e in examples]
        found, lacking = detect_suffix(prompts, SEPARATOR_OPTIONS)
        if found is not None and not lacking:
            return None
        separator = found if found is not None else default
        count = sum(not p.endswith(separator) for p in prompts)

        def apply(rows: list[Example]) -> list[Example]:
            return [e if e.prompt.endswith(separator) else replace(e, prompt=e.prompt + separator) for e in rows]

        return f"Append the separator {show(separator)} to {plural(count, 'prompt')}", apply

    return Recommended("add_separator", plan)


def _add_space(examples: list[Example]) -> Plan | None:
    count = sum(not e.completion[:1].isspace() for e in examples)
    if not count:
        return None

    def apply(rows: list[Example]) -> list[Example]:
        return [e if e.completion[:1].isspace() else replace(e, completion=" " + e.completion) for e in rows]

    return f"Start {plural(count, 'completion')} with a space", apply



def _add_stop(default: str) -> Recommended:
    def plan(examples: list[Example]) -> Plan | None:
        completions = [e.completion for e in examples]
        found, lacking = detect_suffix(completions, STOP_OPTIONS)
        if found is not None and not lacking:
            return None
        labels = [label_of(c, found) for c in completions]
        task = infer_task_type([e.prompt for e in examples], labels)
        if found is None and (task == "classification" or len(set(completions)) == 1):
            return None
        stop = found if found is not None else default
        count = sum(not c.endswith(stop) for c in completions)

        def apply(rows: list[Example]) -> list[Example]:
            return [e if e.completion.endswith(stop) else replace(e, completion=e.completion + stop) for e in rows]

        return f"Append the stop sequence {show(stop)} to {plural(count, 'completion')}", apply

    return Recommended("add_stop", plan)


# ---------------------------------------------------------------- output


def split_outputs(out: Path) -> tuple[Path, Path]:
    """The train and validation files written next to *out*."""
    return out.with_name(f"{out.stem}_train.jsonl"), out.with_name(f"{out.stem}_valid.jsonl")


def _labels(examples: list[Example]) -> list[str]:
    stop, _ = detect_suffix([e.completion for e in examples], STOP_OPTIONS)
    return [label_of(e.completion, stop) for e in examples]


def _outputs(
    out: Path,
    examples: list[Example],
    accept: Accept,
    applied: list[str],
    skipped: list[str],
    valid_fraction: float,
    seed: int,
) -> list[Path]:
    """OUT, plus the split files when the data is classification and the split is accepted."""
    labels = _labels(examples)
    if infer_task_type([e.prompt for e in examples], labels) != "classification" or len(examples) < 2:
        return [out]
    train, valid = split_outputs(out)
    how = "stratified" if can_stratify(labels, valid_fraction) else "random"
    description = f"Also write a {how} train/validation split ({valid_fraction:.0%} validation) to {train} and {valid}"
    if accept("split", description):
        applied.append(f"split: {description}")
        return [out, train, valid]
    skipped.append(f"split: {description}")
    return [out]


def _rows(examples: list[Example]) -> list[dict[str, str]]:
    return [{"prompt": e.prompt, "completion": e.completion} for e in examples]


def _write(outputs: list[Path], examples: list[Example], valid_fraction: float, seed: int) -> None:
    write_jsonl(outputs[0], _rows(examples))
    if len(outputs) == 3:
        labels = _labels(examples)
        train, valid = split_examples(examples, valid_fraction, seed, can_stratify(labels, valid_fraction), labels)
        write_jsonl(outputs[1], _rows(train))
        write_jsonl(outputs[2], _rows(valid))

