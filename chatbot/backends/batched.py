"""The batched local engine: concurrent requests are decoded in one batch, each row with its own
skill's LoRA adapter (:mod:`chatbot.backends.multi_lora`), by the process's torch thread
(:mod:`chatbot.runtime.torch_thread`).

Decoding one token reads every weight of the base once, whether for one row or for eight, so on a
CPU (memory-bound) as on a GPU a batch of N costs little more than one row: concurrent sessions on
different skills share each step instead of waiting in line. Batching is continuous: between two
steps, the requests waiting (up to ``max_batch`` rows, same base, a free adapter slot each) read
their prompts together and join the batch, their KV caches padded on the left and stacked under the
others'; a row that ends (its stop sequence, an end token, ``max_tokens``, or its caller gone) leaves
at once with its slot. Rows stream as they go. Nothing else holds a lock across a generation, so
counting tokens or loading an adapter never waits for one.

:class:`~chatbot.backends.local.LocalBackend` (peft, one request at a time) stays as the reference
the tests compare against: greedy outputs are the same token for token.
"""

from __future__ import annotations

import functools
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatbot.backends.base import Completion, CompletionStream, GenerationRequest, drain
from chatbot.backends.local import StopMatcher, _logprobs_of, _sample, _stamp, _token_logprobs, cache_keyword, end_ids, forward_takes
from chatbot.errors import ServerFault
from chatbot.runtime import torch_thread

# rows decoded together at most: 8 on a CPU (a step's time grows with its rows there), 64 on a GPU (one step costs about
# the same for 1 row or 64: benchmarks/gpu.py measured 26x the tokens/s of one row at 64 on an H100)
MAX_BATCH = {"cpu": 8, "gpu": 64}
ADAPTER_SLOTS = int(os.environ.get("CHATBOT_ADAPTER_SLOTS", 32))
MAX_LORA_RANK = int(os.environ.get("CHATBOT_MAX_LORA_RANK", 16))
ADAPTER_DTYPE = os.environ.get("CHATBOT_ADAPTER_DTYPE", "bfloat16")  # how resident adapters are kept: 9.8 MB an r=16 SmolLM2 skill
# the base's weights: "bf16", "float32", "int8" (its linear layers, CPU only), or "auto": bf16 on a GPU and on a CPU that computes
# bf16 (AVX512-BF16, AMX: half the bytes to read per token; what it does to answers: the README), else float32
PRECISIONS = ("auto", "float32", "bf16", "int8")


@dataclass
class _Job:
    request: GenerationRequest
    out: queue.Queue[Any] = field(default_factory=queue.Queue)  # pieces, then the Completion (or an exception)
    asked: float = field(default_factory=time.perf_counter)
    abandoned: bool = False  # the caller stopped reading: its row ends at the next step


class _Base:
    """One base model, wrapped for multi-LoRA, with its tokenizers and end tokens."""

    def __init__(self, name: str, device: str, slots: int, rank: int, dtype: Any, quantize: str) -> None:
        from chatbot.backends.multi_lora import AdapterSlots
        from chatbot.runtime.base_models import load_model, load_tokenizer

        self.tokenizer = load_tokenizer(name)  # the torch thread's
        self.counter = load_tokenizer(name)  # for count_tokens, from any thread
        self.counter_lock = threading.Lock()
        # bf16: half the weights to read per token; fast where the CPU computes bf16 (AVX512-BF16, AMX)
        self.model = load_model(name, device, "bfloat16" if quantize == "bf16" else "float32").eval()
        self.end_ids = end_ids(self.model, self.tokenizer)
        self.cache_keyword = cache_keyword(self.model)
        # a prompt's pass scores its last token only (as generate does), not every one: a 200-token prompt made 200 rows of
        # vocabulary-wide logits (39 MB each in float32 for SmolLM2's 49,152 tokens) and the matmuls behind them
        self.last_logits = {"logits_to_keep": 1} if forward_takes(self.model, "logits_to_keep") else {}
        self.slots = AdapterSlots(self.model, capacity=slots, rank=rank, dtype=dtype)
        if quantize == "int8":
            _int8(self.model, device)


