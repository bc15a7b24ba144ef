"""The openai backend against answers in OpenAI's own wire format (the examples of its API reference),
served on loopback by a plain http.server: none of our server's code is involved, so our client is
checked against OpenAI's shapes rather than against itself."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chatbot.backends.base import GenerationRequest, drain
from chatbot.backends.hosted import OpenAIBackend
from chatbot.errors import ChatbotError

COMPLETION = {"id": "cmpl-uqkvlQyYK7bGYrRHQ0eXlWi7", "object": "text_completion", "created": 1589478378, "model": "ft:davinci-002:acme::8Xy2",
              "system_fingerprint": "fp_44709d6fcb",
              "choices": [{"text": " positive", "index": 0, "logprobs": None, "finish_reason": "length"}],
              "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}}
CHAT = {"id": "chatcmpl-123", "object": "chat.completion", "created": 1677652288, "model": "gpt-4o-mini", "system_fingerprint": "fp_44709d6fcb",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there, how may I assist you today?", "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21}}
TEXT_CHUNKS = [{"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
                "choices": [{"text": piece, "index": 0, "logprobs": None, "finish_reason": finish}]}
               for piece, finish in ((" We", None), (" open", None), (" at 9", None), ("", "stop"))]
CHAT_CHUNKS = [{"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m", "system_fingerprint": "fp_1",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
               for delta, finish in (({"role": "assistant", "content": ""}, None), ({"content": "Hel"}, None), ({"content": "lo"}, None), ({}, "stop"))]
BAD_KEY = {"error": {"message": "Incorrect API key provided: sk-xxx.", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}
NO_MODEL = {"error": {"message": "The model `gone` does not exist", "type": "invalid_request_error", "param": None, "code": "model_not_found"}}


class OpenAIShapes(BaseHTTPRequestHandler):
    """Answers /v1/completions and /v1/chat/completions as OpenAI does; the model name picks a failure."""

    received: list[dict] = []
    failures_left = {"flaky": 1}

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        OpenAIShapes.received.append(body)
        if body["model"] == "gone":
            return self._json(404, NO_MODEL)
        if self.headers.get("Authorization") != "Bearer sk-test":
            return self._json(401, BAD_KEY)
        if body["model"] == "flaky" and OpenAIShapes.failures_left["flaky"]:
            OpenAIShapes.failures_left["flaky"] -= 1
            return self._json(500, {"error": {"message": "The server had an error", "type": "server_error", "param": None, "code": None}})
        chat = self.path.endswith("/chat/completions")
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for chunk in CHAT_CHUNKS if chat else TEXT_CHUNKS:
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if (body.get("stream_options") or {}).get("include_usage") and body["model"] != "no-usage":  # OpenAI's last chunk
                usage = {"id": "u", "object": "chat.completion.chunk" if chat else "text_completion", "created": 1, "model": "m",
                         "choices": [], "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}}
                self.wfile.write(f"data: {json.dumps(usage)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            return None
        return self._json(200, CHAT if chat else COMPLETION)

    def _json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), OpenAIShapes)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_KEY", "sk-test")
    OpenAIShapes.received.clear()


def request(model: str, **settings: object) -> GenerationRequest:
    return GenerationRequest(prompt="I love it!\n\n###\n\n", base_model=model, skill="mood", **({"max_tokens": 5, "stop": [" END"]} | settings))


def test_a_legacy_completion_is_read_with_the_servers_finish_reason_and_usage(url: str) -> None:
    done = OpenAIBackend(base_url=url, api_key_env="TEST_KEY").complete(request("ft:davinci-002:acme::8Xy2", temperature=0.0, seed=3))
    assert (done.text, done.finish_reason, done.prompt_tokens, done.completion_tokens) == (" positive", "length", 5, 7)
    sent = OpenAIShapes.received[-1]
    assert sent == {"model": "ft:davinci-002:acme::8Xy2", "prompt": "I love it!\n\n###\n\n", "max_tokens": 5, "temperature": 0.0, "top_p": 1.0,
                    "stream": False, "stop": [" END"], "seed": 3}


def test_a_chat_completion_sends_one_user_message(url: str) -> None:
    done = OpenAIBackend(base_url=url, api_key_env="TEST_KEY", api="chat").complete(request("gpt-4o-mini"))
    assert (done.text, done.finish_reason, done.prompt_tokens, done.completion_tokens) == ("Hello there, how may I assist you today?", "stop", 9, 12)
    assert OpenAIShapes.received[-1]["messages"] == [{"role": "user", "content": "I love it!\n\n###\n\n"}]


@pytest.mark.parametrize(("api", "pieces"), [("completions", [" We", " open", " at 9"]), ("chat", ["Hel", "lo"])])
def test_streams_yield_the_text_pieces(url: str, api: str, pieces: list[str]) -> None:
    assert list(OpenAIBackend(base_url=url, api_key_env="TEST_KEY", api=api).stream(request("m"))) == pieces  # type: ignore[arg-type]


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_a_stream_ends_with_the_servers_usage_and_finish_reason(url: str, api: str) -> None:
    backend = OpenAIBackend(base_url=url, api_key_env="TEST_KEY", api=api)  # type: ignore[arg-type]
    done = drain(backend.stream(request("m")))
    assert OpenAIShapes.received[-1]["stream_options"] == {"include_usage": True}
    assert (done.prompt_tokens, done.completion_tokens, done.finish_reason) == (11, 3, "stop")
    estimated = drain(backend.stream(request("no-usage")))  # a server that sends no usage: words stand in for tokens
    assert (estimated.prompt_tokens, estimated.completion_tokens) == (len("I love it!\n\n###\n\n".split()), len(estimated.text.split()))


def test_errors_name_the_skill_and_the_server_and_a_5xx_is_retried(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ChatbotError, match=rf"skill 'mood': {url} has no model 'gone'"):
        OpenAIBackend(base_url=url, api_key_env="TEST_KEY", max_retries=0).complete(request("gone"))
    monkeypatch.setenv("TEST_KEY", "sk-wrong")
    with pytest.raises(ChatbotError, match=rf"skill 'mood': {url} rejected the API key in \$TEST_KEY"):
        OpenAIBackend(base_url=url, api_key_env="TEST_KEY", max_retries=0).complete(request("m"))
    monkeypatch.setenv("TEST_KEY", "sk-test")
    assert OpenAIBackend(base_url=url, api_key_env="TEST_KEY", max_retries=1).complete(request("flaky")).text == " positive"
    assert [r["model"] for r in OpenAIShapes.received[-2:]] == ["flaky", "flaky"]  # the 500, then the retry
