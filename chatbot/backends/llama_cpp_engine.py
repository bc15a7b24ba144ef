"""The llama.cpp engine: a base's GGUF run by llama.cpp, each skill's LoRA adapter switched per request.

``CHATBOT_ENGINE=llama-cpp`` selects it (llama-cpp-python must be installed: ``pip install
llama-cpp-python``, built from source). It reads the base's own GGUF (the shipped Q4_1 SmolLM2: 4-bit
weights, several times less to read per token than float32) and a peft adapter converted to a GGUF LoRA
(:mod:`chatbot.backends.gguf_lora`, cached), set on the context before its request. One context per base:
requests for one base run one after another, each on its adapter, and a prompt's KV cache is kept only
while the adapter stays the same. Stop sequences, token counts and finish reasons follow the other
engines; ``logprobs`` are not offered here.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

from chatbot.backends.base import Completion, CompletionStream, GenerationRequest, drain
from chatbot.backends.batched import _checked_stamp, _folder, _Job, _relay
from chatbot.backends.gguf_lora import cached_gguf_lora
from chatbot.backends.local import StopMatcher
from chatbot.defaults import cache_dir
from chatbot.errors import ServerFault
from chatbot.runtime import torch_thread
from chatbot.runtime.device import thread_count

CONTEXT = int(os.environ.get("CHATBOT_LLAMA_CPP_CONTEXT", 4096))  # tokens of prompt and completion a request may hold
ADAPTERS = int(os.environ.get("CHATBOT_ADAPTER_SLOTS", 32))  # adapters kept loaded, least recently used dropped first


class _Base:
    """One base's llama.cpp model and context, the adapters loaded for it, and the one in use."""

    def __init__(self, name: str) -> None:
        try:
            from llama_cpp import Llama
        except ImportError:
            raise ServerFault("CHATBOT_ENGINE=llama-cpp needs llama-cpp-python",
                              hint="pip install llama-cpp-python (builds llama.cpp from source), or leave CHATBOT_ENGINE unset") from None
        found = gguf_of(name)
        if found is None:
            raise ServerFault(f"base {name!r} has no GGUF file for llama.cpp", hint="give the base as a .gguf path, or use the batched engine")
        self.gguf = found
        self.llm = Llama(model_path=str(self.gguf), n_ctx=CONTEXT, n_threads=thread_count(), n_threads_batch=thread_count(), verbose=False)
        self.lock = threading.Lock()  # one generation at a time on this context
        self.loaded: OrderedDict[str, tuple[Any, Any]] = OrderedDict()  # adapter folder -> (its files' stamp, llama.cpp adapter)
        self.current: str | None = None  # the adapter set on the context

    def adapter(self, folder: str) -> Any:
        """The llama.cpp adapter of peft *folder*, converted and loaded if new or changed (call with the lock held)."""
        import llama_cpp

        files = _checked_stamp(folder)  # as the batched engine tells a retrained adapter
        found = self.loaded.get(folder)
        if found is not None and found[0] == files:
            self.loaded.move_to_end(folder)
            return found[1]
        if found is not None:
            self._drop(folder)
        path = cached_gguf_lora(Path(folder), self.gguf, cache_dir() / "gguf-lora")
        handle = llama_cpp.llama_adapter_lora_init(self.llm._model.model, str(path).encode())
        if not handle:
            raise ServerFault(f"{folder}: llama.cpp could not load its GGUF LoRA ({path})", hint="use the batched engine")
        self.loaded[folder] = (files, handle)
        while len(self.loaded) > max(1, ADAPTERS):
            self._drop(next(iter(self.loaded)))
        return handle

    def use(self, folder: str | None) -> None:
        """Set *folder*'s adapter (None: no adapter) on the context (call with the lock held)."""
        handle = self.adapter(folder) if folder is not None else None  # a retrained adapter is loaded again (and unset first)
        if folder == self.current:
            return
        set_lora(self.llm, handle)
        self.current = folder
        self.llm.reset()  # the cached prompt was computed under the other adapter

    def _drop(self, folder: str) -> None:
        import llama_cpp

        _, handle = self.loaded.pop(folder)
        if self.current == folder:
            set_lora(self.llm, None)
            self.current = None
            self.llm.reset()
        llama_cpp.llama_adapter_lora_free(handle)


