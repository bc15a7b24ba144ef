"""The demo's generated data (scripts/make_demo_data.py) never repeats a user message of its conversation tests."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def generator(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.chdir(ROOT)  # it reads training_data/conversations*.yaml as `make demo` runs it, from the repository
    spec = importlib.util.spec_from_file_location("make_demo_data", ROOT / "scripts" / "make_demo_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_shipped_training_row_repeats_a_tested_message(generator: ModuleType) -> None:
    assert len(generator.TESTED) > 120 and generator._plain("The Trek, please!") == "trek please"
    texts = [json.loads(line)["prompt"] for path in (ROOT / "training_data").glob("*.jsonl") for line in path.read_text().splitlines()]
    texts += (ROOT / "training_data" / "out_of_scope.txt").read_text().splitlines()
    assert len(texts) > 400 and not [t for t in texts if generator._plain(t) in generator.TESTED]


def test_a_generated_row_that_repeats_a_tested_message_is_left_out(generator: ModuleType, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    tested = sorted(generator.TESTED)[0]
    monkeypatch.setattr(generator, "OUT", tmp_path)
    generator.write("rows.jsonl", [generator.pair(f"The {tested.upper()}?", "one"), generator.pair("a message of its own", "two")])
    assert [json.loads(line)["completion"] for line in (tmp_path / "rows.jsonl").read_text().splitlines()] == [" two END"]
