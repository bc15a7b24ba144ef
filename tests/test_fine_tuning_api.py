"""OpenAI's files and fine-tuning API on our server, driven by the official openai client (tiny model)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from bot_helpers import REGISTRY, write_registry
from environment import scaled
from web_server import running

from chatbot import registry as registry_io
from chatbot.backends.base import GenerationRequest
from chatbot.backends.local import LocalBackend
from chatbot.bot import Bot
from chatbot.jobs.store import JobStore
from chatbot.jobs.worker import JobWorker
from chatbot.web import create_app

ROWS = [
    {"prompt": "The battery died after a day.\n\n###\n\n", "completion": " negative END"},
    {"prompt": "Great bike, rides like new!\n\n###\n\n", "completion": " positive END"},
    {"prompt": "Terrible service, still broken.\n\n###\n\n", "completion": " negative END"},
    {"prompt": "I love my new helmet.\n\n###\n\n", "completion": " positive END"},
]


def jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tiny_base: str) -> Iterator[tuple[openai.OpenAI, Bot, str]]:
    folder = tmp_path_factory.mktemp("ft")
    skills = {name: skill | {"base_model": tiny_base, "generation": {"max_tokens": 4}} for name, skill in REGISTRY["skills"].items()}
    write_registry(folder, skills=skills)
    bot = Bot.from_registry(folder / "models.yaml", db=f"sqlite:///{folder / 'c.db'}")
    with running(create_app(bot, base_models=[tiny_base])) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0), bot, tiny_base


def wait_for(client: openai.OpenAI, job_id: str, timeout: float = 120):  # noqa: ANN201
    deadline = time.monotonic() + scaled(timeout)
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in ("succeeded", "failed", "cancelled") or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


def test_files_upload_list_retrieve_content_delete(server: tuple[openai.OpenAI, Bot, str]) -> None:
    client = server[0]
    uploaded = client.files.create(file=("mood.jsonl", jsonl(ROWS)), purpose="fine-tune")
    assert uploaded.object == "file" and uploaded.bytes == len(jsonl(ROWS)) and uploaded.filename == "mood.jsonl"
    assert uploaded.id in [f.id for f in client.files.list()]
    assert client.files.retrieve(uploaded.id).purpose == "fine-tune"
    assert client.files.content(uploaded.id).read() == jsonl(ROWS)
    assert client.files.delete(uploaded.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.files.create(file=("x.jsonl", jsonl(ROWS)), purpose="assistants")


def test_a_job_trains_a_model_that_answers_at_once(server: tuple[openai.OpenAI, Bot, str]) -> None:
    client, bot, base = server
    training = client.files.create(file=("mood.jsonl", jsonl(ROWS * 2)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=base, training_file=training.id, validation_file=training.id, suffix="mood",
                                         hyperparameters={"n_epochs": 3, "batch_size": 2, "learning_rate_multiplier": 1},
                                         metadata={"kind": "classify"}, seed=1)
    assert job.status == "validating_files" and job.object == "fine_tuning.job"
    done = wait_for(client, job.id)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model.startswith("ft-") and "-mood-" in done.fine_tuned_model
    assert done.hyperparameters.n_epochs == 3 and done.finished_at >= done.created_at
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert messages[0] == "The job has successfully completed" and messages[-1].startswith("Created fine-tuning job")
    assert "Fine-tuning job started" in messages and any(m.startswith("Epoch 3 done") for m in messages)
    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    assert checkpoints[0].fine_tuned_model_checkpoint == done.fine_tuned_model and checkpoints[0].step_number == 12
    skill_record = server[1].registry.get(done.fine_tuned_model).training
    assert done.trained_tokens == skill_record.trained_tokens > 0  # the examples' tokens times the epochs run
    kept = {e.step: e for e in skill_record.epochs if e.checkpoint}  # the best and the last three epochs, as OpenAI keeps them
    assert {c.step_number for c in checkpoints} == set(kept) | {12}
    assert all(c.fine_tuned_model_checkpoint == f"{done.fine_tuned_model}:ckpt-step-{c.step_number}" for c in checkpoints[1:])
    assert job.id in [j.id for j in client.fine_tuning.jobs.list()]

    assert done.fine_tuned_model in [m.id for m in client.models.list()]  # served without a restart
    skill = bot.registry.get(done.fine_tuned_model)
    assert skill.kind == "classify" and not skill.routing  # answers by name; the router takes it when the operator says
    # the server answers with the job's adapter: the same as the local backend asked directly with it
    direct = LocalBackend().complete(GenerationRequest(prompt=ROWS[0]["prompt"], base_model=skill.base_model, max_tokens=3,
                                                       adapter=str(bot.registry.adapter_path(skill)), stop=skill.stop))
    completion = client.completions.create(model=done.fine_tuned_model, prompt=ROWS[0]["prompt"], max_tokens=3)
    assert (completion.choices[0].text, completion.choices[0].finish_reason) == (direct.text, direct.finish_reason)
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (direct.prompt_tokens, direct.completion_tokens)
    chat = client.chat.completions.create(model=done.fine_tuned_model, messages=[{"role": "user", "content": "The battery died."}],
                                          max_tokens=3)
    asked = LocalBackend().complete(GenerationRequest(prompt="The battery died." + skill.separator, base_model=skill.base_model,
                                                      max_tokens=3, adapter=str(bot.registry.adapter_path(skill)), stop=skill.stop))
    assert chat.choices[0].message.content == skill.skill_kind.parse(asked.text, skill.stop, None).text


def test_a_bad_file_fails_the_job_with_the_line(server: tuple[openai.OpenAI, Bot, str]) -> None:
    client, _, base = server
    bad = jsonl(ROWS[:2]) + b'{"prompt": "no completion here\\n\\n###\\n\\n"}\n' + jsonl(ROWS[2:])
    training = client.files.create(file=("bad.jsonl", bad), purpose="fine-tune")
    done = wait_for(client, client.fine_tuning.jobs.create(model=base, training_file=training.id).id)
    assert done.status == "failed" and done.error.code == "invalid_training_file" and done.error.param == "training_file"
    assert done.error.message.startswith(f"{training.id}:3: ")


def test_cancel_and_unknown_ids(server: tuple[openai.OpenAI, Bot, str]) -> None:
    client, _, base = server
    training = client.files.create(file=("mood.jsonl", jsonl(ROWS)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model=base, training_file=training.id, hyperparameters={"n_epochs": 50, "batch_size": 1})
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    assert wait_for(client, job.id).status == "cancelled" and wait_for(client, job.id).fine_tuned_model is None
    with pytest.raises(openai.BadRequestError, match="already ended"):
        client.fine_tuning.jobs.cancel(job.id)
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-nope")
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.create(model=base, training_file="file-nope")


def test_only_one_of_two_racing_status_changes_wins(db_url: str, tmp_path: Path) -> None:
    """The worker starting a job and a client cancelling it race; exactly one wins and its status stays."""
    store = JobStore(db_url, tmp_path)
    for n in range(20):
        store.add_job({"id": f"ftjob-{n}", "created_at": n, "status": "queued"})
        barrier = threading.Barrier(2)
        won: dict[str, object] = {}

        def change(status: str, job_id: str = f"ftjob-{n}") -> None:
            barrier.wait()
            won[status] = store.update_job(job_id, only_if=("queued",), status=status)

        threads = [threading.Thread(target=change, args=(status,)) for status in ("running", "cancelled")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        winners = [status for status, job in won.items() if job is not None]
        assert len(winners) == 1, won
        assert store.job(f"ftjob-{n}")["status"] == winners[0]


def test_a_job_whose_model_goes_into_service_can_no_longer_be_cancelled(tmp_path: Path, tiny_base: str) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'c.db'}", tmp_path)
    training = store.add_file("mood.jsonl", "fine-tune", jsonl(ROWS))
    store.add_job({"id": "ftjob-late", "created_at": 1, "status": "validating_files", "model": tiny_base, "training_file": training["id"],
                   "validation_file": None, "hyperparameters": {"n_epochs": 1, "batch_size": 2}, "metadata": {"kind": "classify"},
                   "seed": 0, "user_provided_suffix": None, "error": None, "finished_at": None})
    tried: list[object] = []
    worker = JobWorker(store, tmp_path / "models.yaml", on_model=lambda skill: tried.append((skill.name, worker.cancel("ftjob-late"))))
    worker.start()
    try:
        deadline = time.monotonic() + scaled(120)
        while store.job("ftjob-late")["status"] not in ("succeeded", "failed", "cancelled") and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.stop()
    job = store.job("ftjob-late")
    assert job["status"] == "succeeded", job["error"]
    assert tried == [(job["fine_tuned_model"], None)]  # the cancel came while its model was being served: refused


def test_jobs_survive_a_restart(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'c.db'}", tmp_path)
    base = {"object": "fine_tuning.job", "model": "m", "training_file": "file-x", "validation_file": None, "hyperparameters": {},
            "metadata": {}, "error": None, "finished_at": None}
    store.add_job(base | {"id": "ftjob-running", "created_at": 1, "status": "running"})
    store.add_job(base | {"id": "ftjob-queued", "created_at": 2, "status": "validating_files"})
    worker = JobWorker(JobStore(f"sqlite:///{tmp_path / 'c.db'}", tmp_path), tmp_path / "models.yaml")  # the server restarts
    worker.start()
    try:
        died = store.job("ftjob-running")
        assert died["status"] == "failed" and died["error"]["code"] == "server_restarted"
        deadline = time.monotonic() + scaled(60)
        while store.job("ftjob-queued")["status"] == "validating_files" and time.monotonic() < deadline:
            time.sleep(0.1)
        picked = store.job("ftjob-queued")
        assert picked["status"] == "failed" and picked["error"]["message"] == "file-x: the file is gone (deleted?)"  # picked up again
    finally:
        worker.stop()


def test_a_job_another_server_runs_is_left_to_it_until_its_worker_is_gone(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = JobStore(url, tmp_path)
    base = {"object": "fine_tuning.job", "model": "m", "training_file": "file-x", "validation_file": None, "hyperparameters": {},
            "metadata": {}, "error": None, "finished_at": None}
    owners = {"ftjob-elsewhere": "otherhost:123:abc", "ftjob-dead": f"{socket.gethostname()}:{_ended_pid()}:abc"}
    for job_id, owner in owners.items():
        store.add_job(base | {"id": job_id, "created_at": 1, "status": "queued"})
        assert store.update_job(job_id, only_if=("queued",), owner=owner, status="running")
    assert store.update_job("ftjob-dead", only_if=("queued",), owner="someone-else", status="running") is None  # claimed once only
    worker = JobWorker(JobStore(url, tmp_path), tmp_path / "models.yaml")  # a replica starts
    worker.start()
    try:
        assert store.job("ftjob-dead")["status"] == "failed"  # its process has ended: recovered at once
        assert store.job("ftjob-elsewhere")["status"] == "running"  # its worker beats: left alone
        assert store.beat("ftjob-elsewhere", owners["ftjob-elsewhere"]) == "running"
        assert store.beat("ftjob-elsewhere", worker.owner) is None  # not this worker's job
    finally:
        worker.stop()
    late = JobWorker(JobStore(url, tmp_path), tmp_path / "models.yaml", lease_s=0.0)  # no heartbeat within the lease
    late.start()
    try:
        assert store.job("ftjob-elsewhere")["status"] == "failed"
        assert store.beat("ftjob-elsewhere", owners["ftjob-elsewhere"]) is None  # the old worker learns it lost the job
    finally:
        late.stop()


def test_an_abandoned_job_is_taken_over_once_and_a_cancel_reaches_its_worker(tmp_path: Path) -> None:
    store, other = (JobStore(f"sqlite:///{tmp_path / 'c.db'}", tmp_path) for _ in range(2))
    store.add_job({"object": "fine_tuning.job", "id": "ftjob-a", "created_at": 1, "status": "queued", "model": "m"})
    store.update_job("ftjob-a", only_if=("queued",), owner="gone:1:x", status="running")
    assert store.take_over("ftjob-a", "gone:1:x", "a:2:y") and not other.take_over("ftjob-a", "gone:1:x", "b:3:z")
    other.update_job("ftjob-a", only_if=("running",), status="cancelled")  # a cancel sent to another server
    assert store.beat("ftjob-a", "a:2:y") == "cancelled"


def test_train_hosted_from_the_cli_then_chat_with_the_skill(server: tuple[openai.OpenAI, Bot, str], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from chatbot.cli import app

    runner = CliRunner(env={"COLUMNS": "250"})
    client, _, base = server
    url = str(client.base_url).rstrip("/")
    data = tmp_path / "mood.jsonl"
    data.write_bytes(jsonl(ROWS * 2))
    result = runner.invoke(app, ["train", "mood-hosted", "--hosted", "--base-url", url, "--base", base, "--kind", "classify",
                                 "--data", str(data), "--epochs", "2", "--batch-size", "2", "--suffix", "cli"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "Fine-tuning job started" in result.output and "registered as skill mood-hosted" in result.output
    import yaml

    skill = yaml.safe_load((tmp_path / "models.yaml").read_text())["skills"]["mood-hosted"]
    assert skill["backend"] == "openai" and skill["base_url"] == url and skill["model"].startswith("ft-") and "-cli-" in skill["model"]
    assert skill["training"]["hyperparameters"]["n_epochs"] == 2 and skill["training"]["data_file"] == "mood.jsonl"

    asked = runner.invoke(app, ["ask", "mood-hosted", "The battery died after a day.", "--json"], catch_exceptions=False)
    assert asked.exit_code == 0, asked.output
    assert json.loads(asked.stdout)["skill"] == "mood-hosted"
    chat = runner.invoke(app, ["chat", "--session", "h"], input="The battery died after a day.\n", catch_exceptions=False)
    assert chat.exit_code == 0 and len(chat.stdout.splitlines()) == 1
    shown = json.loads(runner.invoke(app, ["sessions", "show", "h", "--json"]).stdout)
    assert shown["history"][0]["skill"] == "mood-hosted"

    job_id = skill["training"]["hyperparameters"]["job"]
    assert job_id in runner.invoke(app, ["jobs", "list", "--base-url", url]).output
    assert json.loads(runner.invoke(app, ["jobs", "show", job_id, "--base-url", url]).stdout)["status"] == "succeeded"
    assert "The job has successfully completed" in runner.invoke(app, ["jobs", "events", job_id, "--base-url", url]).output
    ended = runner.invoke(app, ["jobs", "cancel", job_id, "--base-url", url])
    assert ended.exit_code == 1 and "already ended" in ended.output
    down = runner.invoke(app, ["jobs", "list", "--base-url", "http://127.0.0.1:9/v1"])
    assert down.exit_code == 1 and "cannot reach http://127.0.0.1:9/v1" in down.output


def test_jobs_and_conversations_share_one_engine(tmp_path: Path) -> None:
    from bot_helpers import ScriptedBackend

    write_registry(tmp_path)
    bot = Bot.from_registry(tmp_path / "models.yaml", db=f"sqlite:///{tmp_path / 'c.db'}", backends={"local": ScriptedBackend()})
    app = create_app(bot, warm_up=False)
    try:
        assert app.state.jobs.engine is bot.store.engine  # one pool for both
    finally:
        app.state.job_worker.stop()


def test_a_file_in_use_by_a_job_that_has_not_ended_can_not_be_deleted(server: tuple[openai.OpenAI, Bot, str]) -> None:
    client, bot, base = server
    upload = client.files.create(file=("mood.jsonl", jsonl(ROWS)), purpose="fine-tune")
    store = JobStore(f"sqlite:///{bot.registry.path.parent / 'c.db'}", bot.data_dir)  # a job the worker is busy with
    store.add_job({"id": "ftjob-busy", "object": "fine_tuning.job", "created_at": 1, "status": "running", "model": base,
                   "training_file": "file-other", "validation_file": upload.id, "hyperparameters": {}, "metadata": {}})
    with pytest.raises(openai.ConflictError, match="ftjob-busy"):
        client.files.delete(upload.id)
    assert client.files.content(upload.id).read() == jsonl(ROWS)
    store.update_job("ftjob-busy", status="cancelled")
    assert client.files.delete(upload.id).deleted


def test_deleting_every_upload_after_a_job_breaks_nothing(tmp_path: Path, tiny_base: str) -> None:
    skills = {name: skill | {"base_model": tiny_base, "generation": {"max_tokens": 4}} for name, skill in REGISTRY["skills"].items()}
    write_registry(tmp_path, skills=skills)
    path, db = tmp_path / "models.yaml", f"sqlite:///{tmp_path / 'c.db'}"

    def serve():  # noqa: ANN202
        return running(create_app(Bot.from_registry(path, db=db), base_models=[tiny_base]))

    with serve() as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        training = client.files.create(file=("mood.jsonl", jsonl(ROWS * 2)), purpose="fine-tune")
        valid = client.files.create(file=("valid.jsonl", jsonl(ROWS)), purpose="fine-tune")
        job = wait_for(client, client.fine_tuning.jobs.create(model=tiny_base, training_file=training.id, validation_file=valid.id,
                                                              hyperparameters={"n_epochs": 1}, metadata={"kind": "classify"}).id)
        assert job.status == "succeeded", job.error
        for file in client.files.list():
            client.files.delete(file.id)
        assert not list(client.files.list()) and not list((tmp_path / ".chatbot" / "files").glob("file-*"))
    with registry_io.editing(path) as registry:  # the operator routes the new model: `chatbot registry routing NAME on`
        registry.skills[job.fine_tuned_model].routing = True
    with serve() as url:  # the server starts again; the router reads the model's own copy of its data
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        assert job.fine_tuned_model in [m.id for m in client.models.list()]
        answer = client.completions.create(model=job.fine_tuned_model, prompt=ROWS[0]["prompt"], max_tokens=2)
        assert answer.choices[0].finish_reason in ("stop", "length")
        again = wait_for(client, client.fine_tuning.jobs.create(model=tiny_base, training_file=client.files.create(file=("mood.jsonl", jsonl(ROWS * 2)), purpose="fine-tune").id,
                                                                hyperparameters={"n_epochs": 1}, metadata={"kind": "classify"}).id)
        assert again.status == "succeeded", again.error  # a later job still trains and registers: models.yaml builds a bot



def test_a_restart_removes_what_a_killed_upload_left(tmp_path: Path) -> None:
    store = JobStore(f"sqlite:///{tmp_path / 'c.db'}", tmp_path)
    kept = store.add_file("mood.jsonl", "fine-tune", jsonl(ROWS))
    (store.files_dir / ".file-halfway.tmp").write_bytes(b'{"prompt": "cut')  # killed while copying
    (store.files_dir / f".file-dead.{_ended_pid()}.tmp").write_bytes(b'{"prompt": "cut')  # the same, named by its process
    (store.files_dir / f".file-busy.{os.getppid()}.tmp").write_bytes(b'{"prompt": "on its')  # another server's upload going on
    norow = store.files_dir / "file-norow.jsonl"
    norow.write_bytes(jsonl(ROWS))  # killed before its row was written
    recent = store.files_dir / "file-committing.jsonl"
    recent.write_bytes(jsonl(ROWS))  # another server's, its row about to be committed
    os.utime(norow, (time.time() - 60, time.time() - 60))
    JobStore(f"sqlite:///{tmp_path / 'c.db'}", tmp_path)  # the server starts again
    assert sorted(p.name for p in store.files_dir.iterdir()) == sorted([f"{kept['id']}.jsonl", recent.name, f".file-busy.{os.getppid()}.tmp"])
    assert store.file(kept["id"]) is not None


def _ended_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True, text=True)
    return int(done.stdout)
