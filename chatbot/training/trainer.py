"""The one local trainer: LoRA fine-tuning of a causal LM on prompt/completion pairs.

Used by ``chatbot train``, by the server's fine-tuning jobs and by the tests. ``train_lora`` reads
top to bottom: set-up (seed, base model, LoRA layers, tokenized data, AdamW with a warm-up + linear
decay schedule), then per epoch fit (the loss on prompt tokens weighed by ``prompt_loss_weight``)
and validate, then save the adapter in the standard peft format (loadable by peft and by vLLM's
``--lora-modules``). The library reports progress through callbacks; the CLI draws.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from chatbot.errors import ChatbotError
from chatbot.runtime.base_models import load_model, training_tokenizer
from chatbot.runtime.device import default_device, set_threads, use_bf16
from chatbot.training.hyperparams import Hyperparameters

log = logging.getLogger(__name__)

# Examples per forward pass; batch_size is reached by accumulating gradients. A row padded to the longest of its
# micro-batch computes its padding like real tokens: on a CPU that is all cost (a third of job-ner's tokens at 4 a
# pass) and a pass of one example keeps the matrices large enough, so it is one there. On a GPU rows computed together
# are nearly free: four, sorted by length. The loss is the same sum either way.
MICRO_BATCH = {"cpu": 1}
MICRO_BATCH_ELSEWHERE = 4


def micro_batch(device: str) -> int:
    """Examples per forward pass on *device*."""
    return MICRO_BATCH.get(device.split(":")[0], MICRO_BATCH_ELSEWHERE)

# (epoch, step, total_steps, loss) -> None; called after every optimizer step
ProgressCallback = Callable[[int, int, int, float], None]
# (epoch, train_loss, valid_loss or None) -> None; called after every epoch
EpochCallback = Callable[[int, float, float | None], None]
# (the model being trained, its tokenizer) -> the skill's metric on the validation data, higher is better
Scorer = Callable[[Any, Any], float]
Encoded = tuple[list[int], list[float]]  # token ids, and the loss weight of each predicted token


class Scored(Protocol):
    """An epoch's measures, as the trainer's ``Epoch`` and the registry's ``EpochRecord`` hold them."""

    @property
    def epoch(self) -> int: ...
    @property
    def valid_loss(self) -> float | None: ...
    @property
    def metric(self) -> float | None: ...


@dataclass
class Epoch:
    """What one epoch measured, and the optimizer step it ended on."""

    epoch: int
    step: int
    train_loss: float
    valid_loss: float | None = None
    metric: float | None = None  # the skill's own metric on the validation file, when select=best-metric


@dataclass
class TrainResult:
    adapter_dir: Path
    hyperparameters: Hyperparameters
    train_loss: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    duration_s: float = 0.0
    fit_s: float = 0.0  # of it, in the training passes (no loading, validating or saving): what trained_tokens took
    trained_tokens: int = 0  # tokens of the training examples times the epochs run, as OpenAI counts them
    precision: str = ""  # how the base ran while training: "fp32 on cpu", "bf16 autocast on cuda"
    epochs: list[Epoch] = field(default_factory=list)
    selected_epoch: int = 0  # the epoch whose adapter is in adapter_dir
    best_epoch: int | None = None  # by the selection's measure; None without validation data
    stopped_early: bool = False
    checkpoints: list[int] = field(default_factory=list)  # epochs kept in adapter_dir/checkpoints/epoch-N


@dataclass
class _Run:
    """What the set-up prepares for the loop: the model with its LoRA layers, the data, the optimizer."""

    model: Any
    tokenizer: Any
    hp: Hyperparameters
    device: str
    train_data: list[Encoded]
    valid_data: list[Encoded]
    optimizer: Any
    schedule: Any
    autocast: Any
    total_steps: int
    order: list[int] = field(default_factory=list)  # of the training examples, shuffled again each epoch
    step: int = 0


