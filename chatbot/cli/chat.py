"""``chatbot chat``: talk to the bot in the terminal, or pipe messages through it one per line."""

from __future__ import annotations

import sys
from contextlib import nullcontext
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from chatbot.cli.common import DB_HELP, EXIT_ERROR, REGISTRY_HELP, console, err_console, error, handle_errors, progress_bars
from chatbot.errors import ChatbotError

if TYPE_CHECKING:
    from chatbot.bot import Bot, Reply

COMMANDS = {
    "/skills": "list the skills",
    "/route TEXT": "show which skill would answer TEXT and why (no TEXT: the last message)",
    "/history": "show this session's turns",
    "/reset": "start a new session (the old one stays stored)",
    "/quit": "leave (Ctrl-D too)",
}


@handle_errors
def chat(
    session: Annotated[str | None, typer.Option("--session", help="session to continue or start (default: a new one)")] = None,
    registry: Annotated[str | None, typer.Option("--registry", help=REGISTRY_HELP)] = None,
    db: Annotated[str | None, typer.Option("--db", help=DB_HELP)] = None,
) -> None:
    """Chat with the bot: each message is routed to a skill, or to the fallback when none fits.

    In a terminal: line editing and history, Alt-Enter (or Esc then Enter) for a new line, replies
    streamed, slash commands (/skills, /route, /history, /reset, /quit). With standard input not
    a terminal, it reads one message per line and prints one reply per line; a turn that fails
    prints an empty line, its error goes to stderr, and the exit status at the end is 1.

    Example: chatbot chat --session alice
    """
    from chatbot.bot import Bot

    interactive = sys.stdin.isatty()
    with err_console.status("loading the router and the skills…") if interactive else nullcontext(), \
            progress_bars(min_total=1) if interactive else nullcontext() as on_progress:
        bot = Bot.from_registry(registry, db=db, on_progress=on_progress)
        bot.warm_up()
    session_id = session or f"chat-{uuid.uuid4().hex[:8]}"
    failed = 0
    try:
        if interactive:
            _interactive(bot, session_id)
        else:
            failed = _lines(bot, session_id)
    finally:
        bot.close()
    if failed:
        raise typer.Exit(EXIT_ERROR)


def _one_line(text: str) -> str:
    return " / ".join(part.strip() for part in text.splitlines() if part.strip())


def _converse(bot: Bot, session_id: str, messages: Iterable[str], answer: Callable[[str, str], None], *, plain: bool) -> None:
    """The loop of both modes: blank lines skipped, slash commands run, every other message answered."""
    for message in messages:
        text = message.strip()
        if not text:
            continue
        if text.startswith("/"):
            session_id, done = _command(bot, session_id, text, plain=plain)
            if done:
                return
            continue
        answer(session_id, text)


def _lines(bot: Bot, session_id: str) -> int:
    """Scripted use: one message per input line, one reply per output line; returns how many turns failed.

    A failed turn's line is empty (the replies stay in step with the messages) and its error goes to stderr.
    """
    err_console.print(f"session {session_id}", highlight=False)
    failed = 0

    def answer(session_id: str, text: str) -> None:
        nonlocal failed
        try:
            print(_one_line(bot.reply(session_id, text).text), flush=True)
        except ChatbotError as exc:
            failed += 1
            print(flush=True)
            error(str(exc))

    _converse(bot, session_id, sys.stdin, answer, plain=True)
    if failed:
        error(f"{failed} turn{'s' if failed != 1 else ''} failed in session {session_id}")
    return failed


