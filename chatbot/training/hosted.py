"""Fine-tuning on a server that speaks OpenAI's fine-tuning API: OpenAI itself, or ``chatbot serve``.

The data is checked here first (as ``chatbot data check`` does), uploaded with
``files.create(purpose="fine-tune")``, the job is created with ``fine_tuning.jobs.create`` and
followed through its events; when it succeeds, the fine-tuned model is registered as a skill with
``backend: openai``. What is needed to register it later (the skill's name and kind, the prompt
format) travels in the job's ``metadata``, so ``chatbot jobs follow ID`` can finish the work after a
detach.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chatbot import registry as registry_io
from chatbot.errors import ChatbotError
from chatbot.files import file_sha256
from chatbot.registry import Generation, Skill, TrainingRecord
from chatbot.skills import DEFAULT_SEPARATOR, DEFAULT_STOP, get_kind
from chatbot.runtime.openai_client import OPENAI_URL, api_errors
from chatbot.training.hyperparams import Hyperparameters

FINAL = ("succeeded", "failed", "cancelled")


def start_job(client: Any, *, name: str, kind: str, data: Path, valid: Path | None, base: str, hyperparameters: Hyperparameters,
              explicit: set[str], suffix: str | None, description: str, registry_path: str | os.PathLike[str] | None,
              force: bool) -> Any:
    """Check the data, upload it and create the job; returns the job object."""
    from chatbot.training.skill import check_or_fail

    get_kind(kind)
    Skill(name=name, kind=kind)  # validates the name
    registry = registry_io.load(registry_path, missing_ok=True)
    if name in registry.skills and not force:
        raise ChatbotError(f"{registry.path}: skill {name!r} exists already", hint="pick another name, or pass --force to replace it")
    report = check_or_fail(data, valid, lambda text: max(1, len(text) // 4), 1 << 20, kind)  # the server's tokenizer is unknown here
    with api_errors(str(client.base_url)):
        training = client.files.create(file=(data.name, data.read_bytes()), purpose="fine-tune")
        validation = client.files.create(file=(valid.name, valid.read_bytes()), purpose="fine-tune") if valid else None
        hp = {k: v for k, v in hyperparameters.model_dump().items() if k in explicit}
        extra = {"prompt_loss_weight": hp.pop("prompt_loss_weight")} if "prompt_loss_weight" in hp else {}
        metadata = {"skill": name, "kind": kind, "separator": report.separator or DEFAULT_SEPARATOR, "stop": report.stop or DEFAULT_STOP,
                    "data_file": registry.relative(data), "data_sha256": file_sha256(data), "description": description[:500]}
        if valid:
            metadata |= {"valid_file": registry.relative(valid), "valid_sha256": file_sha256(valid)}
        options = {"validation_file": validation.id if validation else None, "hyperparameters": {**hp, **extra} or None,
                   "suffix": suffix, "seed": hyperparameters.seed if "seed" in explicit else None}
        return client.fine_tuning.jobs.create(model=base, training_file=training.id, metadata=metadata,
                                              **{k: v for k, v in options.items() if v is not None})


def follow(client: Any, job_id: str, on_event: Callable[[Any], None], *, poll: float = 2.0) -> Any:
    """Report the job's events in order, until it ends; returns the final job."""
    seen: set[str] = set()
    with api_errors(str(client.base_url)):
        while True:
            job = client.fine_tuning.jobs.retrieve(job_id)
            events = list(client.fine_tuning.jobs.list_events(job_id, limit=100).data)
            for event in reversed(events):  # the API lists the newest first
                if event.id not in seen:
                    seen.add(event.id)
                    on_event(event)
            if job.status in FINAL:
                return job
            time.sleep(poll)


def register(job: Any, *, base_url: str | None, api_key_env: str, registry_path: str | os.PathLike[str] | None) -> Skill:
    """Register the succeeded *job*'s model as a skill with ``backend: openai``."""
    if job.status != "succeeded" or not job.fine_tuned_model:
        error = getattr(job, "error", None)
        reason = f": {error.message}" if error and getattr(error, "message", None) else ""
        raise ChatbotError(f"job {job.id} {job.status}{reason}", hint=f"see `chatbot jobs events {job.id}`")
    meta = dict(job.metadata or {})
    if "skill" not in meta or "kind" not in meta:
        raise ChatbotError(f"job {job.id} was not started by `chatbot train --hosted` (no skill name in its metadata)",
                           hint=f"register {job.fine_tuned_model} by hand in models.yaml with backend: openai")
    with registry_io.editing(registry_path) as registry:
        previous = registry.skills.get(meta["skill"])
        hp = job.hyperparameters.model_dump() if job.hyperparameters is not None else {}
        skill = Skill(
            name=meta["skill"], kind=meta["kind"], description=meta.get("description") or "",
            backend="openai", model=job.fine_tuned_model, base_url=base_url if base_url and base_url.rstrip("/") != OPENAI_URL else None,
            api_key_env=api_key_env, separator=meta.get("separator", DEFAULT_SEPARATOR), stop=[meta.get("stop", DEFAULT_STOP)],
            generation=Generation(max_tokens=get_kind(meta["kind"]).default_max_tokens),
            training=TrainingRecord(data_file=meta.get("data_file", ""), data_sha256=meta.get("data_sha256", ""), valid_file=meta.get("valid_file"),
                                    valid_sha256=meta.get("valid_sha256"), base_model=job.model,
                                    hyperparameters={k: v for k, v in hp.items() if v is not None} | {"job": job.id},
                                    duration_s=float((job.finished_at or job.created_at) - job.created_at)),
        )
        skill = skill.keeping_hand_set(previous, description_given=bool(meta.get("description")))
        registry.skills[skill.name] = skill
    return skill
