"""Train/validation splits: stratified on the class for classification data, random otherwise.

Works on prompt/completion files (the class is the completion without stop sequence) and on
``{"text", "label"}`` files (the class is the label). Deterministic for a given seed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from sklearn.model_selection import train_test_split

from chatbot.data.check import STOP_OPTIONS, as_text, detect_suffix, infer_task_type, label_of
from chatbot.data.io import Example, Record, check_outputs, read_records, require_valid_text, write_jsonl
from chatbot.errors import ChatbotError

T = TypeVar("T")


def valid_size(rows: int, valid: float) -> int:
    """How many of *rows* go to validation: at least 1, at most rows - 1."""
    if not 0 < valid < 1:
        raise ChatbotError(f"validation fraction {valid} is not between 0 and 1", hint="use e.g. --valid 0.2")
    if rows < 2:
        raise ChatbotError(f"{rows} rows cannot be split", hint="a split needs at least 2 rows")
    return min(max(1, round(rows * valid)), rows - 1)


def can_stratify(labels: Sequence[str], valid: float) -> bool:
    """Whether a stratified split is possible: 2+ rows per class, and room for every class on each side."""
    counts = Counter(labels)
    n_valid = valid_size(len(labels), valid)
    return (
        len(counts) >= 2
        and min(counts.values()) >= 2
        and len(counts) <= n_valid
        and len(counts) <= len(labels) - n_valid
    )


def split_examples(
    examples: Sequence[T], valid: float, seed: int, stratify: bool, labels: Sequence[str] | None = None
) -> tuple[list[T], list[T]]:
    """(train, valid) lists; *labels* default to each item's class (see :func:`class_of`)."""
    n_valid = valid_size(len(examples), valid)
    strata = None
    if stratify:
        strata = list(labels) if labels is not None else [class_of(e) for e in examples]
    try:
        train, held = train_test_split(list(examples), test_size=n_valid, random_state=seed, stratify=strata)
    except ValueError as exc:
        message = f"cannot split {len(examples)} rows stratified: {exc}"
        raise ChatbotError(message, hint="split without stratifying") from None
    return list(train), list(held)


def class_of(item: Any) -> str:
    """The class of an Example, a Record or a dict: its label, else its completion without stop."""
    if isinstance(item, Example):
        return label_of(item.completion)
    values = item.values if isinstance(item, Record) else item
    if "label" in values:
        return as_text(values["label"]).strip()
    return label_of(as_text(values.get("completion")))


def stratify_labels(records: Sequence[Record]) -> list[str] | None:
    """The classes to stratify on, or None when the data is not classification data."""
    if records and all("label" in r.values for r in records):
        return [as_text(r.values["label"]).strip() for r in records]
    if not records or not all("completion" in r.values for r in records):
        return None
    completions = [as_text(r.values["completion"]) for r in records]
    stop, _ = detect_suffix(completions, STOP_OPTIONS)
    labels = [label_of(c, stop) for c in completions]
    prompts = [as_text(r.values.get("prompt")) for r in records]
    return labels if infer_task_type(prompts, labels) == "classification" else None


def split_paths(path: str | Path, out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """``<stem>_train.jsonl`` and ``<stem>_valid.jsonl`` next to *path*, or in *out_dir*."""
    path = Path(path)
    folder = Path(out_dir) if out_dir is not None else path.parent
    return folder / f"{path.stem}_train.jsonl", folder / f"{path.stem}_valid.jsonl"


def split_file(
    path: str | Path, *, valid: float = 0.2, seed: int = 0, out_dir: str | Path | None = None, force: bool = False
) -> tuple[Path, Path]:
    """Write the train and validation halves of *path*; stratified when it is classification data."""
    train_path, valid_path = split_paths(path, out_dir)
    check_outputs([path], [train_path, valid_path], force=force)
    records = read_records(path)
    if len(records) < 2:
        raise ChatbotError(f"{path}: {len(records)} row cannot be split", hint="a split needs at least 2 rows")
    require_valid_text(path, records)  # rows are written as they are
    labels = stratify_labels(records)
    stratify = labels is not None and can_stratify(labels, valid)
    train, held = split_examples(records, valid, seed, stratify, labels=labels)
    write_jsonl(train_path, (r.values for r in train))
    write_jsonl(valid_path, (r.values for r in held))
    return train_path, valid_path
