"""The bot end to end over a real router, a real store (SQLite and PostgreSQL) and a scripted model."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from bot_helpers import ScriptedBackend, write_registry
from environment import scaled

from chatbot.bot import Bot
from chatbot.errors import ChatbotError

TESTS = Path(__file__).parent


def make_bot(folder: Path, db: str, backend: ScriptedBackend | None = None) -> Bot:
    return Bot.from_registry(folder / "models.yaml", db=db, backends={"local": backend or ScriptedBackend()})


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    return write_registry(tmp_path)


def test_messages_go_to_the_right_skill_and_off_topic_ones_to_the_fallback(registry: Path, db_url: str) -> None:
    backend = ScriptedBackend()
    bot = make_bot(registry.parent, db_url, backend)
    opening = bot.reply("alice", "What time do you open on Saturday?")
    assert opening.skill == "shop" and not opening.fallback and opening.text == "We are open 9 to 6."
    assert opening.score >= opening.runners_up[-1].score and opening.latency.total_ms > 0
    review = bot.reply("alice", "I love this shop, great mechanics!")
    assert review.skill == "mood" and review.label == "positive" and review.text == "positive"
    booking = bot.reply("alice", "Can I bring my Trek in on Friday for new brakes?")
    assert booking.skill == "booking" and booking.new_entities == {"bike": ["Trek"], "day": ["Friday"]}
    off_topic = bot.reply("alice", "Who was the first emperor of Rome?")
    assert off_topic.fallback and off_topic.skill is None and off_topic.text == "Sorry, I only know about bikes."
    again = bot.reply("alice", "Please book my Giant in for a service.")
    assert again.new_entities == {"bike": ["Giant"]}
    assert again.entities == {"bike": ["Giant"], "day": ["Friday"]}  # slots: the latest bike, the day from before
    assert len(backend.requests) == 4  # the fallback reply needs no model
    assert [t.skill for t in bot.session("alice").history] == ["shop", "mood", "booking", None, "booking"]


def test_history_feeds_the_prompt_of_skills_configured_for_it(registry: Path, db_url: str) -> None:
    backend = ScriptedBackend()
    bot = make_bot(registry.parent, db_url, backend)
    bot.reply("s", "When are you open?")
    bot.reply("s", "Where is the shop?")
    bot.reply("s", "Do you rent bikes?")
    prompt = backend.requests[-1].prompt
    assert prompt == ("User: When are you open?\nAssistant: We are open 9 to 6.\n"
                      "User: Where is the shop?\nAssistant: We are open 9 to 6.\nUser: Do you rent bikes?\n\n###\n\n")
    bot.reply("s", "The mechanic was great!")  # mood has no history_turns
    assert backend.requests[-1].prompt == "The mechanic was great!\n\n###\n\n"


def test_a_fallback_skill_answers_instead_of_the_reply(tmp_path: Path) -> None:
    from bot_helpers import REGISTRY

    write_registry(tmp_path, fallback={"skill": "shop"}, skills=REGISTRY["skills"])
    bot = make_bot(tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
    reply = bot.reply("x", "Who was the first emperor of Rome?")
    assert reply.fallback and reply.skill == "shop" and reply.text == "We are open 9 to 6."


def test_stream_areply_and_sessions(registry: Path, db_url: str) -> None:
    bot = make_bot(registry.parent, db_url)
    stream = bot.stream("s", "When are you open?")
    assert list(stream) == [" We", " are", " open", " 9", " to", " 6."]
    assert stream.reply is not None and stream.reply.text == "We are open 9 to 6." and stream.reply.turn == 0
    booking = bot.stream("s", "Can I bring my Trek in on Friday?")
    assert list(booking) == ["bike: Trek\nday: Friday"]  # entities are shown once parsed, not in the raw format
    fallback = bot.stream("s", "Tell me about the history of jazz music.")
    assert list(fallback) == ["Sorry, I only know about bikes."] and fallback.reply.fallback
    reply = asyncio.run(bot.areply("t", "Where is the shop?"))
    assert reply.session_id == "t" and reply.skill == "shop"
    assert {s.id: s.turns for s in bot.sessions()} == {"s": 3, "t": 1}
    assert bot.delete_session("s") and bot.session("s") is None and not bot.delete_session("s")
    with pytest.raises(ChatbotError, match="empty"):
        bot.reply("s", "   ")


def test_two_concurrent_requests_on_one_session_do_not_interleave(registry: Path, db_url: str) -> None:
    backend = ScriptedBackend(delay=0.02)
    bot = make_bot(registry.parent, db_url, backend)
    spans: dict[str, tuple[float, float]] = {}

    def ask(text: str) -> None:
        start = time.perf_counter()
        tokens = [(time.perf_counter(), piece) for piece in bot.stream("shared", text)]
        spans[text] = (tokens[0][0], tokens[-1][0])  # the last token comes while the turn still holds the session
        assert start <= tokens[0][0]

    threads = [threading.Thread(target=ask, args=(text,)) for text in ("When are you open?", "Where is the shop?")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (_, first_end), (second_start, _) = sorted(spans.values())
    assert first_end <= second_start  # the second reply started only once the first was stored
    history = bot.session("shared").history
    assert [t.index for t in history] == [0, 1]
    second_prompt = backend.requests[1].prompt
    assert second_prompt.startswith(f"User: {history[0].user}\nAssistant: ")  # it saw the first turn


WORKER = """
import sys
sys.path.insert(0, {tests!r})
from bot_helpers import ScriptedBackend
from chatbot.bot import Bot
from chatbot.conversation.store import ConversationStore

