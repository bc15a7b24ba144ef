"""End to end, as a user: train real skills on SmolLM2 with default settings, evaluate, ask, chat.

Slow (a few minutes on 2 cores): run by `.ci/run` through `make test-slow`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from environment import scaled

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "training_data"
CHATBOT = str(Path(sys.executable).with_name("chatbot"))
SKILLS = {"shop-faq": "qa", "review-sentiment": "classify", "product-writer": "generate", "booking-extract": "extract", "small-talk": "qa"}
FALLBACK = "Sorry, I can only help with bikes."


def chatbot(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"CHATBOT_THREADS": str(os.cpu_count() or 1)}
    return subprocess.run([CHATBOT, *args], cwd=cwd, env=env, text=True, capture_output=True, timeout=scaled(1200), input=stdin)


@pytest.fixture(scope="module")
def bot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo bot's five skills, one of each kind and small-talk, trained with `chatbot train`, with the demo's
    off-topic messages and a fallback."""
    folder = tmp_path_factory.mktemp("bot")
    (folder / "models.yaml").write_text(yaml.safe_dump({
        "router": {"out_of_scope_file": str(DATA / "out_of_scope.txt")},
        "fallback": {"reply": FALLBACK},
    }))
    for name, kind in SKILLS.items():
        stem = name.replace("-", "_")
        train = chatbot("train", name, "--kind", kind, "--data", str(DATA / f"{stem}_train.jsonl"),
                        "--valid", str(DATA / f"{stem}_valid.jsonl"), cwd=folder)
        assert train.returncode == 0, train.stderr
        assert (folder / "adapters" / name / "adapter_model.safetensors").exists()
    return folder


# each skill's headline metric on its validation file: at least the floor (about 0.2 below what `make demo`
# measured), and above the untuned base on the same prompts
FLOORS = {"shop-faq": ("token_f1", 0.6), "review-sentiment": ("accuracy", 0.8), "product-writer": ("rougeL", 0.45),
          "booking-extract": ("micro_f1", 0.8), "small-talk": ("token_f1", 0.45)}


@pytest.mark.parametrize("name", list(SKILLS))
def test_every_skill_beats_its_untuned_base(bot_dir: Path, name: str) -> None:
    metric, floor = FLOORS[name]
    stem = name.replace("-", "_")
    result = chatbot("eval", name, "--data", str(DATA / f"{stem}_valid.jsonl"), "--baseline", "--json", cwd=bot_dir)
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["metric"] == metric and scores[metric] >= floor, scores
    assert scores[metric] > scores["baseline"][metric] + 0.2, (scores[metric], scores["baseline"])


@pytest.mark.parametrize("name", ["review-sentiment", "booking-extract"])
def test_ask_a_real_skill(bot_dir: Path, name: str) -> None:
    extract = SKILLS[name] == "extract"
    answer = chatbot("ask", name, "Could I bring my Giant Talon in on Thursday for a chain replacement?" if extract
                     else "The mechanic was so helpful, my bike rides like new!", "--json", cwd=bot_dir)
    assert answer.returncode == 0, answer.stderr
    parsed = json.loads(answer.stdout)
    if extract:
        assert "giant talon" in [v.lower() for v in parsed["entities"].get("bike", [])]
    else:
        assert parsed["label"] == "positive"


def test_chat_piped_routes_answers_and_falls_back(bot_dir: Path) -> None:
    messages = "hello, what can you do?\nwhat is the weather like on mars in the year 3000?\nthanks, bye\n"
    chat = chatbot("chat", "--session", "e2e", cwd=bot_dir, stdin=messages)
    assert chat.returncode == 0, chat.stderr
    replies = chat.stdout.splitlines()
    assert len(replies) == 3 and replies[1] == FALLBACK, replies
    assert FALLBACK not in (replies[0], replies[2])

    more = chatbot("chat", "--session", "e2e", cwd=bot_dir, stdin="Can I book a chain replacement for my Trek Marlin on Friday?\n")
    assert more.returncode == 0, more.stderr
    session = json.loads(chatbot("sessions", "show", "e2e", "--json", cwd=bot_dir).stdout)
    assert [t["skill"] for t in session["history"]] == ["small-talk", None, "small-talk", "booking-extract"]
    booked = session["history"][-1]["entities"]  # the skill's own quality is test_every_skill_beats_its_untuned_base's
    assert session["entities"] == booked and any("trek" in bike.lower() for bike in booked.get("bike", []))  # kept in the session
