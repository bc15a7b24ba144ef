"""One metric function per skill kind. Each takes raw completions (predicted and reference),
parses them the way the kind does, and returns a JSON-ready dict whose headline key is the
kind's ``metric`` in :data:`chatbot.skills.kinds.KINDS`.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from chatbot.skills.formats import parse_entities, parse_label, parse_text

Metric = Callable[[Sequence[str], Sequence[str], Sequence[str], Sequence[str] | None], dict[str, Any]]


def _normalize(text: str) -> str:
    """SQuAD-style: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _token_f1(prediction: str, reference: str) -> float:
    pred, ref = _normalize(prediction).split(), _normalize(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def qa_metrics(predictions: Sequence[str], references: Sequence[str], stop: Sequence[str], sources: Sequence[str] | None = None) -> dict[str, Any]:
    preds = [parse_text(p, stop).text for p in predictions]
    refs = [parse_text(r, stop).text for r in references]
    n = max(1, len(refs))
    return {
        "exact_match": sum(_normalize(p) == _normalize(r) for p, r in zip(preds, refs)) / n,
        "token_f1": sum(_token_f1(p, r) for p, r in zip(preds, refs)) / n,
        "n": len(refs),
    }


def classify_metrics(predictions: Sequence[str], references: Sequence[str], stop: Sequence[str], sources: Sequence[str] | None = None) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    preds = [parse_label(p, stop).label or "" for p in predictions]
    refs = [parse_label(r, stop).label or "" for r in references]
    labels = sorted(set(refs))
    shown = labels + sorted(set(preds) - set(labels))  # predicted labels that don't exist are errors too
    precision, recall, f1, support = precision_recall_fscore_support(refs, preds, labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(refs, preds)),
        "macro_f1": float(f1_score(refs, preds, labels=labels, average="macro", zero_division=0)),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        "confusion_matrix": {"labels": shown, "matrix": confusion_matrix(refs, preds, labels=shown).tolist()},
        "n": len(refs),
    }


def _entity_set(completion: str, stop: Sequence[str], source: str | None = None) -> set[tuple[str, str]]:
    entities = parse_entities(completion, stop, source).entities
    return {(kind, " ".join(v.lower().split())) for kind, values in entities.items() for v in values}


def extract_metrics(predictions: Sequence[str], references: Sequence[str], stop: Sequence[str], sources: Sequence[str] | None = None) -> dict[str, Any]:
    """Entity-level micro precision/recall/F1 over the set of (type, value) pairs of each example.

    With *sources*, predicted values not found in their source text are dropped first, as they
    are when the skill answers (see :func:`chatbot.skills.formats.parse_entities`).
    """
    tp = fp = fn = 0
    per_type: dict[str, Counter[str]] = {}
    for i, (prediction, reference) in enumerate(zip(predictions, references)):
        pred = _entity_set(prediction, stop, sources[i] if sources is not None else None)
        ref = _entity_set(reference, stop)
        tp, fp, fn = tp + len(pred & ref), fp + len(pred - ref), fn + len(ref - pred)
        for name, pairs in (("tp", pred & ref), ("fp", pred - ref), ("fn", ref - pred)):
            for kind, _ in pairs:
                per_type.setdefault(kind, Counter())[name] += 1

    def prf(t: int, p: int, n: int) -> dict[str, float]:
        precision = t / (t + p) if t + p else 0.0
        recall = t / (t + n) if t + n else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"precision": precision, "recall": recall, "f1": f1}

    micro = prf(tp, fp, fn)
    return {
        "micro_precision": micro["precision"],
        "micro_recall": micro["recall"],
        "micro_f1": micro["f1"],
        "per_type": {k: prf(c["tp"], c["fp"], c["fn"]) | {"support": c["tp"] + c["fn"]} for k, c in sorted(per_type.items())},
        "n": len(references),
    }


def generate_metrics(predictions: Sequence[str], references: Sequence[str], stop: Sequence[str], sources: Sequence[str] | None = None) -> dict[str, Any]:
    import sacrebleu
    from rouge_score import rouge_scorer

    preds = [parse_text(p, stop).text for p in predictions]
    refs = [parse_text(r, stop).text for r in references]
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rouge = [scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs)]
    return {
        "rougeL": sum(rouge) / max(1, len(rouge)),
        "bleu": float(sacrebleu.corpus_bleu(preds, [refs]).score),
        "n": len(refs),
    }

