"""Benchmark: the demo bot's conversation tests (`training_data/conversations.yaml`, and
`training_data/conversations_unseen.yaml`, whose failures are never read to change the demo data; no training row
repeats one of their messages), run as a user runs them, `chatbot test FILE --json`, on the skills that `make demo`
(or `bash scripts/demo.sh --train-only`) trained into `adapters/`.

    .venv/bin/python benchmarks/conversations.py --label TEXT [--registry models.yaml] [--file FILE] [--report FILE] [--out DIR]

Each run adds a row, named by ``--label`` (what changed; a label measured again on the same file replaces its row), to the history kept in
benchmarks/conversations.json, so the figures before and after a change of the demo's data or of the
bot stay side by side; it then renders its section of benchmarks/RESULTS.md and the README: the
history, and for each file its latest run's answers per skill and its routing confusion matrix. ``--report FILE``
records a report that `chatbot test --json` saved earlier instead of running it (the tests use it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import ROOT, Output, now, publish, shown  # noqa: E402

NAME, TITLE = "conversations", "Demo bot conversation tests"
CHATBOT = str(Path(sys.executable).with_name("chatbot"))
GOALS = {"routing": 0.95, "answers": 0.85}  # issue 12


def run_tests(registry: Path, file: Path) -> dict[str, Any]:
    """`chatbot test FILE --json`: exit status 1 only means that some turns failed."""
    done = subprocess.run([CHATBOT, "test", str(file), "--registry", str(registry), "--json"], text=True, stdout=subprocess.PIPE)
    if done.returncode not in (0, 1):
        raise SystemExit(f"chatbot test failed with exit status {done.returncode}")
    return json.loads(done.stdout)


def row(report: dict[str, Any], label: str, measured_at: str) -> dict[str, Any]:
    routing, answers = report["routing"], report["answers"]
    return {"measured_at": measured_at, "label": label, "file": shown(Path(report["file"])), "conversations": report["conversations"],
            "turns": report["turns"], "passed": report["passed"],
            "routing": {k: routing[k] for k in ("checked", "correct", "accuracy", "asked")}, "confusion": routing["confusion"],
            "labels": routing["labels"], "answers": {k: answers[k] for k in ("checked", "passed", "pass_rate")},
            "per_skill": answers["per_skill"], "seconds": report["seconds"]}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"  # None: nothing of the kind was checked


def _mark(value: float | None, goal: float) -> str:
    return "-" if value is None else f"**{_pct(value)}**" + (" ✓" if value >= goal else "")


def render(d: dict[str, Any]) -> str:
    runs = d["runs"]
    files = list(dict.fromkeys(r["file"] for r in runs))  # each file's latest run is shown in full below
    lines = ["`chatbot test FILE` on the demo bot, FILE: " + ", ".join(f"`{f}`" for f in files) + f"; goals (issue 12): routing ≥ "
             f"{GOALS['routing']:.0%}, answers ≥ {GOALS['answers']:.0%}. Each row is one run, oldest first.",
             "", "| run | file | measured | routing | answers | turns passing | asked instead |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        routing, answers = r["routing"], r["answers"]
        lines.append(f"| {r['label'].replace('|', '/')} | `{Path(r['file']).name}` | {r['measured_at']} "
                     f"| {_mark(routing['accuracy'], GOALS['routing'])} ({routing['correct']} of {routing['checked']}) "
                     f"| {_mark(answers['pass_rate'], GOALS['answers'])} ({answers['passed']} of {answers['checked']}) "
                     f"| {r['passed']} of {r['turns']} | {routing['asked']} |")
    for file in files:
        last = [r for r in runs if r["file"] == file][-1]
        lines += ["", f"`{Path(file).name}` ({last['turns']} messages in {last['conversations']} conversations), its latest run's answers "
                  "per skill (turns that check something of the answer):", "", "| skill | checked | passed | pass rate |", "|---|---|---|---|"]
        lines += [f"| {skill} | {s['checked']} | {s['passed']} | {_pct(s['rate'])} |" for skill, s in last["per_skill"].items()]
        labels = last["labels"]
        lines += ["", "Its routing (rows: the skill expected; columns: what came; `ask`: the bot asked the user to choose):", "",
                  "| expected \\ got | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
        for expected in labels:
            if expected in last["confusion"]:
                got = last["confusion"][expected]
                lines.append(f"| {expected} | " + " | ".join(str(got.get(label, "")) for label in labels) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", required=True, help="what this run measures, e.g. 'demo data of 2026-11-24'")
    parser.add_argument("--registry", type=Path, default=ROOT / "models.yaml")
    parser.add_argument("--file", type=Path, default=ROOT / "training_data" / "conversations.yaml")
    parser.add_argument("--report", type=Path, help="a saved `chatbot test --json` report to record instead of running the tests")
    parser.add_argument("--out", type=Path, help="write the JSON and the two markdown files here instead of the repository")
    args = parser.parse_args(argv)
    out = Output(args.out)
    if args.report:  # measured when it was saved
        report = json.loads(args.report.read_text(encoding="utf-8"))
        measured_at = datetime.fromtimestamp(args.report.stat().st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    else:
        report, measured_at = run_tests(args.registry, args.file), now()
    runs = json.loads(out.json(NAME).read_text(encoding="utf-8"))["runs"] if out.json(NAME).exists() else []
    new = row(report, args.label, measured_at)  # a label measured again on the same file: its new figures
    runs = [r for r in runs if (r["label"], r["file"]) != (new["label"], new["file"])] + [new]
    print(publish(NAME, TITLE, {"measured_at": runs[-1]["measured_at"], "runs": runs}, render, out))


if __name__ == "__main__":
    main()
