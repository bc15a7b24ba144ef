"""What an operator sees: Prometheus metrics, one structured log line per turn, valid JSON logs, access logs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from bot_helpers import REGISTRY, ScriptedBackend, write_registry
from environment import scaled
from web_server import free_port, running

from chatbot.bot import Bot
from chatbot.web import create_app
from chatbot.web.access import Access

CHATBOT = str(Path(sys.executable).with_name("chatbot"))


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of Prometheus' text format."""
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else "")
    for line in text.splitlines():
        if not line.startswith("#") and line.rsplit(" ", 1)[0] == wanted:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {wanted} in:\n{text}")


def test_metrics_count_requests_turns_tokens_and_jobs(tmp_path: Path) -> None:
    write_registry(tmp_path)
    backend = ScriptedBackend()
    bot = Bot.from_registry(tmp_path / "models.yaml", db=f"sqlite:///{tmp_path / 'c.db'}", backends={"local": backend})
    headers = {"Authorization": "Bearer k"}
    with running(create_app(bot, access=Access(api_keys=["k"]))) as url:
        assert httpx.get(url + "/metrics").status_code == 401  # behind the key, as every data route
        booked = httpx.post(url + "/sessions/alice/messages", json={"text": "Can I bring my Trek in on Friday for new brakes?"}, headers=headers)
        assert booked.json()["skill"] == "booking"
        httpx.post(url + "/sessions/alice/messages", json={"text": "Who was the first emperor of Rome?"}, headers=headers)
        text = httpx.get(url + "/metrics", headers=headers).text
    assert _metric(text, "chatbot_turns_total", skill="booking", outcome="answered") == 1
    assert _metric(text, "chatbot_turns_total", skill="none", outcome="fallback") == 1
    assert _metric(text, "chatbot_http_requests_total", method="POST", route="/sessions/{session_id}/messages", status="200") == 2
    # refused before it reached a route: counted too, without a route
    assert _metric(text, "chatbot_http_requests_total", method="GET", route="unmatched", status="401") == 1
    assert _metric(text, "chatbot_http_request_seconds_count", route="/sessions/{session_id}/messages") == 2
    assert _metric(text, "chatbot_tokens_total", kind="prompt") == len(backend.requests[0].prompt.split())
    assert _metric(text, "chatbot_turn_seconds_count", stage="queue") == 2
    assert "alice" not in text  # session ids never become labels


def test_job_states_are_reported_when_scraped(tmp_path: Path) -> None:
    write_registry(tmp_path)
    bot = Bot.from_registry(tmp_path / "models.yaml", db=f"sqlite:///{tmp_path / 'c.db'}", backends={"local": ScriptedBackend()})
    app = create_app(bot, warm_up=False)
    try:
        base = {"object": "fine_tuning.job", "model": "m", "training_file": "f", "validation_file": None, "hyperparameters": {},
                "metadata": {}, "error": None, "finished_at": None}
        app.state.jobs.add_job(base | {"id": "ftjob-1", "created_at": 1, "status": "failed"})
        app.state.jobs.add_job(base | {"id": "ftjob-2", "created_at": 2, "status": "failed"})
        from prometheus_client import generate_latest

        text = generate_latest(app.state.metrics.registry).decode()
        assert _metric(text, "chatbot_fine_tuning_jobs", status="failed") == 2
    finally:
        app.state.job_worker.stop()


def test_one_log_line_per_turn_with_the_session_hashed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from chatbot.cli.common import JsonLines

    write_registry(tmp_path)
    bot = Bot.from_registry(tmp_path / "models.yaml", db=f"sqlite:///{tmp_path / 'c.db'}", backends={"local": ScriptedBackend()})
    with caplog.at_level(logging.INFO, logger="chatbot.bot"):
        bot.reply("alice@example.com", "Can I bring my Trek in on Friday for new brakes?")
    turns = [r for r in caplog.records if r.getMessage() == "turn"]
    assert len(turns) == 1
    line = json.loads(JsonLines().format(turns[0]))
    assert line["skill"] == "booking" and line["fallback"] is False and line["turn"] == 0 and line["total_ms"] > 0
    assert {"route_ms", "queue_ms", "generate_ms", "prompt_tokens", "completion_tokens", "score"} <= set(line)
    assert len(line["session"]) == 16 and "alice" not in json.dumps(line) and "Trek" not in json.dumps(line)  # no user data


def test_the_server_writes_an_access_log_when_asked(tmp_path: Path) -> None:
    write_registry(tmp_path, skills={name: {**skill, "routing": False} for name, skill in REGISTRY["skills"].items()})
    port = free_port()
    process = subprocess.Popen([CHATBOT, "serve", "--port", str(port), "--access-log", "--no-fine-tuning"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ | {"CHATBOT_THREADS": "1"})
    try:
        deadline = time.monotonic() + scaled(120)
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None, "chatbot serve did not start"
                time.sleep(0.3)
        httpx.get(f"http://127.0.0.1:{port}/v1/models")
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert '"GET /v1/models HTTP/1.1" 200' in output
