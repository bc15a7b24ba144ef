"""The batched local engine: requests that arrive together are answered in one batch, each row with
its own skill's LoRA adapter (:mod:`chatbot.backends.multi_lora`), by one engine thread per process.

Decoding one token reads every weight of the base once, whether for one row or for eight, so on a
CPU (memory-bound) as on a GPU a batch of N costs little more than one row: concurrent sessions on
different skills share each step instead of waiting in line. The engine thread takes every request
waiting (up to ``max_batch``, same base), pads the prompts on the left, and steps the batch until the
last row ends; requests arriving meanwhile form the next batch. Rows stop at their own stop
sequence, end token or ``max_tokens`` and are streamed as they go. Nothing else holds a lock across
a generation, so counting tokens or loading an adapter never waits for one.

:class:`~chatbot.backends.local.LocalBackend` (peft, one request at a time) stays as the reference
the tests compare against: greedy outputs are the same token for token.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatbot.backends.base import Completion, CompletionStream, GenerationRequest, drain
from chatbot.backends.local import StopMatcher, _logprobs_of, _sample, _stamp, _token_logprobs, end_ids
from chatbot.errors import ServerFault

MAX_BATCH = int(os.environ.get("CHATBOT_MAX_BATCH", 8))
ADAPTER_SLOTS = int(os.environ.get("CHATBOT_ADAPTER_SLOTS", 32))
MAX_LORA_RANK = int(os.environ.get("CHATBOT_MAX_LORA_RANK", 16))
ADAPTER_DTYPE = os.environ.get("CHATBOT_ADAPTER_DTYPE", "bfloat16")  # how resident adapters are kept: 9.8 MB an r=16 SmolLM2 skill
QUANTIZE = os.environ.get("CHATBOT_ENGINE_QUANT") or None  # "int8": the base's linear layers in int8 (CPU)


@dataclass
class _Job:
    request: GenerationRequest
    out: queue.Queue[Any] = field(default_factory=queue.Queue)  # pieces, then the Completion (or an exception)
    asked: float = field(default_factory=time.perf_counter)
    abandoned: bool = False  # the caller stopped reading: its row ends at the next step


class _Base:
    """One base model, wrapped for multi-LoRA, with its tokenizers and end tokens."""

    def __init__(self, name: str, device: str, slots: int, rank: int, dtype: Any, quantize: str | None) -> None:
        from chatbot.backends.multi_lora import AdapterSlots
        from chatbot.runtime.base_models import load_model, load_tokenizer

        self.tokenizer = load_tokenizer(name)  # the engine thread's
        self.counter = load_tokenizer(name)  # for count_tokens, from any thread
        self.counter_lock = threading.Lock()
        self.model = load_model(name, device).eval()
        self.end_ids = end_ids(self.model, self.tokenizer)
        self.slots = AdapterSlots(self.model, capacity=slots, rank=rank, dtype=dtype)
        if quantize == "int8":
            _int8(self.model, device)


class BatchedBackend:
    """Local inference, batched across requests and adapters; the :class:`Backend` interface."""

    def __init__(self, device: str | None = None, *, max_batch: int = MAX_BATCH, adapter_slots: int = ADAPTER_SLOTS,
                 max_lora_rank: int = MAX_LORA_RANK, adapter_dtype: str = ADAPTER_DTYPE, quantize: str | None = QUANTIZE) -> None:
        """*quantize* ``int8``: the base's linear layers (not the adapters) in int8 with a scale per output channel,
        about 4× less to read per token on a CPU; outputs then differ from the reference path (see the README)."""
        import torch

        from chatbot.runtime.device import default_device, set_threads

        set_threads()
        self.device = device or default_device()
        if quantize not in (None, "int8"):
            raise ServerFault(f"CHATBOT_ENGINE_QUANT={quantize!r}: use int8, or leave it unset")
        self.max_batch, self.adapter_slots, self.max_lora_rank, self.quantize = max_batch, adapter_slots, max_lora_rank, quantize
        self.adapter_dtype = getattr(torch, adapter_dtype)
        self.batches: list[int] = []  # the size of each batch run, for tests and benchmarks (the last 1,000)
        self._bases: dict[str, _Base] = {}
        self._loading = threading.Lock()
        self._waiting: list[_Job] = []
        self._wake = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="batched-engine", daemon=True)
        self._thread.start()

    # -- the Backend interface ---------------------------------------------------------------------

    def preload(self, base: str, adapter: str | None = None) -> None:
        loaded = self._base(base)
        if adapter is not None:
            loaded.slots.release(loaded.slots.acquire(_folder(adapter), _checked_stamp(adapter)))

    def stream(self, request: GenerationRequest) -> CompletionStream:
        [job] = self._submit([request])
        return (yield from _relay(job))

    def complete(self, request: GenerationRequest) -> Completion:
        return drain(self.stream(request))

    def complete_many(self, requests: list[GenerationRequest]) -> list[Completion]:
        """Answer *requests* together: they are queued at once, so they share batches."""
        return [drain(_relay(job)) for job in self._submit(requests)]

    def _submit(self, requests: list[GenerationRequest]) -> list[_Job]:
        jobs = [_Job(request) for request in requests]
        with self._wake:
            self._waiting.extend(jobs)
            self._wake.notify()
        return jobs

    def count_tokens(self, base: str, text: str) -> int:
        loaded = self._base(base)
        with loaded.counter_lock:
            return len(loaded.counter(text, add_special_tokens=False)["input_ids"])

    # -- the engine thread -------------------------------------------------------------------------

    def _base(self, name: str) -> _Base:
        with self._loading:
            if name not in self._bases:
                self._bases[name] = _Base(name, self.device, self.adapter_slots, self.max_lora_rank, self.adapter_dtype, self.quantize)
            return self._bases[name]

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._waiting:
                    self._wake.wait()
                base = self._waiting[0].request.base_model
                batch, adapters = [], set()
                for job in self._waiting:  # in order, while there is a row and a slot for its adapter
                    if job.request.base_model != base or len(batch) == self.max_batch:
                        continue
                    needed = adapters | {job.request.adapter} - {None}
                    if len(needed) <= self.adapter_slots:
                        batch.append(job)
                        adapters = needed
                self._waiting = [job for job in self._waiting if job not in batch]
            try:
                self._answer(self._base(base), batch)
            except BaseException as exc:  # noqa: BLE001 - every request of the batch hears of it; the engine goes on
                for job in batch:
                    job.out.put(exc if isinstance(exc, Exception) else ServerFault(f"the engine stopped: {exc!r}"))

    def _answer(self, base: _Base, jobs: list[_Job]) -> None:
        import torch

        started = time.perf_counter()
        slots: list[int] = []
        running: list[_Job] = []
        try:
            for job in jobs:
                try:
                    slots.append(base.slots.acquire(_folder(job.request.adapter), _checked_stamp(job.request.adapter))
                                 if job.request.adapter else 0)
                    running.append(job)
                except Exception as exc:  # noqa: BLE001 - a missing or bad adapter fails its own request, not the batch
                    job.out.put(exc)
            if running:
                self.batches = [*self.batches[-999:], len(running)]
                with torch.inference_mode():
                    self._decode(base, running, slots, started)
        finally:
            for slot in slots:
                base.slots.release(slot)

    def _decode(self, base: _Base, jobs: list[_Job], slots: list[int], started: float) -> None:
        import torch

        tokenizer, model, device = base.tokenizer, base.model, self.device
        prompts = [tokenizer(job.request.prompt, add_special_tokens=False)["input_ids"] for job in jobs]
        width, pad = max(len(p) for p in prompts), tokenizer.pad_token_id
        ids = torch.full((len(jobs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(jobs), width), dtype=torch.long)
        for row, prompt in enumerate(prompts):  # left padding: every row's next token is in the last column
            ids[row, width - len(prompt):] = torch.tensor(prompt)
            mask[row, width - len(prompt):] = 1
        rows = [_Row(job, len(prompt), started) for job, prompt in zip(jobs, prompts)]
        base.slots.rows = torch.tensor(slots, device=device) if any(slots) else None
        try:
            ids, mask = ids.to(device), mask.to(device)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
            past = out.past_key_values
            while True:
                logits = out.logits[:, -1]
                following = [row.take(logits[i], base) if row.live else pad for i, row in enumerate(rows)]
                if not any(row.live for row in rows):
                    break
                mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=mask.dtype, device=device)], dim=1)
                positions = positions[:, -1:] + 1
                out = model(input_ids=torch.tensor([[t] for t in following], device=device), attention_mask=mask,
                            position_ids=positions, past_key_values=past, use_cache=True)
                past = out.past_key_values
        finally:
            base.slots.rows = None


class _Row:
    """One request's state while its batch runs."""

    def __init__(self, job: _Job, prompt_tokens: int, started: float) -> None:
        import torch

        self.job, self.request, self.prompt_tokens = job, job.request, prompt_tokens
        self.queued_ms = round((started - job.asked) * 1000, 2)
        self.matcher = StopMatcher(self.request.stop)
        self.generated: list[int] = []
        self.pieces: list[str] = []
        self.scored: list[tuple[str, float, dict[str, float]]] = []
        self.live = True
        self.generator = torch.Generator().manual_seed(self.request.seed) if self.request.seed is not None else None

    def take(self, logits: Any, base: _Base) -> int:
        """Choose this row's next token from *logits*, stream what can be shown, end the row when it is
        done (its Completion goes out at once, not when the batch ends); return the token to feed next."""
        request = self.request
        if self.job.abandoned:
            self._end(base, "stop")
            return base.tokenizer.pad_token_id
        token = _sample(logits, request.temperature, request.top_p, self.generator)
        if request.logprobs is not None:
            self.scored.append(_token_logprobs(logits, token, request.logprobs, base.tokenizer))
        if token in base.end_ids:
            self._end(base, "stop")
            return token
        self.generated.append(token)
        self._show(self.matcher.feed(base.tokenizer.decode(self.generated, skip_special_tokens=True)))
        if self.matcher.stopped:
            self._end(base, "stop")
        elif len(self.generated) >= request.max_tokens:
            self._end(base, "length")
        return token

    def _show(self, piece: str) -> None:
        if piece:
            self.pieces.append(piece)
            self.job.out.put(piece)

    def _end(self, base: _Base, finish: str) -> None:
        self.live = False
        if not self.matcher.stopped:
            self._show(self.matcher.flush(base.tokenizer.decode(self.generated, skip_special_tokens=True)))
        self.job.out.put(Completion(text="".join(self.pieces), finish_reason=finish, prompt_tokens=self.prompt_tokens,
                                    completion_tokens=len(self.generated), queued_ms=self.queued_ms,
                                    logprobs=_logprobs_of(self.scored, self.matcher.shown) if self.request.logprobs is not None else None))