def train_lora(
    examples: Sequence[tuple[str, str]],
    output_dir: str | os.PathLike[str],
    *,
    base_model: str,
    hyperparameters: Hyperparameters,
    valid_examples: Sequence[tuple[str, str]] = (),
    device: str | None = None,
    on_step: ProgressCallback | None = None,
    on_epoch: EpochCallback | None = None,
    score: Scorer | None = None,
    keep_last: int = 1,
) -> TrainResult:
    """Fine-tune a LoRA adapter on (prompt, completion) pairs and save it to *output_dir*.

    With validation data, the adapter saved is the epoch that ``hyperparameters.select`` picks
    (*score* measures the skill's metric for ``best-metric``), training stops after
    ``early_stopping_patience`` epochs without improvement, and the best epoch and the *keep_last*
    last ones are kept as checkpoints in ``output_dir/checkpoints/epoch-N`` (each a peft adapter).
    """
    if not examples:
        raise ChatbotError("no training examples", hint="check the data file with `chatbot data check`")
    started = time.perf_counter()
    run = _set_up(examples, valid_examples, base_model, hyperparameters.resolved(len(examples)), device or default_device())
    result = TrainResult(adapter_dir=Path(output_dir), hyperparameters=run.hp,
                         precision=f"{'bf16 autocast' if use_bf16(run.hp.precision, run.device) else 'fp32'} on {run.device}")
    selecting = run.hp.select if run.valid_data else "last"
    snapshots: dict[int, dict[str, Any]] = {}
    for epoch in range(1, run.hp.n_epochs + 1):
        fitting = time.perf_counter()
        measured = Epoch(epoch, 0, round(_fit_epoch(run, epoch, on_step), 5))
        result.fit_s += time.perf_counter() - fitting
        measured.step = run.step
        if run.valid_data:
            measured.valid_loss = round(_validate(run), 5)
            if selecting == "best-metric" and score is not None:
                measured.metric = round(float(score(run.model, run.tokenizer)), 5)
        result.epochs.append(measured)
        result.train_loss.append(measured.train_loss)
        if measured.valid_loss is not None:
            result.valid_loss.append(measured.valid_loss)
        log.info("epoch %d train_loss=%.4f valid_loss=%s metric=%s", epoch, measured.train_loss, measured.valid_loss, measured.metric)
        if on_epoch:
            on_epoch(epoch, measured.train_loss, measured.valid_loss)
        result.best_epoch = _best(result.epochs, selecting)
        snapshots[epoch] = _snapshot(run.model)
        keep = {e.epoch for e in result.epochs[-max(1, keep_last):]} | ({result.best_epoch} if result.best_epoch else set())
        snapshots = {e: state for e, state in snapshots.items() if e in keep}
        if epoch < run.hp.n_epochs and _out_of_patience(result.best_epoch, epoch, run.hp.early_stopping_patience):
            result.stopped_early = True
            log.info("no improvement for %d epochs: stopping after epoch %d, keeping epoch %d", run.hp.early_stopping_patience, epoch,
                     result.best_epoch)
            break
    result.selected_epoch = result.best_epoch if selecting != "last" and result.best_epoch else result.epochs[-1].epoch
    result.trained_tokens = sum(len(ids) for ids, _ in run.train_data) * len(result.epochs)
    _restore(run.model, snapshots[result.selected_epoch])
    _save(run, Path(output_dir))
    if run.valid_data:
        for epoch in sorted(snapshots):
            _restore(run.model, snapshots[epoch])
            run.model.save_pretrained(Path(output_dir) / "checkpoints" / f"epoch-{epoch}")
            result.checkpoints.append(epoch)
    result.duration_s, result.fit_s = round(time.perf_counter() - started, 1), round(result.fit_s, 2)
    return result


def replay(epochs: Sequence[Scored], select: str, patience: int) -> tuple[int, int]:
    """(the epoch registered, the last epoch trained) had training with *select* and *patience* seen
    these *epochs* (each with its validation loss, and its metric for ``best-metric``) one by one:
    how ``benchmarks/epoch_selection.py`` compares policies on one run that trained every epoch."""
    for seen in range(1, len(epochs) + 1):
        best = _best(epochs[:seen], select)
        if seen == len(epochs) or _out_of_patience(best, epochs[seen - 1].epoch, patience):
            return (best if select != "last" and best else epochs[seen - 1].epoch), epochs[seen - 1].epoch
    raise ValueError("no epochs")


def _out_of_patience(best: int | None, epoch: int, patience: int) -> bool:
    return bool(patience) and best is not None and epoch - best >= patience


def _best(epochs: Sequence[Scored], select: str) -> int | None:
    """The epoch *select* prefers: the lowest validation loss or the highest metric (the earlier on a tie); None for ``last``."""
    if select == "best-loss":
        scored = [(e.valid_loss, e.epoch) for e in epochs if e.valid_loss is not None]
    elif select == "best-metric":
        scored = [(-e.metric, e.epoch) for e in epochs if e.metric is not None]
    else:
        return None
    return min(scored)[1] if scored else None


def _snapshot(model: Any) -> dict[str, Any]:
    """A copy of the LoRA weights (a few MB), to go back to this epoch later."""
    from peft import get_peft_model_state_dict

    return {key: value.detach().to("cpu", copy=True) for key, value in get_peft_model_state_dict(model).items()}