def _interactive(bot: Bot, session_id: str) -> None:
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.key_binding import KeyBindings

    keys = KeyBindings()

    @keys.add("enter")
    def _submit(event) -> None:  # noqa: ANN001 - prompt_toolkit's event type
        event.current_buffer.validate_and_handle()

    @keys.add("escape", "enter")
    def _newline(event) -> None:  # noqa: ANN001
        event.current_buffer.insert_text("\n")

    history_file = Path(bot.store.url.removeprefix("sqlite:///")).parent / "chat_history" if bot.store.url.startswith("sqlite:///") else None
    prompt = PromptSession(history=FileHistory(str(history_file)) if history_file else None, multiline=True, key_bindings=keys,
                           prompt_continuation="… ")
    known = bot.session(session_id)
    status = f"continuing session {session_id} ({known.turns} turns)" if known else f"new session {session_id}"
    console.print(f"[dim]{escape(status)} · /skills /route /history /reset /quit · Alt-Enter for a new line[/]")

    def typed() -> Iterator[str]:
        while True:
            try:
                text = prompt.prompt("you › ")
            except EOFError:
                return
            except KeyboardInterrupt:
                continue
            yield text

    def answer(session_id: str, text: str) -> None:
        try:
            _streamed(bot, session_id, text)
        except ChatbotError as exc:
            error(str(exc))
        except KeyboardInterrupt:
            console.print("\n[dim](interrupted: this turn was not stored)[/]")

    _converse(bot, session_id, typed(), answer, plain=False)


def _streamed(bot: Bot, session_id: str, text: str) -> None:
    stream = bot.stream(session_id, text)
    console.print("[bold cyan]bot ›[/] ", end="")
    for piece in stream:
        console.out(piece, end="", highlight=False)
    console.print()
    reply = stream.reply
    assert reply is not None
    console.print(f"[dim]{_describe(reply)}[/]", highlight=False)


def _describe(reply: Reply) -> str:
    who = "fallback" if reply.fallback and not reply.skill else reply.skill
    if reply.fallback and reply.skill:
        who += " (fallback skill)"
    parts = [f"{who} · score {reply.score:.2f} · {reply.latency.total_ms:.0f} ms"]
    if reply.label:
        parts.append(f"label {reply.label}")
    if reply.entities:
        parts.append("known: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in reply.entities.items()))
    return escape(" · ".join(parts))


def _command(bot: Bot, session_id: str, line: str, *, plain: bool) -> tuple[str, bool]:
    """Run a slash command; returns the session to go on with and whether to stop."""
    name, _, argument = line.partition(" ")
    name = name.lower()
    if name in ("/quit", "/exit", "/q"):
        return session_id, True
    if name == "/reset":
        new = f"chat-{uuid.uuid4().hex[:8]}"
        _say(f"new session {new} (the old one, {session_id}, stays stored: --session {session_id} to go back)", plain)
        return new, False
    if name == "/skills":
        table = Table("skill", "kind", "description")
        for skill in bot.registry.skills.values():
            table.add_row(skill.name, skill.kind, skill.description)
        _show(table, [f"{s.name} ({s.kind}): {s.description}" for s in bot.registry.skills.values()], plain)
    elif name == "/history":
        turns = bot.store.history(session_id)
        rows = [_one_line(f"{t.index + 1}. you: {t.user} | bot [{t.skill or 'fallback'}]: {t.reply}") for t in turns]
        table = Table("#", "you", "bot", "skill")
        for t in turns:
            table.add_row(str(t.index + 1), t.user, t.reply, t.skill or "fallback")
        _show(table, rows or ["(no turns yet)"], plain)
    elif name == "/route":
        text = argument.strip() or next((t.user for t in reversed(bot.store.history(session_id, last=1))), "")
        if not text:
            _say("nothing to route yet: /route TEXT", plain)
            return session_id, False
        route = bot.route(text)
        verdict = route.skill if route.in_scope else f"out of scope → {bot.registry.fallback.skill or 'fallback reply'}"
        rows = [f"{c.skill}: {c.score:.3f}" for c in route.runners_up]
        table = Table("runner-up", "score", title=f"{text!r} → {verdict} (score {route.score:.3f}, threshold {route.threshold:.3f})")
        for c in route.runners_up:
            table.add_row(c.skill, f"{c.score:.3f}")
        _show(table, [f"{verdict} (score {route.score:.3f}, threshold {route.threshold:.3f}); runners-up: " + ", ".join(rows)], plain)
    else:
        _say("commands: " + ", ".join(f"{k} ({v})" for k, v in COMMANDS.items()), plain)
    return session_id, False


def _say(text: str, plain: bool) -> None:
    if plain:
        print(text, flush=True)
    else:
        console.print(f"[dim]{escape(text)}[/]", highlight=False)


def _show(table: Table, lines: list[str], plain: bool) -> None:
    if plain:
        print(" | ".join(lines), flush=True)
    else:
        console.print(table)
