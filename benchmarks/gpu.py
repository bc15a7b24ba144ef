"""Benchmark: the local engine on a GPU, against plain transformers and the HF Trainer on the same GPU, every figure
measured in ONE run with its baseline and the ratio.

    python benchmarks/gpu.py [--quick] [--base smollm2-135m] [--device cuda] [--train-data FILE] [--out DIR]
    python benchmarks/gpu.py --publish gpu.json     # back here: the section from what the GPU machine measured

Run it where a GPU is: it stops with a message where none is (``--device cpu`` runs the same rows on the CPU; the
tests use it with ``--quick`` on the tiny model, for rows and keys, never timings). Off the CPU, ``load_model`` loads
the base in bf16, for every engine here alike. Rows: decode tokens/s at batch 1 and time to first token (a ~200-token
prompt, 128 new tokens, greedy) with a LoRA skill, for the batched engine and the reference engine (peft, one request
at a time), against transformers `generate` (no adapter); aggregate tokens/s with up to 64 concurrent requests on as
many different skills, against the engine's own batch 1 and transformers `generate` with the prompt in as many rows
(no adapters); the batched engine's greedy answers against the reference engine's, 8 skills at once; device memory
with 1, 20 and 200 registered skills against 20 models loaded apart (one measured, times 20), and a cold adapter's
load; LoRA training tokens/s on the job-ner file against the HF `Trainer` (both bf16 autocast on the same weights,
batch 4). llama.cpp is not measured here: its GPU build is not part of the set-up (`benchmarks/run.py` measures it
on the CPU). It writes benchmarks/gpu.json and its section of benchmarks/RESULTS.md and the README.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import Output, now, publish  # noqa: E402
from run import (JOB_NER, _f, _ratio, _training_rows, _version, aggregate, asked_once, engine_decode, make_adapters, median_of, prompt_of,  # noqa: E402
                 rss_mb, training, transformers_decode)

NAME, TITLE = "gpu", "On a GPU: the local engine against transformers and the HF Trainer"
FULL = {"prompt_tokens": 200, "new_tokens": 128, "sessions": (1, 8, 32, 64), "skills": (1, 20, 200), "naive": 20, "same_tokens": 32,
        "train_rows": 60, "train_epochs": 5, "repeats": 3}
QUICK = {"prompt_tokens": 40, "new_tokens": 8, "sessions": (1, 4), "skills": (1, 4), "naive": 4, "same_tokens": 8,
         "train_rows": 8, "train_epochs": 1, "repeats": 1}


def memory_mb(device: str) -> float:
    """What the process holds on *device*: torch's allocated GPU memory, or the resident set on the CPU."""
    import torch

    if device == "cpu":
        return rss_mb()
    torch.cuda.synchronize()
    return torch.cuda.memory_allocated() / 2**20


def freed(device: str) -> None:
    import torch

    gc.collect()
    if device != "cpu":
        torch.cuda.empty_cache()


def skills_memory(device: str, base: str, adapters: list[str], prompt: str) -> dict[str, float]:
    """The engine with these skills registered, each asked once: the memory it added."""
    from chatbot.backends.batched import BatchedBackend

    freed(device)
    before = memory_mb(device)
    backend = BatchedBackend(device)
    cold = asked_once(backend, base, adapters, prompt)
    used = memory_mb(device) - before
    del backend
    freed(device)
    return {"mb": used, "cold_adapter_ms": cold}


def naive_memory(device: str, base: str, adapter: str) -> float:
    """One skill loaded the naive way, a model of its own: the base with its peft adapter."""
    from peft import PeftModel

    from chatbot.runtime.base_models import load_model

    freed(device)
    before = memory_mb(device)
    model = PeftModel.from_pretrained(load_model(base, device), adapter)
    used = memory_mb(device) - before
    del model
    freed(device)
    return used