def _int8(model: Any, device: str) -> None:
    """Dynamic int8 linear layers (fbgemm): int8 weights with a scale per output channel, activations quantized on the fly."""
    import warnings

    import torch
    from torch import nn

    if device != "cpu":
        raise ServerFault("CHATBOT_ENGINE_QUANT=int8 is for the CPU", hint="leave it unset on a GPU (bf16 there)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's eager quantization says it moves to torchao; its CPU kernels are the fast ones here
        torch.ao.quantization.quantize_dynamic(model, {nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}, dtype=torch.qint8,
                                               inplace=True)


def _relay(job: _Job) -> CompletionStream:
    done = False
    try:
        while True:
            item = job.out.get()
            if isinstance(item, str):
                yield item
            elif isinstance(item, BaseException):
                done = True
                raise item
            else:
                done = True
                return item
    finally:
        job.abandoned = not done


def _folder(adapter: str | None) -> str:
    return str(Path(adapter).resolve()) if adapter else ""


def _checked_stamp(adapter: str | None) -> tuple[int, ...] | None:
    stamp = _stamp(Path(adapter)) if adapter else None
    if adapter and stamp is None:
        raise ServerFault(f"{_folder(adapter)}: no adapter there (adapter_config.json missing)", hint="train the skill with `chatbot train`")
    return stamp
