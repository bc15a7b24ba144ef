"""Benchmark: the demo bot under load. `chatbot serve` runs as a subprocess on a copy of the registry
(with an API key, on loopback) while concurrent clients talk to it for a while:

* chat completions through the official `openai` client (model `chatbot`: routed, no session),
* streamed chat completions (the same, `stream=True`; the time to the first token is kept too),
* sessions API turns (REST, 4 turns a session); afterwards every turn a client got a reply for must be
  stored in its session, at its place, with the reply the client got: lost turns are counted,
* one fine-tuning job at the same time: a training file uploaded, a job created (`n_epochs=1`) and
  followed until it ends, trained by the same server process,
* and a probe, in a process of its own (the clients' work never delays it), asking `/healthz` every
  0.5 s and timing each answer.

    .venv/bin/python benchmarks/load.py [--clients 50] [--seconds 60] [--quick] [--registry models.yaml] [--out DIR]

Each client sends its next request when the last one is answered; requests running at the deadline
are awaited (throughput: answers / time until the last one). The demo's adapters are git-ignored: on the
repository's models.yaml, those missing are trained first with `bash scripts/demo.sh --train-only`
(minutes each on 2 cores). The server writes its database, the job's model and its registration
into a temporary copy, never into the registry given. It saves benchmarks/load.json and renders its
section of benchmarks/RESULTS.md and the README. `--quick`: 8 clients for 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import ROOT, Output, now, publish, shown  # noqa: E402

NAME, TITLE = "load", "Demo bot under load"
CHATBOT = str(Path(sys.executable).with_name("chatbot"))
KEY = "load-benchmark-key"
KINDS = {"chat": "chat completions (`openai` client)", "stream": "streamed chat completions", "session": "sessions API turns (REST)"}
TURNS = 4  # a session's turns
TIMEOUT = 600.0  # seconds a client waits for one answer
PROBE_EVERY = 0.5
HEALTHZ_GOAL_MS = 100
QUICK = {"clients": 8, "seconds": 10.0}
JOB_DATA = ROOT / "training_data" / "small_talk_train.jsonl"


# -- the server -----------------------------------------------------------------------------------------------------


def train_missing(registry: Path) -> None:
    """Train the demo's missing adapters the way `make demo` does; any other registry must come trained."""
    skills = yaml.safe_load(registry.read_text(encoding="utf-8"))["skills"]
    missing = [name for name, skill in skills.items()
               if skill.get("adapter") and not (registry.parent / skill["adapter"] / "adapter_config.json").exists()]
    if not missing:
        return
    if registry != ROOT / "models.yaml":
        sys.exit(f"{registry}: no adapter for {', '.join(missing)}: train them first")
    print(f"training the demo's missing skills ({', '.join(missing)}): bash scripts/demo.sh --train-only", flush=True)
    subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh"), "--train-only"], check=True, cwd=ROOT)


def workspace(registry: Path, folder: Path) -> Path:
    """A copy of *registry* in *folder*, with links to every file or folder it names by a relative path
    (adapters, training data): the server's database, the job's adapter and its registration land in *folder*."""
    def links(value: Any) -> None:
        if isinstance(value, dict):
            for item in value.values():
                links(item)
        elif isinstance(value, list):
            for item in value:
                links(item)
        elif isinstance(value, str) and value not in ("", ".") and not Path(value).is_absolute() and "\n" not in value:
            source = registry.parent / value
            if source.exists() and not (folder / value).exists():
                (folder / value).parent.mkdir(parents=True, exist_ok=True)
                (folder / value).symlink_to(source.resolve(), target_is_directory=source.is_dir())

    links(yaml.safe_load(registry.read_text(encoding="utf-8")))
    shutil.copy(registry, folder / "models.yaml")
    return folder / "models.yaml"


