import threading
from pathlib import Path

import pytest

from chatbot import registry
from chatbot.errors import ChatbotError
from chatbot.registry import Skill


def test_register_creates_file_and_round_trips(tmp_path: Path):
    path = tmp_path / "models.yaml"
    registry.register(Skill(name="ner", kind="extract", adapter="adapters/ner", routing_examples=["find skills"]), path)
    loaded = registry.load(path)
    skill = loaded.get("ner")
    assert skill.separator == "\n\n###\n\n" and skill.stop == [" END"]
    assert loaded.adapter_path(skill) == (tmp_path / "adapters" / "ner").resolve()
    assert '"\\n\\n###\\n\\n"' in path.read_text()


def test_found_by_env_and_current_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    registry.register(Skill(name="faq", kind="qa"), tmp_path / "models.yaml")
    assert "faq" in registry.load().skills  # ./models.yaml (tests run in tmp_path)
    other = tmp_path / "elsewhere.yaml"
    registry.register(Skill(name="mood", kind="classify"), other)
    monkeypatch.setenv("CHATBOT_REGISTRY", str(other))
    assert list(registry.load().skills) == ["mood"]


def test_bad_value_names_key_path_and_line(tmp_path: Path):
    path = tmp_path / "models.yaml"
    path.write_text("version: 1\nskills:\n  faq:\n    kind: qa\n    generation:\n      max_tokens: -3\n")
    with pytest.raises(ChatbotError, match=r"models.yaml:6: skills.faq.generation.max_tokens: Input should be greater"):
        registry.load(path)


def test_unknown_key_and_bad_yaml(tmp_path: Path):
    path = tmp_path / "models.yaml"
    path.write_text("skills:\n  faq:\n    kind: qa\n    adaptor: x\n")
    with pytest.raises(ChatbotError, match=r":4: skills.faq.adaptor: Extra inputs"):
        registry.load(path)
    path.write_text("skills:\n  faq: [kind: qa\n")
    with pytest.raises(ChatbotError, match=r"models.yaml:3:1: invalid YAML"):
        registry.load(path)


def test_missing_registry_and_unknown_skill(tmp_path: Path):
    with pytest.raises(ChatbotError, match="no such registry"):
        registry.load(tmp_path / "none.yaml")
    registry.register(Skill(name="faq", kind="qa"), tmp_path / "models.yaml")
    with pytest.raises(ChatbotError, match=r"no skill named 'nope' \(registered: faq\)"):
        registry.load(tmp_path / "models.yaml").get("nope")


def test_remove_and_failed_write_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "models.yaml"
    registry.register(Skill(name="faq", kind="qa"), path)
    registry.register(Skill(name="mood", kind="classify"), path)
    before = path.read_text()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(registry.os, "replace", broken)
    with pytest.raises(OSError):
        registry.remove("faq", path)
    assert path.read_text() == before  # the atomic write left the old file whole
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".models")] == []
    monkeypatch.undo()
    registry.remove("faq", path)
    assert list(registry.load(path).skills) == ["mood"]


def test_bad_skill_name():
    with pytest.raises(ValueError):
        Skill(name="no spaces please", kind="qa")


