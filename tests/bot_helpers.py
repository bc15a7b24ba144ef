"""A small bot for the tests: three skills with routing examples, and a scripted model backend.

The backend stands in for the fine-tuned models only (their answers are not what these tests are
about); the router, the store and the bot around it are the real ones.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import yaml

from chatbot.backends.base import Completion, CompletionStream, GenerationRequest, drain

REGISTRY = {
    "version": 1,
    "router": {"out_of_scope": [
        "What is the capital of Australia?", "Can you recommend a pasta recipe?", "Who won the football match?",
        "Tell me a joke about cats.", "How tall is Mount Everest?", "What is 17 times 23?", "Write a poem about the sea.",
        "How do I file my taxes?", "What is the stock price of Apple?", "Play some jazz music.",
    ]},
    "fallback": {"reply": "Sorry, I only know about bikes."},
    "skills": {
        "shop": {"kind": "qa", "description": "questions about the bike shop", "history_turns": 2, "routing_examples": [
            "When are you open?", "What are your opening hours?", "Where is the shop?", "How much is a service?",
            "Do you rent bikes?", "Can I pay by card?", "Is there parking near the shop?", "Do you repair e-bikes?"]},
        "mood": {"kind": "classify", "description": "the sentiment of a review", "routing_examples": [
            "The mechanic was great, my bike rides like new!", "Terrible service, my brakes still squeak.",
            "I love my new helmet, excellent quality.", "Very disappointed, the repair took two weeks.",
            "Friendly staff and a perfect repair.", "The wheel came back worse than before."]},
        "booking": {"kind": "extract", "description": "bike and day from a booking", "routing_examples": [
            "Can I book a brake tune for my Trek on Friday?", "Please book my Giant in for a service.",
            "I would like a chain replacement on Tuesday.", "Could you fix a puncture on my Cube tomorrow?",
            "Is there time on Saturday for a gear adjustment?", "Book my Gazelle for a full service next week."]},
    },
}


def write_registry(folder: Path, **changes: object) -> Path:
    data = yaml.safe_load(yaml.safe_dump(REGISTRY))
    for key, value in changes.items():
        data[key] = value
    path = folder / "models.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


class ScriptedBackend:
    """Answers by kind of prompt; records every request; can be slowed down or made to crash.

    Its tokens are words (a leading space each, as BPE tokens have): ``max_tokens`` cuts the answer
    after that many words and the finish reason says ``"length"``, a stop sequence ends it where it
    occurs (``"stop"``), and ``count_tokens`` counts words, so usage figures can be checked exactly.
    """

    def __init__(self, delay: float = 0.0, crash_on: str | None = None) -> None:
        self.requests: list[GenerationRequest] = []
        self.delay = delay
        self.crash_on = crash_on

    def answer(self, prompt: str) -> str:
        last = prompt.rsplit("User:", 1)[-1].lower()
        if "trek" in last or "giant" in last:
            return " bike:['Trek']\nday:['Friday']" if "trek" in last else " bike:['Giant']"
        if "great" in last or "love" in last:
            return " positive"
        return " We are open 9 to 6."

    def _tokens(self, request: GenerationRequest) -> tuple[list[str], str]:
        """The answer's words up to the first stop sequence and at most max_tokens of them, and the finish reason."""
        answer = self.answer(request.prompt)
        cut = min((answer.find(s) for s in request.stop if s and s in answer), default=len(answer))
        words = [" " + w for w in answer[:cut].split(" ")[1:]]
        if len(words) > request.max_tokens:
            return words[: request.max_tokens], "length"
        return words, "stop"

    def stream(self, request: GenerationRequest) -> CompletionStream:
        self.requests.append(request)
        if self.crash_on and self.crash_on in request.prompt:
            yield " half an ans"
            os._exit(3)  # the process dies in the middle of generating
        words, finish = self._tokens(request)
        for word in words:
            time.sleep(self.delay)
            yield word
        return Completion(text="".join(words), finish_reason=finish, prompt_tokens=self.count_tokens(request.base_model, request.prompt),
                          completion_tokens=len(words))

    def preload(self, base: str, adapter: str | None = None) -> None:
        pass

    def count_tokens(self, base: str, text: str) -> int:
        return len(text.split())

    def complete(self, request: GenerationRequest) -> Completion:
        return drain(self.stream(request))


def write_adapter_registry(folder: Path, base: str, adapter_a: str, adapter_b: str, max_tokens: int) -> Path:
    """models.yaml of two skills on the tiny base, each with its own adapter (conftest's ``tiny_adapters``): shop (a), mood (b)."""
    common = {"base_model": base, "separator": "\n\n###\n\n", "stop": [" END"], "generation": {"max_tokens": max_tokens}}
    path = folder / "models.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "skills": {
        "shop": common | {"kind": "qa", "adapter": adapter_a, "routing_examples": [
            "What are your opening hours?", "When do you open?", "Are you open on Sundays?", "Where is the shop?"]},
        "mood": common | {"kind": "classify", "adapter": adapter_b, "routing_examples": [
            "The battery died after a week.", "Great bike, I love it.", "Terrible repair, the brakes squeak.", "The chain broke."]},
    }}))
    return path