def messages_of(registry: Path) -> list[str]:
    """What the clients say: each skill's held-out prompts (else its routing examples), and off-topic messages."""
    data = yaml.safe_load(registry.read_text(encoding="utf-8"))
    found: list[str] = []
    for skill in data["skills"].values():
        valid = (skill.get("training") or {}).get("valid_file")
        if valid and (registry.parent / valid).exists():
            rows = [json.loads(line) for line in (registry.parent / valid).read_text(encoding="utf-8").splitlines() if line.strip()]
            found += [row["prompt"].removesuffix(skill.get("separator", "\n\n###\n\n")).strip() for row in rows]
        else:
            found += skill.get("routing_examples", [])
    router = data.get("router") or {}
    found += router.get("out_of_scope", [])
    if router.get("out_of_scope_file") and (registry.parent / router["out_of_scope_file"]).exists():
        found += [line.strip() for line in (registry.parent / router["out_of_scope_file"]).read_text(encoding="utf-8").splitlines()
                  if line.strip()]
    return [text for text in found if text]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(registry: Path, port: int, log: Path, base_models: list[str]) -> subprocess.Popen:
    args = [CHATBOT, "serve", "--registry", str(registry), "--port", str(port), "--api-key", KEY]
    args += [arg for base in base_models for arg in ("--base-model", base)]
    return subprocess.Popen(args, cwd=registry.parent, stdout=subprocess.DEVNULL, stderr=log.open("w"),
                            env=os.environ | {"HF_HUB_OFFLINE": "1"})


def wait_ready(url: str, server: subprocess.Popen, log: Path, timeout: float = 900) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if server.poll() is not None:
            sys.exit(f"chatbot serve exited: {log.read_text(encoding='utf-8')[-3000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=5).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    sys.exit(f"chatbot serve was not ready in {timeout:.0f} s: {log.read_text(encoding='utf-8')[-3000:]}")


# -- the healthz probe: a process of its own, so that the clients' work never delays it ---------------------------------


def probe(url: str) -> None:
    """Ask /healthz every PROBE_EVERY seconds until terminated; one line a probe on stdout: unix time, ms, status."""
    with httpx.Client(timeout=10) as client:
        while True:
            started = time.perf_counter()
            try:
                status: int | str = client.get(url + "/healthz").status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            took = time.perf_counter() - started
            print(json.dumps([time.time(), took * 1000, status]), flush=True)
            time.sleep(max(0.0, PROBE_EVERY - took))


def start_probe(url: str, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--probe", url], stdout=out.open("w"))


def stop_probe(prober: subprocess.Popen, out: Path) -> list[tuple[float, float, int | str]]:
    prober.terminate()
    prober.wait(timeout=30)
    return [tuple(json.loads(line)) for line in out.read_text(encoding="utf-8").splitlines() if line.endswith("]")]


# -- the clients ------------------------------------------------------------------------------------------------------


@dataclass
class Record:
    kind: str
    started: float
    seconds: float
    error: str | None = None
    first_token: float | None = None


@dataclass
class Load:
    records: list[Record] = field(default_factory=list)
    sessions: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)  # session -> (turn, message, reply) answered


def _failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:200]}"


async def chat(client: Any, rng: random.Random, messages: list[str], load: Load, stream: bool) -> None:
    started = time.perf_counter()
    first = None
    try:
        request = {"model": "chatbot", "messages": [{"role": "user", "content": rng.choice(messages)}]}
        if stream:
            finish = None
            async for chunk in await client.chat.completions.create(**request, stream=True):  # an error event raises
                for choice in chunk.choices:
                    if choice.delta.content and first is None:
                        first = time.perf_counter() - started
                    finish = choice.finish_reason or finish
        else:
            finish = (await client.chat.completions.create(**request)).choices[0].finish_reason
        if finish is None:
            raise RuntimeError("an answer without a finish reason")
        load.records.append(Record("stream" if stream else "chat", started, time.perf_counter() - started, first_token=first))
    except Exception as exc:  # noqa: BLE001 - every failure is counted, with its reason
        load.records.append(Record("stream" if stream else "chat", started, time.perf_counter() - started, _failure(exc)))


async def session(http: httpx.AsyncClient, rng: random.Random, messages: list[str], load: Load, deadline: float) -> None:
    session_id = f"load-{uuid.uuid4().hex[:12]}"
    answered = load.sessions.setdefault(session_id, [])
    for _ in range(TURNS):
        if time.perf_counter() >= deadline:
            return
        text = rng.choice(messages)
        started = time.perf_counter()
        try:
            response = await http.post(f"/sessions/{session_id}/messages", json={"text": text})
            response.raise_for_status()
            reply = response.json()
            answered.append((reply["turn"], text, reply["text"]))
            load.records.append(Record("session", started, time.perf_counter() - started))
        except Exception as exc:  # noqa: BLE001
            load.records.append(Record("session", started, time.perf_counter() - started, _failure(exc)))
            return  # a turn that failed may or may not be stored: the session ends there


