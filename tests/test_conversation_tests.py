"""`chatbot test FILE`: conversation tests run on a real router and store, with the scripted model of bot_helpers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bot_helpers import REGISTRY, ScriptedBackend, write_registry
from typer.testing import CliRunner

from chatbot import registry as registry_io
from chatbot.backends import pool
from chatbot.cli import app
from chatbot.conversation_tests import check_against, load_tests, run_tests, throwaway_bot
from chatbot.errors import ChatbotError

runner = CliRunner(env={"COLUMNS": "200"})

# what the scripted backend answers: shop "We are open 9 to 6.", mood "positive" for great/love,
# booking bike Trek + day Friday for "trek", bike Giant for "giant"
PASSING = """\
conversations:
  - user: What time do you open on Saturday?
    skill: shop
    answer_contains: open 9 to 6
  - user: I love this shop, great mechanics!
    skill: mood
    label: positive
  - user: Who was the first emperor of Rome?
    skill: fallback
    answer: Sorry, I only know about bikes.
  - conversation: a booking, then another bike
    turns:
      - user: Can I bring my Trek in on Friday for new brakes?
        skill: booking
        entities: {bike: trek, day: [friday]}
      - user: Please book my Giant in for a service.
        skill: booking
        entities: {bike: giant}
        slots: {bike: giant, day: friday}
"""

FAILING = """\
conversations:
  - user: What time do you open on Saturday?
    skill: shop
    answer_matches: "^We are open \\\\d"
  - user: I love this shop, great mechanics!
    skill: shop
  - user: The mechanic was great, I love it.
    skill: mood
    label: negative
  - user: Can I bring my Trek in on Friday for new brakes?
    skill: booking
    entities: {bike: trek}
    answer_contains: [Trek, Saturday]
