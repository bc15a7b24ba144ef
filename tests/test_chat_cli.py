"""`chatbot chat` and `chatbot sessions` as a user runs them: real router, real store, the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bot_helpers import REGISTRY, write_registry
from typer.testing import CliRunner

from chatbot.cli import app

runner = CliRunner(env={"COLUMNS": "250"})


@pytest.fixture
def registry(tmp_path: Path, tiny_base: str) -> Path:
    skills = {name: skill | {"base_model": tiny_base, "generation": {"max_tokens": 4}} for name, skill in REGISTRY["skills"].items()}
    return write_registry(tmp_path, skills=skills)


def chat(*args: str, stdin: str):
    return runner.invoke(app, ["chat", *args], input=stdin, catch_exceptions=False)


def test_piped_chat_prints_one_reply_per_line_and_continues_a_session(registry: Path) -> None:
    result = chat("--session", "cli", stdin="When are you open?\n\nWho painted the Mona Lisa?\nWhere is the shop?\n")
    assert result.exit_code == 0, result.output
    replies = result.stdout.splitlines()
    assert len(replies) == 3 and replies[1] == "Sorry, I only know about bikes."

    again = chat("--session", "cli", stdin="/history\n/route do you rent bikes?\n/skills\n/reset\nCan I book my Trek for Friday?\n/quit\nnever read\n")
    lines = again.stdout.splitlines()
    assert lines[0].startswith("1. you: When are you open? | bot [shop]:") and "3. you: Where is the shop?" in lines[0]
    assert lines[1].startswith("shop (score ") and "runners-up: " in lines[1] and "mood: " in lines[1]
    assert "booking (extract): bike and day from a booking" in lines[2]
    assert lines[3].startswith("new session chat-") and "--session cli" in lines[3]
    assert len(lines) == 5  # the reply to the booking, then /quit stopped the chat

    shown = json.loads(runner.invoke(app, ["sessions", "show", "cli", "--json"]).stdout)
    assert [t["skill"] for t in shown["history"]] == ["shop", None, "shop"]
    listing = runner.invoke(app, ["sessions", "list"]).stdout
    assert "cli" in listing and "chat-" in listing
    assert runner.invoke(app, ["sessions", "delete", "cli"]).exit_code == 0
    missing = runner.invoke(app, ["sessions", "show", "cli"])
    assert missing.exit_code == 1 and "no session 'cli'" in missing.output


def test_chat_without_skills_says_what_to_do(tmp_path: Path) -> None:
    write_registry(tmp_path, skills={})
    result = runner.invoke(app, ["chat"], input="hi\n")
    assert result.exit_code == 1 and "no skills registered" in result.output


def test_terminal_chat_streams_replies_and_runs_slash_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The prompt-toolkit loop, fed keystrokes through a pipe as if typed."""
    from bot_helpers import ScriptedBackend
    from prompt_toolkit.application import create_app_session
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    from chatbot.bot import Bot
    from chatbot.cli.chat import _interactive

    write_registry(tmp_path)
    bot = Bot.from_registry(tmp_path / "models.yaml", db=f"sqlite:///{tmp_path / 'c.db'}", backends={"local": ScriptedBackend()})
    with create_pipe_input() as keys, create_app_session(input=keys, output=DummyOutput()):
        keys.send_text("When are you open?\r\r/history\r/quit\rnever read\r")
        _interactive(bot, "typed")
    shown = capsys.readouterr().out
    assert "bot ›  We are open 9 to 6." in shown and "shop · score" in shown
    assert "│ 1 │ When are you open?" in shown  # /history's table
    assert [(t.user, t.skill) for t in bot.session("typed").history] == [("When are you open?", "shop")]  # nothing after /quit
    bot.close()
