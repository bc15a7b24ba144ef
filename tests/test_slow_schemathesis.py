"""Schemathesis against the server's own OpenAPI schema, on a real server on loopback.

Every operation of ``/openapi.json`` (chat completions, completions, models, sessions, files,
fine-tuning jobs, health) gets generated requests, valid and invalid, sent with the API key: no
answer may be a 5xx, and every answer must be one the schema declares, with its content type and
body shape. The bot answers through the local backend (the tiny base and its two adapters, as in
tests/test_web_adapters.py).

Random strings never name a real model, session, file or job, so the test steers most generated names
onto ones that exist (a model, a session with a turn, uploaded files, a job on the tiny base) and most
last messages onto a user's: the answers that succeed are checked too, not only the 404s, and the last
test fails if too few did. ``max_tokens`` and ``n_epochs`` are capped so that generation and the jobs'
training stay short. ``pytest -m slow tests/test_slow_schemathesis.py`` takes about a minute on 2 cores.
"""

from __future__ import annotations

import json
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from bot_helpers import write_adapter_registry
from conftest import ADAPTER_PROMPTS
from environment import scaled
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance, status_code_conformance
from web_server import running

from chatbot.bot import Bot
from chatbot.web import create_app
from chatbot.web.access import Access

pytestmark = pytest.mark.slow

# schemathesis (4.32) names each operation's subtest by rewriting `item._nodeid`, which pytest 9.2's items no
# longer have: give them one that reads the node id and ignores the rewrite (each subtest still names its operation)
if not hasattr(pytest.Item, "_nodeid"):
    pytest.Item._nodeid = property(lambda item: item.nodeid, lambda item, value: None)  # type: ignore[attr-defined]

KEY = "schemathesis-key"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 50  # generated requests per operation and mode (valid, invalid), besides the coverage phase's
CAPS = {"max_tokens": 8, "max_completion_tokens": 8, "n_epochs": 2}  # larger generated values are lowered to these
ANSWERED: Counter[tuple[str, int]] = Counter()  # (operation, status) of every answer
ROWS = [{"prompt": prompt, "completion": completion} for prompt, completion in
        zip(ADAPTER_PROMPTS, [" We open at 9am END", " negative END"], strict=True)]


@pytest.fixture(scope="module")
def served(tiny_adapters: tuple[str, str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, list[str]]]]:
    """The server's URL, and the names that exist on it, by the parameter that names them."""
    base, a, b = tiny_adapters
    folder = tmp_path_factory.mktemp("schemathesis")
    write_adapter_registry(folder, base, a, b, max_tokens=CAPS["max_tokens"])
    bot = Bot.from_registry(folder / "models.yaml", db=f"sqlite:///{folder / 'chat.db'}")
    with running(create_app(bot, access=Access(api_keys=[KEY]), base_models=[base])) as url:
        api = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=scaled(60))
        deadline = time.monotonic() + scaled(120)
        while api.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, api.get("/readyz").text
            time.sleep(0.2)
        session = "alice"
        assert api.post(f"/sessions/{session}/messages", json={"text": "When do you open?"}).status_code == 200
        data = "".join(json.dumps(row) + "\n" for row in ROWS).encode()
        # a file to read, one to delete, one to train on
        file_id, doomed, training_file = (api.post("/v1/files", files={"file": ("rows.jsonl", data)}, data={"purpose": "fine-tune"})
                                          .json()["id"] for _ in range(3))
        job = api.post("/v1/fine_tuning/jobs", json={"model": base, "training_file": training_file, "hyperparameters": {"n_epochs": 1}})
        assert job.status_code == 200, job.text
        known = {"model": ["shop", "chatbot", "mood"], "model_id": ["shop", "chatbot", "mood", base], "base": [base],
                 "session_id": [session], "file_id": [file_id], "deleted_file_id": [doomed], "training_file": [training_file],
                 "validation_file": [training_file], "job_id": [job.json()["id"]]}
        yield url, known
        _end_jobs(api)
        api.close()