def same_answers(device: str, base: str, adapters: list[str], prompt: str, tokens: int) -> dict[str, Any]:
    """The batched engine answering every skill at once, against the reference engine answering each alone (greedy)."""
    from concurrent.futures import ThreadPoolExecutor

    from chatbot.backends.base import GenerationRequest
    from chatbot.backends.batched import BatchedBackend
    from chatbot.backends.local import LocalBackend
    from chatbot.runtime.base_models import load_tokenizer

    requests = [GenerationRequest(prompt=prompt, base_model=base, adapter=a, max_tokens=tokens, stop=[]) for a in adapters]
    batched = BatchedBackend(device, max_batch=len(requests))
    batched.preload(base)
    with ThreadPoolExecutor(len(requests)) as pool:
        ours = [c.text for c in pool.map(batched.complete, requests)]
    reference = LocalBackend(device)
    theirs = [reference.complete(r).text for r in requests]
    tokenizer = load_tokenizer(base)
    prefix = [_common(tokenizer(a, add_special_tokens=False)["input_ids"], tokenizer(b, add_special_tokens=False)["input_ids"])
              for a, b in zip(ours, theirs)]
    return {"skills": len(requests), "identical": sum(a == b for a, b in zip(ours, theirs)), "tokens": tokens,
            "common_prefix_tokens": prefix, "batched_rows": max(batched.steps, default=0)}


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def measure(base: str, quick: bool, device: str, train_data: Path = JOB_NER) -> dict[str, Any]:
    import torch

    import chatbot
    from chatbot.backends.batched import ADAPTER_SLOTS, BatchedBackend
    from chatbot.backends.local import LocalBackend
    from chatbot.runtime.base_models import load_tokenizer, resolve_base
    from chatbot.runtime.torch_thread import on_a_thread_of_its_own

    size = QUICK if quick else FULL
    tokenizer = load_tokenizer(base)
    prompt = prompt_of(tokenizer, size["prompt_tokens"])
    gpu = torch.cuda.get_device_name(device) if device != "cpu" else None
    found: dict[str, Any] = {"measured_at": now(), "date": now(), "quick": quick, "base": base, "device": device,
                             "machine": {"gpu": gpu, "cpus": os.cpu_count(), "platform": platform.platform(),
                                         "cuda": torch.version.cuda if gpu else None},
                             "versions": {"chatbot": chatbot.__version__, **{p: _version(p) for p in ("torch", "transformers", "peft")}},
                             "prompt_tokens": len(tokenizer(prompt, add_special_tokens=False)["input_ids"]), "new_tokens": size["new_tokens"]}
    most = max(max(size["skills"]), max(size["sessions"]))
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        print(f"making {most} adapters", flush=True)
        adapters = on_a_thread_of_its_own(lambda: make_adapters(base, Path(tmp), most))

        print("decoding at batch 1", flush=True)
        sessions = max(size["sessions"])
        engines = {"ours": BatchedBackend(device, max_batch=sessions, adapter_slots=max(ADAPTER_SLOTS, sessions)),
                   "reference": LocalBackend(device)}
        decoded = {}
        for name, engine in engines.items():
            decoded[name] = on_a_thread_of_its_own(lambda engine=engine: engine_decode(engine, base, adapters[0], prompt, size["new_tokens"],
                                                                                       size["repeats"]))
        model = resolve_base(base)
        transformers_decode(model, prompt, 2, device)  # warm-up
        decoded["transformers"] = median_of([transformers_decode(model, prompt, size["new_tokens"], device) for _ in range(size["repeats"])])
        found["decode_tps"] = {name: d["decode_tps"] for name, d in decoded.items()}
        found["first_token_s"] = {name: d["first_token_s"] for name, d in decoded.items()}

        print("concurrent sessions on different skills", flush=True)
        ours = engines["ours"]
        for adapter in adapters[:sessions]:
            on_a_thread_of_its_own(lambda adapter=adapter, engine=ours: engine.preload(base, adapter))
        found["aggregate"] = {}
        for n in size["sessions"]:
            aggregate(ours, base, adapters, prompt, 2, n)  # warm-up: a batch of this size once
            ours.steps = []
            run = aggregate(ours, base, adapters, prompt, size["new_tokens"], n)
            run["rows_at_most"] = max(ours.steps, default=0)
            run["transformers_tps"] = transformers_decode(model, prompt, size["new_tokens"], device, batch=n)["tps"]
            found["aggregate"][str(n)] = run
        found["max_batch"] = sessions
        del engines, ours
        freed(device)

        print("greedy answers against the reference engine", flush=True)
        found["same"] = on_a_thread_of_its_own(lambda: same_answers(device, base, adapters[:8], prompt, size["same_tokens"]))
        freed(device)

        print("memory", flush=True)
        memory = {n: on_a_thread_of_its_own(lambda n=n: skills_memory(device, base, adapters[:n], prompt)) for n in size["skills"]}
        found["memory_mb"] = {f"skills_{n}": m["mb"] for n, m in memory.items()}
        found["memory_mb"]["naive_one"] = on_a_thread_of_its_own(lambda: naive_memory(device, base, adapters[0]))
        found["memory_mb"][f"naive_{size['naive']}"] = size["naive"] * found["memory_mb"]["naive_one"]
        found["cold_adapter_ms"] = memory[size["skills"][-1]]["cold_adapter_ms"]
        found["skill_counts"], found["naive_count"], found["adapter_slots"] = list(size["skills"]), size["naive"], ADAPTER_SLOTS

    print("training", flush=True)
    precision = "fp32" if device == "cpu" else "bf16"
    training(base, _training_rows(8, quick, train_data), precision, device)  # warm-up: each side's kernels loaded once
    found["train_tps"] = {**training(base, _training_rows(size["train_rows"], quick, train_data), precision, device, size["train_epochs"]),
                          "precision": precision, "epochs": size["train_epochs"]}
    return found


