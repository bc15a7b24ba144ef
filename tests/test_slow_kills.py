"""Trainings killed (SIGKILL) at every step that writes: afterwards the adapter, models.yaml and the job agree.

Each case runs tests/kill_at.py in a process of its own, which kills itself at one point; then what a
restart does (building the bot, starting the server's job worker) must leave a consistent state:
a retrained skill has the old adapter or the new one, always the one its record names; a job is
``succeeded`` exactly when its model is registered, and a failed one leaves nothing behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from kill_at import POINTS

from chatbot import adapters
from chatbot import registry as registry_io
from chatbot.jobs.store import JobStore
from chatbot.jobs.worker import JobWorker, model_name

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent
ROWS = [{"prompt": f"question number {i}?\n\n###\n\n", "completion": f" answer {i} END"} for i in range(8)]


def _data(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    return path


def _kill_at(point: str, *args: str) -> int:
    done = subprocess.run([sys.executable, str(HERE / "kill_at.py"), point, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, -9), done.stderr[-3000:]
    return done.returncode


def _complete_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").exists() and (folder / "adapter_model.safetensors").exists()


@pytest.mark.parametrize("point", ["training", "staged", "renaming", "installed", "registered"])
def test_a_retraining_killed_anywhere_leaves_the_registered_adapter(point: str, tmp_path: Path, tiny_base: str) -> None:
    from chatbot.training.hyperparams import Hyperparameters
    from chatbot.training.skill import train_skill

    path = tmp_path / "models.yaml"
    data = _data(tmp_path, "shop.jsonl")
    first = train_skill("shop", "qa", data, base=tiny_base, hyperparameters=Hyperparameters(n_epochs=1, batch_size=4), registry_path=path)
    folder = tmp_path / "adapters" / "shop"
    old_id = first.training.adapter_id
    assert old_id and adapters.adapter_id(folder) == old_id

    assert _kill_at(point, "retrain", path, data, tiny_base) == -9, f"never reached {point}: {POINTS[point]}"
    registry_io.repair_adapters(path)  # what building the bot does first

    record = registry_io.load(path).get("shop").training
    assert _complete_adapter(folder), sorted(p.name for p in folder.parent.iterdir())
    assert adapters.adapter_id(folder) == record.adapter_id  # the adapter in place is the one the record describes
    assert (record.adapter_id == old_id) == (point != "registered")  # the new one only once models.yaml named it
    assert not adapters.replaced(folder).exists()


@pytest.mark.parametrize("point", ["training", "staged", "installed", "registered", "serving"])
def test_a_job_killed_anywhere_is_succeeded_exactly_when_its_model_is_registered(point: str, tmp_path: Path, tiny_base: str) -> None:
    path, db = tmp_path / "models.yaml", f"sqlite:///{tmp_path / 'chatbot.db'}"
    store = JobStore(db, tmp_path / ".chatbot")
    upload = store.add_file("shop.jsonl", "fine-tune", _data(tmp_path, "shop.jsonl").read_bytes())
    store.add_job({"id": "ftjob-killed", "object": "fine_tuning.job", "created_at": 1, "status": "queued", "model": tiny_base,
                   "training_file": upload["id"], "validation_file": None, "hyperparameters": {"n_epochs": 1, "batch_size": 4},
                   "metadata": {"kind": "qa"}, "seed": 0, "user_provided_suffix": "shop", "error": None, "finished_at": None})

    assert _kill_at(point, "job", path, db) == -9, f"never reached {point}: {POINTS[point]}"
    worker = JobWorker(JobStore(db, tmp_path / ".chatbot"), path)  # the server starts again
    worker.start()
    worker.stop()

    job = store.job("ftjob-killed")
    name = model_name(tiny_base, "shop", "ftjob-killed")
    skill = registry_io.load(path, missing_ok=True).skills.get(name)
    folder = tmp_path / "adapters" / name
    if point in ("registered", "serving"):
        assert job["status"] == "succeeded" and job["fine_tuned_model"] == name
        assert skill is not None and _complete_adapter(folder) and adapters.adapter_id(folder) == skill.training.adapter_id
        assert [c["fine_tuned_model_checkpoint"] for c in store.checkpoints(job["id"])] == [name]
        store.delete_file(upload["id"])  # the model routes on its own copy of the data
        assert (tmp_path / skill.training.data_file).read_text() == "".join(json.dumps(r) + "\n" for r in ROWS)
    else:
        assert job["status"] == "failed" and job["error"]["code"] == "server_restarted"
        assert skill is None
        assert not list(tmp_path.glob(f"adapters/{name}*"))  # nothing its training wrote is left
