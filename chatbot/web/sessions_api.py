"""The plain REST API: post a message to a session, read a session back, delete it."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Header, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from chatbot.bot import Reply
from chatbot.conversation import Session, SessionInfo
from chatbot.defaults import MAX_MESSAGE_CHARS
from chatbot.web.dependencies import BotDep, StateDep
from chatbot.web.errors import APIError, guarded, responses
from chatbot.web.schemas import Text
from chatbot.web.streaming import in_thread, iterate_in_thread, sse

endpoints = APIRouter(prefix="/sessions", tags=["sessions"])


class Message(BaseModel):
    text: Text = Field(min_length=1, max_length=MAX_MESSAGE_CHARS, examples=["Are you open on Sundays?"])


def _no_session(session_id: str) -> APIError:
    return APIError(404, f"no session '{session_id}'", param="session_id", code="session_not_found")


@endpoints.get("", response_model=list[SessionInfo])
async def list_sessions(bot: BotDep, state: StateDep) -> list[SessionInfo]:
    """Every stored session, the most recent first."""
    return await in_thread(state.executor, bot.sessions)


@endpoints.post("/{session_id}/messages", response_model=Reply,
                responses={200: {"content": {"text/event-stream": {}}, "description": "the Reply, or with `Accept: text/event-stream` "
                                 "`token` events (`{\"text\": …}`) then one `reply` event"}, **responses(503)})
async def post_message(session_id: str, message: Message, bot: BotDep, state: StateDep, accept: str | None = Header(default=None)) -> Any:
    """Send a message; the reply comes back as JSON, or streamed as server-sent events."""
    if "text/event-stream" in (accept or ""):
        stream = bot.stream(session_id, message.text)

        async def events():  # noqa: ANN202
            async for piece in iterate_in_thread(state.executor, lambda: iter(stream)):
                yield sse(json.dumps({"text": piece}, ensure_ascii=False), event="token")
            yield sse(stream.reply.model_dump_json(), event="reply")

        return StreamingResponse(guarded(events(), lambda body: sse(json.dumps(body), event="error")), media_type="text/event-stream")
    return await in_thread(state.executor, lambda: bot.reply(session_id, message.text))


@endpoints.get("/{session_id}", response_model=Session, responses=responses(404))
async def get_session(session_id: str, bot: BotDep, state: StateDep) -> Session:
    """The session's turns and the entities gathered in it."""
    session = await in_thread(state.executor, lambda: bot.session(session_id))
    if session is None:
        raise _no_session(session_id)
    return session


@endpoints.delete("/{session_id}", status_code=204, responses=responses(404))
async def delete_session(session_id: str, bot: BotDep, state: StateDep) -> Response:
    """Forget the session and its turns."""
    if not await in_thread(state.executor, lambda: bot.delete_session(session_id)):
        raise _no_session(session_id)
    return Response(status_code=204)
