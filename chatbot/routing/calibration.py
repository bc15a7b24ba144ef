"""The out-of-scope threshold: a message whose best score is below it goes to no skill.

Scores used here are always *held-out*: each in-scope example is scored by a head that did not see
it (k-fold cross-validation, or a held-out split when the encoder is fine-tuned), and out-of-scope
examples are never trained on. Given such scores:

* with out-of-scope examples, the threshold is the one that maximises the F1 of the "out of scope"
  answer: its recall is the share of out-of-scope examples below the threshold, its precision the
  share of out-of-scope ones among all examples below it (an in-scope example below it is a false
  alarm). It is searched over every distinct score (at most 4,000 of them, evenly spaced); ties go
  to the lower threshold. (Macro-F1 over skills plus out-of-scope was tried: it is flat over a wide
  range of thresholds on CLINC150 and settled at one that declined only half of the out-of-scope
  messages.)
* without them, it is the ``PERCENTILE``-th percentile of the held-out scores of in-scope examples
  routed to their own skill, i.e. about that share of real requests would be declined;
* a fixed threshold (``router.threshold`` in models.yaml) overrides both.

The *margin* says when the router is unsure enough to ask the user to choose between its two best
skills: when the best skill beats the second by less than the margin, or beats the threshold by
less. On the same held-out scores, a message routed to a skill is a mistake when it belongs to
another skill or to none. Asking costs the user a turn; a wrong skill costs about two (a wrong answer,
then the message again), so an ask about a mistake saves one turn and an ask about a message the
router had right loses one. The margin is the one that saves the most turns (caught mistakes minus
needless asks): asking pays only where more than half of the asks are about mistakes. Zero (never
ask) when no margin saves any. (An earlier rule took the margin that caught the most mistakes while
a third of the asks were right, which costs turns by its own count.)
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel

PERCENTILE = 2.0
MAX_CANDIDATES = 4000


class Calibration(BaseModel):
    """How the threshold was chosen, and what it gave on the held-out scores."""

    method: Literal["fixed", "oos-f1", "percentile"]
    threshold: float
    in_scope: int = 0
    out_of_scope: int = 0
    held_out: str = ""
    in_scope_accuracy: float | None = None
    oos_recall: float | None = None
    oos_precision: float | None = None
    macro_f1: float | None = None
    margin: float = 0.0
    ask_rate: float | None = None  # share of the held-out messages routed to a skill that the bot would ask about
    ask_right: float | None = None  # share of those asks where routing would have been wrong
    ask_caught: float | None = None  # share of the routing mistakes that asking would catch


def oos_f1_at(threshold: float, in_score: np.ndarray, oos_score: np.ndarray) -> float:
    """F1 of the out-of-scope answer when rejecting below *threshold*."""
    caught = float(np.sum(oos_score < threshold))
    alarms = float(np.sum(in_score < threshold))
    return 2 * caught / (len(oos_score) + caught + alarms) if len(oos_score) else 0.0


def macro_f1_at(threshold: float, true: np.ndarray, pred: np.ndarray, score: np.ndarray, oos: int) -> float:
    """Macro-F1 over the labels present (``oos`` = the out-of-scope label) when rejecting below *threshold*."""
    from sklearn.metrics import f1_score

    routed = np.where(score >= threshold, pred, oos)
    return float(f1_score(true, routed, average="macro", zero_division=0))


def calibrate(in_true: np.ndarray, in_pred: np.ndarray, in_score: np.ndarray, oos_score: np.ndarray,
              n_labels: int, *, fixed: float | None = None, held_out: str = "") -> Calibration:
    """Choose the threshold from held-out scores (labels are ints ``0..n_labels-1``)."""
    n_in, n_oos = len(in_score), len(oos_score)
    if fixed is not None:
        threshold, method = float(fixed), "fixed"
    elif n_oos and n_in:
        score = np.concatenate([in_score, oos_score])
        candidates = np.unique(np.concatenate([score, score + 1e-6]))
        if len(candidates) > MAX_CANDIDATES:
            candidates = candidates[np.linspace(0, len(candidates) - 1, MAX_CANDIDATES).astype(int)]
        values = [oos_f1_at(t, in_score, oos_score) for t in candidates]
        threshold, method = float(candidates[int(np.argmax(values))]), "oos-f1"
    elif n_in:
        right = in_score[in_true == in_pred]
        threshold, method = float(np.percentile(right if len(right) else in_score, PERCENTILE)), "percentile"
    else:
        threshold, method = 0.0, "percentile"
    result = Calibration(method=method, threshold=threshold, in_scope=n_in, out_of_scope=n_oos, held_out=held_out)
    if n_in:
        result.in_scope_accuracy = float(np.mean((in_pred == in_true) & (in_score >= threshold)))
    if n_oos:
        result.oos_recall = float(np.mean(oos_score < threshold))
        below = int(np.sum(oos_score < threshold) + np.sum(in_score < threshold))
        result.oos_precision = float(np.sum(oos_score < threshold) / below) if below else None
    if n_in and n_oos:
        true = np.concatenate([in_true, np.full(n_oos, n_labels)])
        pred = np.concatenate([in_pred, np.full(n_oos, n_labels)])
        result.macro_f1 = macro_f1_at(threshold, true, pred, np.concatenate([in_score, oos_score]), n_labels)
    return result


def doubt(scores: np.ndarray, threshold: float) -> np.ndarray:
    """How sure each routing is: the best score's lead over the second best and over the threshold, the smaller."""
    if scores.shape[1] < 2:
        return scores[:, 0] - threshold
    top = -np.sort(-scores, axis=1)
    return np.minimum(top[:, 0] - top[:, 1], top[:, 0] - threshold)


def calibrate_margin(result: Calibration, in_true: np.ndarray, in_scores: np.ndarray, oos_scores: np.ndarray, *,
                     ask: bool = True, fixed: float | None = None) -> Calibration:
    """*result* with the margin chosen (or *fixed*) on held-out score matrices (messages × skills), and what asking would do."""
    threshold = result.threshold
    if not ask or not len(in_scores):
        return result
    matrix = np.concatenate([in_scores, oos_scores]) if len(oos_scores) else in_scores
    true = np.concatenate([in_true, np.full(len(oos_scores), -1)])
    routed = matrix.max(1) >= threshold
    wrong = (matrix.argmax(1) != true)[routed]
    unsure = doubt(matrix, threshold)[routed]
    margin = 0.0 if fixed is None else float(fixed)
    if wrong.any() and fixed is None:
        candidates = np.unique(np.concatenate([unsure, unsure + 1e-6]))
        candidates = candidates[candidates > 0]
        if len(candidates) > MAX_CANDIDATES:
            candidates = candidates[np.linspace(0, len(candidates) - 1, MAX_CANDIDATES).astype(int)]
        most = 0
        for m in candidates:
            asked = unsure < m
            caught = int(np.sum(asked & wrong))
            saved = caught - (int(np.sum(asked)) - caught)  # turns: each caught mistake saves one, each needless ask costs one
            if saved > most:
                most, margin = saved, float(m)
    asked = unsure < margin
    return result.model_copy(update={
        "margin": margin, "ask_rate": float(np.mean(asked)) if len(asked) else None,
        "ask_right": float(np.mean(wrong[asked])) if asked.any() else None,
        "ask_caught": float(np.sum(asked & wrong) / np.sum(wrong)) if wrong.any() else None})