def render(d: dict[str, Any]) -> str:
    dec, first, agg, mem, counts, same, train = d["decode_tps"], d["first_token_s"], d["aggregate"], d["memory_mb"], d["skill_counts"], d["same"], d["train_tps"]
    machine = d["machine"]
    where = f"{machine['gpu']} (CUDA {machine['cuda']})" if machine["gpu"] else f"the CPU ({machine['cpus']} cores)"
    size = "a quick run (small sizes, not the goals' settings)" if d["quick"] else "the goals' settings"
    one, naive = mem[f"skills_{counts[0]}"], mem[f"naive_{d['naive_count']}"]
    unit = "GPU MB allocated" if machine["gpu"] else "resident MB added"
    lines = [
        f"One run of `benchmarks/gpu.py` ({size}) on {where}, {machine['platform']}; base `{d['base']}` "
        f"({'bf16 weights' if machine['gpu'] else 'fp32 weights'}); chatbot {d['versions']['chatbot']}, torch {d['versions']['torch']}, "
        f"transformers {d['versions']['transformers']}, peft {d['versions']['peft']}. llama.cpp is not measured here (see the CPU section).",
        "",
        "| row | ours | baseline | ours / baseline |",
        "|---|---|---|---|",
        f"| decode tokens/s, batch 1, {d['prompt_tokens']}-token prompt, {d['new_tokens']} new tokens, greedy, a LoRA skill: the batched "
        f"engine | **{_f(dec['ours'])}** | transformers `generate` (no adapter): {_f(dec['transformers'])} | {_ratio(dec['ours'], dec['transformers'])} |",
        f"| the same, reference engine (peft, one request at a time) | {_f(dec['reference'])} | transformers: {_f(dec['transformers'])} | "
        f"{_ratio(dec['reference'], dec['transformers'])} |",
        f"| time to first token, s (batched · reference) | {_f(first['ours'], 3)} · {_f(first['reference'], 3)} | transformers: "
        f"{_f(first['transformers'], 3)} | {_ratio(first['ours'], first['transformers'])} |",
    ]
    own = agg["1"]["tps"]
    for n, run in agg.items():
        if n != "1":
            lines.append(f"| aggregate tokens/s, {n} concurrent requests on {n} different skills (at most {run['rows_at_most']} rows a step) | "
                         f"**{_f(run['tps'])}** | its batch 1: {_f(own)} · transformers `generate`, {n} rows of one prompt, no adapters: "
                         f"{_f(run['transformers_tps'])} | {_ratio(run['tps'], own)} · {_ratio(run['tps'], run['transformers_tps'])} |")
    for n in counts[1:]:
        lines.append(f"| {unit} with {n} skills (at most {d['adapter_slots']} adapters resident) | **{_f(mem[f'skills_{n}'], 0)}** | "
                     f"one skill: {_f(one, 0)} · {d['naive_count']} models loaded apart (one, with its peft adapter, measured: "
                     f"{_f(mem['naive_one'], 0)}, times {d['naive_count']}): {_f(naive, 0)} | "
                     f"+{(mem[f'skills_{n}'] - one) / (n - 1):.1f} MB a skill |")
    lines += [
        f"| cold adapter load, ms (median) | {_f(d['cold_adapter_ms'])} | - | - |",
        f"| greedy answers, {same['tokens']} tokens, {same['skills']} skills decoded in one batch | **{same['identical']} of {same['skills']}** "
        f"identical | the reference engine, each alone | tokens alike from the start: {', '.join(map(str, same['common_prefix_tokens']))} |",
        f"| LoRA training tokens/s, {train['rows']} job-ner rows, batch 4, {train['epochs']} epochs, {train['precision']}, without loading "
        f"and saving | **{_f(train['ours'])}** | HF Trainer: {_f(train['hf_trainer'])} | {_ratio(train['ours'], train['hf_trainer'])} |",
        "",
        "The skills are adapters made for the benchmark (r=16 on every linear layer, random weights); `benchmarks/gpu.json` holds every "
        "figure. Command: `python benchmarks/gpu.py` on the GPU machine, then `python benchmarks/gpu.py --publish gpu.json` here.",
        "",
        "The one-skill figure is the base and the engine's adapter slots, allocated when the base loads: further skills cost nothing "
        "until the slots are full, and past them cold adapters are loaded on demand in place of the least recently used. At batch 1 a "
        "135M model leaves the GPU waiting on the host: each token is some hundreds of kernel launches issued from Python, for every "
        "engine here alike, so these rows measure the host's speed more than the GPU's, and they move between runs. A batch shares each "
        "launch among its rows, which is where the engine gains; capturing a step in a CUDA graph (a static KV cache) is what would "
        "lift batch 1 on a GPU, and is not done.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="every row, small: a few minutes")
    parser.add_argument("--base", default="smollm2-135m", help="base model (default: the bundled SmolLM2)")
    parser.add_argument("--device", default="cuda", help="where the engines run (default: cuda)")
    parser.add_argument("--train-data", type=Path, default=JOB_NER, help="the rows training reads (default: the shared job-ner file)")
    parser.add_argument("--publish", type=Path, metavar="GPU_JSON",
                        help="measure nothing: write the section from a gpu.json that a run on the GPU machine saved")
    parser.add_argument("--out", type=Path, help="write gpu.json, RESULTS.md and README.md here instead of the repository")
    args = parser.parse_args(argv)
    if args.publish:
        print(publish(NAME, TITLE, json.loads(args.publish.read_text(encoding="utf-8")), render, Output(args.out)))
        return
    if args.device != "cpu":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device here: run this on a GPU machine (or pass --device cpu to try the rows on the CPU)")
    print(publish(NAME, TITLE, measure(args.base, args.quick, args.device, args.train_data), render, Output(args.out)))


if __name__ == "__main__":
    main()
