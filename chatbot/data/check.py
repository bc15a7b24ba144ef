"""Checks on fine-tuning data: everything the legacy ``prepare_data`` tool reported, and more.

Severities: ``error`` means the file cannot be used as is (``chatbot data fix`` must change it, or
the user must); ``warning`` means a recommended change; ``info`` is for the record.

Task type (legacy heuristic): *open-ended generation* when every prompt is empty or all prompts are
the same; *classification* when there are at least 2 distinct completions (labels, compared without
stop sequence and surrounding spaces) and fewer than one per :data:`CLASSIFICATION_RATIO` rows, so
each class has on average 3 or more examples; *conditional generation* otherwise. A skill ``kind``
overrides it: ``classify`` is classification, the other kinds conditional generation.

Token counts come from the base model's tokenizer when a counter is given; otherwise they are
approximated as ``len(text) // 4 + 1`` per text, and an info finding says so.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, computed_field

from chatbot.data.io import (
    FIELDS,
    LIKELY_COLUMNS,
    SURROGATE_HINT,
    DataFormatError,
    Example,
    Record,
    column_problem,
    invalid_text,
    printable,
    read_file,
    read_records,
)
from chatbot.skills import DEFAULT_SEPARATOR, DEFAULT_STOP, get_kind

TaskType = Literal["classification", "conditional_generation", "open_ended_generation", "unknown"]
Severity = Literal["error", "warning", "info"]
TokenCounter = Callable[[str], int]

MIN_EXAMPLES = 100  # legacy: fewer gives poor results
MAX_PROMPT_PREFIX = 12  # legacy: a longer common prompt prefix is wasteful
MAX_COMPLETION_PREFIX = 4  # legacy 5, counting the leading space
MAX_XFIX_SHOWN = 10  # legacy: a longer separator or stop "seems very long"
CLASSIFICATION_RATIO = 3  # legacy: classification when labels < rows / 3
IMBALANCE_RATIO = 5  # largest class / smallest class above this is a warning
MAX_LINES = 50  # lines stored per finding; ``count`` keeps the total
SEPARATOR_OPTIONS = (DEFAULT_SEPARATOR, "\n\n===\n\n", "\n\n---\n\n", "\n\n===>\n\n", "\n\n--->\n\n", " ->")
STOP_OPTIONS = (DEFAULT_STOP, " [END]", "\n###", " ###", "\n")


class Finding(BaseModel):
    """One problem (or fact) about a file, with the lines and field concerned."""

    code: str
    severity: Severity
    message: str
    lines: list[int] = []
    count: int = 0
    field: str | None = None
    fix: str | None = None


class Report(BaseModel):
    """Everything :func:`check_examples` found about one file."""

    path: str
    rows: int
    task_type: TaskType
    separator: str | None
    stop: str | None
    findings: list[Finding]
    label_counts: dict[str, int] | None = None
    read_as: str | None = None  # how the file was read, when its content and extension disagree (io.Reading.note)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ok(self) -> bool:
        """Whether the file can be used as is: no error finding."""
        return not any(f.severity == "error" for f in self.findings)

    def codes(self, severity: Severity | None = None) -> list[str]:
        """The codes of the findings, of one severity if given."""
        return [f.code for f in self.findings if severity is None or f.severity == severity]


# ---------------------------------------------------------------- helpers shared with fix.py


def approx_tokens(text: str) -> int:
    """The documented approximation of a token count: a token is about 4 characters."""
    return len(text) // 4 + 1


def common_prefix(texts: Sequence[str]) -> str:
    return os.path.commonprefix(list(texts)) if texts else ""


def common_suffix(texts: Sequence[str]) -> str:
    return common_prefix([t[::-1] for t in texts])[::-1]


def detect_suffix(texts: Sequence[str], options: Sequence[str]) -> tuple[str | None, list[int]]:
    """The ending the texts share, and the indices of texts lacking it.

    An option most (but not all) texts end with is *inconsistent*: it is returned with the indices
    of the texts lacking it. Otherwise the common suffix (the known option it ends with, if any) is
    returned, less any leading part of a word, unless that leaves only spaces and tabs.
    """
    if not texts:
        return None, []
    counts = {option: sum(t.endswith(option) for t in texts) for option in options}
    best = max(options, key=lambda o: counts[o])
    if 0 < counts[best] < len(texts) and counts[best] * 2 >= len(texts):
        return best, [i for i, t in enumerate(texts) if not t.endswith(best)]
    common = _past_word(common_suffix(texts))  # "spam", "ham": "am" is no separator
    if not common.strip(" \t"):
        return None, []
    return next((o for o in options if common.endswith(o)), common), []


def _past_word(text: str) -> str:
    """*text* without the letters and digits it starts with."""
    start = 0
    while start < len(text) and (text[start].isalnum() or text[start] == "_"):
        start += 1
    return text[start:]


def removable_prefix(texts: Sequence[str], *, keep_space: bool = False) -> str:
    """The common prefix of *texts* up to its last whitespace (the leading space kept if asked)."""
    if len(set(texts)) < 2:
        return ""
    prefix = common_prefix(texts)
    start = 1 if keep_space and prefix[:1].isspace() else 0
    cut = max((i for i, c in enumerate(prefix) if c.isspace() and i >= start), default=-1)
    removable = prefix[start : cut + 1] if cut >= start else ""
    if any(not t[start + len(removable) :].strip() for t in texts):
        return ""
    return removable


def strip_suffix(text: str, suffix: str | None) -> str:
    return text[: -len(suffix)] if suffix and text.endswith(suffix) else text


def label_of(completion: str, stop: str | None = None) -> str:
    """The class a completion stands for: without the stop sequence and surrounding spaces."""
    return strip_suffix(completion, stop).strip()


def normalise(text: str) -> str:
    """Text compared for near-duplicates: case-folded, without punctuation, spaces collapsed."""
    text = "".join(" " if unicodedata.category(c).startswith("P") else c for c in text.casefold())
    return " ".join(text.split())


def infer_task_type(prompts: Sequence[str], labels: Sequence[str], kind: str | None = None) -> TaskType:
    """The task the data is for: see the module docstring."""
    if kind is not None:
        return "classification" if get_kind(kind).name == "classify" else "conditional_generation"
    if not prompts:
        return "unknown"
    if all(not p.strip() for p in prompts) or (len(prompts) > 1 and len(set(prompts)) == 1):
        return "open_ended_generation"
    distinct = len(set(labels))
    if 2 <= distinct < len(labels) / CLASSIFICATION_RATIO:
        return "classification"
    return "conditional_generation"


def as_text(value: Any) -> str:
    """A field as text for the content checks: missing and null are empty."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def show(text: str) -> str:
    """A string quoted on one line, escapes visible."""
    return repr(text)


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 row``, ``2 rows``."""
    return f"{count} {word if count == 1 else words or word + 's'}"


def show_lines(lines: Sequence[int], word: str = "line") -> str:
    lines = sorted(lines)
    if len(lines) == 1:
        return f"{word} {lines[0]}"
    if len(lines) <= 5:
        return f"{word}s {', '.join(map(str, lines[:-1]))} and {lines[-1]}"
    return f"{word}s {', '.join(map(str, lines[:5]))}, … ({len(lines)} in all)"


def finding(
    code: str,
    severity: Severity,
    message: str,
    lines: Iterable[int] = (),
    *,
    field: str | None = None,
    fix: str | None = None,
) -> Finding:
    lines = sorted(set(lines))
    message, field = printable(message), None if field is None else printable(field)  # a report is always writable
    return Finding(
        code=code, severity=severity, message=message, lines=lines[:MAX_LINES], count=len(lines), field=field, fix=fix
    )


# ---------------------------------------------------------------- entry points


def check_file(
    path: str | Path,
    *,
    valid_path: str | Path | None = None,
    count_tokens: TokenCounter | None = None,
    max_tokens: int = 2048,
    kind: str | None = None,
) -> Report:
    """Check the file at *path*; content that cannot be read is an ``unreadable`` error finding.

    A missing file or an unknown extension raises ChatbotError. ``read_as`` in the report says how
    the file was read when its content decided that rather than its extension.
    """
    try:
        data = read_file(path, note_in_errors=False)  # the report's read_as says it
    except DataFormatError as exc:
        bad = finding("unreadable", "error", str(exc), exc.lines)
        return Report(
            path=str(path), rows=0, task_type="unknown", separator=None, stop=None, findings=[bad], read_as=exc.note
        )
    report = check_examples(
        data.records, path, valid_path=valid_path, count_tokens=count_tokens, max_tokens=max_tokens, kind=kind
    )
    return report.model_copy(update={"read_as": data.note})


def check_examples(
    records: list[Record],
    path: str | Path,
    *,
    valid_path: str | Path | None = None,
    valid_records: list[Record] | None = None,
    count_tokens: TokenCounter | None = None,
    max_tokens: int = 2048,
    kind: str | None = None,
) -> Report:
    """Check *records* read from *path* (the pure core of :func:`check_file`)."""
    findings: list[Finding] = []
    keys: dict[str, str] = {}
    for name in FIELDS:
        key, problem = _column_findings(records, name)
        findings += problem
        if key is not None:
            keys[name] = key
    if len(keys) == len(FIELDS):
        findings += _extra_columns(records, set(keys.values()))
    report = Report(path=str(path), rows=len(records), task_type="unknown", separator=None, stop=None, findings=[])
    findings += _invalid_text(records)
    if len(keys) < len(FIELDS):
        return report.model_copy(update={"findings": findings})
    findings += _non_strings(records, keys)
    examples = [
        Example(r.line, as_text(r.values.get(keys["prompt"])), as_text(r.values.get(keys["completion"])))
        for r in records
        if not invalid_text(r, keys.values())  # reported above; its text would break the checks' output
    ]
    if not examples:
        return report.model_copy(update={"findings": findings})
    update = _check_content(findings, examples, valid_path, valid_records, count_tokens, max_tokens, kind)
    return report.model_copy(update=update)


def _check_content(
    findings: list[Finding],
    examples: list[Example],
    valid_path: str | Path | None,
    valid_records: list[Record] | None,
    count_tokens: TokenCounter | None,
    max_tokens: int,
    kind: str | None,
) -> dict[str, Any]:
    """The fields of the report found from the content of the rows."""
    prompts = [e.prompt for e in examples]
    completions = [e.completion for e in examples]
    stop, stop_lacking = detect_suffix(completions, STOP_OPTIONS)
    labels = [label_of(c, stop) for c in completions]
    task = infer_task_type(prompts, labels, kind)
    open_ended = task == "open_ended_generation"
    separator, sep_lacking = (None, []) if open_ended else detect_suffix(prompts, SEPARATOR_OPTIONS)

    findings += _empty(examples, open_ended)
    findings += _duplicates(examples)
    findings += _too_long(examples, count_tokens, max_tokens)
    findings += _few(examples)
    if open_ended:
        findings += _identical_prompts(examples)
    else:
        findings += _separator(examples, separator, sep_lacking)
        findings += _prefix(examples, "prompt")
        findings += _uppercase(examples, "prompt", separator)
    findings += _prefix(examples, "completion")
    findings += _space_start(examples)
    findings += _stop(examples, stop, stop_lacking, task)
    findings += _uppercase(examples, "completion", stop)
    label_counts = None
    if task == "classification":
        label_counts = dict(Counter(labels).most_common())
        findings += _balance(examples, labels, label_counts)
        if valid_path is None and valid_records is None:
            findings.append(_no_validation())
    if not open_ended:
        findings += _conflicts(examples, separator, stop)
    if valid_path is not None or valid_records is not None:
        findings += _leakage(examples, separator, valid_path, valid_records)
    if count_tokens is None:
        findings.append(_approximate())
    return {"task_type": task, "separator": separator, "stop": stop, "findings": findings, "label_counts": label_counts}


# ---------------------------------------------------------------- structure


def _column_findings(records: list[Record], name: str) -> tuple[str | None, list[Finding]]:
    """The key holding *name* (maybe mis-cased) and the findings about it."""
    wrong, missing = column_problem(records, name)
    if missing is not None:
        present = sorted({k for r in records for k in r.values})
        columns = ", ".join(repr(c) for c in present) or "none"
        likely = [c for c in present if c.strip().lower() in LIKELY_COLUMNS[name]]
        rename = f"rename {likely[0]!r} to {name!r}" if len(likely) == 1 else f"rename their column to {name!r}"
        hint = "build prompts with `chatbot data template`" if name == "prompt" else "add the answers"
        message = f"no {name!r} column (columns: {columns}): {rename}, or {hint}"
        return None, [finding("missing_column", "error", message, field=name)]
    if wrong is not None:
        lines = [r.line for r in records if wrong in r.values]
        message = f"column {wrong!r} must be named {name!r}: rename it (`chatbot data fix` does)"
        return wrong, [finding("miscased_column", "error", message, lines, field=wrong, fix="rename_columns")]
    return name, []


def _extra_columns(records: list[Record], used: set[str]) -> list[Finding]:
    found = []
    for column in sorted({k for r in records for k in r.values} - used):
        lines = [r.line for r in records if column in r.values]
        message = f"column {column!r} is not used and will be dropped: remove it (`chatbot data fix` does)"
        found.append(finding("extra_columns", "warning", message, lines, field=column, fix="drop_columns"))
    return found


def _invalid_text(records: list[Record]) -> list[Finding]:
    """Lone surrogates (``"\\ud800"`` escapes in JSON), by field: no encoding can write them."""
    lines: dict[str, list[int]] = defaultdict(list)
    for r in records:
        for key in invalid_text(r):
            lines[key].append(r.line)
    found = []
    for key, at in lines.items():
        message = (
            f"{key!r} holds a lone surrogate on {show_lines(at)} ({SURROGATE_HINT}): "
            "repair the text or drop the rows (`chatbot data fix` drops them)"
        )
        found.append(finding("invalid_unicode", "error", message, at, field=key, fix="drop_invalid_text"))
    return found


def _non_strings(records: list[Record], keys: dict[str, str]) -> list[Finding]:
    found = []
    for key in keys.values():
        bad = [r for r in records if r.values.get(key) is not None and not isinstance(r.values[key], str)]
        if not bad:
            continue
        scalar = all(not isinstance(r.values[key], (list, dict)) for r in bad)
        kinds = sorted({type(r.values[key]).__name__ for r in bad})
        message = (
            f"{key!r} is not text ({', '.join(kinds)}) on {show_lines([r.line for r in bad])}: "
            "write it as a JSON string" + (" (`chatbot data fix` converts numbers)" if scalar else "")
        )
        fix = "stringify" if scalar else None
        found.append(finding("non_string", "error", message, [r.line for r in bad], field=key, fix=fix))
    return found


# ---------------------------------------------------------------- rows


def _empty(examples: list[Example], open_ended: bool) -> list[Finding]:
    found = []
    for name in FIELDS:
        if name == "prompt" and open_ended:
            continue
        lines = [e.line for e in examples if not getattr(e, name).strip()]
        if lines:
            message = (
                f"{plural(len(lines), name)} empty or missing ({show_lines(lines)}): fill them in or drop the rows "
                "(`chatbot data fix` drops them)"
            )
            found.append(finding(f"empty_{name}", "error", message, lines, field=name, fix="drop_empty"))
    return found


def _duplicates(examples: list[Example]) -> list[Finding]:
    first: dict[tuple[str, str], int] = {}
    repeats: list[tuple[int, int]] = []
    for e in examples:
        key = (e.prompt, e.completion)
        if key in first:
            repeats.append((e.line, first[key]))
        else:
            first[key] = e.line
    if not repeats:
        return []
    line, original = repeats[0]
    message = (
        f"{plural(len(repeats), 'row')} repeating an earlier row exactly (line {line} repeats line {original}): "
        "remove the copies (`chatbot data fix` does)"
    )
    return [finding("duplicate_rows", "warning", message, [r[0] for r in repeats], fix="drop_duplicates")]


def example_tokens(example: Example, count_tokens: TokenCounter | None) -> int:
    count = count_tokens or approx_tokens
    return count(example.prompt) + count(example.completion)


def _too_long(examples: list[Example], count_tokens: TokenCounter | None, max_tokens: int) -> list[Finding]:
    sizes = {e.line: example_tokens(e, count_tokens) for e in examples}
    long = [line for line, size in sizes.items() if size > max_tokens]
    if not long:
        return []
    worst = max(long, key=lambda line: sizes[line])
    message = (
        f"{plural(len(long), 'example')} longer than {max_tokens} tokens (line {worst} has {sizes[worst]}): "
        "shorten them or drop them (`chatbot data fix` drops them)"
    )
    return [finding("too_long", "error", message, long, fix="drop_long")]


def _few(examples: list[Example]) -> list[Finding]:
    if len(examples) >= MIN_EXAMPLES:
        return []
    message = (
        f"only {len(examples)} examples: add more — fine-tuning wants at least {MIN_EXAMPLES}, and quality "
        "tends to grow with every doubling"
    )
    return [finding("few_examples", "warning", message)]


def _identical_prompts(examples: list[Example]) -> list[Finding]:
    prompt = examples[0].prompt
    if not prompt.strip():
        return []
    message = (
        f"all prompts are the same ({show(prompt[:40])}): leave them empty for open-ended generation, "
        "or give each example its own input"
    )
    return [finding("identical_prompts", "warning", message, [e.line for e in examples], field="prompt")]


# ---------------------------------------------------------------- separator and stop


def suggest(texts: Sequence[str], options: Sequence[str]) -> str:
    """The first of *options* that occurs in none of *texts* (legacy choice of a separator)."""
    for option in options:
        if option == " ->" and any("\n" in t for t in texts):
            continue
        if not any(option in t for t in texts):
            return option
    return options[0]


def _separator(examples: list[Example], separator: str | None, lacking: list[int]) -> list[Finding]:
    prompts = [e.prompt for e in examples]
    if separator is None:
        suggestion = suggest(prompts, SEPARATOR_OPTIONS)
        message = (
            f"prompts do not end with a common separator: append one such as {show(suggestion)} to every prompt "
            "so the model knows where the completion starts (`chatbot data fix` does)"
        )
        return [finding("missing_separator", "warning", message, field="prompt", fix="add_separator")]
    if lacking:
        lines = [examples[i].line for i in lacking]
        message = (
            f"{plural(len(lines), 'prompt')} lacking the separator {show(separator)} the others end with "
            f"({show_lines(lines)}): append it (`chatbot data fix` does)"
        )
        return [finding("inconsistent_separator", "warning", message, lines, field="prompt", fix="add_separator")]
    return _suffix_notes(examples, "prompt", separator, "separator")


def _stop(examples: list[Example], stop: str | None, lacking: list[int], task: TaskType) -> list[Finding]:
    completions = [e.completion for e in examples]
    if len(examples) > 1 and len(set(completions)) == 1:
        message = f"all completions are the same ({show(completions[0][:40])}): the model would only learn to repeat it"
        return [finding("identical_completions", "warning", message, [e.line for e in examples], field="completion")]
    if stop is None:
        if task == "classification":
            return []
        suggestion = suggest(completions, STOP_OPTIONS)
        message = (
            f"completions do not end with a common stop sequence: append one such as {show(suggestion)} "
            "so generation stops in the right place (`chatbot data fix` does)"
        )
        return [finding("missing_stop", "warning", message, field="completion", fix="add_stop")]
    if lacking:
        lines = [examples[i].line for i in lacking]
        message = (
            f"{plural(len(lines), 'completion')} lacking the stop sequence {show(stop)} the others end with "
            f"({show_lines(lines)}): append it (`chatbot data fix` does)"
        )
        return [finding("inconsistent_stop", "warning", message, lines, field="completion", fix="add_stop")]
    return _suffix_notes(examples, "completion", stop, "stop sequence")


def _suffix_notes(examples: list[Example], name: str, suffix: str, what: str) -> list[Finding]:
    """The suffix occurring earlier in a text, or being long."""
    kind = "stop" if name == "completion" else "separator"
    found = []
    inside = [e.line for e in examples if suffix in strip_suffix(getattr(e, name), suffix)]
    if inside:
        effect = "the model may stop early" if name == "completion" else "the model may start answering early"
        message = (
            f"the {what} {show(suffix)} also occurs inside {plural(len(inside), name)} ({show_lines(inside)}): "
            f"{effect}; remove it there or choose another {what}"
        )
        found.append(finding(f"{kind}_inside", "warning", message, inside, field=name))
    if len(suffix) > MAX_XFIX_SHOWN:
        short = SEPARATOR_OPTIONS[0] if name == "prompt" else DEFAULT_STOP
        message = f"the {what} {show(suffix)} is long: a short one such as {show(short)} saves tokens"
        found.append(finding(f"long_{kind}", "info", message, field=name))
    return found


def _space_start(examples: list[Example]) -> list[Finding]:
    lines = [e.line for e in examples if e.completion and not e.completion[0].isspace()]
    if not lines:
        return []
    message = (
        f"{plural(len(lines), 'completion')} without a leading space ({show_lines(lines)}): "
        "add one, it tokenizes better (`chatbot data fix` does)"
    )
    return [finding("completion_no_space", "warning", message, lines, field="completion", fix="add_space")]


def _prefix(examples: list[Example], name: str) -> list[Finding]:
    texts = [getattr(e, name) for e in examples]
    prefix = removable_prefix(texts, keep_space=name == "completion")
    limit = MAX_PROMPT_PREFIX if name == "prompt" else MAX_COMPLETION_PREFIX
    if len(prefix.strip()) < 1 or len(prefix) <= limit:
        return []
    message = (
        f"every {name} starts with {show(prefix)}: remove it, fine-tuning needs only the "
        f"{'input' if name == 'prompt' else 'output'} itself (`chatbot data fix` can)"
    )
    return [finding(f"{name}_prefix", "warning", message, field=name, fix=f"strip_{name}_prefix")]


def mostly_upper(text: str) -> bool:
    upper = sum(c.isupper() for c in text if c.isalpha())
    lower = sum(c.islower() for c in text if c.isalpha())
    return upper * 2 > lower


def _uppercase(examples: list[Example], name: str, suffix: str | None) -> list[Finding]:
    texts = [strip_suffix(getattr(e, name), suffix) for e in examples]
    if not mostly_upper("".join(texts)):
        return []
    lines = [e.line for e, t in zip(examples, texts, strict=True) if mostly_upper(t) and any(c.isalpha() for c in t)]
    message = (
        f"more than a third of the letters in the {name}s are upper case ({show_lines(lines)} mostly): "
        "lower-case them if case does not matter in your domain (`chatbot data fix` can)"
    )
    return [finding("uppercase", "warning", message, lines, field=name, fix=f"lowercase_{name}")]


# ---------------------------------------------------------------- classification and pairs


def _balance(examples: list[Example], labels: list[str], counts: dict[str, int]) -> list[Finding]:
    found = []
    rare = [label for label, n in counts.items() if n < 2]
    if rare:
        lines = [e.line for e, label in zip(examples, labels, strict=True) if label in rare]
        message = (
            f"{plural(len(rare), 'class', 'classes')} with a single example ({', '.join(map(show, rare[:5]))}): "
            "add examples or drop them; a stratified validation split needs 2 per class"
        )
        found.append(finding("rare_label", "warning", message, lines, field="completion"))
    big, small = max(counts, key=counts.__getitem__), min(counts, key=counts.__getitem__)
    if counts[big] > IMBALANCE_RATIO * counts[small]:
        lines = [e.line for e, label in zip(examples, labels, strict=True) if label == small]
        message = (
            f"classes are imbalanced: {show(big)} has {counts[big]} examples, {show(small)} only {counts[small]}: "
            "add examples of the rare classes"
        )
        found.append(finding("label_imbalance", "warning", message, lines, field="completion"))
    return found


def _no_validation() -> Finding:
    message = (
        "classification data: keep a validation split to measure accuracy "
        "(`chatbot data split`, or accept the split in `chatbot data fix`)"
    )
    return finding("no_validation", "info", message, fix="split")


def prompt_key(prompt: str, separator: str | None) -> str:
    return normalise(strip_suffix(prompt, separator))


def _conflicts(examples: list[Example], separator: str | None, stop: str | None) -> list[Finding]:
    groups: dict[str, list[Example]] = defaultdict(list)
    for e in examples:
        key = prompt_key(e.prompt, separator)
        if key:
            groups[key].append(e)
    clashes = [g for g in groups.values() if len({normalise(label_of(e.completion, stop)) for e in g}) > 1]
    if not clashes:
        return []
    lines = [e.line for g in clashes for e in g]
    first = clashes[0]
    message = (
        f"prompts on {show_lines([e.line for e in first])} are the same (ignoring case, spaces and punctuation) "
        f"but their completions differ{f' ({len(clashes)} such groups)' if len(clashes) > 1 else ''}: "
        "keep the right completion only"
    )
    return [finding("conflicting_duplicates", "warning", message, lines, field="completion")]


def _leakage(
    examples: list[Example], separator: str | None, valid_path: str | Path | None, valid_records: list[Record] | None
) -> list[Finding]:
    name = str(valid_path or "the validation file")
    if valid_records is None:
        try:
            valid_records = read_records(valid_path)  # type: ignore[arg-type]
        except DataFormatError as exc:
            return [finding("valid_unreadable", "error", f"validation file: {exc}", exc.lines)]
    wrong, missing = column_problem(valid_records, "prompt")
    if missing is not None:
        message = f"{name}: no 'prompt' column: rename it to 'prompt'"
        return [finding("valid_missing_column", "error", message, field="prompt")]
    key = wrong or "prompt"
    train: dict[str, int] = {}
    for e in examples:
        train.setdefault(prompt_key(e.prompt, separator), e.line)
    pairs = []
    for r in valid_records:
        k = prompt_key(as_text(r.values.get(key)), separator)
        if k and k in train:
            pairs.append((r.line, train[k]))
    if not pairs:
        return []
    v, t = pairs[0]
    message = (
        f"{plural(len(pairs), 'prompt')} of {name} also in the training file ({name} line {v} = line {t}): "
        "remove them from one of the files, or validation scores will be too good"
    )
    return [finding("leakage", "warning", message, [p[1] for p in pairs], field="prompt")]


def _approximate() -> Finding:
    message = "token counts are approximate (characters / 4): leave out --approximate to count with the base model's tokenizer"
    return finding("approximate_tokens", "info", message)

