"""What a conversation is made of, as the API shows it: turns, sessions, their entities."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class Timings(BaseModel):
    """Milliseconds spent on one turn."""

    route_ms: float = 0.0
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


class SessionInfo(BaseModel):
    id: str
    created_at: datetime
    updated_at: datetime
    turns: int


class Session(SessionInfo):
    """A whole session: its turns in order and the entities gathered so far."""

    entities: dict[str, list[str]] = Field(default_factory=dict, description="every entity extracted in the session, by type")
    history: list[Turn] = Field(default_factory=list)


def merge_entities(known: dict[str, list[str]], new: dict[str, list[str]]) -> dict[str, list[str]]:
    """*known* plus *new*, each type's values in first-seen order, without repeats."""
    merged = {k: list(v) for k, v in known.items()}
    for kind, values in new.items():
        merged[kind] = list(dict.fromkeys([*merged.get(kind, []), *values]))
    return merged
