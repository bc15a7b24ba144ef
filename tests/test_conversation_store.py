"""The conversation store against a real SQLite file and a real PostgreSQL server."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from environment import scaled

from chatbot.conversation import ConversationStore, Timings
from chatbot.errors import ChatbotError


def test_turns_are_stored_in_order_with_their_entities(db_url: str) -> None:
    store = ConversationStore(db_url)
    store.append("alice", user="hi", reply="hello", skill="small-talk", score=0.9)
    turn, known = store.append("alice", user="book my Trek for Friday", reply="bike: Trek", skill="booking",
                               entities={"bike": ["Trek"], "day": ["Friday"]}, timings=Timings(route_ms=1, generate_ms=2, total_ms=3))
    assert turn.index == 1 and known == {"bike": ["Trek"], "day": ["Friday"]}
    _, known = store.append("alice", user="make it Saturday", reply="day: Saturday", entities={"day": ["Saturday"]})
    assert known == {"bike": ["Trek"], "day": ["Saturday"]}  # a slot takes the latest value
    store.append("bob", user="hey", reply="hi", fallback=True)

    history = store.history("alice")
    assert [t.user for t in history] == ["hi", "book my Trek for Friday", "make it Saturday"]
    assert history[1].timings.generate_ms == 2 and history[1].skill == "booking"
    assert [t.index for t in store.history("alice", last=2)] == [1, 2]
    session = store.get("alice")
    assert session is not None and session.turns == 3 and session.entities["day"] == ["Saturday"]
    assert [t.entities.get("day") for t in history] == [None, ["Friday"], ["Saturday"]]  # each turn keeps what it found
    assert {s.id: s.turns for s in store.sessions()} == {"alice": 3, "bob": 1}
    assert store.sessions()[0].id == "bob"  # most recent first

    assert store.delete("alice") and not store.delete("alice")
    assert store.get("alice") is None and store.history("alice") == []
    assert [s.id for s in store.sessions()] == ["bob"]
    store.close()


def test_entities_behave_as_slots() -> None:
    from chatbot.conversation.records import fill_slots

    slots = fill_slots({}, {"bike": ["Trek"], "day": ["Friday"]})
    slots = fill_slots(slots, {"day": ["Saturday", "Saturday"], "service": []})  # a type found again: its latest values
    assert slots == {"bike": ["Trek"], "day": ["Saturday"]}
    assert fill_slots(slots, {}) == slots


def test_a_conversation_survives_a_new_store(db_url: str) -> None:
    first = ConversationStore(db_url)
    first.append("s", user="one", reply="1", entities={"day": ["Monday"]})
    first.close()
    second = ConversationStore(db_url)  # a restarted process opens the same database
    turn, known = second.append("s", user="two", reply="2")
    assert turn.index == 1 and known == {"day": ["Monday"]}
    assert [t.reply for t in second.history("s")] == ["1", "2"]


def test_bad_session_ids_and_urls_are_refused(tmp_path: Path) -> None:
    store = ConversationStore(f"sqlite:///{tmp_path / 'x.db'}")
    for bad in ("", "x" * 201, "line\nbreak"):
        with pytest.raises(ChatbotError, match="invalid session id"):
            store.append(bad, user="u", reply="r")
    with pytest.raises(ChatbotError, match="cannot use database"):
        ConversationStore("nosuchdb://x")
    with pytest.raises(ChatbotError, match="cannot open database"):
        ConversationStore("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")


def test_open_puts_the_sqlite_file_in_the_data_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CHATBOT_DB", raising=False)
    store = ConversationStore.open(None, tmp_path / ".chatbot")
    store.append("a", user="u", reply="r")
    assert (tmp_path / ".chatbot" / "chatbot.db").exists()


def test_threads_on_one_session_take_turns(db_url: str) -> None:
    store = ConversationStore(db_url)
    spans: list[tuple[float, float]] = []

    def turn(n: int) -> None:
        with store.locked("shared"):
            start = time.perf_counter()
            seen = len(store.history("shared"))
            time.sleep(0.05)
            store.append("shared", user=f"m{n}", reply=f"after {seen}")
            spans.append((start, time.perf_counter()))

    threads = [threading.Thread(target=turn, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans.sort()
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    assert sorted(t.reply for t in store.history("shared")) == [f"after {n}" for n in range(4)]


WORKER = """
import sys, time
from chatbot.conversation import ConversationStore
store = ConversationStore(sys.argv[1])
print("ready", flush=True)
sys.stdin.readline()  # start together
with store.locked("shared"):
    start = time.time()
    seen = len(store.history("shared"))
    time.sleep(0.3)
    store.append("shared", user=sys.argv[2], reply=f"saw {seen}")
    print(start, time.time(), flush=True)
"""


def test_processes_on_one_session_take_turns(db_url: str) -> None:
    ConversationStore(db_url).close()  # tables exist before the race
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, db_url, f"p{n}"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for n in range(3)]
    for w in workers:
        assert w.stdout.readline().strip() == "ready"
    for w in workers:
        w.stdin.write("go\n")
        w.stdin.flush()
    spans = sorted(tuple(map(float, w.communicate(timeout=scaled(60))[0].split())) for w in workers)
    assert all(w.returncode == 0 for w in workers)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:])), spans
    history = ConversationStore(db_url).history("shared")
    assert sorted(t.reply for t in history) == ["saw 0", "saw 1", "saw 2"]


def test_a_database_from_before_a_new_column_keeps_working(db_url: str) -> None:
    from sqlalchemy import create_engine, text

    old = ConversationStore(db_url)
    old.append("s", user="one", reply="1")
    old.close()
    engine = create_engine(db_url)
    with engine.begin() as conn:  # the table as an earlier release made it
        conn.execute(text("ALTER TABLE chat_turns DROP COLUMN asked"))
    engine.dispose()
    store = ConversationStore(db_url)  # opening adds the column
    turn, _ = store.append("s", user="two", reply="1) or 2)?", asked=["shop", "booking"])
    assert [t.asked for t in store.history("s")] == [[], ["shop", "booking"]] and turn.index == 1
    store.close()