"""


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> ScriptedBackend:
    """The scripted model for every local skill, as `chatbot test` makes its backends."""
    scripted = ScriptedBackend()
    monkeypatch.setitem(pool.FACTORIES, "local", (lambda skill: scripted, lambda skill: "local"))
    return scripted


def run_file(folder: Path, text: str, name: str = "tests.yaml"):
    file = folder / name
    file.write_text(text, encoding="utf-8")
    tests = load_tests(file)
    check_against(tests, registry_io.load(folder / "models.yaml"))  # as the command does, before the bot is made
    with throwaway_bot(folder / "models.yaml", backends={"local": ScriptedBackend()}) as bot:
        return run_tests(tests, bot)


def test_a_file_that_passes_and_one_whose_failures_are_reported(tmp_path: Path) -> None:
    write_registry(tmp_path)
    good = run_file(tmp_path, PASSING)
    assert good.ok and (good.conversations, good.turns, good.passed) == (4, 5, 5), [r.problems for r in good.failures]
    assert good.routing.accuracy == 1.0 and good.routing.confusion == {"shop": {"shop": 1}, "mood": {"mood": 1}, "fallback": {"fallback": 1},
                                                                       "booking": {"booking": 2}}
    assert {skill: (rate.checked, rate.passed) for skill, rate in good.answers.per_skill.items()} == {
        "shop": (1, 1), "mood": (1, 1), "booking": (2, 2), "fallback": (1, 1)}

    bad = run_file(tmp_path, FAILING)
    assert not bad.ok and (bad.turns, bad.passed, bad.failed) == (4, 1, 3)
    assert (bad.routing.checked, bad.routing.correct) == (4, 3) and bad.routing.confusion["shop"] == {"shop": 1, "mood": 1}
    assert bad.routing.labels == ["booking", "mood", "shop"]  # the registry's order, then fallback and ask
    assert bad.answers.per_skill["mood"].rate == 0.0 and bad.answers.per_skill["booking"].rate == 0.0
    assert bad.answers.per_skill["shop"].rate == 1.0  # the misrouted turn checks no answer: it counts for routing only
    where = [(Path(f.file).name, f.line) for f in bad.failures]
    assert where == [("tests.yaml", 5), ("tests.yaml", 7), ("tests.yaml", 10)]
    misrouted, wrong_label, booking = bad.failures
    assert misrouted.problems == [f"skill: expected shop, got mood (score {misrouted.got.score:.3f})"] and misrouted.routing_ok is False
    assert wrong_label.problems == ["label: expected negative, got positive"] and wrong_label.routing_ok is True
    assert booking.answer_ok is False and booking.problems == [
        "entities: expected bike: trek, got bike: Trek, day: Friday",  # exactly the entities given, no more
        "answer_contains: expected 'Saturday' in 'bike: Trek / day: Friday'"]


def test_the_command_exits_0_when_all_pass_and_1_on_a_failure_with_a_json_report(tmp_path: Path, backend: ScriptedBackend) -> None:
    write_registry(tmp_path)
    (tmp_path / "good.yaml").write_text(PASSING)
    (tmp_path / "bad.yaml").write_text(FAILING)
    good = runner.invoke(app, ["test", "good.yaml"])
    assert good.exit_code == 0, good.output
    assert "routing: 5 of 5 right (100.0%)" in good.stdout and "5 of 5 turns passed in 4 conversations" in good.stdout
    assert "failed" not in good.stdout

    bad = runner.invoke(app, ["test", "bad.yaml"])
    assert bad.exit_code == 1, bad.output
    assert "bad.yaml:5" in bad.stdout and "✗ skill: expected shop, got mood" in bad.stdout and "bot [mood]: positive" in bad.stdout
    assert "answers: 1 of 3 passed (33.3%)" in bad.stdout and "1 of 4 turns passed" in bad.stdout

    as_json = runner.invoke(app, ["test", "bad.yaml", "--json"])
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert {"file", "registry", "conversations", "turns", "passed", "failed", "routing", "answers", "results", "failures", "seconds"} <= set(report)
    assert report["routing"] | {"confusion": None} == {"checked": 4, "correct": 3, "accuracy": 0.75, "asked": 0,
                                                       "labels": ["booking", "mood", "shop"], "confusion": None}
    assert report["answers"]["per_skill"]["mood"] == {"checked": 1, "passed": 0, "rate": 0.0}
    assert [(f["line"], f["expected"], f["got"]["outcome"], f["got"]["label"]) for f in report["failures"]][1] == (
        7, {"skill": "mood", "label": "negative"}, "mood", "positive")
    assert len(report["results"]) == 4 and report["results"][0]["passed"] is True and len(report["failures"]) == 3
    assert not (tmp_path / ".chatbot" / "chatbot.db").exists()  # the user's conversations are not touched


BOOKING = {**REGISTRY["skills"]["booking"], "reply": "Booked: your {bike} on {day}.", "ask_for": {"day": "Which day would you like to come in?"}}

STATEFUL = """\
- conversation: a booking without its day
  turns:
    - user: Please book my Giant in for a service.
      skill: booking
      asks_for: day
      answer: Which day would you like to come in?
    - user: Saturday
      skill: booking
      slots: {bike: giant, day: saturday}
      answer: "Booked: your Giant on Saturday."
"""


def test_turns_of_a_conversation_share_a_session_and_conversations_do_not(tmp_path: Path) -> None:
    write_registry(tmp_path, skills={**REGISTRY["skills"], "booking": BOOKING})
    together = run_file(tmp_path, STATEFUL)
    assert together.ok, [r.problems for r in together.failures]
    assert together.results[1].got.slots == {"bike": ["Giant"], "day": ["Saturday"]}
    # the same two turns as two conversations: the day is no answer to any question, and the bike is not known
    apart = run_file(tmp_path, STATEFUL.replace("    - user: Saturday", "- conversation: alone\n  turns:\n    - user: Saturday"))
    assert apart.conversations == 2 and [r.passed for r in apart.results] == [True, False]
    problems = apart.failures[0].problems
    assert "slots: expected bike: giant, day: saturday, got none" in problems
    assert "answer: expected 'Booked: your Giant on Saturday.', got 'Which day would you like to come in?'" in problems


def test_the_router_asking_and_the_next_message_choosing(tmp_path: Path) -> None:
    write_registry(tmp_path, router={"margin": 2.0, "out_of_scope": []})  # every routed message is unsure: the bot asks
    asking = """\