mode, db, registry = sys.argv[1:4]
if mode == "crash-after-commit":  # dies once the turn is committed, before the reply is returned
    commit = ConversationStore.append
    def append(self, *a, **k):
        commit(self, *a, **k)
        import os; os._exit(4)
    ConversationStore.append = append
bot = Bot.from_registry(registry, db=db, backends={{"local": ScriptedBackend(crash_on="rent")}})
for text in sys.argv[4:]:
    print(bot.reply("r", text).model_dump_json(), flush=True)
"""


def run_worker(mode: str, db: str, registry: Path, *texts: str) -> subprocess.CompletedProcess[str]:
    code = WORKER.format(tests=str(TESTS))
    return subprocess.run([sys.executable, "-c", code, mode, db, str(registry), *texts], capture_output=True, text=True, timeout=scaled(120))


def test_a_conversation_survives_a_restart(registry: Path, db_url: str) -> None:
    done = run_worker("normal", db_url, registry, "When are you open?", "Can I bring my Trek in on Friday?")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line)["turn"] for line in done.stdout.splitlines()] == [0, 1]
    backend = ScriptedBackend()
    bot = make_bot(registry.parent, db_url, backend)  # a new process, the same database
    reply = bot.reply("r", "Where is the shop?")
    assert reply.turn == 2 and reply.entities == {"bike": ["Trek"], "day": ["Friday"]}
    assert "User: When are you open?\nAssistant: We are open 9 to 6." in backend.requests[0].prompt


def test_a_crash_between_model_and_reply_loses_no_committed_turn(registry: Path, db_url: str) -> None:
    died = run_worker("normal", db_url, registry, "When are you open?", "Do you rent bikes?")
    assert died.returncode == 3 and len(died.stdout.splitlines()) == 1  # the first reply came back, then the model crashed
    bot = make_bot(registry.parent, db_url)
    assert [t.user for t in bot.session("r").history] == ["When are you open?"]  # the half-made turn left nothing behind

    died = run_worker("crash-after-commit", db_url, registry, "Where is the shop?")
    assert died.returncode == 4 and died.stdout == ""  # died before returning the reply
    history = bot.session("r").history
    assert [t.user for t in history] == ["When are you open?", "Where is the shop?"] and history[1].reply == "We are open 9 to 6."
    assert bot.reply("r", "Can I pay by card?").turn == 2


def test_a_bot_without_skills_falls_back_until_one_is_added(tmp_path: Path, tiny_base: str) -> None:
    bot = Bot.from_registry(tmp_path / "models.yaml", db=f"sqlite:///{tmp_path / 'c.db'}", allow_empty=True,
                            backends={"local": ScriptedBackend()})
    assert bot.reply("e", "When are you open?").fallback
    write_registry(tmp_path)
    bot.reload()  # as the server does when a fine-tuning job registers a model
    assert bot.reply("e", "When are you open?").skill == "shop"
    with pytest.raises(ChatbotError, match="no such registry"):
        Bot.from_registry(tmp_path / "other.yaml")


def test_a_reply_says_why_it_ended_and_what_it_cost(registry: Path, tmp_path: Path) -> None:
    backend = ScriptedBackend()
    bot = make_bot(registry.parent, f"sqlite:///{tmp_path / 'c.db'}", backend)
    whole = bot.reply("u", "What time do you open on Saturday?")
    assert whole.finish_reason == "stop" and whole.usage.completion_tokens == len(whole.text.split())
    assert whole.usage.prompt_tokens == len(backend.requests[-1].prompt.split())  # the prompt the model read, separator included
    cut = bot.reply("u", "What time do you open on Saturday?", max_tokens=2)
    assert cut.finish_reason == "length" and cut.usage.completion_tokens == 2
    off = bot.reply("u", "Who was the first emperor of Rome?")
    assert off.fallback and off.finish_reason == "stop" and (off.usage.prompt_tokens, off.usage.completion_tokens) == (0, 0)


def test_an_unsure_router_asks_and_the_next_message_chooses(tmp_path: Path) -> None:
    path = write_registry(tmp_path, router={"margin": 2.0, "out_of_scope": []})  # a margin so wide that every routed message is unsure
    backend = ScriptedBackend()
    bot = make_bot(tmp_path, f"sqlite:///{tmp_path / 'c.db'}", backend)
    asked = bot.reply("s", "Can I bring my Trek in on Friday for new brakes?")
    assert asked.skill is None and not asked.fallback and len(asked.asked) == 2 and backend.requests == []
    assert asked.text.startswith("Do you mean 1) ") and "2) " in asked.text
    answered = bot.reply("s", "the second one")  # answers the message asked about, with the skill chosen
    prompt = backend.requests[-1].prompt
    assert answered.skill == asked.asked[1] and prompt.endswith("Can I bring my Trek in on Friday for new brakes?\n\n###\n\n")
    assert "Do you mean" not in prompt  # the skill answers as if the bot had never asked
    history = bot.session("s").history
    assert [(t.user, t.skill, t.asked) for t in history] == [("Can I bring my Trek in on Friday for new brakes?", None, asked.asked),
                                                             ("the second one", asked.asked[1], [])]
    again = bot.reply("s", "Can I bring my Trek in on Friday for new brakes?")
    named = bot.reply("s", f"I meant {again.asked[0]}")  # naming the skill chooses it too
    assert named.skill == again.asked[0]
    bot.reply("s", "Can I bring my Trek in on Friday for new brakes?")
    moved_on = bot.reply("s", "Who was the first emperor of Rome, and what did he build?")  # a new message, not an answer
    assert moved_on.fallback and not moved_on.asked
    assert path.exists()


def test_asking_can_be_switched_off(tmp_path: Path) -> None:
    write_registry(tmp_path, router={"margin": 2.0, "ask": False, "out_of_scope": []})
    bot = make_bot(tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
    reply = bot.reply("s", "Can I bring my Trek in on Friday for new brakes?")
    assert reply.skill == "booking" and not reply.asked
    assert not bot.reply_once("Can I bring my Trek in on Friday for new brakes?").asked  # without a session it never asks


def test_a_booking_asks_for_its_missing_day_then_confirms(tmp_path: Path) -> None:
    from bot_helpers import REGISTRY

    skills = {**REGISTRY["skills"], "booking": {**REGISTRY["skills"]["booking"], "reply": "Booked: your {bike} on {day}.",
                                                "ask_for": {"day": "Which day would you like to come in?"}},
              "mood": {**REGISTRY["skills"]["mood"], "reply": "Thanks! That reads {label} to me."}}
    write_registry(tmp_path, skills=skills)
    bot = make_bot(tmp_path, f"sqlite:///{tmp_path / 'c.db'}")
    asked = bot.reply("s", "Please book my Giant in for a service.")
    assert asked.skill == "booking" and asked.text == "Which day would you like to come in?" and asked.awaiting == "day"
    done = bot.reply("s", "Saturday")  # the skill finds no entity in it: the short answer is the day itself
    assert done.skill == "booking" and done.text == "Booked: your Giant on Saturday." and not done.awaiting
    assert done.entities == {"bike": ["Giant"], "day": ["Saturday"]}
    whole = bot.reply("t", "Can I bring my Trek in on Friday for new brakes?")  # everything given at once: no question
    assert whole.text == "Booked: your Trek on Friday."
    assert bot.reply("u", "I love this shop, great mechanics!").text == "Thanks! That reads positive to me."
    assert [t.awaiting for t in bot.session("s").history] == ["day", None]
    bot.reply("v", "Please book my Giant in for a service.")
    again = bot.reply("v", "the giant")  # the skill finds the bike in this answer: it is not taken as the day
    assert again.awaiting == "day" and again.entities == {"bike": ["Giant"]}
    assert bot.reply("v", "Saturday").text == "Booked: your Giant on Saturday."


def test_reply_templates_are_checked_when_models_yaml_is_read(tmp_path: Path) -> None:
    from bot_helpers import REGISTRY

    from chatbot import registry as registry_io

    write_registry(tmp_path, skills={**REGISTRY["skills"], "shop": {**REGISTRY["skills"]["shop"], "reply": "Here: {text}"}})
    with pytest.raises(ChatbotError, match="skills.shop: .*reply and ask_for are for classify and extract skills"):
        registry_io.load(tmp_path / "models.yaml")
