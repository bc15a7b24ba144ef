"""The plain REST API: post a message to a session, read a session back, delete it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from chatbot.bot import Bot, Reply
from chatbot.conversation import Session, SessionInfo
from chatbot.defaults import MAX_MESSAGE_CHARS
from chatbot.web.errors import APIError
from chatbot.web.streaming import in_thread, iterate_in_thread, sse


class Message(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_MESSAGE_CHARS, examples=["Are you open on Sundays?"])


def build_router(bot: Bot, app_state: Any) -> APIRouter:
    router = APIRouter(prefix="/sessions", tags=["sessions"])
    executor = app_state.executor

    @router.get("", response_model=list[SessionInfo])
    async def list_sessions() -> list[SessionInfo]:
        """Every stored session, the most recent first."""
        return await in_thread(executor, bot.sessions)

    @router.post("/{session_id}/messages", response_model=Reply,
                 responses={200: {"content": {"text/event-stream": {}}, "description": "the Reply, or with `Accept: text/event-stream` "
                                  "`token` events (`{\"text\": …}`) then one `reply` event"}})
    async def post_message(session_id: str, message: Message, accept: str | None = Header(default=None)) -> Any:
        """Send a message; the reply comes back as JSON, or streamed as server-sent events."""
        if "text/event-stream" in (accept or ""):
            stream = bot.stream(session_id, message.text)

            async def events():  # noqa: ANN202
                import json

                async for piece in iterate_in_thread(executor, lambda: iter(stream)):
                    yield sse(json.dumps({"text": piece}, ensure_ascii=False), event="token")
                yield sse(stream.reply.model_dump_json(), event="reply")

            return StreamingResponse(events(), media_type="text/event-stream")
        return await in_thread(executor, lambda: bot.reply(session_id, message.text))

    @router.get("/{session_id}", response_model=Session)
    async def get_session(session_id: str) -> Session:
        """The session's turns and the entities gathered in it."""
        session = await in_thread(executor, lambda: bot.session(session_id))
        if session is None:
            raise APIError(404, f"no session '{session_id}'", param="session_id", code="session_not_found")
        return session

    @router.delete("/{session_id}", status_code=204)
    async def delete_session(session_id: str) -> Response:
        """Forget the session and its turns."""
        if not await in_thread(executor, lambda: bot.delete_session(session_id)):
            raise APIError(404, f"no session '{session_id}'", param="session_id", code="session_not_found")
        return Response(status_code=204)

    return router