def _restore(model: Any, state: dict[str, Any]) -> None:
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(model, state)


def _set_up(examples: Sequence[tuple[str, str]], valid_examples: Sequence[tuple[str, str]], base_model: str, hp: Hyperparameters,
            device: str) -> _Run:
    """Seed, load the base model, add LoRA layers on every linear layer, tokenize, make the optimizer and schedule."""
    import torch
    from peft import LoraConfig, get_peft_model

    set_threads()
    random.seed(hp.seed)
    torch.manual_seed(hp.seed)
    tokenizer = training_tokenizer(base_model)
    model = load_model(base_model, device)
    model.config.use_cache = False
    config = LoraConfig(r=hp.lora_r, lora_alpha=hp.lora_alpha, lora_dropout=hp.lora_dropout, target_modules="all-linear", task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    model.train()

    def tokenized(pairs: Sequence[tuple[str, str]]) -> list[Encoded]:
        return [encode(tokenizer, p, c, hp.max_length, hp.prompt_loss_weight) for p, c in pairs]

    train_data = tokenized(examples)
    total_steps = math.ceil(len(train_data) / hp.batch_size) * hp.n_epochs
    warmup = max(1, round(0.1 * total_steps))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=hp.learning_rate, weight_decay=0.0,
                                  fused=device.startswith("cuda") or None)  # one kernel for every LoRA tensor on a GPU
    schedule = torch.optim.lr_scheduler.LambdaLR(  # linear warm-up, then linear decay to 0
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total_steps - s) / max(1, total_steps - warmup)))
    )
    autocast = torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=use_bf16(hp.precision, device))
    return _Run(model, tokenizer, hp, device, train_data, tokenized(valid_examples), optimizer, schedule, autocast, total_steps)


def _fit_epoch(run: _Run, epoch: int, on_step: ProgressCallback | None) -> float:
    """One pass over the shuffled training data; returns the mean weighted training loss."""
    import torch

    # Plain shuffled batches: grouping examples by length halved the time of an epoch on
    # job-ner, but scored lower (entity F1) in both of our trials.
    order = run.order or list(range(len(run.train_data)))
    random.shuffle(order)
    run.order = order
    epoch_loss, epoch_weight, pad_id = 0.0, 0.0, run.tokenizer.pad_token_id
    for start in range(0, len(order), run.hp.batch_size):
        batch = [run.train_data[i] for i in order[start : start + run.hp.batch_size]]
        batch.sort(key=lambda item: len(item[0]))  # similar lengths share a micro-batch: less padding
        weight = sum(sum(w[:-1]) for _, w in batch)
        step_loss = 0.0
        size = micro_batch(run.device)
        for micro in range(0, len(batch), size):
            with run.autocast:
                loss, _ = _batch_loss(run.model, batch[micro : micro + size], pad_id, run.device)
            (loss / max(weight, 1e-9)).backward()
            step_loss += loss.item()
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), 1.0)
        run.optimizer.step()
        run.schedule.step()
        run.optimizer.zero_grad(set_to_none=True)
        run.step += 1
        epoch_loss, epoch_weight = epoch_loss + step_loss, epoch_weight + weight
        if on_step:
            on_step(epoch, run.step, run.total_steps, step_loss / max(weight, 1e-9))
    return epoch_loss / max(epoch_weight, 1e-9)


def _validate(run: _Run) -> float:
    """The weighted loss on the validation data (the model in eval mode meanwhile)."""
    import torch

    run.model.eval()
    total, weight = 0.0, 0.0
    with torch.no_grad():
        size = micro_batch(run.device)
        for start in range(0, len(run.valid_data), size):
            loss, w = _batch_loss(run.model, run.valid_data[start : start + size], run.tokenizer.pad_token_id, run.device)
            total, weight = total + float(loss), weight + w
    run.model.train()
    return total / max(weight, 1e-9)


def _save(run: _Run, out: Path) -> None:
    """The adapter and its tokenizer in peft's format, in *out* (made empty first).

    ``chatbot.training.skill`` passes a staging folder and puts it in place with the registry
    (:mod:`chatbot.adapters`), so that a kill leaves the old adapter or the new one, never none.
    """
    shutil.rmtree(out, ignore_errors=True)
    run.model.save_pretrained(out)
    run.tokenizer.save_pretrained(out)


def encode(tokenizer: Any, prompt: str, completion: str, max_length: int, prompt_loss_weight: float) -> Encoded:
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


def _batch_loss(model: Any, batch: Sequence[Encoded], pad_id: int, device: str) -> tuple[Any, float]:
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
