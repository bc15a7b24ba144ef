"""End to end, as a user: train real skills on SmolLM2 with default settings, evaluate, ask.

Slow (a few minutes on 2 cores): run by `.ci/run` through `make test-slow`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "training_data"
CHATBOT = str(Path(sys.executable).with_name("chatbot"))


def chatbot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"CHATBOT_THREADS": str(os.cpu_count() or 1)}
    return subprocess.run([CHATBOT, *args], cwd=cwd, env=env, text=True, capture_output=True, timeout=1200)


@pytest.mark.parametrize(
    ("name", "kind", "metric", "floor"),
    [("review-sentiment", "classify", "accuracy", 0.8), ("booking-extract", "extract", "micro_f1", 0.8)],
)
def test_train_eval_ask_a_real_skill(name: str, kind: str, metric: str, floor: float, tmp_path: Path):
    stem = name.replace("-", "_")
    train = chatbot("train", name, "--kind", kind, "--data", str(DATA / f"{stem}_train.jsonl"), "--valid", str(DATA / f"{stem}_valid.jsonl"), cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    assert (tmp_path / "adapters" / name / "adapter_model.safetensors").exists()

    result = chatbot("eval", name, "--data", str(DATA / f"{stem}_valid.jsonl"), "--baseline", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores[metric] >= floor, scores
    assert scores[metric] > scores["baseline"][metric]

    answer = chatbot("ask", name, "Could I bring my Giant Talon in on Thursday for a chain replacement?" if kind == "extract"
                     else "The mechanic was so helpful, my bike rides like new!", "--json", cwd=tmp_path)
    assert answer.returncode == 0, answer.stderr
    parsed = json.loads(answer.stdout)
    if kind == "extract":
        assert "giant talon" in [v.lower() for v in parsed["entities"].get("bike", [])]
    else:
        assert parsed["label"] == "positive"
