"""Benchmark: which epoch to register. Each demo skill is trained once with every epoch kept, then
the epoch that each policy would have registered is scored with the skill's own metric on rows
that no policy saw: the last epoch (what training did before selection existed), the lowest
validation loss, or the best metric on the validation rows, each with early stopping after 1, 2, 3 or 5
epochs without improvement, or never. `--seeds N` repeats all of it with N split and training seeds.

    .venv/bin/python benchmarks/epoch_selection.py [--registry models.yaml] [--skills a,b] [--seeds 2] [--out DIR]

For each skill trained locally with a validation file in `models.yaml`, it runs what a user runs, in
a temporary folder: `chatbot data split` cuts the skill's training file 80/20 into training rows and
*selection* rows (their loss or the skill's metric on them picks the epoch); `chatbot train
--select best-metric --early-stopping-patience 0 --keep-last 100` trains every epoch with default
settings (as the demo trains), records both measures after each and keeps each epoch; `chatbot registry checkpoint` and `chatbot eval --json` score
each picked epoch on the skill's validation file, which neither training nor selection read. What
a policy picks, and where it would have stopped, comes from the recorded losses and metrics
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
from chatbot.training.hyperparams import Hyperparameters  # noqa: E402
from chatbot.training.trainer import replay  # noqa: E402

NAME, TITLE = "epoch_selection", "Epoch selection"
CHATBOT = str(Path(sys.executable).with_name("chatbot"))
POLICIES = {"last": ("last", 0)} | {f"{select}, {f'patience {n}' if n else 'never stop'}": (select, n)
                                     for select in ("best-loss", "best-metric") for n in (1, 2, 3, 5, 0)}
_DEFAULTS = Hyperparameters()
DEFAULT = next(policy for policy, (select, patience) in POLICIES.items()  # patience means nothing to "last"
               if select == _DEFAULTS.select and (select == "last" or patience == _DEFAULTS.early_stopping_patience))


def run(*args: str, cwd: Path) -> str:
    started = time.perf_counter()
    done = subprocess.run([CHATBOT, *args], cwd=cwd, check=True, text=True, stdout=subprocess.PIPE)
    print(f"  {' '.join(args[:2])}: {time.perf_counter() - started:.0f}s", flush=True)
    return done.stdout


def measure_skill(name: str, kind: str, data: Path, test: Path, base: str, work: Path, seed: int) -> dict[str, Any]:
    split = work / "split"
    run("data", "split", str(data), "--valid", "0.2", "--seed", str(seed), "--out-dir", str(split), cwd=work)
    train_rows, selection_rows = split / f"{data.stem}_train.jsonl", split / f"{data.stem}_valid.jsonl"
    run("train", name, "--kind", kind, "--data", str(train_rows), "--valid", str(selection_rows), "--base", base, "--seed", str(seed),
        "--select", "best-metric", "--early-stopping-patience", "0", "--keep-last", "100", cwd=work)
    record = registries.load(work / "models.yaml").skills[name].training
    assert record is not None
    epochs: list[EpochRecord] = record.epochs
    picks = {policy: replay(epochs, select, patience) for policy, (select, patience) in POLICIES.items()}
    metric, scores = KINDS[kind].metric, {}
    for epoch in sorted({chosen for chosen, _ in picks.values()}):
        run("registry", "checkpoint", name, str(epoch), "--as", f"{name}-e{epoch}", cwd=work)
        scores[epoch] = json.loads(run("eval", f"{name}-e{epoch}", "--data", str(test), "--json", cwd=work))[metric]
    return {"seed": seed, "kind": kind, "metric": metric, "train_rows": _rows(train_rows), "selection_rows": _rows(selection_rows),
            "test": shown(test), "test_rows": _rows(test), "epochs": len(epochs), "valid_loss": [e.valid_loss for e in epochs],
            "valid_metric": [e.metric for e in epochs],
            "policies": {policy: {"epoch": chosen, "trained": trained, "score": scores[chosen]} for policy, (chosen, trained) in picks.items()}}


def _rows(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def measure(registry: Path, only: list[str] | None, base: str | None, seeds: int) -> dict[str, Any]:
    skills, found = registries.load(registry).skills, {}
    root = registry.parent
    for name, skill in skills.items():
        record = skill.training
        if (only and name not in only) or record is None or not record.valid_file or skill.backend != "local":
            continue
        runs = []
        for seed in range(seeds):
            print(f"{name} ({skill.kind}), seed {seed}", flush=True)
            with tempfile.TemporaryDirectory(prefix="epochs-") as tmp:
                runs.append(measure_skill(name, skill.kind, (root / record.data_file).resolve(), (root / record.valid_file).resolve(),
                                          base or record.base_model, Path(tmp), seed))
        found[name] = {"kind": skill.kind, "metric": runs[0]["metric"], "test": runs[0]["test"], "test_rows": runs[0]["test_rows"],
                       "runs": runs, "mean": {policy: statistics.fmean(r["policies"][policy]["score"] for r in runs) for policy in POLICIES}}
    if not found:
        raise SystemExit(f"{registry}: no skill trained locally with a validation file")
    below = {policy: [name for name, s in found.items() if s["mean"][policy] < s["mean"]["last"] - 1e-9] for policy in POLICIES}
    return {"measured_at": now(), "registry": shown(registry), "base": base, "cpu_cores": os.cpu_count(), "seeds": seeds,
            "default": DEFAULT, "skills": found, "below_last": below,
            "mean": {policy: statistics.fmean(s["mean"][policy] for s in found.values()) for policy in POLICIES},
            "default_never_worse_than_last": not below[DEFAULT]}


def render(d: dict[str, Any]) -> str:
    names = list(d["skills"])
    lines = [
        f"Each skill of `{d['registry']}` trained locally with a validation file, trained again with every epoch kept on 80% of its "
        "training file, the other 20% (*selection* rows) giving the validation loss and the skill's metric that pick an epoch; each "
        "pick scored with the skill's metric on its validation file, which neither training nor selection read. "
        f"{d['seeds']} seed{'s' if d['seeds'] > 1 else ''} (the split and the training); a cell: the mean score over seeds, then the "
        "epoch registered in each run.",
        "",
        "| policy | " + " | ".join(f"{n} ({d['skills'][n]['metric']}, {d['skills'][n]['test_rows']} rows)" for n in names)
        + " | mean | skills below last |",
        "|---|" + "---|" * (len(names) + 2),
    ]
    for policy in POLICIES:
        cells = [f"{d['skills'][n]['mean'][policy]:.3f} (e{','.join(str(r['policies'][policy]['epoch']) for r in d['skills'][n]['runs'])})"
                 for n in names]
        label = f"**{policy}** (the default when measured)" if policy == d["default"] else policy
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {d['mean'][policy]:.3f} | {len(d['below_last'][policy]) if policy != 'last' else '—'} |")
    verdict = "never scored below" if d["default_never_worse_than_last"] else "scored below"
    base = f" Base model: `{d['base']}`." if d["base"] else ""
    now = "" if d["default"] == DEFAULT else f" The default is now {DEFAULT}, chosen on these figures."
    lines += ["", f"The default when measured ({d['default']}) {verdict} the last epoch on "
              f"{'any skill' if verdict.startswith('never') else ', '.join(d['below_last'][d['default']])} here (seed means); "
              f"on {d['cpu_cores']} CPU cores.{base}{now}",
              "", f"Command: `.venv/bin/python benchmarks/epoch_selection.py --seeds {d['seeds']}`"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", type=Path, default=ROOT / "models.yaml")
    parser.add_argument("--skills", help="comma-separated names (default: every skill trained locally with a validation file)")
    parser.add_argument("--base", help="train on this base instead of each skill's (a smoke run)")
    parser.add_argument("--seeds", type=int, default=1, help="split and train with seeds 0..N-1 (default 1)")
    parser.add_argument("--out", type=Path, help="write the JSON, RESULTS.md and README.md here instead of the repository")
    args = parser.parse_args(argv)
    data = measure(args.registry.resolve(), args.skills.split(",") if args.skills else None, args.base, args.seeds)
    print(publish(NAME, TITLE, data, render, Output(args.out)))


if __name__ == "__main__":
    main()
