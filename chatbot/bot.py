"""The assistant: route each message to a skill (or the fallback), answer it, store the turn.

    bot = Bot.from_registry("models.yaml")
    reply = bot.reply("alice", "Are you open on Sundays?")
    print(reply.text, reply.skill, reply.score)

One turn of a session runs at a time (threads and processes wait for the session's lock), and the
turn is committed to the store before the reply is returned or the stream ends.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from chatbot import registry as registry_io
from chatbot.answer import skill_request
from chatbot.backends.base import Backend, relay
from chatbot.backends.pool import BackendPool
from chatbot.conversation import ConversationStore, Session, SessionInfo, Timings
from chatbot.conversation.records import fill_slots
from chatbot.defaults import DATA_DIR, MAX_MESSAGE_CHARS
from chatbot.errors import ChatbotError
from chatbot.registry import Registry, Skill
from chatbot.routing import Candidate, ProgressCallback, Route, router_for_registry
from chatbot.routing.asking import chosen, question
from chatbot.skills import build_prompt
from chatbot.skills.replies import missing, render


class Router(Protocol):
    def route(self, text: str) -> Route: ...


log = logging.getLogger(__name__)
SLOT_FROM_TEXT_WORDS = 5  # an answer to a skill's question this short is the value itself when the skill finds no entity in it


class _NoSkills:
    """The router of a bot with no skills to route to yet (a server waiting for its first fine-tuning job)."""

    def route(self, text: str) -> Route:
        return Route(skill=None, score=0.0, threshold=0.0, in_scope=False, runners_up=[])


def _router(registry: Registry, cache_dir: Path, on_progress: ProgressCallback | None) -> Router:
    routed = any(skill.routing for skill in registry.skills.values())
    return router_for_registry(registry, cache_dir=cache_dir, on_progress=on_progress) if routed else _NoSkills()


class Usage(BaseModel):
    """Tokens a reply cost, as the model counted them."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


class Reply(BaseModel):
    """The bot's answer to one message."""

    session_id: str | None = Field(description="None when answered without a session")
    turn: int | None = Field(description="the turn's position in the session, from 0")
    text: str
    skill: str | None = Field(description="the skill that answered; None when the fallback reply did")
    score: float = Field(description="the router's score for the chosen skill")
    fallback: bool = Field(description="True when no skill fitted the message")
    label: str | None = None
    entities: dict[str, list[str]] = Field(default_factory=dict, description="the session's slots: the latest values of each entity type, this turn's included")
    new_entities: dict[str, list[str]] = Field(default_factory=dict, description="the entities extracted from this message")
    runners_up: list[Candidate] = Field(default_factory=list)
    latency: Timings
    finish_reason: Literal["stop", "length"] = Field(default="stop", description="length: the skill's answer reached max_tokens")
    usage: Usage = Field(default_factory=lambda: Usage(), description="tokens of the prompt the model read and of its answer; 0 for the fallback reply")
    asked: list[str] = Field(default_factory=list, description="unsure between these two skills, the bot asked the user to choose; "
                             "the next message in the session answers")
    awaiting: str | None = Field(default=None, description="the entity type the skill asked for; the next message in the session fills it")


@dataclass
class _Answer:
    skill: str | None
    score: float
    fallback: bool
    runners_up: list[Candidate]
    text: str = ""
    label: str | None = None
    entities: dict[str, list[str]] = field(default_factory=dict)
    timings: Timings = field(default_factory=Timings)
    finish_reason: Literal["stop", "length"] = "stop"
    usage: Usage = field(default_factory=lambda: Usage())
    asked: list[str] = field(default_factory=list)
    awaiting: str | None = None

    def reply(self, *, session_id: str | None, turn: int | None, entities: dict[str, list[str]]) -> Reply:
        return Reply(session_id=session_id, turn=turn, text=self.text, skill=self.skill, score=self.score, fallback=self.fallback,
                     label=self.label, entities=entities, new_entities=self.entities, runners_up=self.runners_up, latency=self.timings,
                     finish_reason=self.finish_reason, usage=self.usage, asked=self.asked,
                     awaiting=self.awaiting)


OnRoute = Callable[[_Answer], None] | None


