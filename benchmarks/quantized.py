"""Benchmark: what int8 weights do to each skill's answers. Every local skill of `models.yaml` that
has a validation file is scored on it by `chatbot eval --json`, once with the base as it loads
(float32 on a CPU, the default) and once with `CHATBOT_ENGINE_QUANT=int8`; the table shows both and
the difference in points of the skill's own metric (issue 11's bar for a quantized engine: within 1).

    .venv/bin/python benchmarks/quantized.py [--registry models.yaml] [--out DIR]

The evaluations run on a copy of the registry in a temporary folder (`chatbot eval` stores its
scores in the registry it reads), linked to the adapters and data. On the repository's
`models.yaml`, missing demo adapters are trained first (`bash scripts/demo.sh --train-only`). It
saves benchmarks/quantized.json and renders its section of benchmarks/RESULTS.md and the README.
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
from load import train_missing, workspace  # noqa: E402
from results import ROOT, Output, now, publish, shown  # noqa: E402

NAME, TITLE = "quantized", "int8 weights and each skill's metric"
CHATBOT = str(Path(sys.executable).with_name("chatbot"))
MODES = {"float32": {}, "int8": {"CHATBOT_ENGINE_QUANT": "int8"}}
BAR_POINTS = 1.0


def evaluate(registry: Path, name: str, data: Path, env: dict[str, str]) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    done = subprocess.run([CHATBOT, "eval", name, "--data", str(data), "--json", "--registry", str(registry)], check=True, text=True,
                          stdout=subprocess.PIPE, env=os.environ | env, cwd=registry.parent)
    return json.loads(done.stdout), time.perf_counter() - started


def measure(registry: Path) -> dict[str, Any]:
    train_missing(registry)
    skills = yaml.safe_load(registry.read_text(encoding="utf-8"))["skills"]
    found: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="quantized-") as tmp:
        copy = workspace(registry, Path(tmp))
        for name, skill in skills.items():
            valid = (skill.get("training") or {}).get("valid_file")
            if skill.get("backend", "local") != "local" or not valid:
                continue
            data = registry.parent / valid
            scores = {}
            for mode, env in MODES.items():
                result, seconds = evaluate(copy, name, data, env)
                scores[mode] = {"score": result[result["metric"]], "seconds": round(seconds, 1)}
                print(f"  {name} {mode}: {result['metric']} {scores[mode]['score']:.4f} ({seconds:.0f}s)", flush=True)
            found[name] = {"kind": skill["kind"], "metric": result["metric"], "rows": result["n"], "data": shown(data), **scores,
                           "points": 100 * (scores["int8"]["score"] - scores["float32"]["score"])}
    if not found:
        raise SystemExit(f"{registry}: no local skill with a validation file")
    return {"measured_at": now(), "registry": shown(registry), "skills": found, "cpu_cores": os.cpu_count(),
            "within_bar": all(abs(s["points"]) <= BAR_POINTS for s in found.values())}


def render(d: dict[str, Any]) -> str:
    lines = [
        f"Each local skill of `{d['registry']}` scored on its validation file by `chatbot eval`, its base's linear layers in float32 (the "
        "default) and in int8 with a scale per output channel (`CHATBOT_ENGINE_QUANT=int8`); the adapters stay as they are.",
        "",
        "| skill (metric, rows) | float32 | int8 | int8 − float32, points | eval s float32 / int8 |",
        "|---|---|---|---|---|",
    ]
    for name, s in d["skills"].items():
        lines.append(f"| {name} ({s['metric']}, {s['rows']}) | {s['float32']['score']:.3f} | {s['int8']['score']:.3f} | "
                     f"**{s['points']:+.1f}** | {s['float32']['seconds']:.0f} / {s['int8']['seconds']:.0f} |")
    verdict = "within" if d["within_bar"] else "not within"
    lines += ["", f"int8 is {verdict} {BAR_POINTS:.0f} point of float32 on every skill here; on {d['cpu_cores']} CPU cores.",
              "", "Command: `.venv/bin/python benchmarks/quantized.py`"]
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