def test_writers_at_once_lose_no_skill(tmp_path: Path):
    """A server's fine-tuning worker and a command may register skills at the same moment."""
    path = tmp_path / "models.yaml"
    names = [f"skill-{n}" for n in range(8)]
    barrier = threading.Barrier(len(names))

    def add(name: str) -> None:
        barrier.wait()
        registry.register(Skill(name=name, kind="qa"), path)

    threads = [threading.Thread(target=add, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(registry.load(path).skills) == names


def test_older_registries_still_load():
    """The demo's models.yaml as first committed (no router, fallback or history_turns keys yet), and today's."""
    old = registry.load(Path(__file__).parent / "data" / "models_2026-11-22.yaml")
    assert list(old.skills) == ["shop-faq", "review-sentiment", "product-writer", "booking-extract"]
    assert old.skills["shop-faq"].history_turns == 0 and old.fallback.skill is None and old.router.threshold is None
    assert old.skills["booking-extract"].training.hyperparameters["n_epochs"] == 5
    current = registry.load(Path(__file__).parents[1] / "models.yaml")
    assert {"shop-faq", "review-sentiment", "product-writer", "booking-extract", "small-talk"} <= set(current.skills)
    assert current.router.out_of_scope_file == "training_data/out_of_scope.txt"


LAUGHS = "".join(
    f"{a}: &{a} [{', '.join([f'*{b}'] * 9) if b else ', '.join(['lol'] * 9)}]\n"
    for a, b in zip("abcdefghi", [None, *"abcdefgh"], strict=True)
)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x01\xff\xfe garbage", r"models\.yaml:1:3: not UTF-8 text \(byte 0xff\)"),
        (b"skills:\n  faq:\n    description: caf\xe9\n", r"models\.yaml:3:21: not UTF-8 text"),
        (b"skills:\n  a: \x00\n", r"models\.yaml:2: invalid YAML: the character '\\x00' is not allowed"),
        (b"- a\n- b\n", r"models\.yaml:1: the registry must be a mapping with a `skills:` key, not a list"),
        (b"skills: [a, b]\n", r"models\.yaml:1: skills: Input should be a valid dictionary"),
        (b"skills: " + b"[" * 100_000 + b"]" * 100_000, r"models\.yaml:1: skills(\[0\])+: nested more than 32 levels deep"),
        (b"skills:\n  faq:\n    kind: qa\n    training: {data_file: a, data_sha256: b, base_model: c, hyperparameters: "
         + b"{a: " * 40 + b"1" + b"}" * 40 + b"}\n", r"models\.yaml:4: skills\.faq\.training\.hyperparameters(\.a)+: nested more than 32"),
        (LAUGHS.encode() + b"skills: {}\n", r"models\.yaml:\d+: [a-i](\[\d\])+: more than 100,000 values once its aliases are expanded"),
        (b"a: &a [*a]\n", r"models\.yaml:1: a(\[0\])+: nested more than 32 levels"),
        (b'skills:\n  faq:\n    kind: qa\n    description: "\\ud800"\n',
         r"models\.yaml:4: skills\.faq\.description: a lone surrogate such as \\ud800"),
        (b"skills:\n  faq:\n    kind: qa\n    training: {data_file: a, data_sha256: b, base_model: c, hyperparameters: {}, "
         b"trained_at: 2024-13-45}\n", r"models\.yaml:4:\d+: skills\.faq\.training\.trained_at: cannot read this value: month"),
        (b"skills:\n  faq:\n    kind: qa\n    generation: {max_tokens: " + b"9" * 5000 + b"}\n",
         r"models\.yaml:4:\d+: skills\.faq\.generation\.max_tokens: cannot read this value"),
        (b"skills:\n  faq:\n    kind: qa\n    stop: [' END', [2]]\n", r"models\.yaml:4: skills\.faq\.stop\[1\]: Input should be a valid string"),
        (b"a: !!python/object/apply:os.system [echo]\n", r"models\.yaml:1:4: a: could not determine a constructor"),
    ],
)
def test_hostile_registry_is_one_error_naming_file_line_and_key(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "models.yaml"
    path.write_bytes(content)
    with pytest.raises(ChatbotError, match=message):
        registry.load(path)


def test_registry_in_utf16_with_a_byte_order_mark_loads(tmp_path: Path):
    path = tmp_path / "models.yaml"
    path.write_bytes("skills:\n  faq:\n    kind: qa\n".encode("utf-16"))
    assert list(registry.load(path).skills) == ["faq"]


def test_benign_anchors_still_load(tmp_path: Path):
    path = tmp_path / "models.yaml"
    path.write_text("skills:\n  a:\n    kind: qa\n    generation: &gen {max_tokens: 20}\n  b:\n    kind: qa\n    generation: *gen\n")
    assert registry.load(path).get("b").generation.max_tokens == 20
