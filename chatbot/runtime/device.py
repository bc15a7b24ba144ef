"""Where a model runs and with how many threads."""

from __future__ import annotations

import os

from functools import cache
from pathlib import Path

from chatbot.defaults import THREADS_ENV


def thread_count() -> int:
    """``$CHATBOT_THREADS``, else every core."""
    return int(os.environ.get(THREADS_ENV) or os.cpu_count() or 1)


def set_threads() -> None:
    """Use an explicit torch thread count (see :func:`thread_count`): two busy threads on two busy cores collapse."""
    import torch

    torch.set_num_threads(thread_count())


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def use_bf16(precision: str, device: str) -> bool:
    """Whether to compute under bf16 autocast: asked for, or ``auto`` on a GPU that computes bf16."""
    import torch

    if precision != "auto":
        return precision == "bf16"
    return device.startswith("cuda") and torch.cuda.is_bf16_supported()


@cache
def cpu_computes_bf16() -> bool:
    """Whether this CPU has bf16 dot-product instructions (AVX512-BF16 or AMX): there bf16 weights halve the memory read
    per token at no cost in speed; elsewhere oneDNN emulates bf16 and float32 is faster."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