class BatchedBackend:
    """Local inference, batched across requests and adapters; the :class:`Backend` interface."""

    def __init__(self, device: str | None = None, *, max_batch: int | None = None, adapter_slots: int = ADAPTER_SLOTS,
                 max_lora_rank: int = MAX_LORA_RANK, adapter_dtype: str = ADAPTER_DTYPE, quantize: str | None = None) -> None:
        """*quantize* ``int8``: the base's linear layers (not the adapters) in int8 with a scale per output channel,
        about 4× less to read per token on a CPU; ``bf16``: the base's weights in bfloat16, half as much; ``float32``:
        as the reference path; ``auto``: bf16 on a GPU and on a CPU that computes it, else float32. None: from
        ``CHATBOT_ENGINE_QUANT``, else auto. Outputs other than float32's can differ from the reference path (see the README)."""
        import torch

        from chatbot.runtime.device import cpu_computes_bf16, default_device

        self.device = device or default_device()
        quantize = quantize or os.environ.get("CHATBOT_ENGINE_QUANT") or "auto"
        if quantize not in PRECISIONS:
            raise ServerFault(f"CHATBOT_ENGINE_QUANT={quantize!r}: use {', '.join(PRECISIONS)}, or leave it unset (auto)")
        if quantize == "auto":
            quantize = "bf16" if self.device != "cpu" or cpu_computes_bf16() else "float32"
        max_batch = max_batch or int(os.environ.get("CHATBOT_MAX_BATCH") or MAX_BATCH["cpu" if self.device == "cpu" else "gpu"])
        self.max_batch, self.adapter_slots, self.max_lora_rank, self.quantize = max_batch, adapter_slots, max_lora_rank, quantize
        self.adapter_dtype = getattr(torch, adapter_dtype)
        self.steps: list[int] = []  # the rows of each decoding step, for tests and benchmarks (the last 1,000)
        self.joins: list[int] = []  # how many requests joined the batch at once, each time (the last 1,000)
        self._bases: dict[str, _Base] = {}
        self._loading = threading.Lock()
        self._waiting: list[_Job] = []
        self._lock = threading.RLock()  # over _waiting and _serving
        self._serving = False  # a task of the torch thread serves the waiting requests

    # -- the Backend interface ---------------------------------------------------------------------

    def preload(self, base: str, adapter: str | None = None) -> None:
        def load() -> None:
            loaded = self._base(base)
            if adapter is not None:
                loaded.slots.release(loaded.slots.acquire(_folder(adapter), _checked_stamp(adapter)))

        torch_thread.run(load)

    def stream(self, request: GenerationRequest) -> CompletionStream:
        [job] = self._submit([request])
        return (yield from _relay(job))

    def complete(self, request: GenerationRequest) -> Completion:
        return drain(self.stream(request))

    def complete_many(self, requests: list[GenerationRequest], on_done: Callable[[], None] | None = None) -> list[Completion]:
        """Answer *requests* together: they are queued at once, so they join the batch together (``on_done()`` after each, in order)."""
        answers = []
        for job in self._submit(requests):
            answers.append(drain(_relay(job)))
            if on_done:
                on_done()
        return answers

    def _submit(self, requests: list[GenerationRequest]) -> list[_Job]:
        jobs = [_Job(request) for request in requests]
        with self._lock:
            self._waiting.extend(jobs)
            start, self._serving = not self._serving, True
        if start:
            torch_thread.start(self._serve_waiting, "batched engine")
        return jobs

    def count_tokens(self, base: str, text: str) -> int:
        loaded = self._bases.get(base) or torch_thread.run(lambda: self._base(base))
        with loaded.counter_lock:
            return len(loaded.counter(text, add_special_tokens=False)["input_ids"])

    # -- on the torch thread ---------------------------------------------------------------------------

    def _base(self, name: str) -> _Base:
        with self._loading:
            if name not in self._bases:
                self._bases[name] = _Base(name, self.device, self.adapter_slots, self.max_lora_rank, self.adapter_dtype, self.quantize)
            return self._bases[name]

    def _serve_waiting(self) -> None:
        """Serve the waiting requests, a base at a time, until none is left (a task of :mod:`chatbot.runtime.torch_thread`)."""
        import torch

        try:
            while True:
                with self._lock:
                    if not self._waiting:
                        self._serving = False
                        return
                    name = self._waiting[0].request.base_model
                try:
                    base = self._base(name)
                    with torch.inference_mode():
                        self._serve(name, base)
                except Exception as exc:  # noqa: BLE001 - a base that cannot load fails the requests for it
                    for job in self._take(name, 10**9, set(), 10**9):
                        job.out.put(exc)
        except BaseException:
            with self._lock:  # the next request starts a new task
                self._serving = False
            raise

    def _take(self, name: str, room: int, adapters: set[str], slots: int) -> list[_Job]:
        """Waiting requests for base *name*, in order, while there is a row for each and a slot for its adapter."""
        taken: list[_Job] = []
        with self._lock:
            for job in self._waiting:
                if job.request.base_model != name or len(taken) == room:
                    continue
                needed = adapters | ({_folder(job.request.adapter)} if job.request.adapter else set())
                if len(needed) <= slots:
                    taken.append(job)
                    adapters = needed
            self._waiting = [job for job in self._waiting if job not in taken]
        return taken

    def _serve(self, name: str, base: _Base) -> None:
        """Run one batch on *base* until nothing is left for it: requests join between steps, ended rows leave."""
        batch = _Batch(base, self.device)
        while True:
            torch_thread.run_pending()  # short work (a message to route) between two steps
            joining = self._take(name, self.max_batch - len(batch.rows), batch.adapters(), self.adapter_slots)
            try:
                if joining:
                    self.joins = [*self.joins[-999:], len(joining)]
                    batch.join([job for job in joining if batch.hold(job)])
                batch.prune()
                if not batch.rows:
                    with self._lock:
                        if not any(job.request.base_model == name for job in self._waiting):
                            return
                    continue
                self.steps = [*self.steps[-999:], len(batch.rows)]
                batch.step()
            except Exception as exc:  # noqa: BLE001 - the rows running hear of it; the engine goes on
                batch.fail(exc)


