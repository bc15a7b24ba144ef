"""A stand-in OpenAI server on loopback, written with the standard library only (no FastAPI, no chatbot code).

It answers in OpenAI's wire format: legacy and chat completions (plain and streamed), the fine-tuning
job list and a job's events. A prompt containing ``boom`` is refused with a 400, as a server refuses a
request it can't serve. Run as a script it serves until killed and prints its base URL first.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

JOBS = [
    {"id": "ftjob-2", "object": "fine_tuning.job", "created_at": 1700000200, "finished_at": None, "model": "smollm2-135m",
     "fine_tuned_model": None, "organization_id": "org-1", "status": "running", "hyperparameters": {"n_epochs": 3},
     "training_file": "file-2", "validation_file": None, "result_files": [], "trained_tokens": None, "error": None, "seed": 0},
    {"id": "ftjob-1", "object": "fine_tuning.job", "created_at": 1700000100, "finished_at": 1700000150, "model": "smollm2-135m",
     "fine_tuned_model": "ft:smollm2-135m:mood", "organization_id": "org-1", "status": "succeeded", "hyperparameters": {"n_epochs": 1},
     "training_file": "file-1", "validation_file": None, "result_files": [], "trained_tokens": 120, "error": None, "seed": 0},
]
EVENTS = [  # newest first, as OpenAI lists them
    {"id": "ftevent-3", "object": "fine_tuning.job.event", "created_at": 1700000150, "level": "info", "message": "The job has successfully completed", "type": "message"},
    {"id": "ftevent-2", "object": "fine_tuning.job.event", "created_at": 1700000140, "level": "info", "message": "Step 1/1: training loss=0.5", "type": "metrics",
     "data": {"step": 1, "total_steps": 1, "train_loss": 0.5}},
    {"id": "ftevent-1", "object": "fine_tuning.job.event", "created_at": 1700000100, "level": "info", "message": "Fine-tuning job started", "type": "message"},
]
REPLY = "hello from the stub"


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path = self.path.split("?")[0].rstrip("/")
        if path.endswith("/fine_tuning/jobs"):
            return self._json(200, {"object": "list", "data": JOBS, "has_more": False})
        if path.endswith("/events"):
            return self._json(200, {"object": "list", "data": EVENTS, "has_more": False})
        job = next((j for j in JOBS if path.endswith("/fine_tuning/jobs/" + j["id"])), None)
        if job is not None:
            return self._json(200, job)
        if path.endswith("/models"):
            return self._json(200, {"object": "list", "data": [{"id": "stub", "object": "model", "created": 0, "owned_by": "stub"}]})
        return self._json(404, {"error": {"message": f"no route {path}", "type": "invalid_request_error", "param": None, "code": None}})

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        chat = self.path.endswith("/chat/completions")
        prompt = json.dumps(body.get("messages") if chat else body.get("prompt"))
        if "boom" in prompt:
            return self._json(400, {"error": {"message": "the stub refuses to say boom", "type": "invalid_request_error", "param": None, "code": None}})
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for piece, finish in ((" " + REPLY, None), ("", "stop")):
                choice = ({"index": 0, "delta": {"content": piece} if piece else {}, "finish_reason": finish} if chat
                          else {"index": 0, "text": piece, "logprobs": None, "finish_reason": finish})
                chunk = {"id": "x-1", "object": "chat.completion.chunk" if chat else "text_completion", "created": 1, "model": body["model"],
                         "choices": [choice]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            return None
        usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
        if chat:
            answer = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": body["model"], "usage": usage,
                      "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY}, "logprobs": None, "finish_reason": "stop"}]}
        else:
            answer = {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": body["model"], "usage": usage,
                      "choices": [{"index": 0, "text": " " + REPLY, "logprobs": None, "finish_reason": "stop"}]}
        return self._json(200, answer)

    def _json(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@contextmanager
def openai_stub() -> Iterator[str]:
    """Serve the stub on a free loopback port; yields its /v1 base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"http://127.0.0.1:{httpd.server_address[1]}/v1", flush=True)
    sys.exit(httpd.serve_forever())