class LlamaCppBackend:
    """Local inference on llama.cpp; the :class:`Backend` interface."""

    def __init__(self) -> None:
        self._bases: dict[str, _Base] = {}
        self._loading = threading.Lock()

    def _base(self, name: str) -> _Base:
        with self._loading:
            if name not in self._bases:
                self._bases[name] = torch_thread.run(lambda: _Base(name))
            return self._bases[name]

    def preload(self, base: str, adapter: str | None = None) -> None:
        loaded = self._base(base)
        if adapter is not None:
            with loaded.lock:
                loaded.adapter(_folder(adapter))

    def count_tokens(self, base: str, text: str) -> int:
        return len(self._base(base).llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def complete(self, request: GenerationRequest) -> Completion:
        return drain(self.stream(request))

    def stream(self, request: GenerationRequest) -> CompletionStream:
        """The request runs on the torch thread (:mod:`chatbot.runtime.torch_thread`): llama.cpp's OpenMP and torch's are one
        runtime in a process, and a second team of threads (the router's, say) took llama.cpp from 105 to 63 tokens/s."""
        if request.logprobs is not None:
            raise ServerFault("the llama.cpp engine does not give log-probabilities", hint="leave CHATBOT_ENGINE unset for logprobs")
        base = self._base(request.base_model)
        job = _Job(request)
        torch_thread.start(lambda: _generate(base, job), "llama.cpp generation")
        return (yield from _relay(job))


def _generate(base: _Base, job: _Job) -> None:
    """Generate for *job*'s request, putting each piece of text in ``job.out``, then the Completion (an exception if it fails)."""
    import llama_cpp

    request, out = job.request, job.out
    try:
        with base.lock:
            queued_ms = (time.perf_counter() - job.asked) * 1000
            base.use(_folder(request.adapter) if request.adapter else None)
            llm = base.llm
            prompt = llm.tokenize(request.prompt.encode("utf-8"), add_bos=False, special=True)
            if len(prompt) + request.max_tokens > llm.n_ctx():
                raise ServerFault(f"{len(prompt)} prompt tokens and max_tokens {request.max_tokens} exceed llama.cpp's context of "
                                  f"{llm.n_ctx()} tokens", hint="raise CHATBOT_LLAMA_CPP_CONTEXT or shorten the prompt")
            if request.seed is not None:
                llm.set_seed(request.seed)
            matcher, generated, pieces, finish = StopMatcher(request.stop), [], [], "length"
            tokens = llm.generate(prompt, temp=request.temperature, top_p=request.top_p, top_k=0, min_p=0.0, repeat_penalty=1.0)
            try:
                for token in tokens:
                    if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token) or job.abandoned:  # end of text or of a turn
                        finish = "stop"
                        break
                    generated.append(token)
                    piece = matcher.feed(llm.detokenize(generated).decode("utf-8", errors="replace"))
                    if piece:
                        pieces.append(piece)
                        out.put(piece)
                    if matcher.stopped:
                        finish = "stop"
                        break
                    if len(generated) >= request.max_tokens:
                        break
            finally:
                tokens.close()
            if not matcher.stopped:
                piece = matcher.flush(llm.detokenize(generated).decode("utf-8", errors="replace"))
                if piece:
                    pieces.append(piece)
                    out.put(piece)
        out.put(Completion(text="".join(pieces), finish_reason=finish, prompt_tokens=len(prompt), completion_tokens=len(generated),
                           queued_ms=queued_ms))
    except Exception as exc:  # noqa: BLE001 - the caller hears of it
        out.put(exc)


def set_lora(llm: Any, handle: Any) -> None:
    """Set the llama.cpp adapter *handle* on *llm*'s context at scale 1, the only one (None: no adapter)."""
    import llama_cpp

    if handle is None:
        llama_cpp.llama_set_adapters_lora(llm._ctx.ctx, None, 0, None)
    else:
        llama_cpp.llama_set_adapters_lora(llm._ctx.ctx, (llama_cpp.llama_adapter_lora_p_ctypes * 1)(handle), 1, (ctypes.c_float * 1)(1.0))


def gguf_of(base: str) -> Path | None:
    """The GGUF file llama.cpp runs for *base*: a bundled base's own, or *base* itself when it is a ``.gguf`` path."""
    from chatbot.runtime.base_models import bundled_gguf, is_bundled

    if is_bundled(base):
        return bundled_gguf(base)
    return Path(base).expanduser().resolve() if base.endswith(".gguf") else None