class _Batch:
    """The rows being decoded together on one base: their KV cache, attention mask, positions and slots."""

    def __init__(self, base: _Base, device: str) -> None:
        self.base, self.device = base, device
        self.rows: list[_Row] = []
        self.slots: list[int] = []
        self.following: list[int] = []  # the token each row feeds next
        self.cache: Any = None
        self.mask: Any = None  # [rows, columns]: 1 where a row has a token (rows are padded on the left)
        self.positions: Any = None  # [rows, 1]: the position of each row's last token
        self._held: dict[int, int] = {}  # id(job) -> its slot, between hold() and join()

    def adapters(self) -> set[str]:
        return {_folder(row.request.adapter) for row in self.rows if row.request.adapter}

    def hold(self, job: _Job) -> bool:
        """Take the slot of *job*'s adapter (loading it if needed); False, with the error sent to the job, when it can't."""
        try:
            adapter = job.request.adapter
            self._held[id(job)] = self.base.slots.acquire(_folder(adapter), _checked_stamp(adapter)) if adapter else 0
            return True
        except Exception as exc:  # noqa: BLE001 - a missing or bad adapter fails its own request, not the batch
            job.out.put(exc)
            return False

    def join(self, jobs: list[_Job]) -> None:
        """Read the prompts of *jobs* (together, padded on the left), choose each one's first token, and add them as rows."""
        import torch

        if not jobs:
            return
        base, device, started = self.base, self.device, time.perf_counter()
        slots = [self._held.pop(id(job)) for job in jobs]
        prompts = [base.tokenizer(job.request.prompt, add_special_tokens=False)["input_ids"] for job in jobs]
        rows = [_Row(job, len(prompt), started) for job, prompt in zip(jobs, prompts)]
        width = max(len(p) for p in prompts)
        ids = torch.full((len(jobs), width), base.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(jobs), width), dtype=torch.long)
        for i, prompt in enumerate(prompts):
            ids[i, width - len(prompt):] = torch.tensor(prompt)
            mask[i, width - len(prompt):] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        try:
            out = self._forward(slots, input_ids=ids, attention_mask=mask, position_ids=positions,
                                **{base.cache_keyword: _new_cache(base.model)}, **base.last_logits)
        except Exception as exc:  # noqa: BLE001
            for row, slot in zip(rows, slots):
                row.job.out.put(exc)
                base.slots.release(slot)
            raise
        following = [row.take(out.logits[i, -1], base) for i, row in enumerate(rows)]
        self._merge(rows, slots, following, getattr(out, base.cache_keyword), mask, positions[:, -1:])

    def _merge(self, rows: list[_Row], slots: list[int], following: list[int], cache: Any, mask: Any, positions: Any) -> None:
        import torch

        if not self.rows:
            self.rows, self.slots, self.following, self.cache, self.mask, self.positions = rows, slots, following, cache, mask, positions
            return
        old, new = self.mask.shape[1], mask.shape[1]
        for layer, joining in zip(self.cache.layers, cache.layers):  # pad the shorter side on the left, then stack the rows
            for part in ("keys", "values"):
                mine, theirs = getattr(layer, part), getattr(joining, part)
                setattr(layer, part, torch.cat([_left_pad(mine, new - old, 2), _left_pad(theirs, old - new, 2)], dim=0))
        self.mask = torch.cat([_left_pad(self.mask, new - old, 1), _left_pad(mask, old - new, 1)], dim=0)
        self.positions = torch.cat([self.positions, positions], dim=0)
        self.rows, self.slots, self.following = self.rows + rows, self.slots + slots, self.following + following

    def prune(self) -> None:
        """Let the rows that ended go (their slots freed), and the columns no row needs any more."""
        import torch

        keep = [i for i, row in enumerate(self.rows) if row.live]
        if len(keep) < len(self.rows):
            for row, slot in zip(self.rows, self.slots):
                if not row.live:
                    self.base.slots.release(slot)
            if not keep:
                self.rows, self.slots, self.following, self.cache = [], [], [], None
                return
            index = torch.tensor(keep, device=self.device)
            self.cache.batch_select_indices(index)
            self.mask, self.positions = self.mask[index], self.positions[index]
            self.rows, self.slots, self.following = [self.rows[i] for i in keep], [self.slots[i] for i in keep], [self.following[i] for i in keep]
            unused = int((self.mask.sum(0) == 0).long().cumprod(0).sum())  # leading columns that are padding in every row
            if unused:
                for layer in self.cache.layers:
                    layer.keys, layer.values = layer.keys[:, :, unused:], layer.values[:, :, unused:]
                self.mask = self.mask[:, unused:]

    def step(self) -> None:
        """One token for every row."""
        import torch

        self.mask = torch.cat([self.mask, torch.ones((len(self.rows), 1), dtype=self.mask.dtype, device=self.device)], dim=1)
        self.positions = self.positions + 1
        out = self._forward(self.slots, input_ids=torch.tensor(self.following, device=self.device).view(-1, 1), attention_mask=self.mask,
                            position_ids=self.positions, **{self.base.cache_keyword: self.cache})
        self.cache = getattr(out, self.base.cache_keyword)
        self.following = [row.take(out.logits[i, -1], self.base) if row.live else self.base.tokenizer.pad_token_id
                          for i, row in enumerate(self.rows)]

    def _forward(self, slots: list[int], **inputs: Any) -> Any:

        self.base.slots.run_rows(slots)
        try:
            return self.base.model(**inputs, use_cache=True)
        finally:
            self.base.slots.run_rows(None)

    def fail(self, exc: Exception) -> None:
        """A step failed: every row running hears of it, and the batch starts afresh."""
        for row, slot in zip(self.rows, self.slots):
            if row.live:
                row.live = False
                row.job.out.put(exc)
            self.base.slots.release(slot)
        self.rows, self.slots, self.following, self.cache = [], [], [], None


