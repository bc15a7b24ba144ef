"""Many LoRA adapters on one base model, each row of a batch with its own (punica's and LoRAX's
gathered matmuls, here on the CPU too).

Every linear layer an adapter targets is wrapped in :class:`MultiLoraLinear`, which holds the A and
B matrices of every *resident* adapter stacked by slot. :class:`AdapterSlots` decides which adapter
sits in which slot: it loads an adapter's peft files on demand into a free slot and, when all are
taken, evicts the least recently used one that no running request holds (LoRAX's dynamic adapter
loading), so the number of registered skills is not bounded by memory. A forward pass reads the slot
of each row (slot 0: no adapter) and adds ``(x A_row^T) (scale_row B_row)^T`` with two batched
matmuls, whatever mix of adapters the batch holds.

Each layer keeps the rows' A and scaled B, gathered from the slots in the compute dtype, from one
forward pass to the next while the batch's rows and the adapters in their slots stay the same: a
decoding step reads them and copies nothing, where gathering them again at every step copied and
converted one adapter per row. They cost at most ``max_batch`` adapters once more, in that dtype.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from chatbot.errors import ServerFault

PEFT_PREFIX = "base_model.model."


class MultiLoraLinear(nn.Module):
    """A base linear layer plus the LoRA of each row's adapter."""

    def __init__(self, base: nn.Linear, slots: AdapterSlots) -> None:
        super().__init__()
        self.base = base
        self.slots = slots
        device = base.weight.device
        # every slot's room is reserved up front but left untouched (torch.empty): on CPU the OS gives a page memory only
        # when a slot's adapter is first written there, so a skill costs its own adapter's memory, and slots never move
        self.a = torch.empty(slots.capacity + 1, slots.rank, base.in_features, dtype=slots.dtype, device=device)
        self.b = torch.empty(slots.capacity + 1, base.out_features, slots.rank, dtype=slots.dtype, device=device)
        self.a[0].zero_()  # slot 0: no adapter
        self.b[0].zero_()
        self._gathered: tuple[object, torch.Tensor, torch.Tensor] | None = None  # (key, [rows, in, r], [rows, r, out])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base(x)
        if self.slots.rows is None:
            return y
        a, b = self._rows(x.dtype)
        return torch.baddbmm(y, torch.bmm(x, a), b)

    def _rows(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's A^T and (scale B)^T in *dtype*, gathered again only when the rows or their slots' adapters change."""
        key = (self.slots.rows_key, dtype)
        if self._gathered is None or self._gathered[0] != key:
            self._gathered = None  # the old rows' memory goes before the new rows' is taken
            rows = self.slots.rows
            a = self.a.index_select(0, rows).to(dtype).transpose(1, 2).contiguous()
            b = (self.b.index_select(0, rows).to(dtype) * self.slots.row_scale.to(dtype)).transpose(1, 2).contiguous()
            self._gathered = (key, a, b)
        return self._gathered[1], self._gathered[2]


class AdapterSlots:
    """Which adapter sits in which slot of every :class:`MultiLoraLinear` of one model; an LRU cache.

    *capacity* adapters are resident at most; *dtype* is how their weights are kept (float32: the
    same numbers as peft; bfloat16: half the memory a skill costs).
    """

    def __init__(self, model: nn.Module, *, capacity: int = 16, rank: int = 16, dtype: torch.dtype = torch.float32) -> None:
        self.capacity, self.rank, self.dtype = capacity, rank, dtype
        self.scale = torch.zeros(capacity + 1, device=next(model.parameters()).device)
        self.allocated = 1  # slots given out so far, slot 0 included: up to capacity + 1
        self.rows: torch.Tensor | None = None  # the slot of each row of the batch being run; None: no adapter in it
        self.row_scale: torch.Tensor | None = None  # [rows, 1, 1]: each row's LoRA scale, looked up once a forward pass
        self.rows_key: tuple[tuple[int, ...], tuple[int, ...]] | None = None  # the rows' slots and what was loaded into them
        self._loaded = [0] * (capacity + 1)  # per slot: adapters loaded into it so far (rows gathered from an earlier one are stale)
        self._where: OrderedDict[str, tuple[int, tuple[int, ...] | None]] = OrderedDict()  # adapter folder -> (slot, files' stamp), LRU order
        self._held: dict[int, int] = {}  # slot -> requests using it
        self._lock = threading.Lock()
        self.layers: dict[str, MultiLoraLinear] = {}
        self.loads = 0  # adapters loaded from disk so far (a reload after an eviction counts)
        for name, module in list(model.named_modules()):
            for child_name, child in list(module.named_children()):
                if isinstance(child, nn.Linear) and not _is_head(name, child_name):
                    wrapped = MultiLoraLinear(child, self)
                    setattr(module, child_name, wrapped)
                    self.layers[f"{name}.{child_name}" if name else child_name] = wrapped

    def run_rows(self, slots: list[int] | None) -> None:
        """The slot of each row of the next forward passes (None, or all 0: no adapter in the batch)."""
        if not slots or not any(slots):
            self.rows = self.row_scale = self.rows_key = None
            return
        self.rows_key = (tuple(slots), tuple(self._loaded[slot] for slot in slots))
        self.rows = torch.tensor(slots, device=self.scale.device)
        self.row_scale = self.scale.index_select(0, self.rows).view(-1, 1, 1)

    def resident(self) -> list[str]:
        """The adapters in memory, least recently used first."""
        return list(self._where)

    def acquire(self, adapter: str | None, stamp: tuple[int, ...] | None = None) -> int:
        """The slot of *adapter* (0 for none), loading it if needed; held until :meth:`release`."""
        if adapter is None:
            return 0
        with self._lock:
            found = self._where.get(adapter)
            if found is not None and (stamp is None or found[1] == stamp):
                self._where.move_to_end(adapter)
                slot = found[0]
            else:
                slot = found[0] if found is not None and not self._held.get(found[0]) else self._free_slot()
                if found is not None:
                    del self._where[adapter]
                self._load(adapter, slot)
                self._where[adapter] = (slot, stamp)
            self._held[slot] = self._held.get(slot, 0) + 1
            return slot

    def release(self, slot: int) -> None:
        if slot:
            with self._lock:
                self._held[slot] -= 1

    def _free_slot(self) -> int:
        used = {slot for slot, _ in self._where.values()}
        for slot in range(1, self.allocated):
            if slot not in used:
                return slot
        if self.allocated < self.capacity + 1:
            slot, self.allocated = self.allocated, self.allocated + 1
            return slot
        for adapter, (slot, _) in self._where.items():  # least recently used first
            if not self._held.get(slot):
                del self._where[adapter]
                return slot
        raise ServerFault(f"all {self.capacity} adapter slots are in use by running requests",
                          hint="raise CHATBOT_ADAPTER_SLOTS or lower the batch size")

    def _load(self, adapter: str, slot: int) -> None:
        from safetensors.torch import load_file

        folder = Path(adapter)
        try:
            config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
            weights = load_file(folder / "adapter_model.safetensors")
        except FileNotFoundError:
            raise ServerFault(f"{adapter}: no adapter there (adapter_config.json or adapter_model.safetensors missing)",
                              hint="train the skill with `chatbot train`") from None
        if config.get("use_dora") or config.get("modules_to_save"):
            raise ServerFault(f"{adapter}: DoRA and modules_to_save are not supported by the batched engine",
                              hint="use the reference engine: CHATBOT_ENGINE=reference")
        rank, alpha = int(config["r"]), float(config.get("lora_alpha", config["r"]))
        if rank > self.rank:
            raise ServerFault(f"{adapter}: LoRA rank {rank} is above the engine's {self.rank}", hint="set CHATBOT_MAX_LORA_RANK")
        for layer in self.layers.values():
            layer.a[slot].zero_()
            layer.b[slot].zero_()
        for key, tensor in weights.items():
            name = key.removeprefix(PEFT_PREFIX)
            for part, field in ((".lora_A.weight", "a"), (".lora_B.weight", "b")):
                if name.endswith(part):
                    layer = self.layers.get(name.removesuffix(part))
                    if layer is None:
                        raise ServerFault(f"{adapter}: {key} targets no linear layer of the base model", hint="was it trained on another base?")
                    target = getattr(layer, field)[slot]
                    if field == "a":
                        target[:rank].copy_(tensor)
                    else:
                        target[:, :rank].copy_(tensor)
        self.scale[slot] = alpha / (rank ** 0.5 if config.get("use_rslora") else rank)
        self._loaded[slot] += 1
        self.loads += 1


def _is_head(parent: str, child: str) -> bool:
    """The output layer, which peft's ``all-linear`` leaves out."""
    return child in ("lm_head", "embed_out") and parent in ("", "model")