async def client_loop(index: int, url: str, messages: list[str], load: Load, deadline: float) -> None:
    import openai

    kind = list(KINDS)[index % len(KINDS)]
    rng = random.Random(index)
    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=TIMEOUT) as client, \
            httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=TIMEOUT) as http:
        while time.perf_counter() < deadline:
            if kind == "session":
                await session(http, rng, messages, load, deadline)
            else:
                await chat(client, rng, messages, load, stream=kind == "stream")


async def fine_tune(url: str, data: Path, base: str, kind: str) -> dict[str, Any]:
    """Upload *data*, create a job with one epoch and follow it until it ends."""
    import openai

    async with openai.AsyncOpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0, timeout=TIMEOUT) as client:
        started, clock = time.time(), time.perf_counter()
        try:
            uploaded = await client.files.create(file=(data.name, data.read_bytes()), purpose="fine-tune")
            job = await client.fine_tuning.jobs.create(model=base, training_file=uploaded.id, hyperparameters={"n_epochs": 1},
                                                       suffix="load", metadata={"kind": kind})
            created = time.time()
            while job.status not in ("succeeded", "failed", "cancelled"):
                await asyncio.sleep(1)
                job = await client.fine_tuning.jobs.retrieve(job.id)
        except Exception as exc:  # noqa: BLE001
            return {"status": "error", "error": _failure(exc), "window": [started, time.time()], "clock": [clock, time.perf_counter()]}
        return {"status": job.status, "error": job.error.message if job.error else None, "rows": len(data.read_text().splitlines()),
                "data": shown(data), "model": job.fine_tuned_model, "upload_s": round(created - started, 2),
                "seconds": round(time.time() - created, 1), "window": [started, time.time()], "clock": [clock, time.perf_counter()]}


async def lost_turns(url: str, load: Load) -> tuple[int, int]:
    """Turns answered to a client but not stored as answered (missing, moved or different); and the turns checked."""
    lost = checked = 0
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as http:
        for session_id, answered in load.sessions.items():
            if not answered:
                continue
            response = await http.get(f"/sessions/{session_id}")
            history = response.json()["history"] if response.status_code == 200 else []
            stored = {turn["index"]: (turn["user"], turn["reply"]) for turn in history}
            in_order = [turn["index"] for turn in history] == list(range(len(history)))
            for turn, text, reply in answered:
                checked += 1
                lost += not in_order or stored.get(turn) != (text, reply)
            lost += [turn for turn, _, _ in answered] != list(range(len(answered)))  # each reply is the session's next turn
    return lost, checked


async def run_load(url: str, clients: int, seconds: float, messages: list[str], job: tuple[Path, str, str] | None) -> dict[str, Any]:
    load = Load()
    started, wall = time.perf_counter(), time.time()
    deadline = started + seconds
    job_task = asyncio.create_task(fine_tune(url, *job)) if job else None
    await asyncio.gather(*(client_loop(i, url, messages, load, deadline) for i in range(clients)))
    elapsed = time.perf_counter() - started
    job_result = await job_task if job_task else None
    if job_result:
        job_result["after_start"] = round(job_result["window"][0] - wall, 1)
    lost, checked = await lost_turns(url, load)
    return {"load": load, "elapsed": elapsed, "job": job_result, "lost_turns": lost, "turns_checked": checked}


