"""What a conversation is made of, as the API shows it: turns, sessions, their entities."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Timings(BaseModel):
    """Milliseconds spent on one turn."""

    route_ms: float = 0.0
    queue_ms: float = Field(default=0.0, description="waiting for the model, busy with other requests (part of generate_ms)")
    generate_ms: float = 0.0
    total_ms: float = 0.0


class Turn(BaseModel):
    """One user message and the bot's reply, as stored."""

    index: int = Field(description="0 for the first turn of the session")
    user: str
    reply: str
    skill: str | None = Field(default=None, description="the skill that answered; None when the fallback reply did")
    score: float = Field(default=0.0, description="the router's score for that skill")
    fallback: bool = False
    label: str | None = None
    entities: dict[str, list[str]] = Field(default_factory=dict)
    timings: Timings = Field(default_factory=Timings)
    created_at: datetime
    asked: list[str] = Field(default_factory=list, description="the skills the bot asked the user to choose between; the next turn answers "
                             "this turn's message with the one chosen")
    awaiting: str | None = Field(default=None, description="the entity type this turn's skill asked for (ask_for); the next message fills it")


class SessionInfo(BaseModel):
    id: str
    created_at: datetime
    updated_at: datetime
    turns: int


class Session(SessionInfo):
    """A whole session: its turns in order and the entities gathered so far."""

    entities: dict[str, list[str]] = Field(default_factory=dict, description="the session's slots: the latest values of each entity type")
    history: list[Turn] = Field(default_factory=list)


def fill_slots(known: dict[str, list[str]], new: dict[str, list[str]]) -> dict[str, list[str]]:
    """The session's slots after a turn: each entity type the turn found takes the turn's values; the others keep theirs.

    "Friday", then "make it Saturday", leaves ``day: ['Saturday']``; each turn keeps what it found.
    """
    return {**known, **{kind: list(dict.fromkeys(values)) for kind, values in new.items() if values}}