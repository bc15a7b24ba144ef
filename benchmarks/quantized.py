"""Benchmark: what smaller base weights do to each skill's answers. Every local skill of `models.yaml`
that has a validation file is scored on it by `chatbot eval --json`: with the base in float32 (`CHATBOT_ENGINE_QUANT=float32`,
as the reference path computes), with `=bf16` (the default where the CPU computes bf16) and `=int8`, and on the llama.cpp engine
(`CHATBOT_ENGINE=llama-cpp`: the shipped Q4_1 GGUF, the adapter as a GGUF LoRA) when llama-cpp-python is
installed and every base has a GGUF; the table shows each and its difference from float32 in points of the skill's own metric
(issue 11's bar for a quantized engine: within 1).

    .venv/bin/python benchmarks/quantized.py [--registry models.yaml] [--out DIR]

The evaluations run on a copy of the registry in a temporary folder (`chatbot eval` stores its
scores in the registry it reads), linked to the adapters and data. On the repository's
`models.yaml`, missing demo adapters are trained first (`bash scripts/demo.sh --train-only`). It
saves benchmarks/quantized.json and renders its section of benchmarks/RESULTS.md and the README.
"""

from __future__ import annotations

import argparse
import importlib.util
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
from load import train_missing, workspace  # noqa: E402
from results import ROOT, Output, now, publish, shown  # noqa: E402

from chatbot.backends.llama_cpp_engine import gguf_of  # noqa: E402
from chatbot.runtime.base_models import DEFAULT_BASE  # noqa: E402

NAME, TITLE = "quantized", "Smaller base weights and each skill's metric"
CHATBOT = str(Path(sys.executable).with_name("chatbot"))
MODES = {"float32": {"CHATBOT_ENGINE_QUANT": "float32"}, "bf16": {"CHATBOT_ENGINE_QUANT": "bf16"}, "int8": {"CHATBOT_ENGINE_QUANT": "int8"},
         "llama.cpp Q4_1": {"CHATBOT_ENGINE": "llama-cpp"}}
BAR_POINTS = 1.0


def evaluate(registry: Path, name: str, data: Path, env: dict[str, str]) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    done = subprocess.run([CHATBOT, "eval", name, "--data", str(data), "--json", "--registry", str(registry)], check=True, text=True,
                          stdout=subprocess.PIPE, env=os.environ | env, cwd=registry.parent)
    return json.loads(done.stdout), time.perf_counter() - started


def measure(registry: Path) -> dict[str, Any]:
    train_missing(registry)
    skills = yaml.safe_load(registry.read_text(encoding="utf-8"))["skills"]
    gguf = all(gguf_of(s.get("base_model") or DEFAULT_BASE) for s in skills.values() if s.get("backend", "local") == "local")
    modes = {mode: env for mode, env in MODES.items() if "llama" not in mode or (gguf and importlib.util.find_spec("llama_cpp"))}
    found: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="quantized-") as tmp:
        copy = workspace(registry, Path(tmp))
        for name, skill in skills.items():
            valid = (skill.get("training") or {}).get("valid_file")
            if skill.get("backend", "local") != "local" or not valid:
                continue
            data = registry.parent / valid
            scores = {}
            for mode, env in modes.items():
                result, seconds = evaluate(copy, name, data, env)
                scores[mode] = {"score": result[result["metric"]], "seconds": round(seconds, 1)}
                print(f"  {name} {mode}: {result['metric']} {scores[mode]['score']:.4f} ({seconds:.0f}s)", flush=True)
            found[name] = {"kind": skill["kind"], "metric": result["metric"], "rows": result["n"], "data": shown(data), **scores,
                           "points": {mode: 100 * (scores[mode]["score"] - scores["float32"]["score"]) for mode in modes if mode != "float32"}}
    if not found:
        raise SystemExit(f"{registry}: no local skill with a validation file")
    smaller = [mode for mode in modes if mode != "float32"]
    return {"measured_at": now(), "registry": shown(registry), "skills": found, "cpu_cores": os.cpu_count(), "modes": smaller,
            "within_bar": {mode: all(abs(s["points"][mode]) <= BAR_POINTS for s in found.values()) for mode in smaller},
            "never_below_bar": {mode: all(s["points"][mode] >= -BAR_POINTS for s in found.values()) for mode in smaller}}


def render(d: dict[str, Any]) -> str:
    modes = d["modes"]
    lines = [
        f"Each local skill of `{d['registry']}` scored on its validation file by `chatbot eval`: its base's weights in float32 "
        "(`CHATBOT_ENGINE_QUANT=float32`, as the reference path), in bfloat16 (`=bf16`, the default where the CPU computes bf16), in int8 with a scale per output channel "
        "(`=int8`), and the base's Q4_1 GGUF on llama.cpp "
        "(`CHATBOT_ENGINE=llama-cpp`) where llama-cpp-python is installed and the bases have GGUF files; the adapters stay as they are.",
        "",
        "| skill (metric, rows) | float32 | " + " | ".join(f"{m} (points)" for m in modes) + " | eval s: " + " / ".join(["float32", *modes]) + " |",
        "|---|---|" + "---|" * len(modes) + "---|",
    ]
    for name, s in d["skills"].items():
        lines.append(f"| {name} ({s['metric']}, {s['rows']}) | {s['float32']['score']:.3f} | "
                     + " | ".join(f"{s[m]['score']:.3f} (**{s['points'][m]:+.1f}**)" for m in modes) + " | "
                     + " / ".join(f"{s[m]['seconds']:.0f}" for m in ["float32", *modes]) + " |")
    below = d.get("never_below_bar", {})
    verdicts = "; ".join(f"{m}: {'within' if d['within_bar'][m] else 'not within'} {BAR_POINTS:.0f} point of float32 on every skill"
                         + (f" ({'none' if below[m] else 'some'} more than {BAR_POINTS:.0f} point below it)" if m in below else "")
                         for m in modes)
    lines += ["", f"{verdicts}; on {d['cpu_cores']} CPU cores.", "", "Command: `.venv/bin/python benchmarks/quantized.py`"]
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
