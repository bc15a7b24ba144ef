"""OpenAI's files and fine-tuning API, served by ``chatbot serve``: ``/v1/files`` and ``/v1/fine_tuning/jobs``.

Any OpenAI client can upload a JSONL file, create a job, follow its events and use the model it
makes, which is trained here with the local trainer and served at once by the same server.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import APIRouter, File, Form, Query, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from chatbot.jobs.store import JobStore, new_id
from chatbot.jobs.worker import JobWorker
from chatbot.runtime.base_models import DEFAULT_BASE
from chatbot.skills import DEFAULT_KIND, KIND_NAMES
from chatbot.web.errors import APIError

MAX_FILE_BYTES = 512 * 1024 * 1024


class JobHyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n_epochs: int | Literal["auto"] = "auto"
    batch_size: int | Literal["auto"] = "auto"
    learning_rate_multiplier: float | Literal["auto"] = "auto"
    prompt_loss_weight: float = Field(default=0.01, ge=0, le=1, description="an extension: the weight of prompt tokens in the loss")


class JobMethod(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: Literal["supervised"] = "supervised"
    supervised: dict[str, Any] | None = None


class CreateJob(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = Field(default=DEFAULT_BASE, description="the base model: a bundled alias, a local folder or a Hugging Face id")
    training_file: str
    validation_file: str | None = None
    hyperparameters: JobHyperparameters | None = None
    method: JobMethod | None = None
    suffix: str | None = Field(default=None, max_length=64)
    seed: int | None = None
    metadata: dict[str, str] | None = Field(default=None, description=f'`{{"kind": "{"|".join(KIND_NAMES)}"}}` picks the skill kind (default {DEFAULT_KIND})')


def _page(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more}


def build_router(store: JobStore, worker: JobWorker) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["files and fine-tuning (OpenAI-compatible)"])

    def get_file(file_id: str, param: str = "file_id") -> dict[str, Any]:
        found = store.file(file_id)
        if found is None:
            raise APIError(404, f"No such File object: {file_id}", param=param, code="file_not_found")
        return found

    def get_job(job_id: str) -> dict[str, Any]:
        found = store.job(job_id)
        if found is None:
            raise APIError(404, f"No such fine-tuning job: {job_id}", param="fine_tuning_job_id", code="fine_tuning_job_not_found")
        return found

    @router.post("/files")
    async def upload(file: UploadFile = File(...), purpose: str = Form(...)) -> dict[str, Any]:
        """Upload a file (purpose ``fine-tune``: JSONL prompt/completion lines)."""
        if purpose != "fine-tune":
            raise APIError(400, f"purpose '{purpose}' is not supported here: use 'fine-tune'", param="purpose")
        content = await file.read(MAX_FILE_BYTES + 1)
        if len(content) > MAX_FILE_BYTES:
            raise APIError(400, f"the file is larger than {MAX_FILE_BYTES // 2**20} MB", param="file")
        if not content.strip():
            raise APIError(400, "the file is empty", param="file")
        return store.add_file(file.filename or "upload.jsonl", purpose, content)

    @router.get("/files")
    async def list_files(purpose: str | None = None) -> dict[str, Any]:
        return {"object": "list", "data": store.files(purpose), "has_more": False}

    @router.get("/files/{file_id}")
    async def retrieve_file(file_id: str) -> dict[str, Any]:
        return get_file(file_id)

    @router.get("/files/{file_id}/content")
    async def file_content(file_id: str) -> FileResponse:
        found = get_file(file_id)
        return FileResponse(store.file_path(file_id), media_type="application/octet-stream", filename=found["filename"])

    @router.delete("/files/{file_id}")
    async def delete_file(file_id: str) -> dict[str, Any]:
        get_file(file_id)
        store.delete_file(file_id)
        return {"id": file_id, "object": "file", "deleted": True}

    @router.post("/fine_tuning/jobs")
    async def create_job(body: CreateJob) -> dict[str, Any]:
        """Create a job: it is validated, queued and run by the server's worker, one job at a time."""
        get_file(body.training_file, "training_file")
        if body.validation_file:
            get_file(body.validation_file, "validation_file")
        kind = (body.metadata or {}).get("kind", DEFAULT_KIND)
        if kind not in KIND_NAMES:
            raise APIError(400, f"metadata.kind '{kind}' is not one of {', '.join(KIND_NAMES)}", param="metadata")
        hyper = body.hyperparameters
        if hyper is None and body.method and body.method.supervised:
            hyper = JobHyperparameters.model_validate(body.method.supervised.get("hyperparameters") or {})
        hyper = hyper or JobHyperparameters()
        now = int(time.time())
        job = {
            "id": new_id("ftjob"), "object": "fine_tuning.job", "created_at": now, "finished_at": None, "model": body.model,
            "fine_tuned_model": None, "organization_id": "org-local", "result_files": [], "status": "validating_files",
            "training_file": body.training_file, "validation_file": body.validation_file,
            "hyperparameters": hyper.model_dump(), "trained_tokens": None, "error": None, "seed": body.seed if body.seed is not None else 0,
            "user_provided_suffix": body.suffix, "estimated_finish": None, "integrations": [],
            "method": {"type": "supervised", "supervised": {"hyperparameters": hyper.model_dump()}},
            "metadata": {"kind": kind, **(body.metadata or {})},
        }
        store.add_job(job, event=f"Created fine-tuning job: {job['id']}")
        worker.wake()
        return job

    @router.get("/fine_tuning/jobs")
    async def list_jobs(after: str | None = None, limit: int = Query(default=20, ge=1, le=100)) -> dict[str, Any]:
        return _page(*store.jobs(after=after, limit=limit))

    @router.get("/fine_tuning/jobs/{job_id}")
    async def retrieve_job(job_id: str) -> dict[str, Any]:
        return get_job(job_id)

    @router.post("/fine_tuning/jobs/{job_id}/cancel")
    async def cancel_job(job_id: str) -> dict[str, Any]:
        get_job(job_id)  # 404 for an unknown id
        cancelled = worker.cancel(job_id)
        if cancelled is None:
            finishing = worker.finishing(job_id)
            why = "is finishing: its model is being put into service" if finishing else f"has already ended ({get_job(job_id)['status']})"
            raise APIError(400, f"job {job_id} {why}", param="fine_tuning_job_id")
        return cancelled

    @router.get("/fine_tuning/jobs/{job_id}/events")
    async def job_events(job_id: str, after: str | None = None, limit: int = Query(default=20, ge=1, le=1000)) -> dict[str, Any]:
        get_job(job_id)
        return _page(*store.events(job_id, after=after, limit=limit))

    @router.get("/fine_tuning/jobs/{job_id}/checkpoints")
    async def job_checkpoints(job_id: str, limit: int = Query(default=10, ge=1, le=100)) -> dict[str, Any]:
        get_job(job_id)
        points = store.checkpoints(job_id)
        return _page(points[:limit], len(points) > limit)

    return router
