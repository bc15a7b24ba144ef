"""Benchmark: which epoch to register. Each demo skill is trained once with every epoch kept, then
the epoch that each policy would have registered is scored with the skill's own metric on rows
that no policy saw: the last epoch (what training did before selection existed), and the lowest
validation loss with early stopping after 1, 2, 3 (the default) or 5 epochs without improvement,
or never.

    .venv/bin/python benchmarks/epoch_selection.py [--registry models.yaml] [--skills a,b] [--out DIR]

For each skill trained locally with a validation file in `models.yaml`, it runs what a user runs, in
a temporary folder: `chatbot data split` cuts the skill's training file 80/20 into training rows and
*selection* rows (their loss picks the epoch); `chatbot train --select last
--early-stopping-patience 0 --keep-last 100` trains every epoch with default settings (as the demo
trains) and keeps each one; `chatbot registry checkpoint` and `chatbot eval --json` score
each picked epoch on the skill's validation file, which neither training nor selection read. What
a policy picks, and where it would have stopped, comes from the recorded losses
(:func:`chatbot.training.trainer.replay`), so one training serves every policy. It saves the
figures in benchmarks/epoch_selection.json and renders its section of benchmarks/RESULTS.md and
the README. `--base` and `--out` point a smoke run at a small model and a folder of its own (the
tests do).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import ROOT, Output, now, publish, shown  # noqa: E402

from chatbot import registry as registries  # noqa: E402
from chatbot.registry import EpochRecord  # noqa: E402
from chatbot.skills import KINDS  # noqa: E402
from chatbot.training.trainer import replay  # noqa: E402

NAME, TITLE = "epoch_selection", "Epoch selection"
CHATBOT = str(Path(sys.executable).with_name("chatbot"))
DEFAULT_PATIENCE = 3
POLICIES = {"last": ("last", 0), "best-loss, patience 1": ("best-loss", 1), "best-loss, patience 2": ("best-loss", 2),
            "best-loss, patience 3": ("best-loss", 3), "best-loss, patience 5": ("best-loss", 5), "best-loss, never stop": ("best-loss", 0)}
DEFAULT = f"best-loss, patience {DEFAULT_PATIENCE}"


def run(*args: str, cwd: Path) -> str:
    started = time.perf_counter()
    done = subprocess.run([CHATBOT, *args], cwd=cwd, check=True, text=True, stdout=subprocess.PIPE)
    print(f"  {' '.join(args[:2])}: {time.perf_counter() - started:.0f}s", flush=True)
    return done.stdout


def measure_skill(name: str, kind: str, data: Path, test: Path, base: str, work: Path) -> dict[str, Any]:
    split = work / "split"
    run("data", "split", str(data), "--valid", "0.2", "--seed", "0", "--out-dir", str(split), cwd=work)
    train_rows, selection_rows = split / f"{data.stem}_train.jsonl", split / f"{data.stem}_valid.jsonl"
    run("train", name, "--kind", kind, "--data", str(train_rows), "--valid", str(selection_rows), "--base", base,
        "--select", "last", "--early-stopping-patience", "0", "--keep-last", "100", cwd=work)
    record = registries.load(work / "models.yaml").skills[name].training
    assert record is not None
    epochs: list[EpochRecord] = record.epochs
    picks = {policy: replay(epochs, select, patience) for policy, (select, patience) in POLICIES.items()}
    metric, scores = KINDS[kind].metric, {}
    for epoch in sorted({chosen for chosen, _ in picks.values()}):
        run("registry", "checkpoint", name, str(epoch), "--as", f"{name}-e{epoch}", cwd=work)
        scores[epoch] = json.loads(run("eval", f"{name}-e{epoch}", "--data", str(test), "--json", cwd=work))[metric]
    return {"kind": kind, "metric": metric, "train_rows": _rows(train_rows), "selection_rows": _rows(selection_rows), "test": shown(test),
            "test_rows": _rows(test), "epochs": len(epochs), "valid_loss": [e.valid_loss for e in epochs],
            "policies": {policy: {"epoch": chosen, "trained": trained, "score": scores[chosen]} for policy, (chosen, trained) in picks.items()}}


def _rows(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def measure(registry: Path, only: list[str] | None, base: str | None) -> dict[str, Any]:
    skills, found = registries.load(registry).skills, {}
    root = registry.parent
    for name, skill in skills.items():
        record = skill.training
        if (only and name not in only) or record is None or not record.valid_file or skill.backend != "local":
            continue
        print(f"{name} ({skill.kind})", flush=True)
        with tempfile.TemporaryDirectory(prefix="epochs-") as tmp:
            found[name] = measure_skill(name, skill.kind, (root / record.data_file).resolve(), (root / record.valid_file).resolve(),
                                        base or record.base_model, Path(tmp))
    if not found:
        raise SystemExit(f"{registry}: no skill trained locally with a validation file")
    return {"measured_at": now(), "registry": shown(registry), "base": base, "cpu_cores": os.cpu_count(), "skills": found,
            "mean": {policy: statistics.fmean(s["policies"][policy]["score"] for s in found.values()) for policy in POLICIES},
            "default_never_worse_than_last": all(s["policies"][DEFAULT]["score"] >= s["policies"]["last"]["score"] for s in found.values())}


def render(d: dict[str, Any]) -> str:
    lines = [
        f"Each skill of `{d['registry']}` trained locally with a validation file, trained once more with every epoch kept on 80% of its "
        "training file, the other 20% (*selection* rows) giving the validation loss that picks an epoch; each pick scored with the "
        "skill's metric on its validation file, which neither training nor selection read. A cell: the score, the epoch registered "
        "and, after the slash, the epochs trained before stopping.",
        "",
        "| skill (metric; rows train / selection / test) | " + " | ".join(POLICIES) + " |",
        "|---|" + "---|" * len(POLICIES),
    ]
    for name, s in d["skills"].items():
        cells = []
        for policy in POLICIES:
            p = s["policies"][policy]
            score = f"{p['score']:.3f}"
            cells.append(f"{'**' + score + '**' if policy == DEFAULT else score} (e{p['epoch']}/{p['trained']})")
        lines.append(f"| {name} ({s['metric']}; {s['train_rows']} / {s['selection_rows']} / {s['test_rows']}) | " + " | ".join(cells) + " |")
    lines.append("| mean | " + " | ".join(f"{d['mean'][policy]:.3f}" for policy in POLICIES) + " |")
    verdict = "never scored below" if d["default_never_worse_than_last"] else "scored below"
    base = f" Base model: `{d['base']}`." if d["base"] else ""
    lines += ["", f"The default ({DEFAULT}) {verdict} the last epoch on {'every' if verdict.startswith('never') else 'some'} skill here; "
              f"one training a skill, seed 0, on {d['cpu_cores']} CPU cores.{base}",
              "", "Command: `.venv/bin/python benchmarks/epoch_selection.py`"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", type=Path, default=ROOT / "models.yaml")
    parser.add_argument("--skills", help="comma-separated names (default: every skill trained locally with a validation file)")
    parser.add_argument("--base", help="train on this base instead of each skill's (a smoke run)")
    parser.add_argument("--out", type=Path, help="write the JSON, RESULTS.md and README.md here instead of the repository")
    args = parser.parse_args(argv)
    data = measure(args.registry.resolve(), args.skills.split(",") if args.skills else None, args.base)
    print(publish(NAME, TITLE, data, render, Output(args.out)))


if __name__ == "__main__":
    main()
