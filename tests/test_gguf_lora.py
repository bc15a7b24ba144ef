"""A peft adapter written as a GGUF LoRA for llama.cpp: names, shapes, the Q/K row order and the scale.

llama.cpp itself runs these files in the slow tests (tests/test_slow_llama_cpp.py); here the file is read back with gguf."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from chatbot.backends.gguf_lora import cached_gguf_lora, field_value, write_gguf_lora
from chatbot.runtime.base_models import DEFAULT_BASE, bundled_gguf


@pytest.fixture(scope="module")
def smollm_adapter(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file

    from chatbot.runtime.base_models import load_model

    torch.manual_seed(0)
    model = get_peft_model(load_model(DEFAULT_BASE), LoraConfig(r=4, lora_alpha=8, use_rslora=True, target_modules=["q_proj", "k_proj", "down_proj"],
                                                                task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, 0.1)
    folder = tmp_path_factory.mktemp("adapter") / "skill"
    model.save_pretrained(folder)
    return folder, {k: v.numpy() for k, v in load_file(folder / "adapter_model.safetensors").items()}


def test_an_adapter_becomes_a_gguf_lora_under_llama_cpp_names(smollm_adapter: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    import gguf

    folder, weights = smollm_adapter
    out = tmp_path / "skill.gguf"
    write_gguf_lora(folder, bundled_gguf(DEFAULT_BASE), out)
    reader = gguf.GGUFReader(out)
    value = {key: field_value(field) for key, field in reader.fields.items() if key.startswith(("general.", "adapter."))}
    assert (value["general.architecture"], value["general.type"], value["adapter.type"]) == ("llama", "adapter", "lora")
    assert value["adapter.lora.alpha"] == pytest.approx(8 * 4 ** 0.5)  # rsLoRA: alpha/sqrt(r) as llama.cpp's alpha/r
    tensors = {t.name: np.array(t.data).reshape(list(reversed(t.shape.tolist()))) for t in reader.tensors}
    assert len(tensors) == 30 * 3 * 2 and set(tensors) >= {"blk.0.attn_q.weight.lora_a", "blk.29.ffn_down.weight.lora_b"}
    prefix = "base_model.model.model.layers.3."
    down_b = weights[prefix + "mlp.down_proj.lora_B.weight"]
    assert np.array_equal(tensors["blk.3.ffn_down.weight.lora_b"], down_b)  # no permutation outside Q and K
    assert np.array_equal(tensors["blk.3.attn_q.weight.lora_a"], weights[prefix + "self_attn.q_proj.lora_A.weight"])
    q_b, k_b = weights[prefix + "self_attn.q_proj.lora_B.weight"], weights[prefix + "self_attn.k_proj.lora_B.weight"]
    for written, original, heads in ((tensors["blk.3.attn_q.weight.lora_b"], q_b, 9), (tensors["blk.3.attn_k.weight.lora_b"], k_b, 3)):
        assert written.shape == original.shape and not np.array_equal(written, original)
        half = original.shape[0] // heads // 2  # head 0's rows: its first half's row 0, its second half's row 0, then the first half's row 1
        assert np.array_equal(written[:4], original[[0, half, 1, half + 1]])
        assert sorted(map(tuple, written)) == sorted(map(tuple, original))  # the same rows, reordered


def test_converted_files_are_cached_by_content(smollm_adapter: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    folder, _ = smollm_adapter
    first = cached_gguf_lora(folder, bundled_gguf(DEFAULT_BASE), tmp_path)
    stamp = first.stat().st_mtime_ns
    assert cached_gguf_lora(folder, bundled_gguf(DEFAULT_BASE), tmp_path) == first and first.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # nothing half-written left beside it
    with pytest.raises(Exception, match="no adapter there"):
        cached_gguf_lora(tmp_path / "missing", bundled_gguf(DEFAULT_BASE), tmp_path)


def test_a_retrained_adapter_replaces_its_own_stale_file_only(smollm_adapter: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    folder, namesake = tmp_path / "bot" / "shop-faq", tmp_path / "another-bot" / "shop-faq"  # two registries' adapters of one name
    shutil.copytree(smollm_adapter[0], folder)
    shutil.copytree(smollm_adapter[0], namesake)
    cache = tmp_path / "cache"
    theirs, old = cached_gguf_lora(namesake, bundled_gguf(DEFAULT_BASE), cache), cached_gguf_lora(folder, bundled_gguf(DEFAULT_BASE), cache)
    weights = folder / "adapter_model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # trained again
    new = cached_gguf_lora(folder, bundled_gguf(DEFAULT_BASE), cache)
    assert new != old and sorted(cache.iterdir()) == sorted([new, theirs])


def test_files_named_by_earlier_versions_are_removed(smollm_adapter: tuple[Path, dict[str, np.ndarray]], tmp_path: Path) -> None:
    earlier, other = tmp_path / "plain-15e4f34034e7ba6f5bc0bb06.gguf", tmp_path / "base.gguf"  # NAME-KEY; a file not ours
    earlier.write_bytes(b"old"), other.write_bytes(b"keep")
    written = cached_gguf_lora(smollm_adapter[0], bundled_gguf(DEFAULT_BASE), tmp_path)
    assert sorted(tmp_path.iterdir()) == sorted([written, other])
