"""What the endpoints need, as FastAPI dependencies: read from the app answering the request.

``create_app`` puts the bot and its :class:`AppState` on ``app.state``; ``request.app`` is that app
even when it is mounted inside another one.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from chatbot.bot import Bot


@dataclass
class AppState:
    """What the app keeps beside the bot."""

    executor: ThreadPoolExecutor  # replies are generated in these threads, off the event loop
    started: int  # when the app was made (Unix time): the ``created`` of model ``chatbot``
    ready: threading.Event = field(default_factory=threading.Event)  # the skills' models are loaded
    failure: str | None = None  # why they could not be
    base_models: list[str] = field(default_factory=list)  # what fine-tuning jobs may start from, listed in /v1/models


def get_bot(request: Request) -> Bot:
    return request.app.state.bot


def get_state(request: Request) -> AppState:
    return request.app.state.chatbot


BotDep = Annotated[Bot, Depends(get_bot)]
StateDep = Annotated[AppState, Depends(get_state)]