# -- figures ----------------------------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def summary(records: list[Record], elapsed: float) -> dict[str, Any]:
    ok = [r for r in records if r.error is None]
    firsts = [r.first_token for r in ok if r.first_token is not None]
    return {"answered": len(ok), "errors": len(records) - len(ok), "per_second": round(len(ok) / elapsed, 2),
            "p50_s": _round(percentile([r.seconds for r in ok], 50)), "p95_s": _round(percentile([r.seconds for r in ok], 95)),
            "first_token_p50_s": _round(percentile(firsts, 50)), "first_token_p95_s": _round(percentile(firsts, 95)),
            "error_samples": sorted({r.error for r in records if r.error})[:5]}


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").exists() else platform.processor()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory, 1) if memory else None, "os": platform.platform()}


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in ("chatbot", "torch", "transformers", "peft", "fastapi", "uvicorn", "sqlalchemy", "openai"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
        found["commit"] = commit
    except (OSError, subprocess.CalledProcessError):
        pass
    return found


def measure(registry: Path, clients: int, seconds: float, quick: bool, job_data: Path | None, job_base: str | None) -> dict[str, Any]:
    train_missing(registry)
    busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else None  # other work on the machine when the run starts
    with tempfile.TemporaryDirectory(prefix="load-") as tmp:
        served = workspace(registry, Path(tmp))
        port, log = free_port(), Path(tmp) / "serve.log"
        url = f"http://127.0.0.1:{port}"
        server = start_server(served, port, log, [job_base] if job_base else [])
        try:
            ready = wait_ready(url, server, log)
            print(f"ready after {ready:.1f} s; {clients} clients for {seconds:.0f} s", flush=True)
            prober = start_probe(url, Path(tmp) / "probes.jsonl")
            job = (job_data, job_base or "smollm2-135m", "qa") if job_data else None
            try:
                outcome = asyncio.run(run_load(url, clients, seconds, messages_of(registry), job))
            finally:
                samples = stop_probe(prober, Path(tmp) / "probes.jsonl")
        finally:
            server.terminate()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
        server_log = log.read_text(encoding="utf-8", errors="replace")
    load, elapsed, job = outcome["load"], outcome["elapsed"], outcome["job"]
    latencies = [ms for _, ms, status in samples if status == 200]
    during_job = [ms for at, ms, status in samples if status == 200 and job and job["window"][0] <= at <= job["window"][1]]
    in_job = [r for r in load.records if job and job["clock"][0] <= r.started <= job["clock"][1]]
    if job:
        del job["window"], job["clock"]
    return {
        "measured_at": now(), "quick": quick, "registry": shown(registry), "engine": os.environ.get("CHATBOT_ENGINE") or "batched",
        "clients": clients, "seconds": seconds, "turns_per_session": TURNS, "elapsed_s": round(elapsed, 1), "ready_s": round(ready, 1),
        "kinds": {kind: summary([r for r in load.records if r.kind == kind], elapsed) for kind in KINDS},
        "all": summary(load.records, elapsed),
        "during_job": {"started": len(in_job), **{f"{which}_{key}": summary(records, elapsed)[key] for which, records in
                                                  (("in", in_job), ("out", [r for r in load.records if id(r) not in {id(i) for i in in_job}]))
                                                  for key in ("p50_s", "p95_s")}},
        "sessions": sum(1 for answered in load.sessions.values() if answered), "turns_checked": outcome["turns_checked"],
        "lost_turns": outcome["lost_turns"],
        "healthz": {"probes": len(samples), "failed": sum(1 for _, _, status in samples if status != 200),
                    "p50_ms": _round(percentile(latencies, 50), 1), "p95_ms": _round(percentile(latencies, 95), 1),
                    "max_ms": _round(max(latencies, default=None), 1), "over_goal": sum(1 for ms in latencies if ms > HEALTHZ_GOAL_MS),
                    "max_during_job_ms": _round(max(during_job, default=None), 1), "p95_during_job_ms": _round(percentile(during_job, 95), 1),
                    "over_goal_during_job": sum(1 for ms in during_job if ms > HEALTHZ_GOAL_MS)},
        "job": job, "server_errors_logged": server_log.count("Traceback"),
        "threads": os.environ.get("CHATBOT_THREADS") or f"every core ({os.cpu_count()})",
        "machine": machine(), "load_average_before": _round(busy), "versions": versions(),
    }


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


ENGINES = {"batched": "concurrent requests decoded together, each row with its skill's LoRA adapter",
           "reference": "the skills' LoRA adapters switched per request, one generation at a time",
           "llama-cpp": "the base's GGUF on llama.cpp, the skills' adapters as GGUF LoRAs switched per request, one generation at a time"}


def render(d: dict[str, Any]) -> str:
    h, job = d["healthz"], d["job"]
    lines = [
        (f"`chatbot serve` on `{d['registry']}` ({d.get('engine', 'batched')} engine: one base model in memory, "
         f"{ENGINES.get(d.get('engine', 'batched'), '')}; SQLite), with an API key, on loopback. {d['clients']} clients for {d['seconds']:.0f} s"
         f"{' (a quick run)' if d['quick'] else ''}, each sending its next request when the last is answered, a third of them of each "
         f"kind; requests running at the deadline are awaited ({d['elapsed_s']:.0f} s in all). Messages: the skills' held-out "
         "prompts and off-topic ones, routed by model `chatbot`."),
        "",
        "| requests | answered | errors | per second | latency p50 s | p95 s | first token p50 / p95 s |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, title in KINDS.items():
        k = d["kinds"][kind]
        first = f"{_s(k['first_token_p50_s'])} / {_s(k['first_token_p95_s'])}" if k["first_token_p50_s"] is not None else "-"
        lines.append(f"| {title} | {k['answered']} | {k['errors']} | {k['per_second']:.2f} | {_s(k['p50_s'])} | {_s(k['p95_s'])} | {first} |")
    a = d["all"]
    lines.append(f"| **all** | **{a['answered']}** | **{a['errors']}** | **{a['per_second']:.2f}** | {_s(a['p50_s'])} | {_s(a['p95_s'])} | - |")
    lines += ["", (f"**Lost turns: {d['lost_turns']}** of the {d['turns_checked']} turns clients got a reply for, in {d['sessions']} sessions "
                   f"of up to {d['turns_per_session']} turns (each read back afterwards: stored at its place, with the reply sent). "
                   f"Errors: {a['errors']}" + (f" ({'; '.join(a['error_samples'])})" if a["error_samples"] else "")
                   + f"; tracebacks in the server's log: {d['server_errors_logged']}.")]
    lines += ["", (f"**`/healthz`** asked every {PROBE_EVERY} s by a process of its own ({h['probes']} probes, {h['failed']} failed): "
                   f"p50 {h['p50_ms']} ms, p95 {h['p95_ms']} ms, **max {h['max_ms']} ms**; {h['over_goal']} over {HEALTHZ_GOAL_MS} ms.")]
    if job:
        if job["status"] == "error":
            lines[-1] += f" The fine-tuning job could not be run: {job['error']}."
        else:
            lines[-1] += (f" The fine-tuning job ({job['rows']} rows of `{job['data']}`, `n_epochs=1`, uploaded and created "
                         f"{job['after_start']:.0f} s into the load, trained in a process of its own): **{job['status']}** after "
                         f"{job['seconds']:.0f} s{' (' + job['error'] + ')' if job['error'] else ''}; `/healthz` while it ran: "
                         f"p95 {h['p95_during_job_ms']} ms, max {h['max_during_job_ms']} ms, {h['over_goal_during_job']} over "
                         f"{HEALTHZ_GOAL_MS} ms.")
            j = d.get("during_job")
            if j and j["started"]:
                lines[-1] += (f" Requests started while it ran ({j['started']}): latency p50 {_s(j['in_p50_s'])} s, p95 {_s(j['in_p95_s'])} s"
                              + (f", against p50 {_s(j['out_p50_s'])} s, p95 {_s(j['out_p95_s'])} s for the others." if j["out_p50_s"] is not None
                                 else " (all of them: it trained through the whole load)."))
    m, v = d["machine"], d["versions"]
    lines += ["", (f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB (load average {d['load_average_before']} when the "
                   f"run started); torch threads: {d['threads']}; server ready {d['ready_s']:.0f} s after start. Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + "."),
              "", f"Command: `.venv/bin/python benchmarks/load.py --clients {d['clients']} --seconds {d['seconds']:.0f}` "
                  f"(`--quick`: {QUICK['clients']} clients, {QUICK['seconds']:.0f} s)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    if argv is None and sys.argv[1:2] == ["--probe"]:  # the healthz probe's own process
        return probe(sys.argv[2])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", type=Path, default=ROOT / "models.yaml")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK['clients']} clients for {QUICK['seconds']:.0f} s")
    parser.add_argument("--job-data", type=Path, default=JOB_DATA, help="the training file of the fine-tuning job")
    parser.add_argument("--job-base", help="the base model the job fine-tunes (default: the server's bundled one)")
    parser.add_argument("--no-job", action="store_true", help="no fine-tuning job during the load")
    parser.add_argument("--out", type=Path, help="write the JSON, RESULTS.md and README.md here instead of the repository")
    args = parser.parse_args(argv)
    clients, seconds = (QUICK["clients"], QUICK["seconds"]) if args.quick else (args.clients, args.seconds)
    data = measure(args.registry.resolve(), clients, seconds, args.quick, None if args.no_job else args.job_data.resolve(), args.job_base)
    print(publish(NAME, TITLE, data, render, Output(args.out)))


if __name__ == "__main__":
    main()