def _end_jobs(api: httpx.Client) -> None:
    """Cancel the jobs the test made and wait until none trains: a thread killed in torch at exit aborts the process."""
    deadline = time.monotonic() + scaled(120)
    while True:
        jobs, after = [], None
        while True:
            page = api.get("/v1/fine_tuning/jobs", params={"limit": 100} | ({"after": after} if after else {})).json()
            jobs += page["data"]
            if not page["has_more"]:
                break
            after = page["data"][-1]["id"]
        active = [job["id"] for job in jobs if job["status"] in ("validating_files", "queued", "running")]
        if not active:
            return
        assert time.monotonic() < deadline, f"jobs still active: {active}"
        for job_id in active:
            api.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")  # 400 for one whose model is going into service: it ends soon
        time.sleep(0.5)


def _pick(value: str, names: list[str]) -> str:
    """One of *names* for most generated strings (chosen by the string, so a failure replays), else the string itself."""
    choice = zlib.crc32(value.encode("utf-8", "surrogatepass")) % (len(names) + 1)
    return names[choice] if choice < len(names) else value


def _steer(values: dict[str, Any], known: dict[str, list[str]], *, job: bool = False) -> None:
    """Point generated names at ones that exist, cap the costly numbers, make the last message a user's."""
    for name, value in values.items():
        if isinstance(value, str) and name in known:
            values[name] = _pick(value, known["base"] if job and name == "model" else known[name])
        elif name in CAPS and isinstance(value, int) and not isinstance(value, bool) and CAPS[name] < value <= 4096:
            values[name] = CAPS[name]
        elif name == "hyperparameters" and isinstance(value, dict):
            _steer(value, known)
    if job and "model" not in values:  # the default base would train SmolLM2 for minutes
        values["model"] = known["base"][0]
    if isinstance(values.get("purpose"), str):
        values["purpose"] = _pick(values["purpose"], ["fine-tune"] * 3)
    messages = values.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict) and _pick(str(messages[-1]), ["user"] * 3) == "user":
        messages[-1]["role"] = "user"
        if not isinstance(messages[-1].get("content"), (str, list)) or not messages[-1]["content"]:
            messages[-1]["content"] = "When do you open?"


@pytest.fixture(scope="module")
def api_schema(served: tuple[str, dict[str, list[str]]]) -> Any:
    return schemathesis.openapi.from_url(served[0] + "/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_every_operation_answers_as_its_schema_says(case: schemathesis.Case, served: tuple[str, dict[str, list[str]]]) -> None:
    url, known = served
    # steered here rather than in map_* hooks, which the coverage phase's cases do not go through
    if isinstance(case.path_parameters, dict):
        _steer(case.path_parameters, known | ({"file_id": known["deleted_file_id"]} if case.method.upper() == "DELETE" else {}))
    if isinstance(case.body, dict):
        _steer(case.body, known, job=case.operation.path == "/v1/fine_tuning/jobs")
    response = case.call(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=scaled(60))
    ANSWERED[case.operation.label, response.status_code] += 1
    if case.operation.label == "POST /v1/fine_tuning/jobs" and response.status_code == 200:
        known["job_id"].append(response.json()["id"])  # queued behind the others: one to cancel
    case.validate_response(response, checks=CHECKS)


def test_the_generated_requests_did_succeed() -> None:
    """The steering works: each operation was answered 200 (204 for a delete) several times, not only refused."""
    if not ANSWERED:
        pytest.skip("runs after test_every_operation_answers_as_its_schema_says")
    operations = {operation for operation, _ in ANSWERED}
    succeeded = {operation: sum(n for (op, status), n in ANSWERED.items() if op == operation and status in (200, 204))
                 for operation in operations}
    assert len(operations) >= 20 and not [op for op, n in succeeded.items() if n == 0], succeeded
    posts = {path: succeeded[f"POST {path}"] for path in
             ("/v1/chat/completions", "/v1/completions", "/sessions/{session_id}/messages", "/v1/files", "/v1/fine_tuning/jobs")}
    assert min(posts.values()) >= 5, posts
