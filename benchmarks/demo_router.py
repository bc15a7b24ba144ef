"""Benchmark: the demo bot's router on messages held out from its own skills, with the encoder as
shipped (the default below 1,000 examples: the mean cosine of the 3 nearest examples of each skill)
and with the encoder fine-tuned together with a prototype per skill (`--finetune always`).

    .venv/bin/python benchmarks/demo_router.py [--registry models.yaml] [--out DIR]

It runs what a user runs, `chatbot route eval --json` (held out: each skill's validation prompts,
half of the off-topic messages), with a fresh cache folder, saves the figures in
benchmarks/demo_router.json and renders its section of benchmarks/RESULTS.md and the README. The
tests run it on a small registry with `--out` (a folder of their own).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import ROOT, Output, now, publish, shown  # noqa: E402

NAME, TITLE = "demo_router", "Demo bot routing"
CHATBOT = str(Path(sys.executable).with_name("chatbot"))
HEADS = {"never": "MiniLM-L6 as shipped + 3 nearest examples (the default here)", "always": "MiniLM-L6 fine-tuned + a prototype per skill"}


def route_eval(registry: Path, cache: Path, finetune: str) -> dict[str, Any]:
    started = time.perf_counter()
    done = subprocess.run([CHATBOT, "route", "eval", "--registry", str(registry), "--json", "--cache-dir", str(cache), "--finetune", finetune],
                          check=True, text=True, stdout=subprocess.PIPE, env=os.environ | {"HF_HUB_OFFLINE": "1"})
    print(f"  route eval --finetune {finetune}: {time.perf_counter() - started:.0f}s", flush=True)
    return json.loads(done.stdout)


def measure(registry: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="demo-router-") as tmp:
        reports = {head: route_eval(registry, Path(tmp) / head, head) for head in HEADS}
    return {"measured_at": now(), "registry": shown(registry), "reports": reports, "cpu_cores": os.cpu_count()}


def render(d: dict[str, Any]) -> str:
    first = next(iter(d["reports"].values()))
    lines = [
        f"The router of `{d['registry']}` ({first['skills']} skills, {first['train_examples']} routing examples, "
        f"{first['train_out_of_scope']} off-topic messages for calibration), scored on messages held out from it "
        f"({first['test_in_scope']} in scope, {first['test_out_of_scope']} off-topic; {first['test']}).",
        "",
        "| router | in-scope accuracy | out-of-scope recall | oos precision | macro-F1 | fit s | latency p50 ms | threshold |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for head, r in d["reports"].items():
        precision = f"{r['oos_precision']:.3f}" if r["oos_precision"] is not None else "-"
        recall = f"**{r['oos_recall']:.3f}**" if r["oos_recall"] is not None else "-"
        lines.append(f"| {HEADS[head]} | **{r['in_scope_accuracy']:.3f}** | {recall} | {precision} | {r['macro_f1']:.3f} "
                     f"| {r['fit_seconds']:.1f} | {r['latency_ms_p50']:.1f} | {r['threshold']:.3f} |")
    lines += ["", f"On {d['cpu_cores']} CPU cores, cold cache. Command: `chatbot route eval` (this table: `.venv/bin/python benchmarks/demo_router.py`)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", type=Path, default=ROOT / "models.yaml")
    parser.add_argument("--out", type=Path, help="write the JSON, RESULTS.md and README.md here instead of the repository")
    args = parser.parse_args(argv)
    data = measure(args.registry.resolve())
    print(publish(NAME, TITLE, data, render, Output(args.out)))


if __name__ == "__main__":
    main()
