"""What a user of well-made CLIs expects: --version, -q / -v, exit codes, --json on every listing, piped chat errors.

The bot here has one hosted skill answered by a stand-in OpenAI server on loopback (``openai_stub``),
as its fallback skill with routing off: no model and no router are loaded, so each command is quick.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
import yaml
from openai_stub import EVENTS, JOBS, REPLY, openai_stub
from typer.testing import CliRunner

import chatbot
from chatbot.cli import app
from chatbot.cli.common import handle_errors, log_level
from chatbot.errors import ChatbotError

runner = CliRunner(env={"COLUMNS": "250"})


@pytest.fixture(scope="module")
def stub() -> Iterator[str]:
    with openai_stub() as url:
        yield url


@pytest.fixture
def hosted(tmp_path: Path, stub: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """models.yaml of a bot whose one skill is hosted, and answers everything as the fallback skill."""
    monkeypatch.delenv("CHATBOT_LOG", raising=False)
    skill = {"kind": "qa", "backend": "openai", "model": "stub", "base_url": stub, "routing": False, "description": "answers everything"}
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({"skills": {"helper": skill}, "fallback": {"skill": "helper"}}))
    return path


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    level = logging.getLogger().level
    yield
    logging.getLogger().setLevel(level)


def cli(*args: str, stdin: str | None = None, env: dict[str, str] | None = None):
    return runner.invoke(app, list(args), input=stdin, env=env, catch_exceptions=False)


def test_version_is_the_packages_one() -> None:
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout == f"chatbot {chatbot.__version__}\n"
    assert importlib.metadata.version("chatbot") == chatbot.__version__


def test_exit_codes_success_runtime_error_failed_check_and_usage(hosted: Path, tmp_path: Path) -> None:
    assert cli("ask", "helper", "hello").exit_code == 0
    # 1: a runtime error (the server refuses, a skill or registry is missing), one line on stderr
    refused = cli("ask", "helper", "say boom")
    assert refused.exit_code == 1 and refused.stderr.startswith("error: skill 'helper': ") and "the stub refuses to say boom" in refused.stderr
    assert cli("ask", "nope", "hello").exit_code == 1
    assert cli("ask", "helper", "hello", "--registry", str(tmp_path / "none.yaml")).exit_code == 1
    # 1: a failed check
    (tmp_path / "bad.jsonl").write_text('{"prompt": "", "completion": ""}\n')
    assert cli("data", "check", "bad.jsonl", "--approximate").exit_code == 1
    # 2: usage errors, Click's own and ours (bad option values, a missing input file named on the command line)
    assert cli("registry", "list", "--nope").exit_code == 2
    assert cli("ask", "helper").exit_code == 2
    assert cli("ask", "helper", "hi", "--stop", "\\x").exit_code == 2
    assert cli("route", "eval", "--train", "t.jsonl").exit_code == 2
    missing = cli("eval", "helper", "--data", "missing.jsonl")
    assert missing.exit_code == 2 and missing.stderr == "error: --data missing.jsonl: no such file\n"
    assert cli("registry", "routing", "helper", "maybe").exit_code == 2
    assert cli("-q", "-v", "registry", "list").exit_code == 2


def test_a_missing_extra_is_one_line_naming_it() -> None:
    @handle_errors
    def needs(module: str) -> None:
        raise ModuleNotFoundError(f"No module named {module!r}", name=module)

    command = typer.Typer()
    command.command()(needs)
    result = CliRunner().invoke(command, ["fastapi"])
    assert result.exit_code == 1
    assert result.stderr == "error: fastapi is not installed: it comes with the [server] extra, for `chatbot serve` (pip install 'chatbot[server]')\n"
    assert "pip install 'chatbot[local]'" in CliRunner().invoke(command, ["torch.nn"]).stderr
    with pytest.raises(ModuleNotFoundError):  # not an extra's: a real bug, not hidden
        CliRunner().invoke(command, ["nonexistent_thing"], catch_exceptions=False)


def test_every_listing_has_json(hosted: Path, stub: str) -> None:
    skills = json.loads(cli("registry", "list", "--json").stdout)
    assert skills == [{"name": "helper", "kind": "qa", "description": "answers everything", "backend": "openai", "base_model": "smollm2-135m",
                       "model": "stub", "adapter": None, "routing": False, "trained_at": None, "metric": "token_f1", "score": None}]
    shown = json.loads(cli("registry", "show", "helper", "--json").stdout)
    assert shown["base_url"] == stub and shown["routing"] is False

    assert json.loads(cli("sessions", "list", "--json").stdout) == []
    assert cli("chat", "--session", "s1", stdin="hello\nagain\n").exit_code == 0
    sessions = json.loads(cli("sessions", "list", "--json").stdout)
    assert [(s["id"], s["turns"]) for s in sessions] == [("s1", 2)] and sessions[0]["created_at"] <= sessions[0]["updated_at"]

    jobs = json.loads(cli("jobs", "list", "--base-url", stub, "--json").stdout)
    assert [j["id"] for j in jobs] == [j["id"] for j in JOBS] and jobs[1]["fine_tuned_model"] == "ft:smollm2-135m:mood"
    events = json.loads(cli("jobs", "events", "ftjob-1", "--base-url", stub, "--json").stdout)
    assert [e["message"] for e in events] == [e["message"] for e in reversed(EVENTS)]  # oldest first, as the table prints them
    assert events[1]["data"]["total_steps"] == 1
    assert json.loads(cli("jobs", "show", "ftjob-1", "--base-url", stub).stdout)["status"] == "succeeded"


def test_piped_chat_puts_errors_on_stderr_and_exits_1_at_the_end(hosted: Path) -> None:
    result = cli("chat", "--session", "p", stdin="hello\nsay boom\n\nhi again\n")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [REPLY, "", REPLY]  # a reply line per message, empty for the failed one
    errors = result.stderr.splitlines()
    assert errors[0] == "session p"
    assert errors[1].startswith("error: skill 'helper': ") and errors[1].endswith("answered 400: the stub refuses to say boom")
    assert errors[2] == "error: 1 turn failed in session p"
    ok = cli("chat", "--session", "p", stdin="/history\n")
    assert ok.exit_code == 0 and "2. you: hi again" in ok.stdout  # the failed turn was not stored


def test_quiet_prints_only_results_and_errors(hosted: Path) -> None:
    result = cli("-q", "chat", stdin="hello\nsay boom\n")
    assert result.exit_code == 1 and result.stdout.splitlines() == [REPLY, ""]
    assert [line.split(":")[0] for line in result.stderr.splitlines()] == ["error", "error"]  # no "session …" note
    normal = cli("chat", stdin="hello\n")
    assert normal.stderr.startswith("session chat-")  # -q does not stick to later runs


def test_verbose_logs_on_stderr_and_chatbot_log_sets_the_default(hosted: Path) -> None:
    def logged(result) -> list[dict]:  # noqa: ANN001
        return [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]  # every log line is JSON

    assert logged(cli("ask", "helper", "hello")) == []
    info = logged(cli("-v", "ask", "helper", "hello"))
    assert info[0]["level"] == "INFO" and info[0]["logger"].startswith("httpx") and 'POST http://127.0.0.1' in info[0]["msg"]
    assert info[0]["msg"].endswith('200 OK"')  # quotes in a message are escaped: the line parses
    debug = logged(cli("-vv", "ask", "helper", "hello"))
    assert any(entry["level"] == "DEBUG" for entry in debug)
    assert [e["level"] for e in logged(cli("ask", "helper", "hello", env={"CHATBOT_LOG": "info"}))] == ["INFO"]
    assert logged(cli("-q", "ask", "helper", "hello", env={"CHATBOT_LOG": "debug"})) == []  # -q wins


def test_an_unknown_chatbot_log_warns_and_goes_on(hosted: Path) -> None:
    result = cli("ask", "helper", "hello", env={"CHATBOT_LOG": "loud"})
    assert result.exit_code == 0 and result.stdout.strip() == REPLY
    assert result.stderr.startswith("warning: $CHATBOT_LOG='loud' is not a log level: use one of DEBUG, INFO, WARNING, ERROR, CRITICAL; "
                                    "going on with WARNING")
    assert log_level(environ={"CHATBOT_LOG": " Debug "}) == ("DEBUG", None)
    assert log_level(environ={}) == ("WARNING", None)
    assert log_level(verbose=3, environ={"CHATBOT_LOG": "nonsense"}) == ("DEBUG", None)


def test_errors_raised_as_chatbot_errors_keep_exit_1_and_usage_errors_2() -> None:
    from chatbot.cli.common import UsageError

    @handle_errors
    def fails(kind: str) -> None:
        raise (UsageError if kind == "usage" else ChatbotError)(f"{kind} went wrong", hint="do this")

    command = typer.Typer()
    command.command()(fails)
    assert CliRunner().invoke(command, ["runtime"]).exit_code == 1
    usage = CliRunner().invoke(command, ["usage"])
    assert usage.exit_code == 2 and usage.stderr == "error: usage went wrong (do this)\n"


def test_a_log_line_with_quotes_and_a_traceback_is_one_json_object() -> None:
    from chatbot.cli.common import JsonLines

    try:
        raise ValueError('a "quoted" value\nover two lines')
    except ValueError:
        record = logging.getLogger("chatbot.test").makeRecord("chatbot.test", logging.ERROR, __file__, 1, 'failed on "%s"', ("x",),
                                                              exc_info=sys.exc_info())
    line = JsonLines().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["msg"] == 'failed on "x"' and entry["level"] == "ERROR" and entry["logger"] == "chatbot.test"
    assert entry["exc"].startswith("Traceback") and entry["exc"].endswith('ValueError: a "quoted" value\nover two lines')
