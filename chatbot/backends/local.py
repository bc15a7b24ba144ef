"""Local inference with transformers + peft: ONE base model in memory, LoRA adapters switched per request.

Each base model is loaded once; every adapter of a skill is attached to it by name
(peft multi-adapter) the first time it is asked for, and activated for the request that needs it.
An adapter whose files changed since it was loaded (a skill retrained under the same name) is
loaded again and the old copy deleted, so the next request gets the new weights; while the folder
is being swapped, the copy in memory keeps answering. A lock serialises requests, since the active
adapter is state of the shared model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from chatbot.backends.base import Completion, CompletionStream, GenerationRequest, TokenLogprobs, drain
from chatbot.errors import ServerFault


class StopMatcher:
    """Turns a growing completion into safe-to-show pieces, cutting at the first stop sequence."""

    def __init__(self, stop: list[str]) -> None:
        self.stop = [s for s in stop if s]
        self.shown = 0
        self.stopped = False

    def feed(self, text: str) -> str:
        """The part of *text* (the whole completion so far) that can be shown now."""
        hits = [text.find(s) for s in self.stop if s in text]
        if hits:
            self.stopped = True
            piece, self.shown = text[self.shown : min(hits)], min(hits)
            return piece
        safe = len(text)
        if text.endswith("\ufffd"):  # a multi-byte character not finished yet
            safe -= 1
        for s in self.stop:  # hold back a tail that could still grow into a stop sequence
            for k in range(min(len(s) - 1, len(text)), 0, -1):
                if s.startswith(text[-k:]):
                    safe = min(safe, len(text) - k)
                    break
        piece = text[self.shown : max(safe, self.shown)]
        self.shown = max(safe, self.shown)
        return piece

    def flush(self, text: str) -> str:
        piece = text[self.shown :]
        self.shown = len(text)
        return piece.rstrip("\ufffd")


def _sample(logits: Any, temperature: float, top_p: float, generator: Any) -> int:
    import torch

    if temperature <= 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if not torch.isfinite(probs).all():  # a temperature so small (5e-324) that float32 overflows: its limit is greedy
        return int(torch.argmax(logits))
    if top_p < 1.0:
        sorted_probs, index = torch.sort(probs, descending=True)
        keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < top_p
        keep[0] = True  # the likeliest token always: a top_p below float32's smallest number (5e-324) would keep none
        sorted_probs = sorted_probs * keep
        probs = torch.zeros_like(probs).scatter(-1, index, sorted_probs)
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))


def _token_logprobs(logits: Any, token: int, top: int, tokenizer: Any) -> tuple[str, float, dict[str, float]]:
    """The chosen token's text and log-probability, and the *top* most likely tokens'."""
    import torch

    logprobs = torch.log_softmax(logits.float(), dim=-1)
    best = torch.topk(logprobs, top).indices.tolist() if top else []
    return (tokenizer.decode([token]), float(logprobs[token]), {tokenizer.decode([i]): float(logprobs[i]) for i in best})


def _logprobs_of(scored: list[tuple[str, float, dict[str, float]]], length: int) -> TokenLogprobs:
    """The scored tokens that make up the first *length* characters of the answer (the stop sequence cut off)."""
    result, offset = TokenLogprobs(), 0
    for text, logprob, top in scored:
        if offset >= length:
            break
        result.tokens.append(text)
        result.token_logprobs.append(logprob)
        result.top_logprobs.append(top)
        result.text_offset.append(offset)
        offset += len(text)
    return result


def end_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """The tokens that end a generation: the tokenizer's end of sequence and every one the base's generation config lists."""
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    listed = ids if isinstance(ids, (list, tuple)) else [ids]
    return frozenset(int(i) for i in [*listed, tokenizer.eos_token_id] if i is not None)


def forward_takes(model: Any, keyword: str) -> bool:
    """Whether *model*'s forward takes *keyword* (a peft model's: its base model's, which it passes keywords on to)."""
    import inspect

    forward = (model.get_base_model() if hasattr(model, "get_base_model") else model).forward
    return keyword in inspect.signature(forward).parameters


def cache_keyword(model: Any) -> str:
    """The keyword *model*'s forward takes its KV cache by, and its output gives it back as: ``cache`` from transformers
    5.25 (where ``past_key_values`` still works but logs that it is deprecated), ``past_key_values`` before."""
    return "cache" if forward_takes(model, "cache") else "past_key_values"


def _stamp(folder: Path) -> tuple[int, ...] | None:
    """What changes when an adapter folder's files are replaced (inode, size, mtime of each); None without an adapter there."""
    stamp: list[int] = []
    try:
        for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
            if (folder / name).exists() or name == "adapter_config.json":
                st = (folder / name).stat()
                stamp += [st.st_ino, st.st_size, st.st_mtime_ns]
    except FileNotFoundError:  # no adapter, or swapped while we looked
        return None
    return tuple(stamp)


