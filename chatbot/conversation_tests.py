"""Conversation tests of a bot (``chatbot test FILE``): messages written by hand, with what should come of each.

A test file, YAML or JSON Lines, lists conversations; each turn is a message from the user and what the bot
should do with it: which skill answers it (``fallback`` for the fallback reply, ``ask`` when the bot should ask
the user to choose between two skills), the label, the entities found in it, the session's slots after it, the
slot the bot asks for, or the answer's text (whole, a substring, a regular expression). The turns of one
conversation share a session, so state is tested too: slots kept from turn to turn, a question for a missing
slot answered by the next message, the user's choice after the bot asked.

    conversations:
      - user: are you open on sundays?            # a conversation of one message
        skill: shop-faq
        answer_contains: closed
      - conversation: a booking without its day   # several turns, one session
        turns:
          - user: please book my trek in for a brake tune
            skill: booking-extract
            entities: {bike: trek, service: brake tune}
            asks_for: day
          - user: saturday
            skill: booking-extract
            slots: {day: saturday}
            answer_contains: saturday

In JSON Lines, a line is a turn (lines in a row with the same ``conversation`` are one conversation) or a
whole conversation (``{"conversation": …, "turns": […]}``). Errors in the file name its line and the field.

The bot runs for real (router and models) with a session per conversation in a throwaway database
(:func:`throwaway_bot`), so a user's stored conversations are never touched. :func:`run_tests` gives a
:class:`Report`: routing accuracy and a confusion matrix over skills, the answers' pass rate per skill, and
every turn with what was expected and what came.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, computed_field, field_validator

from chatbot.backends.base import Backend
from chatbot.bot import Bot, Reply
from chatbot.defaults import MAX_MESSAGE_CHARS
from chatbot.errors import ChatbotError
from chatbot.registry import Registry, key_path, printable, read_yaml

FALLBACK, ASK = "fallback", "ask"  # the outcomes of a turn that are not a skill
ROUTING_FIELDS = ("skill", "offers")
ANSWER_FIELDS = ("label", "entities", "slots", "asks_for", "answer", "answer_contains", "answer_matches")
JSONL_SUFFIXES = (".jsonl", ".jsonlines", ".ndjson")


def _values(value: Any) -> Any:
    """``{day: friday}`` or ``{day: [friday]}``: one value or a list of them, per entity type."""
    if isinstance(value, Mapping):
        return {key: [item] if isinstance(item, str) else item for key, item in value.items()}
    return value


class Expect(BaseModel):
    """One turn of a test: the user's message and what should come of it (every field but ``user`` optional)."""

    model_config = ConfigDict(extra="forbid")
    user: str = Field(description="the user's message")
    conversation: str | None = Field(default=None, description="the conversation's name; turns in a row with the same one share a session")
    skill: str | None = Field(default=None, description=f"the skill that should answer, or {FALLBACK!r} (the fallback reply), "
                              f"or {ASK!r} (the bot asks the user to choose between two skills)")
    offers: list[str] | None = Field(default=None, description="with skill: ask, the two skills it should offer (in any order)")
    label: str | None = Field(default=None, description="a classify skill's label (case ignored)")
    entities: dict[str, list[str]] | None = Field(default=None, description="exactly the entities found in this message "
                                                  "(case, punctuation and spacing ignored); {} for none")
    slots: dict[str, list[str]] | None = Field(default=None, description="the session's slots after this turn, for the types given")
    asks_for: str | None = Field(default=None, description="the entity type the skill asks for (its ask_for question)")
    answer: str | None = Field(default=None, description="the whole answer")
    answer_contains: list[str] | None = Field(default=None, description="text(s) the answer holds (case ignored)")
    answer_matches: str | None = Field(default=None, description="a regular expression the answer matches (re.search)")

    @field_validator("user")
    @classmethod
    def _a_message(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the message is empty")
        if len(value.strip()) > MAX_MESSAGE_CHARS:
            raise ValueError(f"the message is {len(value.strip())} characters long, more than {MAX_MESSAGE_CHARS}")
        return value

    @field_validator("entities", "slots", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _values(value)

    @field_validator("answer_contains", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("answer_matches")
    @classmethod
    def _a_pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @field_validator("offers")
    @classmethod
    def _two(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(value) != 2:
            raise ValueError("name the two skills the bot should offer")
        return value

    def expectations(self) -> dict[str, Any]:
        """What this turn checks, as written."""
        return self.model_dump(exclude_none=True, exclude={"user", "conversation"})


class _Conversation(BaseModel):
    """``{conversation: NAME, turns: [...]}``: the explicit form."""

    model_config = ConfigDict(extra="forbid")
    conversation: str | None = None
    turns: list[dict[str, Any]] = Field(min_length=1)


@dataclass
class Case:
    """A turn read from the file, and where: ``file:line``, and the line of each of its fields."""

    expect: Expect
    file: Path
    line: int
    loc: tuple[Any, ...]  # its key path, e.g. ("conversations", 3, "turns", 1); within its line in JSON Lines
    field_lines: dict[str, int] = field(default_factory=dict)

    def at(self, name: str) -> str:
        """``file:line: conversations[3].turns[1].skill``: how an error about one of its fields starts."""
        return f"{self.file}:{self.field_lines.get(name, self.line)}: {key_path((*self.loc, name))}"


@dataclass
class Conversation:
    name: str
    cases: list[Case]


@dataclass
class TestFile:
    path: Path
    conversations: list[Conversation]

    @property
    def turns(self) -> int:
        return sum(len(c.cases) for c in self.conversations)


# -- reading a test file ------------------------------------------------------------------------------

def _error(file: Path, line: int | None, loc: tuple[Any, ...], message: str, hint: str | None = "fix that field") -> ChatbotError:
    where = f" {key_path(loc)}:" if loc else ""
    return ChatbotError(f"{file}:{line or 1}:{where} {printable(message)}", hint=hint)


def _validated(file: Path, model: type[BaseModel], data: Any, loc: tuple[Any, ...], line: Callable[[tuple[Any, ...]], int | None]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        where = (*loc, *first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = f"unknown field (the fields are: {', '.join(model.model_fields)})"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise _error(file, line(where), where, message + more) from None


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of *loc* in the node tree: of its key when it ends at one (a block value starts on the next
    line), of the item when it ends at a list's item, of the nearest parent that exists when it is missing."""
    node, line = root, root.start_mark.line + 1 if root is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            pair = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(key)), None)
            if pair is None:
                break
            line, node = pair[0].start_mark.line + 1, pair[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _yaml_items(file: Path) -> tuple[list[tuple[Any, tuple[Any, ...]]], Callable[[tuple[Any, ...]], int | None]]:
    root, data = read_yaml(file)
    line = lambda loc: _line_of(root, loc)  # noqa: E731  (a closure over the node tree)
    if isinstance(data, dict):
        unknown = [key for key in data if key != "conversations"]
        if unknown:
            raise _error(file, line((unknown[0],)), (unknown[0],), "unknown key: a test file holds `conversations:`", hint="remove it")
        items, prefix = data.get("conversations"), ("conversations",)
    else:
        items, prefix = data, ()
    if not isinstance(items, list) or not items:
        raise ChatbotError(f"{file}:{line(prefix) or 1}: {key_path(prefix) if prefix else 'the file'}: no conversations: "
                           "write a list of messages (`- user: …`) or of conversations (`- turns: [...]`)",
                           hint="see `chatbot test --help`")
    return [(item, (*prefix, index)) for index, item in enumerate(items)], line


def _jsonl_items(file: Path) -> tuple[list[tuple[Any, tuple[Any, ...]]], Callable[[tuple[Any, ...]], int | None]]:
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise ChatbotError(f"{file}: cannot read it ({exc.strerror or exc})") from None
    items: list[tuple[Any, tuple[Any, ...]]] = []
    lines: dict[int, int] = {}
    for number, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            text = chunk.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise ChatbotError(f"{file}:{number}:{exc.start + 1}: not UTF-8 text", hint="save it as UTF-8") from None
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            where = f"{number}:{exc.colno}" if isinstance(exc, json.JSONDecodeError) else str(number)
            raise ChatbotError(f"{file}:{where}: invalid JSON: {getattr(exc, 'msg', 'nested too deeply')}", hint="one JSON object a line") from None
        lines[len(items)] = number
        items.append((value, (len(items),)))
    if not items:
        raise ChatbotError(f"{file}: no conversations: write one JSON object a line", hint="see `chatbot test --help`")
    return items, lambda loc: lines.get(loc[0]) if loc else 1


def _jsonl_path(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """In JSON Lines an item's key path starts inside its line (the line number says which)."""
    return loc[1:]


def load_tests(path: str | Path) -> TestFile:
    """Read and check a test file; a ChatbotError names the file, the line and the field of the first problem."""
    file = Path(path)
    if file.is_dir():
        raise ChatbotError(f"{file}: is a directory, not a test file")
    if not file.exists():
        raise ChatbotError(f"{file}: no such file")
    jsonl = file.suffix.lower() in JSONL_SUFFIXES
    items, line = _jsonl_items(file) if jsonl else _yaml_items(file)
    shown = _jsonl_path if jsonl else (lambda loc: loc)

    def check(model: type[BaseModel], data: Any, loc: tuple[Any, ...]) -> Any:
        return _validated(file, model, data, shown(loc), lambda where: line(loc + where[len(shown(loc)):]))

    def case(data: Any, loc: tuple[Any, ...]) -> Case:
        expect = check(Expect, data, loc)
        fields = {name: line((*loc, name)) or line(loc) or 1 for name in data}
        return Case(expect=expect, file=file, line=line(loc) or 1, loc=shown(loc), field_lines=fields)

    conversations: list[Conversation] = []
    previous: str | None = None  # the name of the conversation the last single turn joined
    for data, loc in items:
        if not isinstance(data, dict):
            kind = {list: "a list", str: "text"}.get(type(data), type(data).__name__)
            raise _error(file, line(loc), shown(loc), f"a turn ({{user: …}}) or a conversation ({{turns: […]}}), not {kind}")
        if "turns" in data:
            explicit = check(_Conversation, data, loc)
            cases = [case(turn, (*loc, "turns", index)) for index, turn in enumerate(explicit.turns)]
            for index, one in enumerate(cases):
                if one.expect.conversation is not None:
                    raise _error(file, one.field_lines["conversation"], (*shown(loc), "turns", index, "conversation"),
                                 "name the conversation once, beside its turns", hint="remove it")
            name = explicit.conversation or cases[0].expect.user
            conversations.append(Conversation(name=name, cases=cases))
            previous = None
            continue
        one = case(data, loc)
        name = one.expect.conversation
        if name is not None and name == previous:
            conversations[-1].cases.append(one)
        else:
            conversations.append(Conversation(name=name or one.expect.user, cases=[one]))
        previous = name
    return TestFile(path=file, conversations=conversations)


def check_against(tests: TestFile, registry: Registry) -> None:
    """Every skill a test names is registered, and what it expects fits the skill's kind; else a ChatbotError naming the line."""
    names = ", ".join(registry.skills) or "none"
    for conversation in tests.conversations:
        for one in conversation.cases:
            expect = one.expect
            wanted = [expect.skill] if expect.skill not in (None, FALLBACK, ASK) else []
            for name in [*wanted, *(expect.offers or [])]:
                if name not in registry.skills:
                    key = "skill" if name == expect.skill else "offers"
                    raise ChatbotError(f"{one.at(key)}: no skill named {name!r} in {registry.path} (registered: {names}; "
                                       f"or {FALLBACK!r}, {ASK!r})", hint="fix the name")
            if expect.offers and expect.skill != ASK:
                raise ChatbotError(f"{one.at('offers')}: offers is for `skill: {ASK}` (the bot asks the user to choose)", hint="fix that field")
            skill = registry.skills.get(expect.skill or "")
            if skill is None:
                continue
            if expect.label is not None and skill.kind != "classify":
                raise ChatbotError(f"{one.at('label')}: {skill.name} is a {skill.kind} skill: only classify skills give a label",
                                   hint="remove it, or check the answer's text")
            if expect.entities is not None and skill.kind != "extract":
                raise ChatbotError(f"{one.at('entities')}: {skill.name} is a {skill.kind} skill: only extract skills find entities",
                                   hint="remove it, or check the answer's text")
            if expect.asks_for is not None and expect.asks_for not in skill.ask_for:
                asked = ", ".join(skill.ask_for) or "nothing"
                raise ChatbotError(f"{one.at('asks_for')}: {skill.name} never asks for {expect.asks_for!r} (its ask_for: {asked})",
                                   hint="see the skill's ask_for in models.yaml")


# -- running --------------------------------------------------------------------------------------

class Got(BaseModel):
    """What the bot did with a message."""

    outcome: str = Field(description=f"the skill that answered, {FALLBACK!r} or {ASK!r}")
    skill: str | None
    score: float
    text: str
    label: str | None = None
    entities: dict[str, list[str]] = Field(default_factory=dict, description="found in this message")
    slots: dict[str, list[str]] = Field(default_factory=dict, description="the session's, after this turn")
    asked: list[str] = Field(default_factory=list)
    awaiting: str | None = None


class TurnResult(BaseModel):
    """One turn: where it is written, what was expected, what came, and what differed."""

    file: str
    line: int
    conversation: str
    turn: int = Field(description="its place in the conversation, from 0")
    user: str
    expected: dict[str, Any]
    got: Got
    skill: str = Field(description="the skill it is counted under: the one expected, else the one that answered")
    routing_ok: bool | None = Field(description="the outcome was the expected skill; None when no skill was expected")
    answer_ok: bool | None = Field(description="every check of the answer passed; None when the turn checks none")
    problems: list[str] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def passed(self) -> bool:
        return not self.problems


class Rate(BaseModel):
    checked: int = 0
    passed: int = 0

    @computed_field  # type: ignore[prop-decorator]
    @property
    def rate(self) -> float | None:
        return self.passed / self.checked if self.checked else None


class Routing(BaseModel):
    checked: int
    correct: int
    accuracy: float | None
    asked: int = Field(description="turns where the bot asked the user to choose though a skill was expected (counted wrong)")
    labels: list[str] = Field(description="the rows and columns of the confusion matrix")
    confusion: dict[str, dict[str, int]] = Field(description="expected -> what came -> turns")


class Answers(BaseModel):
    checked: int
    passed: int
    pass_rate: float | None
    per_skill: dict[str, Rate]


class Report(BaseModel):
    file: str
    registry: str
    conversations: int
    turns: int
    passed: int
    failed: int
    routing: Routing
    answers: Answers
    seconds: float
    results: list[TurnResult]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failures(self) -> list[TurnResult]:
        return [result for result in self.results if not result.passed]

    @property
    def ok(self) -> bool:
        return self.failed == 0


def _norm(value: str) -> str:
    return " ".join(re.findall(r"\w+", value.lower()))


def _set(entities: Mapping[str, list[str]], kinds: Any = None) -> dict[str, set[str]]:
    return {kind: {_norm(v) for v in values} for kind, values in entities.items() if values and (kinds is None or kind in kinds)}


def _show(entities: Mapping[str, list[str]]) -> str:
    return ", ".join(f"{kind}: {' and '.join(values)}" for kind, values in entities.items() if values) or "none"


def outcome(reply: Reply) -> str:
    if reply.asked:
        return ASK
    if reply.fallback:
        return FALLBACK
    return reply.skill or FALLBACK


def _short(text: str, limit: int = 120) -> str:
    text = " / ".join(part.strip() for part in text.splitlines() if part.strip())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def judge(expect: Expect, reply: Reply) -> tuple[Got, bool | None, bool | None, list[str]]:
    """Compare what came with what was expected: (what came, routing right, answer right, the differences)."""
    got = Got(outcome=outcome(reply), skill=reply.skill, score=round(reply.score, 4), text=reply.text, label=reply.label,
              entities=reply.new_entities, slots=reply.entities, asked=reply.asked, awaiting=reply.awaiting)
    routing: list[str] = []
    answer: list[str] = []
    if expect.skill is not None and got.outcome != expect.skill:
        came = f"asked to choose between {' and '.join(got.asked)}" if got.outcome == ASK else got.outcome
        routing.append(f"skill: expected {expect.skill}, got {came} (score {got.score:.3f})")
    if expect.offers is not None and got.outcome == ASK and set(expect.offers) != set(got.asked):
        routing.append(f"offers: expected {' and '.join(expect.offers)}, got {' and '.join(got.asked)}")
    if expect.label is not None and _norm(got.label or "") != _norm(expect.label):
        answer.append(f"label: expected {expect.label}, got {got.label or 'none'}")
    if expect.entities is not None and _set(got.entities) != _set(expect.entities):
        answer.append(f"entities: expected {_show(expect.entities)}, got {_show(got.entities)}")
    if expect.slots is not None and _set(got.slots, expect.slots) != _set(expect.slots):
        answer.append(f"slots: expected {_show(expect.slots)}, got {_show({k: got.slots.get(k, []) for k in expect.slots})}")
    if expect.asks_for is not None and got.awaiting != expect.asks_for:
        answer.append(f"asks_for: expected a question for {expect.asks_for}, got " + (f"one for {got.awaiting}" if got.awaiting else "none"))
    if expect.answer is not None and got.text.strip() != expect.answer.strip():
        answer.append(f"answer: expected {expect.answer!r}, got {_short(got.text)!r}")
    for part in expect.answer_contains or []:
        if part.lower() not in got.text.lower():
            answer.append(f"answer_contains: expected {part!r} in {_short(got.text)!r}")
    if expect.answer_matches is not None and not re.search(expect.answer_matches, got.text):
        answer.append(f"answer_matches: expected /{expect.answer_matches}/ to match {_short(got.text)!r}")
    checks_answer = any(getattr(expect, name) is not None for name in ANSWER_FIELDS)
    routed = None if expect.skill is None and expect.offers is None else not routing
    return got, routed, (not answer if checks_answer else None), routing + answer


OnTurn = Callable[[TurnResult], None]


def run_tests(tests: TestFile, bot: Bot, *, on_turn: OnTurn | None = None) -> Report:
    """Each conversation in a session of its own (``test-N``), turn by turn, each turn judged; *on_turn* hears of every one."""
    check_against(tests, bot.registry)
    started = time.perf_counter()
    results: list[TurnResult] = []
    for number, conversation in enumerate(tests.conversations):
        session = f"test-{number}"
        for index, one in enumerate(conversation.cases):
            reply = bot.reply(session, one.expect.user)
            got, routed, answered, problems = judge(one.expect, reply)
            result = TurnResult(file=str(one.file), line=one.line, conversation=conversation.name, turn=index, user=one.expect.user,
                                expected=one.expect.expectations(), got=got, skill=one.expect.skill or got.outcome,
                                routing_ok=routed, answer_ok=answered, problems=problems)
            results.append(result)
            if on_turn:
                on_turn(result)
    return summarize(tests, bot.registry, results, time.perf_counter() - started)


def summarize(tests: TestFile, registry: Registry, results: list[TurnResult], seconds: float) -> Report:
    routed = [r for r in results if r.expected.get("skill") is not None]
    confusion: dict[str, dict[str, int]] = {}
    for result in routed:
        row = confusion.setdefault(result.expected["skill"], {})
        row[result.got.outcome] = row.get(result.got.outcome, 0) + 1
    seen = set(confusion) | {name for row in confusion.values() for name in row}
    labels = [name for name in [*registry.skills, FALLBACK, ASK] if name in seen]
    correct = sum(1 for r in routed if r.got.outcome == r.expected["skill"])
    per_skill: dict[str, Rate] = {}
    for result in results:
        if result.answer_ok is not None:
            rate = per_skill.setdefault(result.skill, Rate())
            rate.checked += 1
            rate.passed += int(result.answer_ok)
    answers_checked = sum(rate.checked for rate in per_skill.values())
    answers_passed = sum(rate.passed for rate in per_skill.values())
    order = {name: i for i, name in enumerate(labels)}
    per_skill = dict(sorted(per_skill.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))
    failed = sum(1 for r in results if not r.passed)
    return Report(
        file=str(tests.path), registry=str(registry.path), conversations=len(tests.conversations), turns=len(results),
        passed=len(results) - failed, failed=failed,
        routing=Routing(checked=len(routed), correct=correct, accuracy=correct / len(routed) if routed else None,
                        asked=sum(1 for r in routed if r.got.outcome == ASK and r.expected["skill"] != ASK), labels=labels, confusion=confusion),
        answers=Answers(checked=answers_checked, passed=answers_passed, pass_rate=answers_passed / answers_checked if answers_checked else None,
                        per_skill=per_skill),
        seconds=round(seconds, 2), results=results,
    )


@contextmanager
def throwaway_bot(registry: str | Path | None = None, *, backends: Mapping[str, Backend] | None = None,
                  on_progress: Callable[[str, int, int], None] | None = None) -> Iterator[Bot]:
    """The bot of *registry* with its conversations in a temporary database, removed afterwards.

    The router's cache is the bot's usual one (beside the registry): fitting the router is shared, stored
    conversations are not.
    """
    with tempfile.TemporaryDirectory(prefix="chatbot-test-") as folder:
        bot = Bot.from_registry(registry, db=f"sqlite:///{Path(folder) / 'test.db'}", backends=backends, on_progress=on_progress)
        try:
            yield bot
        finally:
            bot.close()
