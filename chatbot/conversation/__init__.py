"""Conversation state: sessions and turns, stored in SQL, one turn at a time per session."""

from chatbot.conversation.records import Session, SessionInfo, Timings, Turn
from chatbot.conversation.store import ConversationStore

__all__ = ["ConversationStore", "Session", "SessionInfo", "Timings", "Turn"]
