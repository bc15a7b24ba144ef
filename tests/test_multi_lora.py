"""The multi-LoRA layer against the plain sum base(x) + scale * x A^T B^T of each row's own adapter, for a prompt and a
decoding step, and its rows' gathered adapters: kept while the rows stay, gathered again when a slot's adapter changes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from chatbot.backends.multi_lora import AdapterSlots


def _adapter(folder: Path, seed: int, rank: int = 2, alpha: int = 4) -> tuple[str, torch.Tensor, torch.Tensor, float]:
    generator = torch.Generator().manual_seed(seed)
    a, b = torch.randn(rank, 8, generator=generator), torch.randn(6, rank, generator=generator)
    folder.mkdir()
    save_file({"base_model.model.0.lora_A.weight": a, "base_model.model.0.lora_B.weight": b}, folder / "adapter_model.safetensors")
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank, "lora_alpha": alpha}), encoding="utf-8")
    return str(folder), a, b, alpha / rank


def _expected(model: nn.Module, layer: nn.Linear, x: torch.Tensor, adapters: list) -> torch.Tensor:
    rows = [layer(x[i]) + (scale * x[i] @ a.T @ b.T if a is not None else 0) for i, (a, b, scale) in enumerate(adapters)]
    return torch.stack(rows)


@pytest.mark.parametrize("tokens", [1, 3], ids=["decoding step", "prompt"])
def test_each_row_gets_its_own_adapter(tmp_path: Path, tokens: int) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6))
    plain = nn.Linear(8, 6)
    plain.load_state_dict(model[0].state_dict())
    slots = AdapterSlots(model, capacity=3, rank=4)  # rank 4 slots hold rank 2 adapters (padded with zeros)
    made = [_adapter(tmp_path / f"skill-{i}", seed=i) for i in range(3)]
    held = [slots.acquire(path) for path, *_ in made]
    order = [2, None, 0, 2, 1]  # a row without an adapter, two rows on one
    x = torch.randn(len(order), tokens, 8)
    slots.run_rows([held[i] if i is not None else 0 for i in order])
    with torch.no_grad():
        got = model(x)
        want = _expected(model, plain, x, [made[i][1:] if i is not None else (None, None, 0) for i in order])
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_a_pack_follows_the_batch_and_the_adapters_in_its_slots(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6))
    plain = nn.Linear(8, 6)
    plain.load_state_dict(model[0].state_dict())
    slots = AdapterSlots(model, capacity=1, rank=2, dtype=torch.float32)
    first, second = _adapter(tmp_path / "first", seed=1), _adapter(tmp_path / "second", seed=2)
    x = torch.randn(2, 1, 8)
    gathered = []
    for path, a, b, scale in (first, second, first):  # one slot: each loads in place of the other
        slot = slots.acquire(path)
        for _ in range(2):  # two steps of the same rows: gathered once
            slots.run_rows([slot, 0])
            with torch.no_grad():
                torch.testing.assert_close(model(x), _expected(model, plain, x, [(a, b, scale), (None, None, 0)]))
            gathered.append(model[0]._gathered)
            slots.run_rows(None)
        slots.release(slot)
    assert slots.loads == 3
    assert [g is gathered[0] for g in gathered] == [True, True, False, False, False, False] and gathered[2] is gathered[3]


def test_a_kv_cache_layer_grows_in_place_and_moves_when_its_keys_are_replaced() -> None:
    from transformers import LlamaConfig

    from chatbot.backends.batched import GROWTH, _new_cache

    config = LlamaConfig(num_hidden_layers=2, hidden_size=16, num_attention_heads=2, num_key_value_heads=1, vocab_size=32)
    cache = _new_cache(type("Model", (), {"config": config})())
    layer = cache.layers[0]
    steps = [torch.randn(2, 1, 3, 4)] + [torch.randn(2, 1, 1, 4) for _ in range(GROWTH + 1)]
    buffers = set()
    for new in steps:
        keys, values = cache.update(new, -new, 0)
        buffers.add(layer._key_room.data_ptr())
    assert keys.shape == (2, 1, 4 + GROWTH, 4) and torch.equal(keys, torch.cat(steps, dim=-2)) and torch.equal(values, -keys)
    assert len(buffers) == 2  # room for GROWTH more, then one move once full
    layer.keys, layer.values = layer.keys[:1], layer.values[:1]  # a row left: the next token moves the rest once
    keys, _ = cache.update(steps[1][:1], steps[1][:1], 0)
    assert torch.equal(keys, torch.cat([*[s[:1] for s in steps], steps[1][:1]], dim=-2)) and layer._key_room.shape[0] == 1
