"""A peft LoRA adapter as a GGUF LoRA file, for llama.cpp (what its ``convert_lora_to_gguf.py`` writes).

The adapter's ``lora_A`` and ``lora_B`` of each linear layer become ``blk.N.<tensor>.weight.lora_a`` and
``.lora_b`` under llama.cpp's tensor names (gguf's own name map); on a llama-architecture base the rows of
``q_proj``'s and ``k_proj``'s ``lora_B`` are permuted as the base's Q and K weights were when it was
converted to GGUF (rotary halves interleaved), so the adapter meets the weights it was trained on.
llama.cpp scales an adapter by ``alpha / r``; rsLoRA's ``alpha / sqrt(r)`` is written as an alpha of
``alpha * sqrt(r)``. Files are cached by the adapter's and the base's content stamps.
"""

from __future__ import annotations

import glob
import json
import os
import re
from pathlib import Path
from typing import Any

from chatbot.errors import ServerFault

PEFT_PREFIX = "base_model.model."
PERMUTED = {"llama": {"q_proj": "head_count", "k_proj": "head_count_kv"}}  # architecture -> rows of lora_B to permute, by head count


def _stamp(path: Path) -> str:
    found = path.stat()
    return f"{path.resolve()}:{found.st_size}:{found.st_mtime_ns}"


def cached_gguf_lora(adapter: Path, base_gguf: Path, cache: Path) -> Path:
    """The GGUF LoRA file of *adapter* for *base_gguf*, written into *cache* unless already there.

    Its name holds the adapter folder's hash and its files' stamps: writing the file of a retrained adapter removes the
    files of that folder's earlier versions, so the cache holds one file per adapter folder and base.
    """
    import hashlib

    files = [adapter / "adapter_config.json", adapter / "adapter_model.safetensors"]
    for file in files:
        if not file.exists():
            raise ServerFault(f"{adapter}: no adapter there ({file.name} missing)", hint="train the skill with `chatbot train`")
    folder = hashlib.sha256(f"{adapter.resolve()}\n{base_gguf.resolve()}".encode()).hexdigest()[:12]
    key = hashlib.sha256("\n".join([*(_stamp(f) for f in files), _stamp(base_gguf)]).encode()).hexdigest()[:24]
    target = cache / f"{adapter.name}-{folder}-{key}.gguf"
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            write_gguf_lora(adapter, base_gguf, partial)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
        for stale in cache.glob(f"{glob.escape(adapter.name)}-{folder}-*.gguf"):
            if stale != target:
                stale.unlink(missing_ok=True)  # a model that has it open keeps reading it
        for old in cache.glob("*.gguf"):  # named NAME-KEY, without the folder's hash, by earlier versions: never read now
            if EARLIER_FILE_NAME.fullmatch(old.name) and not FILE_NAME.fullmatch(old.name):
                old.unlink(missing_ok=True)
    return target


FILE_NAME = re.compile(r".+-[0-9a-f]{12}-[0-9a-f]{24}\.gguf")
EARLIER_FILE_NAME = re.compile(r".+-[0-9a-f]{24}\.gguf")


def write_gguf_lora(adapter: Path, base_gguf: Path, out: Path) -> None:
    import gguf
    import numpy as np
    from safetensors.torch import load_file

    config = json.loads((adapter / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("use_dora") or config.get("modules_to_save"):
        raise ServerFault(f"{adapter}: DoRA and modules_to_save have no GGUF LoRA form", hint="use the batched engine (CHATBOT_ENGINE=batched)")
    base = _base_facts(base_gguf)
    arch = base["architecture"]
    kinds = {name: kind for kind, name in gguf.MODEL_ARCH_NAMES.items()}
    if arch not in kinds:
        raise ServerFault(f"{base_gguf}: architecture {arch!r} is unknown to gguf {gguf.__version__}", hint="use the batched engine")
    names = gguf.get_tensor_name_map(kinds[arch], base["block_count"])
    rank, alpha = int(config["r"]), float(config.get("lora_alpha", config["r"]))
    if config.get("use_rslora"):
        alpha *= rank ** 0.5
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
    for key, tensor in sorted(load_file(adapter / "adapter_model.safetensors").items()):
        module, part = _split(key)
        if part is None:
            raise ServerFault(f"{adapter}: tensor {key} is not a LoRA A or B matrix", hint="use the batched engine")
        name = names.get_name(f"{module}.weight", try_suffixes=(".weight",))
        if name is None:
            raise ServerFault(f"{adapter}: {module} has no tensor in a {arch} GGUF", hint="was it trained on another base?")
        values = tensor.float().numpy()
        leaf = module.rsplit(".", 1)[-1]
        heads = PERMUTED.get(arch, {}).get(leaf)
        if part == "lora_b" and heads:
            values = _permute_rows(values, base[heads])
        # float32: in float16 (half the file) llama.cpp decoded slower here (84 against 102 tokens/s, 2 threads, SmolLM2)
        writer.add_tensor(f"{name}.{part}", np.ascontiguousarray(values, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _split(key: str) -> tuple[str, str | None]:
    name = key.removeprefix(PEFT_PREFIX)
    for suffix, part in ((".lora_A.weight", "lora_a"), (".lora_B.weight", "lora_b")):
        if name.endswith(suffix):
            return name.removesuffix(suffix), part
    return name, None


def _permute_rows(rows: Any, heads: int) -> Any:
    """Each head's rows reordered from [first halves, second halves] to interleaved pairs, as the GGUF's Q and K are."""
    return rows.reshape(heads, 2, rows.shape[0] // heads // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def _base_facts(base_gguf: Path) -> dict[str, Any]:
    import gguf

    fields = gguf.GGUFReader(base_gguf).fields
    arch = str(field_value(fields["general.architecture"]))

    def number(key: str) -> int:
        field = fields.get(f"{arch}.{key}")
        if field is None:
            raise ServerFault(f"{base_gguf}: no {arch}.{key} in its metadata", hint="use the batched engine")
        return int(field_value(field))

    return {"architecture": arch, "block_count": number("block_count"), "head_count": number("attention.head_count"),
            "head_count_kv": number("attention.head_count_kv")}


def field_value(field: Any) -> str | float | int:
    """A scalar or string metadata field of a ``gguf.GGUFReader`` (``ReaderField.contents`` came after gguf 0.10)."""
    value = field.parts[field.data[0]]
    if field.types and field.types[0].name == "STRING":
        return bytes(value).decode("utf-8")
    return value.tolist()[0]