GROWTH = 64  # tokens of room a KV cache layer takes beyond what it holds when it has to move


def _new_cache(model: Any) -> Any:
    """An empty KV cache for *model* whose full-attention layers grow in place (:func:`_growing_layer`)."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    try:
        cache = DynamicCache(config=model.config)
    except TypeError:  # a transformers without per-layer cache types: its own layers, which grow by concatenation
        return DynamicCache()
    grows = _growing_layer()
    if grows is not None:
        cache.layers = [grows() if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


@functools.cache
def _growing_layer() -> type | None:
    """transformers' DynamicLayer, but its keys and values are the front of a buffer with room after them: a step writes
    its token there instead of copying the whole cache into a new tensor (``torch.cat``) in every layer. A layer whose
    keys were replaced (rows joining, leaving or trimmed: :class:`_Batch`) moves them into a new buffer once.
    None before transformers 5, whose layers initialize otherwise: they are left as they are."""
    from transformers.cache_utils import DynamicLayer

    if not hasattr(DynamicLayer(), "is_initialized"):
        return None

    class GrowingLayer(DynamicLayer):
        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            self.keys, self._key_room = _grown(self.keys, getattr(self, "_key_room", None), key_states)
            self.values, self._value_room = _grown(self.values, getattr(self, "_value_room", None), value_states)
            return self.keys, self.values

    return GrowingLayer


def _grown(held: Any, room: Any, new: Any) -> tuple[Any, Any]:
    """*held* [rows, heads, tokens, dim] with *new* after it along the tokens, and the buffer it is the front of."""
    length = held.shape[-2] if held.dim() == 4 else 0
    total = length + new.shape[-2]
    fits = (room is not None and length and held.data_ptr() == room.data_ptr() and held.stride() == room.stride()
            and held.shape[:2] == room.shape[:2] and room.shape[-2] >= total)
    if not fits:
        room = new.new_empty(new.shape[0], new.shape[1], total + GROWTH, new.shape[3])
        if length:
            room[:, :, :length].copy_(held)
    room[:, :, length:total].copy_(new)
    return room[:, :, :total], room


def _left_pad(tensor: Any, columns: int, dim: int) -> Any:
    """*tensor* with *columns* zeros before it along *dim* (unchanged for none)."""
    import torch

    if columns <= 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = columns
    return torch.cat([torch.zeros(shape, dtype=tensor.dtype, device=tensor.device), tensor], dim=dim)


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
