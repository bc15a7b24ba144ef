"""The adapter swap's repair, on folders as a kill leaves them (tests/test_slow_kills.py kills real trainings)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot import adapters


def _adapter(folder: Path) -> str:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    return adapters.seal(folder, skill=folder.name)


@pytest.fixture
def swap(tmp_path: Path) -> tuple[Path, str, str]:
    """``adapters/shop`` (id old) and a new adapter staged beside it (id new)."""
    final = tmp_path / "adapters" / "shop"
    old = _adapter(final)
    new = _adapter(adapters.staging(final))
    return final, old, new


def test_a_whole_swap_keeps_the_new_adapter_alone(swap: tuple[Path, str, str]) -> None:
    final, _, new = swap
    adapters.discard(adapters.install(final.with_name("shop.tmp"), final))
    assert adapters.adapter_id(final) == new and sorted(p.name for p in final.parent.iterdir()) == ["shop"]


def test_killed_between_the_renames_the_old_adapter_comes_back(swap: tuple[Path, str, str]) -> None:
    final, old, _ = swap
    final.rename(adapters.replaced(final))  # the first rename done, not the second
    assert adapters.repair(final, old) and adapters.adapter_id(final) == old
    assert not adapters.replaced(final).exists()


def test_killed_before_the_registry_was_saved_the_old_adapter_comes_back(swap: tuple[Path, str, str]) -> None:
    final, old, _ = swap
    adapters.install(final.with_name("shop.tmp"), final)
    assert adapters.repair(final, old) and adapters.adapter_id(final) == old  # the registry still names the old one
    assert sorted(p.name for p in final.parent.iterdir()) == ["shop"]


def test_killed_after_the_registry_was_saved_the_new_adapter_stays(swap: tuple[Path, str, str]) -> None:
    final, _, new = swap
    adapters.install(final.with_name("shop.tmp"), final)
    assert adapters.repair(final, new) and adapters.adapter_id(final) == new
    assert sorted(p.name for p in final.parent.iterdir()) == ["shop"]


def test_a_registry_naming_neither_adapter_changes_nothing(swap: tuple[Path, str, str]) -> None:
    final, old, new = swap
    adapters.install(final.with_name("shop.tmp"), final)
    assert adapters.repair(final, "edited-by-hand") is None
    assert (adapters.adapter_id(final), adapters.adapter_id(adapters.replaced(final))) == (new, old)


def test_adapters_trained_before_ids_are_repaired_too(tmp_path: Path) -> None:
    final = tmp_path / "shop"
    adapters.replaced(final).mkdir()  # killed between the renames; the record has no id
    assert adapters.repair(final, None) and final.is_dir() and not adapters.replaced(final).exists()
