"""Hyperparameters with the legacy OpenAI fine-tuning names and meanings, and their defaults.

* ``n_epochs``: passes over the training data. Default as OpenAI's API chooses it, from the data
  size: 3 epochs, raised so that at least ``MIN_TARGET_EXAMPLES`` examples are seen in all (at most
  ``MAX_EPOCHS``), lowered so that at most ``MAX_TARGET_EXAMPLES`` are. A LoRA adapter on a small
  base learns less per pass than a full fine-tune, so our floor is higher than OpenAI's (100).
* ``batch_size``: examples per optimizer step. Default as OpenAI's legacy API: about 0.2% of the
  training examples, at least 1 and at most 256 — with a floor of 4 here, as tiny batches make
  LoRA updates noisy.
* Both floors were measured on job-ner (``benchmarks/job_ner.py --out DIR``, the same 5 splits of 48
  training rows): with them (5 epochs of batch 4: 60 steps) entity F1 0.539 ± 0.037; with a batch
  floor of 2 instead (120 steps) 0.460 ± 0.071; with ``MIN_TARGET_EXAMPLES`` 144 instead (3 epochs: 36 steps)
  0.360 ± 0.077. Each was worse on most splits.
* ``learning_rate_multiplier``: scales ``REFERENCE_LEARNING_RATE``, the peak learning rate of the
  LoRA weights. OpenAI's legacy API chose 0.05, 0.1 or 0.2 for small, medium and large batches;
  we choose the other way round, 0.2, 0.1 or 0.05: a small data set (small batches) gives a LoRA
  adapter few steps to learn in, and it needs larger ones. On job-ner (48 training rows, batch 4)
  entity F1 rose with the learning rate from 1e-3 to 2e-3 to 4e-3, one run each.
* ``precision``: ``auto`` trains under bf16 autocast on a GPU that supports it, in fp32 elsewhere.
  ``bf16`` on a CPU with AVX512-BF16 trains faster, but scored lower on job-ner in our trials, so
  it is not the CPU default.
* ``prompt_loss_weight``: the weight of the loss on prompt tokens, completion tokens weighing 1.
  Default 0.01 as OpenAI's legacy API; 0 trains on the completion only.
* ``select`` (ours): which epoch's adapter is registered when there is validation data: the
  ``last`` (the default), the one with the lowest validation loss (``best-loss``), or the best score
  of the skill's own metric on the validation file (``best-metric``: greedy answers to at most
  ``METRIC_ROWS`` rows after each epoch). Without validation data, the last. The default is chosen by
  ``benchmarks/epoch_selection.py``: on the demo skills (3 seeds) neither measure picked epochs that
  scored better than the last, and each scored below it on some skill.
* ``early_stopping_patience`` (ours): with ``best-loss`` or ``best-metric``, stop when that measure
  has not improved for this many epochs (0: never stop early).
"""

from __future__ import annotations

import math

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

REFERENCE_LEARNING_RATE = 2e-2
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 240
MAX_TARGET_EXAMPLES = 25_000
MAX_EPOCHS = 10
METRIC_ROWS = 64  # validation rows answered after each epoch for select=best-metric


class Hyperparameters(BaseModel):
    """What ``chatbot train`` accepts; ``None`` means "choose from the data size"."""

    model_config = ConfigDict(extra="forbid")
    n_epochs: int | None = Field(default=None, ge=1, le=100)
    batch_size: int | None = Field(default=None, ge=1, le=1024)
    learning_rate_multiplier: float | None = Field(default=None, gt=0, le=100)
    prompt_loss_weight: float = Field(default=0.01, ge=0, le=1)
    seed: int = 0
    lora_r: int = Field(default=16, ge=1, le=512)
    lora_alpha: int = Field(default=32, ge=1)
    lora_dropout: float = Field(default=0.05, ge=0, lt=1)
    max_length: int = Field(default=1024, ge=16, description="longest example in tokens; longer prompts are cut from the left")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        default="auto", description="bf16 autocast on a GPU that supports it (auto), or always (bf16) / never (fp32)"
    )
    select: Literal["best-loss", "best-metric", "last"] = Field(
        default="last", description="the epoch registered when there is validation data: the last, lowest validation loss, or best metric")
    early_stopping_patience: int = Field(default=3, ge=0, le=100, description="epochs without improvement before training stops; 0: never")

    def resolved(self, n_examples: int) -> Hyperparameters:
        """A copy with every ``None`` replaced by its data-size default."""
        n = max(1, n_examples)
        epochs = self.n_epochs
        if epochs is None:
            epochs = TARGET_EPOCHS
            if n * epochs < MIN_TARGET_EXAMPLES:
                epochs = min(MAX_EPOCHS, math.ceil(MIN_TARGET_EXAMPLES / n))
            elif n * epochs > MAX_TARGET_EXAMPLES:
                epochs = max(1, MAX_TARGET_EXAMPLES // n)
        batch = self.batch_size or min(256, max(4, round(0.002 * n)))
        batch = min(batch, n)
        multiplier = self.learning_rate_multiplier
        if multiplier is None:
            multiplier = 0.2 if batch < 8 else 0.1 if batch < 64 else 0.05
        return self.model_copy(update={"n_epochs": epochs, "batch_size": batch, "learning_rate_multiplier": multiplier})

    @property
    def learning_rate(self) -> float:
        return (self.learning_rate_multiplier or 0.1) * REFERENCE_LEARNING_RATE
