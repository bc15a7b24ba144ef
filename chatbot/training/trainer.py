"""The one local trainer: LoRA fine-tuning of a causal LM on prompt/completion pairs.

Used by ``chatbot train``, by the tests, and later by the server's jobs. The loop fits on a screen:
tokenize, shuffle, step with AdamW under a warm-up + linear decay schedule, weigh the loss on
prompt tokens by ``prompt_loss_weight``, record train and validation loss per epoch, save the
adapter in the standard peft format (loadable by peft and by vLLM's ``--lora-modules``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatbot.errors import ChatbotError
from chatbot.training.hyperparams import Hyperparameters

log = logging.getLogger(__name__)

MICRO_BATCH = 4  # examples per forward pass; batch_size is reached by accumulating gradients


@dataclass
class TrainResult:
    adapter_dir: Path
    hyperparameters: Hyperparameters
    train_loss: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    duration_s: float = 0.0


# (epoch, step, total_steps, loss) -> None; called after every optimizer step
ProgressCallback = Callable[[int, int, int, float], None]


def set_threads() -> None:
    """Use an explicit torch thread count: ``$CHATBOT_THREADS`` or every core."""
    import torch

    torch.set_num_threads(int(os.environ.get("CHATBOT_THREADS", os.cpu_count() or 1)))


def use_bf16(precision: str, device: str) -> bool:
    """Whether to train under bf16 autocast: asked for, or ``auto`` on a GPU that computes bf16."""
    import torch

    if precision != "auto":
        return precision == "bf16"
    return device.startswith("cuda") and torch.cuda.is_bf16_supported()


def file_sha256(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def encode(tokenizer: Any, prompt: str, completion: str, max_length: int, prompt_loss_weight: float) -> tuple[list[int], list[float]]:
    """Token ids of prompt + completion + EOS, and the loss weight of each *predicted* token."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    overflow = len(prompt_ids) + len(completion_ids) - max_length
    if overflow > 0:  # keep the end of the prompt: the separator and the text nearest the answer
        prompt_ids = prompt_ids[overflow:]
        if not prompt_ids:
            completion_ids = completion_ids[: max_length - 1]
            prompt_ids = completion_ids[:1]
    ids = prompt_ids + completion_ids
    weights = [prompt_loss_weight] * len(prompt_ids) + [1.0] * len(completion_ids)
    return ids, weights[1:] + [0.0]  # weight i belongs to the prediction of token i + 1


def _batch_loss(model: Any, batch: Sequence[tuple[list[int], list[float]]], pad_id: int, device: str) -> tuple[Any, float]:
    """Sum of weighted token losses over *batch*, and the sum of weights."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    weights = torch.zeros((len(batch), width))
    for row, (tokens, weight) in enumerate(batch):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        mask[row, : len(tokens)] = 1
        weights[row, : len(weight)] = torch.tensor(weight)
    ids, mask, weights = ids.to(device), mask.to(device), weights.to(device)
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
    losses = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1), reduction="none")
    w = weights[:, :-1].reshape(-1)
    return (losses * w).sum(), float(w.sum())


def _evaluate_loss(model: Any, data: list[tuple[list[int], list[float]]], pad_id: int, device: str) -> float:
    import torch

    model.eval()
    total, weight = 0.0, 0.0
    with torch.no_grad():
        for start in range(0, len(data), MICRO_BATCH):
            loss, w = _batch_loss(model, data[start : start + MICRO_BATCH], pad_id, device)
            total, weight = total + float(loss), weight + w
    model.train()
    return total / max(weight, 1e-9)


def train_lora(
    examples: Sequence[tuple[str, str]],
    output_dir: str | os.PathLike[str],
    *,
    base_model: str,
    hyperparameters: Hyperparameters,
    valid_examples: Sequence[tuple[str, str]] = (),
    device: str | None = None,
    on_step: ProgressCallback | None = None,
    on_epoch: Callable[[int, float, float | None], None] | None = None,
) -> TrainResult:
    """Fine-tune a LoRA adapter on (prompt, completion) pairs and save it to *output_dir*."""
    import torch
    from peft import LoraConfig, get_peft_model

    from chatbot.training.base_model import default_device, load_model, load_tokenizer

    if not examples:
        raise ChatbotError("no training examples", hint="check the data file with `chatbot data check`")
    started = time.perf_counter()
    hp = hyperparameters.resolved(len(examples))
    device = device or default_device()
    set_threads()
    random.seed(hp.seed)
    torch.manual_seed(hp.seed)

    tokenizer = load_tokenizer(base_model)
    model = load_model(base_model, device)
    model.config.use_cache = False
    config = LoraConfig(
        r=hp.lora_r, lora_alpha=hp.lora_alpha, lora_dropout=hp.lora_dropout,
        target_modules="all-linear", task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, config)
    model.train()

    def tokenized(pairs: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[float]]]:
        return [encode(tokenizer, p, c, hp.max_length, hp.prompt_loss_weight) for p, c in pairs]

    train_data, valid_data = tokenized(examples), tokenized(valid_examples)
    steps_per_epoch = math.ceil(len(train_data) / hp.batch_size)
    total_steps = steps_per_epoch * hp.n_epochs
    warmup = max(1, round(0.1 * total_steps))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=hp.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / max(1, total_steps - warmup)))
    )
    autocast = torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=use_bf16(hp.precision, device))
    result = TrainResult(adapter_dir=Path(output_dir), hyperparameters=hp)
    order = list(range(len(train_data)))
    step = 0
    for epoch in range(1, hp.n_epochs + 1):
        # Plain shuffled batches: grouping examples by length halved the time of an epoch on
        # job-ner, but scored lower (entity F1) in both of our trials.
        random.shuffle(order)
        epoch_loss, epoch_weight = 0.0, 0.0
        for start in range(0, len(order), hp.batch_size):
            batch = [train_data[i] for i in order[start : start + hp.batch_size]]
            batch.sort(key=lambda item: len(item[0]))  # similar lengths share a micro-batch: less padding
            weight = sum(sum(w[:-1]) for _, w in batch)
            step_loss = 0.0
            for micro in range(0, len(batch), MICRO_BATCH):
                with autocast:
                    loss, _ = _batch_loss(model, batch[micro : micro + MICRO_BATCH], tokenizer.pad_token_id, device)
                (loss / max(weight, 1e-9)).backward()
                step_loss += loss.item()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            epoch_loss, epoch_weight = epoch_loss + step_loss, epoch_weight + weight
            if on_step:
                on_step(epoch, step, total_steps, step_loss / max(weight, 1e-9))
        result.train_loss.append(round(epoch_loss / max(epoch_weight, 1e-9), 5))
        valid = round(_evaluate_loss(model, valid_data, tokenizer.pad_token_id, device), 5) if valid_data else None
        if valid is not None:
            result.valid_loss.append(valid)
        log.info("epoch %d train_loss=%.4f valid_loss=%s", epoch, result.train_loss[-1], valid)
        if on_epoch:
            on_epoch(epoch, result.train_loss[-1], valid)

    out = Path(output_dir)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    result.duration_s = round(time.perf_counter() - started, 1)
    return result