class ReplyStream:
    """Tokens of a reply as they are generated.

    ``.skill``, ``.score`` and ``.fallback`` are set once the message is routed (before the first
    token); ``.reply`` holds the stored :class:`Reply` at the end.
    """

    def __init__(self) -> None:
        self.steps: Generator[str, None, Reply] | None = None
        self.skill: str | None = None
        self.score = 0.0
        self.fallback = False
        self.reply: Reply | None = None

    def routed(self, answer: _Answer) -> None:
        self.skill, self.score, self.fallback = answer.skill, answer.score, answer.fallback

    def __iter__(self) -> Iterator[str]:
        assert self.steps is not None
        self.reply = yield from self.steps

    def close(self) -> None:
        if self.steps is not None:
            self.steps.close()


class Bot:
    """Skills from a registry, a router over them, a conversation store and the backends that run them."""

    def __init__(self, registry: Registry, *, router: Router, store: ConversationStore, backends: BackendPool | None = None,
                 data_dir: Path | None = None) -> None:
        self.registry = registry
        self.router = router
        self.store = store
        self.backends = backends or BackendPool()
        self.data_dir = data_dir or (registry.path.parent if registry.path else Path.cwd()) / DATA_DIR
        self.listeners: list[Callable[[Reply], None]] = []
        self._read = self._registry_stamp()  # models.yaml as last read

    @classmethod
    def from_registry(
        cls,
        path: str | Path | None = None,
        *,
        db: str | None = None,
        data_dir: str | Path | None = None,
        backends: Mapping[str, Backend] | None = None,
        router: Router | None = None,
        on_progress: ProgressCallback | None = None,
        allow_empty: bool = False,
    ) -> Bot:
        """The bot of ``models.yaml`` at *path*; state in *db* (a URL) or ``<registry folder>/.chatbot/chatbot.db``.

        *backends* replace the backend of a kind (``{"local": LocalBackend("cuda")}``); others are made as needed.
        *on_progress* hears of long steps of fitting the router (``(what, done, total)``).
        With *allow_empty*, a missing or empty registry gives a bot whose every answer is the fallback.
        """
        registry_io.repair_adapters(path)  # a training killed while it swapped adapters leaves the registered one
        registry = registry_io.load(path, missing_ok=allow_empty)
        if not registry.skills and not allow_empty:
            raise ChatbotError(f"{registry.path}: no skills registered", hint="train one with `chatbot train`")
        folder = Path(data_dir) if data_dir else registry.path.parent / DATA_DIR
        store = ConversationStore.open(db, folder)
        if router is None:
            router = _router(registry, folder / "cache", on_progress)
        return cls(registry, router=router, store=store, backends=BackendPool(backends), data_dir=folder)

    def reload(self) -> None:
        """Re-read models.yaml and update the router (only new skills' examples are embedded)."""
        self._read = self._registry_stamp()  # before reading: a change made meanwhile is read by the next refresh
        registry = registry_io.load(self.registry.path, missing_ok=True)
        router = _router(registry, self.data_dir / "cache", None)
        self.registry, self.router = registry, router

    def refresh(self) -> bool:
        """Reload when models.yaml changed since it was last read (another server's fine-tuning job,
        ``chatbot registry`` …); True when it did."""
        if self._registry_stamp() == self._read:
            return False
        self.reload()
        return True

    def _registry_stamp(self) -> tuple[int, int] | None:
        try:
            found = self.registry.path.stat() if self.registry.path else None
        except OSError:
            return None
        return (found.st_mtime_ns, found.st_size) if found else None

    # -- answering -------------------------------------------------------------------------------

    def reply(self, session_id: str, text: str, **overrides: Any) -> Reply:
        """Answer *text* in session *session_id* and store the turn.

        *overrides* change the skill's generation settings for this reply (max_tokens, temperature, top_p, stop, seed).
        """
        return _drain(self._turn(session_id, text, overrides))

    async def areply(self, session_id: str, text: str) -> Reply:
        """:meth:`reply` in a worker thread, so the event loop stays free while the model runs."""
        return await asyncio.to_thread(self.reply, session_id, text)

    def stream(self, session_id: str, text: str, **overrides: Any) -> ReplyStream:
        """Iterate for the reply's tokens; the turn is stored when the iteration ends."""
        stream = ReplyStream()
        stream.steps = self._turn(session_id, text, overrides, stream.routed)
        return stream

    def reply_once(self, text: str, *, history: Sequence[tuple[str, str]] = (), skill: str | None = None, **overrides: Any) -> Reply:
        """Answer without a session: nothing is stored, *history* gives the earlier (user, reply) turns.

        *skill* names the skill to ask, skipping the router.
        """
        return _drain(self._once(text, history, skill, overrides))

    def stream_once(self, text: str, *, history: Sequence[tuple[str, str]] = (), skill: str | None = None, **overrides: Any) -> ReplyStream:
        """:meth:`reply_once`, token by token."""
        stream = ReplyStream()
        stream.steps = self._once(text, history, skill, overrides, stream.routed)
        return stream

    def route(self, text: str) -> Route:
        """Which skill would answer *text*, with its score and the runners-up (nothing is stored)."""
        return self.router.route(_clean(text))

    def _turn(self, session_id: str, text: str, overrides: dict[str, Any], on_route: OnRoute = None) -> Generator[str, None, Reply]:
        text = _clean(text)
        started = time.perf_counter()
        with self.store.locked(session_id):
            history = lambda n: [(t.user, t.reply) for t in self.store.history(session_id, last=n)]  # noqa: E731
            last = self.store.history(session_id, last=1)
            slots = self.store.entities(session_id)
            if last and last[0].awaiting and last[0].skill in self.registry.skills:  # the skill asked for a slot: this message fills it
                answer = yield from self._respond(text, history, last[0].skill, overrides, on_route, slots=slots, filling=last[0].awaiting)
            elif last and last[0].asked and (pick := chosen(text, last[0].asked, self.registry, self.router)) is not None:
                # the user chose the skill for the message the bot asked about: that message is answered, as if never asked
                before = lambda n: [(t.user, t.reply) for t in self.store.history(session_id, last=n + 1)[:-1]]  # noqa: E731
                answer = yield from self._respond(last[0].user, before, pick, overrides, on_route, slots=slots)
            else:
                answer = yield from self._respond(text, history, None, overrides, on_route, may_ask=True, slots=slots)
            turn, known = self.store.append(session_id, user=text, reply=answer.text, skill=answer.skill, score=answer.score,
                                            fallback=answer.fallback, label=answer.label, entities=answer.entities,
                                            timings=answer.timings, asked=answer.asked, awaiting=answer.awaiting)
        answer.timings.total_ms = _ms(time.perf_counter() - started)
        return self._told(answer.reply(session_id=session_id, turn=turn.index, entities=known))

    def _once(self, text: str, history: Sequence[tuple[str, str]], skill: str | None, overrides: dict[str, Any],
              on_route: OnRoute = None) -> Generator[str, None, Reply]:
        text = _clean(text)
        answer = yield from self._respond(text, lambda n: list(history)[-n:], skill, overrides, on_route)
        return self._told(answer.reply(session_id=None, turn=None, entities=answer.entities))

    def on_reply(self, listener: Callable[[Reply], None]) -> None:
        """Call *listener* with every reply, once it is stored (a server's metrics count them so)."""
        self.listeners.append(listener)

    def _told(self, reply: Reply) -> Reply:
        """One log line per turn (the session hashed, never the text), then the listeners."""
        session = hashlib.sha256(reply.session_id.encode()).hexdigest()[:16] if reply.session_id else None
        log.info("turn", extra={"fields": {"session": session, "turn": reply.turn, "skill": reply.skill, "score": reply.score,
                                           "fallback": reply.fallback, "asked": reply.asked or None, "finish_reason": reply.finish_reason,
                                           **reply.usage.model_dump(), **reply.latency.model_dump()}})
        for listener in self.listeners:
            listener(reply)
        return reply

    def _respond(self, text: str, history: Callable[[int], list[tuple[str, str]]], forced: str | None,
                 overrides: dict[str, Any], on_route: OnRoute, may_ask: bool = False, slots: dict[str, list[str]] | None = None,
                 filling: str | None = None) -> Generator[str, None, _Answer]:
        """Route *text* (unless a skill is *forced*), then let the skill or the fallback answer it.

        With *may_ask* (a session, where the next message can answer), an unsure route asks the user to choose instead.
        A skill's reply template and questions (``reply``, ``ask_for``) read the session's *slots*; *filling* is the
        entity type the skill asked for last turn, taken from the message itself when the skill finds none in it.
        """
        started, queued_ms = time.perf_counter(), 0.0
        if forced is not None:
            route = Route(skill=self.registry.get(forced).name, score=1.0, threshold=0.0, runners_up=[], in_scope=True)
        else:
            route = self.router.route(text)
        routed = time.perf_counter()
        name = route.skill if route.in_scope else self.registry.fallback.skill
        answer = _Answer(skill=name, score=route.score, fallback=not route.in_scope, runners_up=route.runners_up)
        if may_ask and route.ask:
            answer.skill, answer.asked, answer.text = None, route.ask, question(self.registry, route.ask)
        if on_route:
            on_route(answer)
        if answer.asked:
            yield answer.text
        elif name is None:
            answer.text = self.registry.fallback.reply
            yield answer.text
        else:
            skill = self.registry.get(name)
            prompt = build_prompt(text, skill.separator, history(skill.history_turns) if skill.history_turns else [])
            request = skill_request(self.registry, skill, prompt, **overrides)
            pieces: list[str] = []
            completion = yield from relay(self.backend_for(skill).stream(request), pieces, show=skill.skill_kind.streams)
            if completion is not None:
                answer.finish_reason, queued_ms = completion.finish_reason, completion.queued_ms
                answer.usage = Usage(prompt_tokens=completion.prompt_tokens, completion_tokens=completion.completion_tokens)
            parsed = skill.skill_kind.parse("".join(pieces), request.stop, text if skill.ground_entities else None)
            answer.text, answer.label, answer.entities = parsed.text, parsed.label, parsed.entities
            if skill.reply or skill.ask_for:
                self._person_reply(skill, answer, text, slots or {}, filling)
            if not skill.skill_kind.streams:  # a label or entities: shown once parsed, not in the raw format
                yield answer.text
        done = time.perf_counter()
        answer.timings = Timings(route_ms=_ms(routed - started), queue_ms=queued_ms, generate_ms=_ms(done - routed), total_ms=_ms(done - started))
        return answer

    @staticmethod
    def _person_reply(skill: Skill, answer: _Answer, text: str, slots: dict[str, list[str]], filling: str | None) -> None:
        """The reply from the skill's template and the slots, or the question for a slot still missing (see ``skills/replies.py``)."""
        if filling and not any(answer.entities.values()) and 0 < len(text.split()) <= SLOT_FROM_TEXT_WORDS:
            # "Saturday": the message is the value; not "my trek" to "which day?", where the skill found the bike
            answer.entities = {filling: [text.strip().rstrip(".!?")]}
        now = fill_slots(slots, answer.entities)
        wanted = missing(skill.ask_for, now)
        if wanted is not None:
            answer.text, answer.awaiting = skill.ask_for[wanted], wanted
        elif skill.reply:
            answer.text = render(skill.reply, now, label=answer.label, text=answer.text)

    def backend_for(self, skill: Skill) -> Backend:
        return self.backends.for_skill(skill)

    def warm_up(self, on_skill: Callable[[str], Any] | None = None) -> None:
        """Load every skill's model and the router's encoder now, so the first reply is not slow."""
        encoder = getattr(self.router, "encoder", None)
        if encoder is not None:
            encoder.load()
        for skill in self.registry.skills.values():
            adapter = self.registry.adapter_path(skill)
            self.backend_for(skill).preload(skill.model_id, str(adapter) if adapter else None)
            if on_skill:
                on_skill(skill.name)

    # -- sessions --------------------------------------------------------------------------------

    def sessions(self) -> list[SessionInfo]:
        return self.store.sessions()

    def session(self, session_id: str) -> Session | None:
        return self.store.get(session_id)

    def delete_session(self, session_id: str) -> bool:
        """Forget a session (waits for a turn in flight on it to finish)."""
        with self.store.locked(session_id):
            return self.store.delete(session_id)

    def close(self) -> None:
        self.store.close()


def _drain(steps: Generator[str, None, Reply]) -> Reply:
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def _clean(text: str) -> str:
    text = text.strip()
    if not text:
        raise ChatbotError("the message is empty", hint="send some text")
    if len(text) > MAX_MESSAGE_CHARS:
        raise ChatbotError(f"the message is {len(text)} characters long, more than {MAX_MESSAGE_CHARS}", hint="send a shorter message")
    return text


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)