class LocalBackend:
    """Runs requests on local base models with per-request LoRA adapters."""

    def __init__(self, device: str | None = None) -> None:
        from chatbot.runtime.device import default_device, set_threads

        set_threads()
        self.device = device or default_device()
        self._models: dict[str, Any] = {}  # base model name -> PeftModel (or plain model before any adapter)
        self._tokenizers: dict[str, Any] = {}
        self._end_ids: dict[str, frozenset[int]] = {}  # base -> every token id that ends a generation
        self._adapters: dict[str, dict[str, tuple[str, tuple[int, ...]]]] = {}  # base -> adapter path -> (name, files' stamp)
        self._loaded = 0  # adapters loaded so far: each gets a new name
        self._lock = threading.RLock()

    def _model(self, base: str, adapter: str | None) -> tuple[Any, Any, str | None]:
        from chatbot.runtime.base_models import load_model, load_tokenizer

        if base not in self._models:
            self._tokenizers[base] = load_tokenizer(base)
            model = load_model(base, self.device)
            model.eval()
            self._models[base] = model
            self._end_ids[base] = end_ids(model, self._tokenizers[base])
            self._adapters[base] = {}
        model = self._models[base]
        if adapter is None:
            return model, self._tokenizers[base], None
        path = str(Path(adapter).resolve())
        names = self._adapters[base]
        stamp = _stamp(Path(path))
        if path in names and (stamp is None or stamp == names[path][1]):  # unchanged, or being swapped: the loaded copy answers
            return model, self._tokenizers[base], names[path][0]
        if stamp is None:
            raise ServerFault(f"{path}: no adapter there (adapter_config.json missing)", hint="train the skill with `chatbot train`")
        name, self._loaded = f"a{self._loaded}", self._loaded + 1
        if names:  # the base wears peft's wrapper since its first adapter
            model.load_adapter(path, adapter_name=name)
        else:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, path, adapter_name=name)
            model.eval()
            self._models[base] = model
        if path in names:  # retrained: the old weights go
            model.set_adapter(name)
            model.delete_adapter(names[path][0])
        names[path] = (name, stamp)
        return model, self._tokenizers[base], name

    def preload(self, base: str, adapter: str | None = None) -> None:
        """Load *base* (and *adapter*) now rather than on the first request."""
        with self._lock:
            self._model(base, adapter)

    def stream(self, request: GenerationRequest) -> CompletionStream:
        stats: dict[str, Any] = {}
        pieces: list[str] = []
        for piece in self._generate(request, stats):
            pieces.append(piece)
            yield piece
        return Completion(text="".join(pieces), **stats)

    def complete(self, request: GenerationRequest) -> Completion:
        return drain(self.stream(request))

    def count_tokens(self, base: str, text: str) -> int:
        with self._lock:
            _, tokenizer, _ = self._model(base, None)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def _generate(self, request: GenerationRequest, stats: dict[str, Any]) -> Iterator[str]:
        import contextlib

        import torch

        asked = time.perf_counter()
        with self._lock:
            stats["queued_ms"] = round((time.perf_counter() - asked) * 1000, 2)
            model, tokenizer, adapter = self._model(request.base_model, request.adapter)
            if adapter is not None:
                model.set_adapter(adapter)
                context = contextlib.nullcontext()
            else:
                context = model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
            ends = self._end_ids[request.base_model]
            generator = torch.Generator(device=self.device).manual_seed(request.seed) if request.seed is not None else None
            prompt_ids = tokenizer(request.prompt, add_special_tokens=False, return_tensors="pt")["input_ids"].to(self.device)
            matcher = StopMatcher(request.stop)
            generated: list[int] = []
            scored: list[tuple[str, float, dict[str, float]]] = []
            finish = "length"
            with context, torch.inference_mode():
                past, inputs, cache = None, prompt_ids, cache_keyword(model)
                for _ in range(request.max_tokens):
                    out = model(input_ids=inputs, use_cache=True, **{cache: past})
                    past = getattr(out, cache)
                    token = _sample(out.logits[0, -1], request.temperature, request.top_p, generator)
                    if request.logprobs is not None:
                        scored.append(_token_logprobs(out.logits[0, -1], token, request.logprobs, tokenizer))
                    if token in ends:
                        finish = "stop"
                        break
                    generated.append(token)
                    piece = matcher.feed(tokenizer.decode(generated, skip_special_tokens=True))
                    if piece:
                        yield piece
                    if matcher.stopped:
                        finish = "stop"
                        break
                    inputs = torch.tensor([[token]], device=self.device)
            if not matcher.stopped:
                rest = matcher.flush(tokenizer.decode(generated, skip_special_tokens=True))
                if rest:
                    yield rest
            stats.update(finish_reason=finish, prompt_tokens=int(prompt_ids.shape[1]), completion_tokens=len(generated))
            if request.logprobs is not None:
                stats["logprobs"] = _logprobs_of(scored, matcher.shown)
