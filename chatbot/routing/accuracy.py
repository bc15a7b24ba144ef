"""How well a router routes: in-scope accuracy, out-of-scope recall and precision, macro-F1, latency.

Data is JSON lines of ``{"text", "label"}``; the label ``oos`` marks out-of-scope messages. Training
rows with it are used only to calibrate the threshold (never trained on); test rows are only scored.
An in-scope test message is right only when routed to its own label (not to another skill, not out
of scope); macro-F1 is over the test's in-scope labels plus ``oos``. Latency is one message at a time
(``Router.route``) over a seeded sample, after one warm-up call.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from chatbot.data.io import read_records
from chatbot.errors import ChatbotError
from chatbot.registry import Registry
from chatbot.routing.calibration import Calibration
from chatbot.routing.encoder import ProgressCallback
from chatbot.routing.router import Route, Router, RouterSettings

OOS = "oos"
LATENCY_SAMPLE = 200


class Labelled(BaseModel):
    text: str
    label: str


class RoutingReport(BaseModel):
    """What ``chatbot route eval`` prints."""

    train: str
    test: str
    train_examples: int
    train_out_of_scope: int
    skills: int
    test_in_scope: int
    test_out_of_scope: int
    finetuned: bool
    seed: int = Field(default=0, description="the router's seed: calibration split and encoder fine-tuning")
    threshold: float
    calibration: Calibration
    in_scope_accuracy: float
    oos_recall: float | None
    oos_precision: float | None
    macro_f1: float
    ask_rate: float = Field(description="share of the test messages the bot would ask about (in a session)")
    ask_right: float | None = Field(description="share of those asks where the best skill was wrong: asking was right")
    ask_offers_right: float | None = Field(description="share of the asks about in-scope messages that offered the right skill")
    latency_ms_p50: float
    latency_ms_p95: float
    latency_messages: int
    fit_seconds: float
    from_cache: bool


def read_labelled(path: str | os.PathLike[str]) -> list[Labelled]:
    """Rows of a ``{"text", "label"}`` file (JSONL, JSON, CSV...); ChatbotError naming the line otherwise."""
    rows = []
    for record in read_records(path):
        text, label = record.values.get("text"), record.values.get("label")
        if not isinstance(text, str) or not isinstance(label, str) or not text.strip() or not label.strip():
            raise ChatbotError(f"{path}:{record.line}: needs a `text` and a `label` (text)", hint=f'write {{"text": "...", "label": "..."}}; label "{OOS}" for out of scope')
        rows.append(Labelled(text=text, label=label.strip()))
    return rows


def as_examples(rows: Sequence[Labelled]) -> tuple[dict[str, list[str]], list[str]]:
    """(label -> texts, out-of-scope texts) of labelled rows."""
    examples: dict[str, list[str]] = {}
    oos = []
    for row in rows:
        if row.label == OOS:
            oos.append(row.text)
        else:
            examples.setdefault(row.label, []).append(row.text)
    return examples, oos


def score(routes: Sequence[Route], truth: Sequence[str]) -> dict[str, float | None]:
    """in_scope_accuracy, oos_recall, oos_precision and macro_f1 of *routes* against labels *truth* (the best route,
    asked or not), and how often the bot would ask, how often rightly, and how often it offered the right skill."""
    from sklearn.metrics import f1_score

    pred = np.array([r.skill or OOS for r in routes])
    true = np.array(truth)
    inside, outside = true != OOS, true == OOS
    said_oos = pred == OOS
    labels = sorted(set(true[inside])) + [OOS]
    return {
        "in_scope_accuracy": float(np.mean(pred[inside] == true[inside])) if inside.any() else float("nan"),
        "oos_recall": float(np.mean(said_oos[outside])) if outside.any() else None,
        "oos_precision": float(np.mean(outside[said_oos])) if said_oos.any() else (None if not outside.any() else 0.0),
        "macro_f1": float(f1_score(true, pred, labels=labels, average="macro", zero_division=0)),
        **_asking(routes, true),
    }


def _asking(routes: Sequence[Route], true: np.ndarray) -> dict[str, float | None]:
    asked = np.array([bool(r.ask) for r in routes])
    wrong = np.array([(r.skill or OOS) != t for r, t in zip(routes, true)])
    offered = np.array([t in r.ask for r, t in zip(routes, true)])
    inside = asked & (true != OOS)
    return {"ask_rate": float(np.mean(asked)) if len(asked) else 0.0,
            "ask_right": float(np.mean(wrong[asked])) if asked.any() else None,
            "ask_offers_right": float(np.mean(offered[inside])) if inside.any() else None}


def latency(router: Router, texts: Sequence[str], n: int = LATENCY_SAMPLE, seed: int = 0) -> tuple[float, float, int]:
    """(p50, p95) milliseconds of ``router.route`` on up to *n* of *texts*, one at a time."""
    sample = random.Random(seed).sample(list(texts), min(n, len(texts)))
    if not sample:
        return 0.0, 0.0, 0
    router.route(sample[0])  # warm-up
    times = []
    for text in sample:
        start = time.perf_counter()
        router.route(text)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95)), len(times)


def evaluate(examples: dict[str, list[str]], oos: list[str], test: Sequence[Labelled], *, train_name: str, test_name: str,
             settings: RouterSettings | None = None, cache_dir: str | os.PathLike[str] | None = None,
             on_progress: ProgressCallback | None = None) -> RoutingReport:
    """Fit a router on the training side, then score it on *test* (never seen while fitting)."""
    if not examples:
        raise ChatbotError(f"{train_name}: no in-scope examples to train on", hint=f"label some rows with a skill, not {OOS!r}")
    if not test:
        raise ChatbotError(f"{test_name}: no test messages")
    started = time.monotonic()
    router = Router.fit(examples, oos, settings, cache_dir=cache_dir, on_progress=on_progress)
    fit_seconds = time.monotonic() - started
    routes = router.route_many([row.text for row in test])
    metrics = score(routes, [row.label for row in test])
    p50, p95, n = latency(router, [row.text for row in test])
    return RoutingReport(
        train=train_name, test=test_name, train_examples=sum(len(v) for v in examples.values()), train_out_of_scope=len(oos),
        skills=len(router.skills), test_in_scope=sum(row.label != OOS for row in test), test_out_of_scope=sum(row.label == OOS for row in test),
        finetuned=router.finetuned is not None, seed=router.settings.seed, threshold=router.threshold, calibration=router.calibration,
        latency_ms_p50=round(p50, 2), latency_ms_p95=round(p95, 2), latency_messages=n, fit_seconds=round(fit_seconds, 1),
        from_cache=router.from_cache, **metrics,
    )


def evaluate_files(train: str | os.PathLike[str], test: str | os.PathLike[str], settings: RouterSettings | None = None, *,
                   cache_dir: str | os.PathLike[str] | None = None, on_progress: ProgressCallback | None = None) -> RoutingReport:
    """Train on one ``{"text", "label"}`` file, report on another."""
    examples, oos = as_examples(read_labelled(train))
    return evaluate(examples, oos, read_labelled(test), train_name=str(train), test_name=str(test), settings=settings,
                    cache_dir=cache_dir, on_progress=on_progress)


def _split(texts: list[str], share: float, seed: str) -> tuple[list[str], list[str]]:
    if len(texts) < 2:
        return texts, []
    test = set(random.Random(seed).sample(range(len(texts)), max(1, round(len(texts) * share))))
    return [t for i, t in enumerate(texts) if i not in test], [t for i, t in enumerate(texts) if i in test]


def registry_split(registry: Registry, share: float = 0.2) -> tuple[dict[str, list[str]], list[str], list[Labelled], str]:
    """(train examples, train out-of-scope, test rows, description) for evaluating a bot's own router.

    A skill routing on its training prompts is tested on its validation file's prompts when the
    training record has one; otherwise a seeded *share* of its messages is held out. Out-of-scope
    messages are split the same way.
    """
    from chatbot.routing.from_registry import out_of_scope_examples, registry_examples, training_messages

    examples = registry_examples(registry)
    train: dict[str, list[str]] = {}
    test: list[Labelled] = []
    sources = []
    for name in examples:
        skill = registry.skills[name]
        valid = skill.training.valid_file if skill.training else None
        if not skill.routing_examples and valid and registry.resolve(valid).exists():
            seen = set(examples[name])
            held = [t for t in training_messages(registry, skill, "valid_file") if t not in seen]
            train[name] = examples[name]
            sources.append(f"{name}: {valid}")
        else:
            train[name], held = _split(examples[name], share, f"split:{name}")
            sources.append(f"{name}: {share:.0%} of its examples")
        test += [Labelled(text=t, label=name) for t in held]
    oos_train, oos_test = _split(out_of_scope_examples(registry), 0.5, "split:oos")
    test += [Labelled(text=t, label=OOS) for t in oos_test]
    return train, oos_train, test, "held out: " + "; ".join(sources) + (f"; {len(oos_test)} out-of-scope" if oos_test else "")


def evaluate_registry(registry: Registry, *, cache_dir: str | os.PathLike[str] | None = None, finetune: str = "auto",
                      seed: int | None = None, on_progress: ProgressCallback | None = None) -> RoutingReport:
    """Evaluate the bot's router on messages held out from its skills (see :func:`registry_split`).

    *finetune* (``auto``, ``always``, ``never``) overrides when the encoder is fine-tuned, to compare heads on the same bot;
    *seed* overrides the router's seed (calibration folds or held-out share, encoder fine-tuning).
    """
    from chatbot.routing.cache import default_cache_dir
    from chatbot.routing.from_registry import settings_for

    train, oos, test, description = registry_split(registry)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir(registry.path)
    return evaluate(train, oos, test, train_name=f"{registry.path} (training side)", test_name=description,
                    settings=settings_for(registry).model_copy(update={"finetune": finetune, **({} if seed is None else {"seed": seed})}),
                    cache_dir=folder, on_progress=on_progress)