- conversation: choosing
  turns:
    - user: Can I bring my Trek in on Friday for new brakes?
      skill: ask
      offers: [booking, shop]
    - user: booking
      skill: booking
      entities: {bike: trek, day: friday}
- user: Where is the shop?
  skill: shop
"""
    report = run_file(tmp_path, asking)
    first, chosen, unsure = report.results
    assert first.passed and first.got.outcome == "ask" and set(first.got.asked) == {"booking", "shop"}
    assert chosen.passed and chosen.got.skill == "booking"
    assert not unsure.passed and unsure.got.outcome == "ask" and report.routing.asked == 1
    assert report.routing.confusion["shop"] == {"ask": 1} and report.routing.labels == ["booking", "shop", "ask"]


def test_jsonl_files_group_turns_by_conversation(tmp_path: Path) -> None:
    write_registry(tmp_path, skills={**REGISTRY["skills"], "booking": BOOKING})
    lines = [{"conversation": "booking", "user": "Please book my Giant in for a service.", "skill": "booking", "asks_for": "day"},
             {"conversation": "booking", "user": "Saturday", "slots": {"day": "Saturday"}},
             {"user": "Where is the shop?", "skill": "shop"},
             {"conversation": "hours", "turns": [{"user": "When are you open?", "answer_contains": "9 to 6"}]}]
    report = run_file(tmp_path, "".join(json.dumps(line) + "\n" for line in lines), "tests.jsonl")
    assert (report.conversations, report.turns, report.ok) == (3, 4, True), [r.problems for r in report.failures]
    assert [(r.line, r.conversation, r.turn) for r in report.results] == [(1, "booking", 0), (2, "booking", 1), (3, "Where is the shop?", 0),
                                                                          (4, "hours", 0)]


@pytest.mark.parametrize(("text", "name", "said"), [
    ("conversations:\n  - user: hi\n    skill: shop\n  - turns:\n      - user: hello\n        lable: positive\n", "t.yaml",
     "t.yaml:6: conversations[1].turns[0].lable: unknown field (the fields are: user, conversation, skill"),
    ("- user: hi\n  skill: shop\n- user: the brakes are great\n  skill: mod\n", "t.yaml",
     "t.yaml:4: [1].skill: no skill named 'mod' in"),
    ("- user: hi\n  skill: shop\n  label: positive\n", "t.yaml", "t.yaml:3: [0].label: shop is a qa skill: only classify skills give a label"),
    ("conversations:\n  - user: hi\n    answer_matches: '(a'\n", "t.yaml", "t.yaml:3: conversations[0].answer_matches: not a regular expression"),
    ("conversations:\n  - user: hi\n    entities: {bike: [1, 2]}\n", "t.yaml", "t.yaml:3: conversations[0].entities.bike[0]: Input should be a valid string"),
    ("conversation:\n  - user: hi\n", "t.yaml", "t.yaml:1: conversation: unknown key"),
    ("conversations:\n  - user: [hi\n", "t.yaml", "t.yaml:3:1: invalid YAML"),
    ('{"user": "hi", "skill": "shop"}\n\n{"user": "hello", "skil": "shop"}\n', "t.jsonl", "t.jsonl:3: skil: unknown field"),
    ('{"user": "hi"}\n{"turns": [{"user": "x"}, {"user": "  "}]}\n', "t.jsonl", "t.jsonl:2: turns[1].user: the message is empty"),
    ('{"user": "hi"}\n{"user": "hi",\n', "t.jsonl", "t.jsonl:2:15: invalid JSON"),
])
def test_an_error_in_the_file_names_its_line_and_field(tmp_path: Path, text: str, name: str, said: str) -> None:
    write_registry(tmp_path)
    (tmp_path / name).write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["test", name])  # checked before any model or router is loaded
    assert result.exit_code == 1 and result.stdout == ""
    assert said in " ".join(result.stderr.split()), result.stderr
    with pytest.raises(ChatbotError):
        run_file(tmp_path, text, name)


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    write_registry(tmp_path)
    result = runner.invoke(app, ["test", "nowhere.yaml"])
    assert result.exit_code == 2 and "nowhere.yaml: no such file" in result.stderr
