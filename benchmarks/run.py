"""Benchmark: the local engine, side by side with llama.cpp, plain transformers and the HF Trainer,
every figure measured in ONE run on this machine, with its baseline from the same run and the ratio.

    .venv/bin/python benchmarks/run.py [--quick] [--install-llama-cpp] [--base smollm2-135m] [--out DIR]

Rows (issue 11): decode tokens/s at batch 1 and time to first token (a ~200-token prompt, 128 new
tokens, greedy) for our engine with a LoRA skill, llama.cpp on the same GGUF with the same threads,
and transformers `generate` in fp32; aggregate tokens/s with 1, 4 and 8 concurrent requests on
different skills; resident memory with 1, 20 and 200 registered skills (LoRA adapters made for the
benchmark: r=16 on every linear layer, random weights) against 20 separately loaded models (one
measured, times 20), and the time to load a cold adapter; routing latency; a whole turn through
`Bot.reply` (route + prompt + 32 new tokens) against llama.cpp generating as many tokens from the
same prompt alone, without an adapter and with the turn's skill's LoRA set; LoRA training tokens/s on the job-ner file against the HF `Trainer` with the
same model, LoRA config, batch size and lengths; `chatbot serve` requests/s and p95 latency with 1
and 8 concurrent `openai`-client users on loopback.

llama.cpp (`llama-cpp-python`) is not a dependency: it builds from source in 5–20 minutes here.
`--install-llama-cpp` installs it (`pip install llama-cpp-python==0.3.36`); without it, its rows say
how. `--quick` runs every row small (the tests use it on the tiny model: rows and keys, never
timings). It writes benchmarks/results.json and its section of benchmarks/RESULTS.md and the README.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import free_port, wait_ready  # noqa: E402
from results import SHARED, Output, now, publish  # noqa: E402

NAME, TITLE = "results", "Local engine against llama.cpp, transformers and the HF Trainer"
CHATBOT = str(Path(sys.executable).with_name("chatbot"))
LLAMA_CPP = "llama-cpp-python==0.3.36"
JOB_NER = SHARED / "data" / "job-ner" / "train.jsonl"
FULL = {"prompt_tokens": 200, "new_tokens": 128, "sessions": (1, 4, 8), "skills": (1, 20, 200), "naive": 20, "route_messages": 200,
        "turns": 10, "turn_tokens": 32, "train_rows": 60, "server_seconds": 30.0, "server_tokens": 16, "repeats": 3}
DECODERS = ("ours", "ours_float32", "ours_int8", "ours_llamacpp", "reference", "transformers", "llamacpp")
QUICK = {"prompt_tokens": 40, "new_tokens": 16, "sessions": (1, 4, 8), "skills": (1, 4, 8), "naive": 4, "route_messages": 20,
         "turns": 3, "turn_tokens": 8, "train_rows": 8, "server_seconds": 3.0, "server_tokens": 4, "repeats": 1}
TEXT = ("The shop repairs city bikes, road bikes and e-bikes. A standard service covers the brakes, the gears, the chain and "
        "the wheels, and takes about an hour. Customers book a slot online or at the counter, and we call when the bike is ready. ")
MESSAGES = ["When are you open on Saturday?", "How much is a tune-up?", "Book my Trek for Friday", "The brakes squeak after the repair",
            "Write a description of the red helmet", "hello there", "Can you fix a flat tire?", "Do you sell e-bike batteries?"]


def threads() -> int:
    return int(os.environ.get("CHATBOT_THREADS") or os.cpu_count() or 1)


# -- adapters made for the benchmark ------------------------------------------------------------------

def make_adapters(base: str, folder: Path, count: int) -> list[str]:
    """*count* LoRA adapters (r=16, every linear layer, random B so each skill answers differently)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from chatbot.runtime.base_models import load_model

    model = get_peft_model(load_model(base), LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", task_type="CAUSAL_LM"))
    paths = []
    for i in range(count):
        torch.manual_seed(i)
        with torch.no_grad():
            for name, weight in model.named_parameters():
                if "lora_B" in name:
                    weight.normal_(0, 0.02)
        path = folder / f"skill-{i}"
        model.save_pretrained(path)
        paths.append(str(path))
    return paths


def prompt_of(tokenizer: Any, tokens: int) -> str:
    ids = tokenizer((TEXT * (tokens // 20 + 2)), add_special_tokens=False)["input_ids"][: tokens - 6]
    return tokenizer.decode(ids) + "\n\n###\n\n"


# -- decoding ----------------------------------------------------------------------------------------

def ours_decode(backend: Any, base: str, adapter: str, prompt: str, new_tokens: int) -> dict[str, float]:
    """Our engine through the Backend interface: time to the first piece, then decode tokens/s."""
    from chatbot.backends.base import GenerationRequest

    request = GenerationRequest(prompt=prompt, base_model=base, adapter=adapter, max_tokens=new_tokens, stop=[])
    started = time.perf_counter()
    stream = backend.stream(request)
    first = None
    while True:
        try:
            next(stream)
            first = first or time.perf_counter()
        except StopIteration as done:
            completion = done.value
            break
    ended = time.perf_counter()
    first = first or ended
    return {"first_token_s": first - started, "decode_tps": (completion.completion_tokens - 1) / max(ended - first, 1e-9),
            "tokens": completion.completion_tokens}


def engine_decode(backend: Any, base: str, adapter: str, prompt: str, new_tokens: int, repeats: int) -> dict[str, float]:
    """:func:`ours_decode`, the median of *repeats* runs after a short warm-up (the adapter loaded beforehand)."""
    backend.preload(base, adapter)
    ours_decode(backend, base, adapter, prompt, 4)
    return median_of([ours_decode(backend, base, adapter, prompt, new_tokens) for _ in range(repeats)])


def transformers_decode(base: str, prompt: str, new_tokens: int, device: str = "cpu", batch: int = 1) -> dict[str, float]:
    """Plain transformers `generate`, greedy, the base alone (what the tutorials run): fp32 on a CPU, bf16 elsewhere
    (``load_model``'s choice). With *batch* > 1, the prompt repeated in as many rows; ``tps`` counts every row's tokens."""
    import torch

    from chatbot.runtime.base_models import load_model, load_tokenizer

    tokenizer, model = load_tokenizer(base), load_model(base, device).eval()
    inputs = tokenizer([prompt] * batch, add_special_tokens=False, return_tensors="pt").to(device)
    ids = inputs["input_ids"]

    def timed(tokens: int) -> tuple[Any, float]:
        started = time.perf_counter()
        out = model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        if device != "cpu":
            torch.cuda.synchronize()
        return out, time.perf_counter() - started

    with torch.inference_mode():
        first = timed(1)[1]
        out, total = timed(new_tokens)
    made = int(out.shape[1] - ids.shape[1])
    return {"first_token_s": first, "decode_tps": (made - 1) / max(total - first, 1e-9), "tokens": made, "tps": batch * made / total}


def llama_cpp_model(gguf: Path) -> Any | None:
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    return Llama(model_path=str(gguf), n_threads=threads(), n_threads_batch=threads(), n_ctx=2048, verbose=False)


def llama_cpp_decode(llm: Any, prompt: str, new_tokens: int) -> dict[str, float]:
    llm.reset()  # llama-cpp-python keeps the last prompt's KV cache: the same prompt again would skip its reading
    started, first, made = time.perf_counter(), None, 0
    for _ in llm.create_completion(prompt, max_tokens=new_tokens, temperature=0.0, stream=True, logit_bias={llm.token_eos(): -1e9}):
        made += 1
        first = first or time.perf_counter()
    ended = time.perf_counter()
    first = first or ended
    return {"first_token_s": first - started, "decode_tps": (made - 1) / max(ended - first, 1e-9), "tokens": made}


def llama_cpp_alone(job: dict[str, Any]) -> Any:
    """llama.cpp as its users run it (call it with :func:`apart`): decoding as :func:`llama_cpp_decode`, or the seconds of
    each of a bot's turns (its prompt and the tokens the bot made)."""
    llm = llama_cpp_model(Path(job["gguf"]))
    if job["kind"] == "decode":
        return median_of([llama_cpp_decode(llm, job["prompt"], job["new_tokens"]) for _ in range(job["repeats"])])
    from chatbot.backends.llama_cpp_engine import set_lora

    loras = _llama_cpp_loras(llm, Path(job["gguf"]), {lora for _, _, lora in job["turns"] if lora}) if job.get("lora") else {}
    seconds, current = [], None
    for prompt, made, lora in job["turns"]:  # each turn's prompt, the tokens our bot made for it, and its skill's adapter
        started = time.perf_counter()
        if job.get("lora") and lora != current:  # the turn's adapter set as a llama-cpp-python user switches it
            set_lora(llm, loras.get(lora))
            current = lora
        llm.reset()
        llm.create_completion(prompt, max_tokens=made, temperature=0.0, logit_bias={llm.token_eos(): -1e9})
        seconds.append(time.perf_counter() - started)
    return seconds


def _llama_cpp_loras(llm: Any, gguf: Path, adapters: set[str]) -> dict[str, Any]:
    """llama.cpp's handle of each peft adapter, converted to a GGUF LoRA file and loaded beforehand (as a bot's warm-up does)."""
    import llama_cpp

    from chatbot.backends.gguf_lora import cached_gguf_lora

    with tempfile.TemporaryDirectory(prefix="gguf-lora-") as cache:
        return {adapter: llama_cpp.llama_adapter_lora_init(llm._model.model, str(cached_gguf_lora(Path(adapter), gguf, Path(cache))).encode())
                for adapter in sorted(adapters)}  # llama.cpp reads the whole file on init


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def aggregate(backend: Any, base: str, adapters: list[str], prompt: str, new_tokens: int, sessions: int) -> dict[str, float]:
    """*sessions* requests at once, each on a different skill: tokens made by all / wall time."""
    from chatbot.backends.base import GenerationRequest

    requests = [GenerationRequest(prompt=prompt, base_model=base, adapter=adapters[i % len(adapters)], max_tokens=new_tokens, stop=[])
                for i in range(sessions)]
    started = time.perf_counter()
    with ThreadPoolExecutor(sessions) as pool:
        done = list(pool.map(backend.complete, requests))
    wall = time.perf_counter() - started
    return {"sessions": sessions, "tokens": sum(c.completion_tokens for c in done), "seconds": wall,
            "tps": sum(c.completion_tokens for c in done) / wall}


# -- memory --------------------------------------------------------------------------------------------

def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def asked_once(backend: Any, base: str, adapters: list[str], prompt: str) -> float:
    """Each skill asked once on *backend* (its adapter loaded, or evicted later); the median ms of an adapter's cold load."""
    from chatbot.backends.base import GenerationRequest

    backend.preload(base)
    cold = []
    for adapter in adapters:
        started = time.perf_counter()
        backend.preload(base, adapter)
        cold.append((time.perf_counter() - started) * 1000)
        backend.complete(GenerationRequest(prompt=prompt, base_model=base, adapter=adapter, max_tokens=1, stop=[]))
    return statistics.median(cold) if cold else 0.0


def rss_child(base: str, adapters: list[str], prompt: str) -> dict[str, float]:
    """In a fresh process: the engine with these skills registered, each asked once."""
    from chatbot.backends.batched import BatchedBackend

    cold = asked_once(BatchedBackend("cpu"), base, adapters, prompt)
    return {"rss_mb": rss_mb(), "cold_adapter_ms": cold}


def apart(kind: str, *args: Any, env: dict[str, str] | None = None) -> Any:
    """``CHILDREN[kind](*args)`` in a fresh process. Torch and llama.cpp share one OpenMP runtime in a process, and each
    thread that has run either keeps a team of OpenMP threads: with a second team, libgomp stops spinning between parallel
    regions, which took llama.cpp from 105 to 63 tokens/s here and doubled a route's time. So what a user runs alone (llama.cpp,
    the HF Trainer, a bot) is measured where nothing else has run; the engines are measured here, on the torch thread."""
    done = subprocess.run([sys.executable, __file__, "--_child", json.dumps([kind, args])], check=True, capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- routing and turns -------------------------------------------------------------------------------

def bot_registry(folder: Path, base: str, adapters: list[str], max_tokens: int) -> Path:
    skills = {}
    for i, adapter in enumerate(adapters):
        skills[f"skill-{i}"] = {"kind": "generate", "base_model": base, "adapter": adapter, "stop": [],
                                "generation": {"max_tokens": max_tokens}, "routing_examples": [MESSAGES[j] for j in range(len(MESSAGES))
                                                                                             if j % len(adapters) == i]}
    path = folder / "models.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "router": {"ask": False}, "skills": skills}))
    return path


def route_alone(registry: Path) -> dict[str, Any]:
    """Routing latency in a process where no engine has run yet (as `chatbot route` runs)."""
    from chatbot import registry as registries
    from chatbot.routing import router_for_registry
    from chatbot.routing.accuracy import latency

    p50, p95, n = latency(router_for_registry(registries.load(registry)), MESSAGES * 25)
    return {"p50": p50, "p95": p95, "messages": n}


def turns(registry: str, count: int) -> dict[str, Any]:
    """Whole turns through Bot.reply, and what each one asked of its model (the prompt, the tokens made)."""
    from chatbot.bot import Bot
    from chatbot.routing.accuracy import latency

    bot = Bot.from_registry(Path(registry))
    bot.warm_up()
    p50, p95, n = latency(bot.router, MESSAGES * 25)
    ours, asked = [], []
    for i in range(count):
        text = MESSAGES[i % len(MESSAGES)]
        started = time.perf_counter()
        reply = bot.reply(f"bench-{i}", text)
        ours.append(time.perf_counter() - started)
        if reply.skill:
            skill = bot.registry.skills[reply.skill]
            adapter = bot.registry.adapter_path(skill)
            asked.append((text + skill.separator, max(1, reply.usage.completion_tokens), str(adapter) if adapter else None))
    return {"route_ms": {"p50": p50, "p95": p95, "messages": n},
            "turn_s": {"ours_p50": statistics.median(ours), "ours_p95": _p95(ours), "turns": count}, "asked": asked}


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


# -- training ------------------------------------------------------------------------------------------

def training(base: str, rows: list[tuple[str, str]], precision: str = "fp32", device: str = "cpu", epochs: int = 1) -> dict[str, float]:
    """*epochs* of our trainer against the HF Trainer on *device*: same model (``load_model``'s weights for the device),
    LoRA config, batch size, lengths and *precision* (``bf16``: autocast for both, the HF Trainer's ``bf16=True``). Both
    timed from the first step to the last (`trainer.train()`; our training passes), without loading the model or saving
    the adapter."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Trainer, TrainingArguments

    from chatbot.runtime.base_models import load_model, training_tokenizer
    from chatbot.training.hyperparams import Hyperparameters
    from chatbot.training.trainer import encode, train_lora

    hp = Hyperparameters(n_epochs=epochs, batch_size=4, learning_rate_multiplier=0.2, precision=precision)
    with tempfile.TemporaryDirectory() as tmp:
        ours = train_lora(rows, Path(tmp) / "ours", base_model=base, hyperparameters=hp, device=device)
    tokens = ours.trained_tokens
    tokenizer = training_tokenizer(base)
    encoded = [encode(tokenizer, p, c, hp.max_length, 0.0)[0] for p, c in rows]
    n_prompt = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p, _ in rows]

    def collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        labels = torch.full((len(batch), width), -100)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n], mask[i, :n] = torch.tensor(b["input_ids"]), 1
            labels[i, b["prompt"]:n] = torch.tensor(b["input_ids"][b["prompt"]:])
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    model = get_peft_model(load_model(base, device), LoraConfig(r=hp.lora_r, lora_alpha=hp.lora_alpha, lora_dropout=hp.lora_dropout,
                                                        target_modules="all-linear", task_type="CAUSAL_LM"))
    data = [{"input_ids": ids, "prompt": min(p, len(ids) - 1)} for ids, p in zip(encoded, n_prompt)]
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(output_dir=tmp, per_device_train_batch_size=hp.batch_size, num_train_epochs=epochs, learning_rate=hp.learning_rate,
                                 report_to=[], save_strategy="no", logging_strategy="no", use_cpu=device == "cpu", remove_unused_columns=False,
                                 dataloader_num_workers=0, disable_tqdm=True, bf16=precision == "bf16")
        trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=collate)
        started = time.perf_counter()
        trainer.train()
        hf_s = time.perf_counter() - started
    hf_tokens = epochs * sum(len(ids) for ids in encoded)
    return {"ours": tokens / ours.fit_s, "hf_trainer": hf_tokens / hf_s, "ours_s": ours.fit_s, "ours_with_loading_s": ours.duration_s, "hf_trainer_s": hf_s,
            "tokens": tokens, "rows": len(rows)}


# -- the server ----------------------------------------------------------------------------------------

def server(registry: Path, seconds: float, max_tokens: int) -> dict[str, Any]:
    port = free_port()
    env = os.environ | {"CHATBOT_THREADS": str(threads())}
    log = registry.parent / "serve.log"
    process = subprocess.Popen([CHATBOT, "serve", "--port", str(port), "--no-fine-tuning"], cwd=registry.parent, env=env,
                               stdout=subprocess.DEVNULL, stderr=log.open("w"))
    try:
        wait_ready(f"http://127.0.0.1:{port}", process, log, timeout=300)
        return {f"users_{users}": asyncio.run(_users(f"http://127.0.0.1:{port}/v1", users, seconds, max_tokens)) for users in (1, 8)}
    finally:
        process.terminate()
        process.wait(timeout=60)


async def _users(url: str, users: int, seconds: float, max_tokens: int) -> dict[str, float]:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=url, api_key="unused", max_retries=0, timeout=600)
    times: list[float] = []
    stop_at = time.monotonic() + seconds

    async def user(n: int) -> None:
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            await client.chat.completions.create(model="chatbot", messages=[{"role": "user", "content": MESSAGES[(n + len(times)) % len(MESSAGES)]}],
                                                 max_tokens=max_tokens)
            times.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(user(n) for n in range(users)))
    wall = time.perf_counter() - started
    await client.close()
    return {"requests": len(times), "rps": len(times) / wall, "p50_ms": 1000 * statistics.median(times), "p95_ms": 1000 * _p95(times)}


# -- the run -------------------------------------------------------------------------------------------

def ensure_llama_cpp(install: bool) -> str | None:
    """The installed llama-cpp-python version, after installing it when asked; None without it."""
    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        if not install:
            return None
    print(f"installing {LLAMA_CPP} (builds from source: 5–20 minutes on 2 cores)", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", LLAMA_CPP], check=True)
    return metadata.version("llama-cpp-python")


def measure(base: str, quick: bool, install: bool, gguf: Path | None) -> dict[str, Any]:
    from chatbot.backends.batched import ADAPTER_SLOTS, BatchedBackend
    from chatbot.backends.llama_cpp_engine import LlamaCppBackend, gguf_of
    from chatbot.backends.local import LocalBackend
    from chatbot.runtime.base_models import bundled_gguf, load_tokenizer, resolve_base
    from chatbot.runtime.device import cpu_computes_bf16, set_threads
    from chatbot.runtime.torch_thread import on_a_thread_of_its_own  # threads that end with their work

    size = QUICK if quick else FULL
    set_threads()
    llama_version = ensure_llama_cpp(install)
    gguf = gguf or (bundled_gguf(base) if base == "smollm2-135m" else None)
    llama = bool(llama_version and gguf)
    tokenizer = load_tokenizer(base)
    prompt = prompt_of(tokenizer, size["prompt_tokens"])
    found: dict[str, Any] = {"measured_at": now(), "date": now(), "quick": quick, "base": base, "threads": threads(),
                             "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor() or platform.machine()},
                             "versions": {p: _version(p) for p in ("chatbot", "torch", "transformers", "peft", "llama-cpp-python")},
                             "prompt_tokens": len(tokenizer(prompt, add_special_tokens=False)["input_ids"]), "new_tokens": size["new_tokens"],
                             "turn_tokens": size["turn_tokens"], "llamacpp_cache_reset": True, "cpu_bf16": cpu_computes_bf16(),
                             "gguf": gguf.name if gguf else None}
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        folder = Path(tmp)
        most = max(max(size["skills"]), max(size["sessions"]))
        print(f"making {most} adapters", flush=True)
        adapters = on_a_thread_of_its_own(lambda: make_adapters(base, folder / "adapters", most))

        print("routing, before any engine has run", flush=True)
        bot_dir = folder / "bot"
        bot_dir.mkdir()
        registry = bot_registry(bot_dir, base, adapters[:4], size["turn_tokens"])
        found["route_ms_alone"] = route_alone(registry)

        print("decoding at batch 1", flush=True)
        engines: dict[str, Any] = {"ours": BatchedBackend("cpu", quantize="auto"), "ours_float32": BatchedBackend("cpu", quantize="float32"),
                                   "ours_int8": BatchedBackend("cpu", quantize="int8")}
        found["ours_precision"] = engines["ours"].quantize  # the default: bf16 where the CPU computes it, else float32
        if llama and gguf_of(base) is not None:  # the same GGUF on llama.cpp, each skill's adapter as a GGUF LoRA
            engines["ours_llamacpp"] = LlamaCppBackend()
        engines["reference"] = LocalBackend("cpu")
        decoded = {}
        for name, engine in engines.items():
            decoded[name] = on_a_thread_of_its_own(lambda engine=engine: engine_decode(engine, base, adapters[0], prompt, size["new_tokens"],
                                                                                       size["repeats"]))
        decoded["transformers"] = on_a_thread_of_its_own(lambda: median_of([transformers_decode(resolve_base(base), prompt, size["new_tokens"])
                                                               for _ in range(size["repeats"])]))
        if llama:
            decoded["llamacpp"] = apart("llama", {"kind": "decode", "gguf": str(gguf), "prompt": prompt, "new_tokens": size["new_tokens"],
                                                  "repeats": size["repeats"]})
        found["decode_tps"] = {name: decoded[name]["decode_tps"] if name in decoded else None for name in DECODERS}
        found["first_token_s"] = {name: decoded[name]["first_token_s"] if name in decoded else None for name in DECODERS}

        print("concurrent sessions on different skills", flush=True)
        found["aggregate"] = {}
        for name, engine in engines.items():
            for adapter in adapters[: max(size["sessions"])]:
                on_a_thread_of_its_own(lambda engine=engine, adapter=adapter: engine.preload(base, adapter))
            found["aggregate"][name] = {str(n): aggregate(engine, base, adapters, prompt, size["new_tokens"], n) for n in size["sessions"]}
        runs = found["aggregate"]["ours"]
        found["batch1_tps"] = runs["1"]["tps"]
        found["aggregate_tps_8_sessions"] = runs[str(max(size["sessions"]))]["tps"]
        del engines

        print("memory", flush=True)
        memory = {f"skills_{n}": apart("rss", base, adapters[:n], prompt) for n in size["skills"]}
        found["rss_mb"] = {key: m["rss_mb"] for key, m in memory.items()}
        found["rss_mb"][f"naive_{size['naive']}"] = size["naive"] * memory[f"skills_{size['skills'][0]}"]["rss_mb"]
        found["cold_adapter_ms"] = memory[f"skills_{size['skills'][-1]}"]["cold_adapter_ms"]
        found["skill_counts"], found["naive_count"] = list(size["skills"]), size["naive"]
        found["adapter_slots"] = ADAPTER_SLOTS

        print("routing and whole turns", flush=True)
        measured = apart("turns", str(registry), size["turns"])
        found["route_ms"], found["turn_s"] = measured["route_ms"], measured["turn_s"]
        alone = apart("llama", {"kind": "turns", "gguf": str(gguf), "turns": measured["asked"]}) if llama else None
        found["turn_s"]["llamacpp_p50"] = statistics.median(alone) if alone else None
        with_lora = apart("llama", {"kind": "turns", "gguf": str(gguf), "turns": measured["asked"], "lora": True}) if llama else None
        found["turn_s"]["llamacpp_lora_p50"] = statistics.median(with_lora) if with_lora else None
        if found["decode_tps"]["ours_llamacpp"] is not None:
            found["turn_s"]["ours_llamacpp_p50"] = apart("turns", str(registry), size["turns"], env={"CHATBOT_ENGINE": "llama-cpp"})["turn_s"]["ours_p50"]

        print("training", flush=True)
        found["train_tps"] = apart("training", base, _training_rows(size["train_rows"], quick))
        if cpu_computes_bf16():  # where bf16 autocast is faster (AVX512-BF16 or AMX)
            found["train_tps_bf16"] = apart("training", base, _training_rows(size["train_rows"], quick), "bf16")

        print("the server", flush=True)
        served = server(registry, size["server_seconds"], size["server_tokens"])
        found["server"] = {"rps_1": served["users_1"]["rps"], "rps_8": served["users_8"]["rps"], "p95_ms_1": served["users_1"]["p95_ms"],
                           "p95_ms_8": served["users_8"]["p95_ms"], "requests": {k: v["requests"] for k, v in served.items()}}
    found["llamacpp"] = llama_version or f"not installed: `.venv/bin/python benchmarks/run.py --install-llama-cpp` ({LLAMA_CPP}, builds 5–20 min)"
    return found


def _training_rows(n: int, quick: bool, path: Path = JOB_NER) -> list[tuple[str, str]]:
    if path.exists():
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()][:n]
        return [(r["prompt"], r["completion"]) for r in rows]
    if not quick:
        raise SystemExit(f"{path}: missing (the shared data sets belong beside the repository)")
    return [(f"We need python and {i} years of experience.\n\n###\n\n", f" skills:['python']\nexperience:['{i} years'] END") for i in range(n)]


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _ratio(ours: float | None, baseline: float | None) -> str:
    return f"{ours / baseline:.2f}×" if ours and baseline else "-"


def _also(ours: float | None, baseline: float | None) -> str:
    """A second ratio after the first, against another baseline of the same row (nothing without it)."""
    return f" · {_ratio(ours, baseline)}" if ours and baseline else ""


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def render(d: dict[str, Any]) -> str:
    dec, first, agg, rss, counts = d["decode_tps"], d["first_token_s"], d["aggregate"], d["rss_mb"], d["skill_counts"]
    one, naive = rss[f"skills_{counts[0]}"], rss[f"naive_{d['naive_count']}"]
    llama = dec["llamacpp"]
    size = "a quick run (small sizes, not the goals' settings)" if d["quick"] else "the goals' settings"
    lines = [
        f"One run of `benchmarks/run.py` ({size}) on {d['machine']['cpus']} CPU cores ({d['machine']['processor']}, {d['machine']['platform']}), "
        f"{d['threads']} threads; base `{d['base']}`; chatbot {d['versions']['chatbot']}, torch {d['versions']['torch']}, "
        f"transformers {d['versions']['transformers']}, peft {d['versions']['peft']}, llama.cpp: {d['llamacpp']}.",
        "",
        "| row | ours | baseline | ours / baseline |",
        "|---|---|---|---|",
        f"| decode tokens/s, batch 1, {d['prompt_tokens']}-token prompt, {d['new_tokens']} new tokens, greedy, a LoRA skill: "
        f"the batched engine (the default; its base in {d.get('ours_precision', 'float32')}: this CPU "
        f"{'computes' if d.get('cpu_bf16') else 'emulates'} bf16) | **{_f(dec['ours'])}** | llama.cpp ({d['gguf'] or '-'}): {_f(llama)} · transformers fp32 "
        f"(no adapter): {_f(dec['transformers'])} | {_ratio(dec['ours'], llama)} · {_ratio(dec['ours'], dec['transformers'])} |",
        *([f"| the same, base weights in float32 (`CHATBOT_ENGINE_QUANT=float32`, as the reference engine) "
           f"| **{_f(dec['ours_float32'])}** | llama.cpp: {_f(llama)} · transformers: {_f(dec['transformers'])} | "
           f"{_ratio(dec['ours_float32'], llama)} · {_ratio(dec['ours_float32'], dec['transformers'])} |"] if dec.get("ours_float32") else []),
        f"| the same, base in int8 (`CHATBOT_ENGINE_QUANT=int8`) | **{_f(dec['ours_int8'])}** | llama.cpp: {_f(llama)} · transformers: "
        f"{_f(dec['transformers'])} | {_ratio(dec['ours_int8'], llama)} · {_ratio(dec['ours_int8'], dec['transformers'])} |",
        *([f"| the same, llama.cpp engine (`CHATBOT_ENGINE=llama-cpp`: the GGUF above, the adapter as a GGUF LoRA) | "
           f"**{_f(dec['ours_llamacpp'])}** | llama.cpp without an adapter: {_f(llama)} | {_ratio(dec['ours_llamacpp'], llama)} |"]
          if dec.get("ours_llamacpp") else []),
        f"| the same, reference engine (peft, one request at a time: `CHATBOT_ENGINE=reference`) | {_f(dec['reference'])} | llama.cpp: "
        f"{_f(llama)} | {_ratio(dec['reference'], llama)} |",
        f"| time to first token, s (batched · int8 · reference) | {_f(first['ours'], 3)} · {_f(first['ours_int8'], 3)} · "
        f"{_f(first['reference'], 3)} | llama.cpp: {_f(first['llamacpp'], 3)}{'' if d.get('llamacpp_cache_reset') else ' (see below)'} · "
        f"transformers: {_f(first['transformers'], 3)} | "
        f"{_ratio(first['ours'], first['llamacpp'])} · {_ratio(first['ours'], first['transformers'])} |",
    ]
    labels = {"ours": f"batched, {d.get('ours_precision', 'float32')}", "ours_float32": "batched, float32", "ours_int8": "batched, int8", "reference": "reference", "ours_llamacpp": "llama.cpp engine"}
    for engine, runs in agg.items():
        own = runs["1"]["tps"]
        for n, run in runs.items():
            if n != "1":
                lines.append(f"| aggregate tokens/s, {n} concurrent requests on {n} different skills ({labels[engine]}) | **{_f(run['tps'])}** | "
                             f"its batch 1: {_f(own)} · llama.cpp batch 1: {_f(llama)} | {_ratio(run['tps'], own)} · {_ratio(run['tps'], llama)} |")
    for n in counts[1:]:
        lines.append(f"| resident MB with {n} skills (at most {d['adapter_slots']} adapters resident) | **{_f(rss[f'skills_{n}'], 0)}** | "
                     f"one skill: {_f(one, 0)} · {d['naive_count']} models "
                     f"loaded apart: {_f(naive, 0)} | +{(rss[f'skills_{n}'] - one) / (n - 1):.1f} MB a skill |")
    route, alone, turn, train, srv = d["route_ms"], d.get("route_ms_alone"), d["turn_s"], d["train_tps"], d["server"]
    lora_alone = f" · with each turn's LoRA set (the GGUF LoRA files our engine runs): {_f(turn['llamacpp_lora_p50'], 3)}" if turn.get("llamacpp_lora_p50") else ""
    lines += [
        f"| cold adapter load, ms (median) | {_f(d['cold_adapter_ms'])} | - | - |",
        *([f"| routing latency p50 / p95, ms ({alone['messages']} messages), before any engine has run | **{_f(alone['p50'])}** / "
           f"{_f(alone['p95'])} | - | - |"] if alone else []),
        f"| routing latency p50 / p95, ms ({route['messages']} messages), in the bot's process after its engine has run | "
        f"**{_f(route['p50'])}** / {_f(route['p95'])} | - | - |",
        f"| whole turn p50, s ({turn['turns']} turns through `Bot.reply`: route + prompt + up to {d['turn_tokens']} new tokens) | **{_f(turn['ours_p50'], 3)}** | "
        f"llama.cpp alone, same prompt and tokens: {_f(turn['llamacpp_p50'], 3)}{lora_alone} | {_ratio(turn['ours_p50'], turn['llamacpp_p50'])}"
        f"{_also(turn['ours_p50'], turn.get('llamacpp_lora_p50'))} |",
        *([f"| the same with the llama.cpp engine (`CHATBOT_ENGINE=llama-cpp`) | **{_f(turn['ours_llamacpp_p50'], 3)}** | llama.cpp alone: "
           f"{_f(turn['llamacpp_p50'], 3)}{lora_alone} | {_ratio(turn['ours_llamacpp_p50'], turn['llamacpp_p50'])}"
           f"{_also(turn['ours_llamacpp_p50'], turn.get('llamacpp_lora_p50'))} |"] if turn.get("ours_llamacpp_p50") else []),
        f"| LoRA training tokens/s, {train['rows']} job-ner rows, batch 4, 1 epoch, without loading and saving | **{_f(train['ours'])}** | HF Trainer: {_f(train['hf_trainer'])} | "
        f"{_ratio(train['ours'], train['hf_trainer'])} |",
        *([f"| the same under bf16 autocast (both: ours `--precision bf16`, the HF Trainer's `bf16=True`) | **{_f(bf16['ours'])}** | "
           f"HF Trainer bf16: {_f(bf16['hf_trainer'])} · HF Trainer fp32: {_f(train['hf_trainer'])} | "
           f"{_ratio(bf16['ours'], bf16['hf_trainer'])} · {_ratio(bf16['ours'], train['hf_trainer'])} |"] if (bf16 := d.get("train_tps_bf16")) else []),
        f"| `chatbot serve` requests/s, 1 / 8 `openai`-client users | **{_f(srv['rps_1'], 2)}** / **{_f(srv['rps_8'], 2)}** | 1 user: {_f(srv['rps_1'], 2)} | "
        f"{_ratio(srv['rps_8'], srv['rps_1'])} |",
        f"| `chatbot serve` p95 latency, ms, 1 / 8 users | {_f(srv['p95_ms_1'], 0)} / {_f(srv['p95_ms_8'], 0)} | - | - |",
        "",
        "The skills are adapters made for the benchmark (r=16 on every linear layer, random weights); `benchmarks/results.json` holds every "
        "figure. Command: `.venv/bin/python benchmarks/run.py`",
        "",
        "Routing and whole turns are measured in a fresh process, as a bot runs. There one thread runs torch with every core "
        "(`chatbot/runtime/torch_thread.py`): with a second thread running torch, each with an OpenMP team of its own, libgomp "
        "stops spinning between parallel regions and a message took about twice as long to route.",
        *([] if d.get("llamacpp_cache_reset") else [
            "", "This run let llama.cpp keep its KV cache between runs of the same prompt, so its time to first token (and part of its "
                "whole-turn time) skipped reading the prompt: those two llama.cpp figures are too low. The script now resets it; the next "
                "run measures them properly."]),
    ]
    return "\n".join(lines)


CHILDREN: dict[str, Callable[..., Any]] = {"rss": rss_child, "turns": turns, "llama": llama_cpp_alone, "training": training}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="every row, small: a few minutes")
    parser.add_argument("--base", default="smollm2-135m", help="base model (default: the bundled SmolLM2; llama.cpp reads its GGUF)")
    parser.add_argument("--gguf", type=Path, help="the GGUF llama.cpp runs (default: the bundled base's)")
    parser.add_argument("--install-llama-cpp", action="store_true", help=f"pip install {LLAMA_CPP} first (builds from source)")
    parser.add_argument("--out", type=Path, help="write results.json, RESULTS.md and README.md here instead of the repository")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args._child:
        kind, job = json.loads(args._child)
        print(json.dumps(CHILDREN[kind](*job)))
        return
    data = measure(args.base, args.quick, args.install_llama_cpp, args.gguf)
    print(publish(NAME, TITLE, data, render, Output(args.out)))


if __name__ == "__main__":
    main()
