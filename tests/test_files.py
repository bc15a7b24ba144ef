"""Files written in place: the mode a user expects, the old content or the new after a failure."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from chatbot import registry as registry_io
from chatbot.data.io import write_jsonl
from chatbot.files import atomic_write, atomic_write_text, file_sha256
from chatbot.registry import Skill


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_new_files_get_the_umask_mode_and_old_files_keep_theirs(tmp_path: Path, umask_022: None):
    models = tmp_path / "models.yaml"
    registry_io.register(Skill(name="faq", kind="qa"), models)
    assert models.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
    os.chmod(models, 0o640)
    registry_io.register(Skill(name="mood", kind="classify"), models)
    assert models.stat().st_mode & 0o777 == 0o640 and set(registry_io.load(models).skills) == {"faq", "mood"}
    out = tmp_path / "out.jsonl"
    write_jsonl(out, [{"prompt": "a", "completion": " b"}])
    assert out.stat().st_mode & 0o777 == 0o644 and out.read_text() == '{"prompt": "a", "completion": " b"}\n'


def test_a_failed_write_leaves_the_old_content_and_no_temporary_file(tmp_path: Path):
    target = tmp_path / "notes.txt"
    atomic_write_text(target, "old\n")

    def broken(handle) -> None:  # noqa: ANN001
        handle.write(b"half of the new")
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError):
        atomic_write(target, broken)
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert file_sha256(target) == hashlib.sha256(b"old\n").hexdigest()
